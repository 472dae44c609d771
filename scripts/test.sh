#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine (run as root) and runs every test.
# Long tests that read ../shared/fixtures skip with a message when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

# PostgreSQL, and etcd + Patroni for the replicated-cluster test (bookd/tests/replicated.rs).
sh scripts/install-patroni.sh

cargo fmt --all -- --check
# Debug build with optimised dependencies (see Cargo.toml [profile.dev]); one build, then run.
cargo test --workspace --no-fail-fast
