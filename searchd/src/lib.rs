//! searchd: the search engine over a snapshot (`engine`), its query and response types
//! (`query`, `api`), the live seat overlay (`overlay`), place autocomplete (`places`) and the
//! HTTP server (`server`).

pub mod api;
pub mod engine;
pub mod overlay;
pub mod places;
pub mod query;
pub mod server;
pub mod subscriber;
