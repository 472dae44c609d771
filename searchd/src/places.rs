//! Place autocomplete (`GET /v1/places`): airports and metro areas by code, name or city.
//!
//! Order of the answer: an exact IATA code match first (a `q` of three letters; a metro's
//! code is followed by its airports), then
//! documents that have every word of `q` as a whole word (`paris` finds the city of Paris
//! before `Parish`; only when every word has [`MIN_WHOLE_WORD_CHARS`] letters), then
//! documents whose words start with every word of `q` (exact prefixes), then documents that match with one typo per word (prefix Levenshtein
//! distance 1, transpositions count as one edit; only for words of at least
//! [`MIN_TYPO_WORD_CHARS`] characters, since one edit on a shorter word matches nearly
//! everything; and not in the first letter, as search engines' completion suggesters do
//! by default: people rarely mistype it, and keeping it fixed visits a small part of the
//! term dictionary, which made this tier 2.5x faster). Words are compared folded to ASCII
//! (`sao` finds `São`). Within each group the index's `rank` decides: busier places first
//! (dated passenger legs from or to them), then a metro before an airport, then by code
//! (`format::places::rank_key`).
//!
//! The tantivy reader is opened once per snapshot ([`PlacesIndex::open`]) and kept next to
//! it by the server; [`places`] is the one-shot form for tools and tests.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use format::places::PlaceFields;
use format::Snapshot;
use serde_json::{json, Value};
use tantivy::collector::TopDocs;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, WatchCallback, WatchHandle, WritePtr,
};
use tantivy::query::{
    AutomatonWeight, BooleanQuery, DfaWrapper, EnableScoring, FuzzyTermQuery, Occur, Query,
    TermQuery, Weight,
};
use tantivy::schema::Field;
use tantivy::schema::{IndexRecordOption, TantivyDocument, Value as _};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocAddress, Index, IndexReader, Order, ReloadPolicy, Searcher, Term};
use tantivy_fst::Automaton;

use crate::api::ApiError;

/// Longest accepted `q`, in characters.
pub const MAX_Q_CHARS: usize = 64;
/// `limit` when the query gives none.
pub const DEFAULT_LIMIT: usize = 10;
/// Largest accepted `limit`.
pub const MAX_LIMIT: usize = 50;
/// Words shorter than this never make a whole-word match outrank prefix matches.
pub const MIN_WHOLE_WORD_CHARS: usize = 3;
/// Words shorter than this must match as exact prefixes (no typo allowed).
pub const MIN_TYPO_WORD_CHARS: usize = 4;
/// Words of `q` beyond this many are ignored (64 characters hold at most 32 anyway).
const MAX_WORDS: usize = 8;

/// One answer of the autocomplete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// `airport` or `metro`.
    pub kind: String,
    pub iata: String,
    pub name: String,
    pub city: String,
    pub country: String,
    pub rank: u64,
}

impl Place {
    pub fn to_json(&self) -> Value {
        json!({
            "type": self.kind,
            "iata": self.iata,
            "name": self.name,
            "city": self.city,
            "country": self.country,
        })
    }
}

/// The places index of one snapshot with its reader, opened once.
pub struct PlacesIndex {
    reader: IndexReader,
    fields: PlaceFields,
    analyzer: TextAnalyzer,
    /// Each metro's member airport codes, by metro code.
    members: HashMap<String, Vec<String>>,
}

impl PlacesIndex {
    /// Opens a reader on the snapshot's places index (no background reload: a snapshot is
    /// immutable).
    ///
    /// The index is reopened over a read-only view of the snapshot's `places` directory: a
    /// tantivy reader otherwise creates a lock file there, which fails on a read-only
    /// snapshot (and would write into an immutable one).
    pub fn open(snap: &Snapshot) -> Result<PlacesIndex, String> {
        let dir = snap.dir.join(format::snapshot::PLACES_DIR);
        let mmap = MmapDirectory::open(&dir)
            .map_err(|e| format!("failed to open the places index {}: {e}", dir.display()))?;
        let index = Index::open(ReadOnlyDir(mmap))
            .map_err(|e| format!("failed to open the places index {}: {e}", dir.display()))?;
        let index = &index;
        let fields = format::places::fields(index)
            .map_err(|e| format!("failed to resolve the places index fields: {e}"))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| format!("failed to open a reader on the places index: {e}"))?;
        // Queries are folded to ASCII: the index holds every word of a place both as
        // written and folded (`format::places`).
        let analyzer = format::places::folding_analyzer();
        let code = |c: &[u8; 3]| String::from_utf8_lossy(c).into_owned();
        let places = snap.places.get();
        let members = places
            .metros
            .iter()
            .map(|m| {
                let airports = m
                    .airports
                    .iter()
                    .filter_map(|&a| places.airports.get(a.to_native() as usize))
                    .map(|a| code(&a.iata))
                    .collect();
                (code(&m.code), airports)
            })
            .collect();
        Ok(PlacesIndex {
            reader,
            fields,
            analyzer,
            members,
        })
    }

    /// Number of documents (airports plus metros) in the index.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The autocomplete answer (`data`): an array of places, best first.
    pub fn search(&self, q: &str, limit: usize) -> Result<Value, ApiError> {
        let found = self.find(q, limit)?;
        Ok(Value::Array(found.iter().map(Place::to_json).collect()))
    }

    /// The matching places, best first (see the module documentation for the order).
    pub fn find(&self, q: &str, limit: usize) -> Result<Vec<Place>, ApiError> {
        let q = check_q(q)?;
        check_limit(limit)?;
        let searcher = self.reader.searcher();
        let mut out: Vec<Place> = Vec::new();
        let mut seen: HashSet<(String, String)> = HashSet::new();

        // 1. Exact code match.
        if q.len() == 3 && q.bytes().all(|b| b.is_ascii_alphabetic()) {
            let term = Term::from_field_text(self.fields.code, &q.to_ascii_uppercase());
            let query = TermQuery::new(term, IndexRecordOption::Basic);
            self.collect(&searcher, &query, limit, &mut out, &mut seen)?;
            // A metro's code lists its airports next (`nyc`: New York, then JFK, EWR, LGA),
            // as a city's suggestion carries its airports in Duffel's and Amadeus' answers.
            let members: Vec<&String> = out
                .iter()
                .filter(|p| p.kind == "metro")
                .filter_map(|p| self.members.get(&p.iata))
                .flatten()
                .collect();
            if !members.is_empty() && out.len() < limit {
                let codes: Vec<(Occur, Box<dyn Query>)> = members
                    .iter()
                    .map(|c| {
                        let term = Term::from_field_text(self.fields.code, c);
                        let q: Box<dyn Query> =
                            Box::new(TermQuery::new(term, IndexRecordOption::Basic));
                        (Occur::Should, q)
                    })
                    .collect();
                let kind = Term::from_field_text(self.fields.kind, "airport");
                let query = BooleanQuery::new(vec![
                    (
                        Occur::Must,
                        Box::new(TermQuery::new(kind, IndexRecordOption::Basic)) as Box<dyn Query>,
                    ),
                    (Occur::Must, Box::new(BooleanQuery::new(codes))),
                ]);
                self.collect(&searcher, &query, limit, &mut out, &mut seen)?;
            }
        }
        if out.len() >= limit {
            out.truncate(limit);
            return Ok(out);
        }

        let words = self.words(q);
        if words.is_empty() {
            return Ok(out);
        }
        // 2. Every word is a whole word of the place. Not for short words: `la` or `st`
        // as whole words are articles and abbreviations in names ("Agen-La Garenne"), and
        // whoever types them is still typing (`la` is for Los Angeles or LaGuardia).
        if words
            .iter()
            .all(|w| w.chars().count() >= MIN_WHOLE_WORD_CHARS)
        {
            let whole = self.whole_words_query(&words);
            self.collect(&searcher, &whole, limit, &mut out, &mut seen)?;
        }
        // 3. Every word is a prefix of a word of the place.
        if out.len() < limit {
            let exact = self.prefix_query(&words, false)?;
            self.collect(&searcher, &exact, limit, &mut out, &mut seen)?;
        }
        // 4. The same with one typo per (long enough) word.
        if out.len() < limit && words.iter().any(|w| typo_allowed(w)) {
            let fuzzy = self.prefix_query(&words, true)?;
            self.collect(&searcher, &fuzzy, limit, &mut out, &mut seen)?;
        }
        out.truncate(limit);
        Ok(out)
    }

    /// The words of `q` as the index tokenizes them (lower-cased, split on punctuation),
    /// folded to ASCII.
    fn words(&self, q: &str) -> Vec<String> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(q);
        let mut words = Vec::new();
        while stream.advance() {
            let text = stream.token().text.clone();
            if !text.is_empty() && !words.contains(&text) {
                words.push(text);
            }
            if words.len() == MAX_WORDS {
                break;
            }
        }
        words
    }

    fn whole_words_query(&self, words: &[String]) -> BooleanQuery {
        let clauses: Vec<(Occur, Box<dyn Query>)> = words
            .iter()
            .map(|w| {
                let term = Term::from_field_text(self.fields.text, w);
                let q: Box<dyn Query> = Box::new(TermQuery::new(term, IndexRecordOption::Basic));
                (Occur::Must, q)
            })
            .collect();
        BooleanQuery::new(clauses)
    }

    fn prefix_query(&self, words: &[String], typos: bool) -> Result<BooleanQuery, ApiError> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(words.len());
        for w in words {
            let distance = if typos && typo_allowed(w) { 1 } else { 0 };
            let term = Term::from_field_text(self.fields.text, w);
            let fuzzy = FuzzyTermQuery::new_prefix(term, distance, true);
            let q: Box<dyn Query> = match w.as_bytes().first() {
                Some(&first) if distance > 0 => {
                    let dfa = fuzzy.automaton().map_err(search_failed)?;
                    Box::new(FirstByteKept::query(self.fields.text, first, dfa))
                }
                _ => Box::new(fuzzy),
            };
            clauses.push((Occur::Must, q));
        }
        Ok(BooleanQuery::new(clauses))
    }

    /// Runs `query`, appends the places not yet in `out` ordered by rank then code.
    fn collect(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        limit: usize,
        out: &mut Vec<Place>,
        seen: &mut HashSet<(String, String)>,
    ) -> Result<(), ApiError> {
        // Enough to fill `limit` even if every place already listed matches again.
        let want = limit.saturating_add(out.len()).max(1);
        let top = TopDocs::with_limit(want).order_by_fast_field::<u64>("rank", Order::Desc);
        let hits: Vec<(Option<u64>, DocAddress)> =
            searcher.search(query, &top).map_err(search_failed)?;
        let mut group = Vec::with_capacity(hits.len());
        for (_, addr) in hits {
            let place = self.load(searcher, addr)?;
            if seen.insert((place.kind.clone(), place.iata.clone())) {
                group.push(place);
            }
        }
        // `rank` alone orders a snapshot's places (it encodes the ties); code and kind
        // keep snapshots built before it did deterministic.
        group.sort_by(|a, b| {
            b.rank
                .cmp(&a.rank)
                .then_with(|| a.iata.cmp(&b.iata))
                .then_with(|| b.kind.cmp(&a.kind))
        });
        out.extend(group);
        Ok(())
    }

    fn load(&self, searcher: &Searcher, addr: DocAddress) -> Result<Place, ApiError> {
        let doc: TantivyDocument = searcher.doc(addr).map_err(search_failed)?;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        Ok(Place {
            kind: text(self.fields.kind),
            iata: text(self.fields.code),
            name: text(self.fields.name),
            city: text(self.fields.city),
            country: text(self.fields.country),
            rank: doc
                .get_first(self.fields.rank)
                .and_then(|v| v.as_u64())
                .unwrap_or(0),
        })
    }
}

/// A term automaton whose terms start with `first`, then follow `inner` (which sees the
/// whole term): the term dictionary's other first bytes are never walked.
#[derive(Clone)]
struct FirstByteKept {
    first: u8,
    inner: Arc<DfaWrapper>,
}

/// [`FirstByteKept`]'s states: before the first byte, inside `inner`, or out for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeptState {
    Start,
    Inner(u32),
    Dead,
}

impl FirstByteKept {
    fn query(field: Field, first: u8, dfa: DfaWrapper) -> FirstByteQuery {
        FirstByteQuery {
            field,
            automaton: Arc::new(FirstByteKept {
                first,
                inner: Arc::new(dfa),
            }),
        }
    }
}

impl Automaton for FirstByteKept {
    type State = KeptState;

    fn start(&self) -> KeptState {
        KeptState::Start
    }

    fn is_match(&self, state: &KeptState) -> bool {
        match state {
            KeptState::Inner(s) => self.inner.is_match(s),
            // The empty term is never a match: `q`'s words have at least one letter.
            KeptState::Start | KeptState::Dead => false,
        }
    }

    fn can_match(&self, state: &KeptState) -> bool {
        match state {
            KeptState::Start => true,
            KeptState::Inner(s) => self.inner.can_match(s),
            KeptState::Dead => false,
        }
    }

    fn accept(&self, state: &KeptState, byte: u8) -> KeptState {
        match state {
            KeptState::Start if byte == self.first => {
                KeptState::Inner(self.inner.accept(&self.inner.start(), byte))
            }
            KeptState::Start | KeptState::Dead => KeptState::Dead,
            KeptState::Inner(s) => KeptState::Inner(self.inner.accept(s, byte)),
        }
    }
}

/// The query of one word's typo matches (see [`FirstByteKept`]).
#[derive(Clone)]
struct FirstByteQuery {
    field: Field,
    automaton: Arc<FirstByteKept>,
}

impl std::fmt::Debug for FirstByteQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirstByteQuery")
            .field("field", &self.field)
            .field("first", &char::from(self.automaton.first))
            .finish_non_exhaustive()
    }
}

impl Query for FirstByteQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(AutomatonWeight::<FirstByteKept>::new(
            self.field,
            Arc::clone(&self.automaton),
        )))
    }
}

/// A snapshot's places directory as tantivy sees it: reads go to the mapped files; locks
/// are no-ops (nothing ever writes a snapshot once published) and writes are refused.
#[derive(Debug, Clone)]
struct ReadOnlyDir(MmapDirectory);

fn read_only_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        "the snapshot's places index is read-only",
    )
}

impl Directory for ReadOnlyDir {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.0.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError {
            io_error: Arc::new(read_only_error()),
            filepath: path.to_path_buf(),
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.0.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::IoError {
            io_error: Arc::new(read_only_error()),
            filepath: path.to_path_buf(),
        })
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        self.0.atomic_read(path)
    }

    fn atomic_write(&self, _path: &Path, _data: &[u8]) -> std::io::Result<()> {
        Err(read_only_error())
    }

    fn sync_directory(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn acquire_lock(&self, _lock: &Lock) -> Result<DirectoryLock, LockError> {
        Ok(DirectoryLock::from(Box::new(())))
    }

    fn watch(&self, _callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(WatchHandle::empty())
    }
}

fn typo_allowed(word: &str) -> bool {
    word.chars().count() >= MIN_TYPO_WORD_CHARS
}

fn search_failed(e: tantivy::TantivyError) -> ApiError {
    ApiError::new(
        500,
        "internal_error",
        "Internal error",
        format!("failed to search the places index: {e}"),
    )
}

/// Checks `q` (1-64 characters once surrounding blanks are trimmed); returns it trimmed.
pub fn check_q(q: &str) -> Result<&str, ApiError> {
    let t = q.trim();
    let n = t.chars().count();
    if n == 0 {
        return Err(ApiError::bad_parameter(
            "q",
            format!("must be 1-{MAX_Q_CHARS} characters, got an empty value"),
        ));
    }
    if n > MAX_Q_CHARS {
        return Err(ApiError::bad_parameter(
            "q",
            format!("must be 1-{MAX_Q_CHARS} characters, got {n}"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(ApiError::bad_parameter(
            "q",
            "must not contain control characters",
        ));
    }
    Ok(t)
}

fn check_limit(limit: usize) -> Result<(), ApiError> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(())
    } else {
        Err(ApiError::bad_parameter(
            "limit",
            format!("must be an integer 1-{MAX_LIMIT}, got {limit}"),
        ))
    }
}

/// Reads `q` (required) and `limit` (default 10) from decoded query parameters. Unknown
/// parameters and repeated ones are refused, naming them.
pub fn parse_params(params: &[(String, String)]) -> Result<(String, usize), ApiError> {
    let mut q: Option<&str> = None;
    let mut limit: Option<&str> = None;
    for (k, v) in params {
        let slot = match k.as_str() {
            "q" => &mut q,
            "limit" => &mut limit,
            other => {
                return Err(ApiError::bad_parameter(
                    other,
                    "unknown parameter (this endpoint takes `q` and `limit`)",
                ))
            }
        };
        if slot.is_some() {
            return Err(ApiError::bad_parameter(k, "given more than once"));
        }
        *slot = Some(v.as_str());
    }
    let q = q.ok_or_else(|| ApiError::missing_parameter("q"))?;
    let q = check_q(q)?.to_string();
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(text) => {
            let n: usize = text.trim().parse().map_err(|_| {
                ApiError::bad_parameter(
                    "limit",
                    format!("must be an integer 1-{MAX_LIMIT}, got {text:?}"),
                )
            })?;
            check_limit(n)?;
            n
        }
    };
    Ok((q, limit))
}

/// One-shot autocomplete on `snap` (opens a reader; servers keep a [`PlacesIndex`]).
pub fn places(snap: &Snapshot, q: &str, limit: usize) -> Result<Value, ApiError> {
    check_q(q)?;
    check_limit(limit)?;
    let index = PlacesIndex::open(snap)
        .map_err(|e| ApiError::new(500, "internal_error", "Internal error", e))?;
    index.search(q, limit)
}

#[cfg(test)]
#[path = "../tests/common/snapshot.rs"]
mod test_snapshot;

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Snapshot) {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let link = dir.path().join("snap");
        test_snapshot::build_test_snapshot(&link, 0);
        let snap = Snapshot::open(&link).expect("open the test snapshot");
        (dir, snap)
    }

    fn codes(v: &Value) -> Vec<String> {
        v.as_array()
            .expect("an array")
            .iter()
            .map(|p| {
                format!(
                    "{}:{}",
                    p["type"].as_str().unwrap_or(""),
                    p["iata"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    #[test]
    fn exact_code_comes_first_with_every_field() {
        let (_d, snap) = open();
        let v = places(&snap, "jfk", 10).expect("search");
        let first = &v[0];
        assert_eq!(first["type"], "airport");
        assert_eq!(first["iata"], "JFK");
        assert_eq!(first["name"], "John F Kennedy International");
        assert_eq!(first["city"], "New York");
        assert_eq!(first["country"], "US");
        assert_eq!(v.as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn metro_code_matches() {
        let (_d, snap) = open();
        let v = places(&snap, "NYC", 10).expect("search");
        assert_eq!(codes(&v)[0], "metro:NYC");
        // A metro is named after the city most of its airports serve (JFK and LGA: New York).
        assert_eq!(v[0]["city"], "New York");
        assert_eq!(v[0]["name"], "New York (all airports: EWR, JFK, LGA)");
        // ... so the city finds it too.
        let v = places(&snap, "new york", 10).expect("search");
        assert!(codes(&v).contains(&"metro:NYC".to_string()), "{v}");
    }

    #[test]
    fn name_word_and_one_typo() {
        let (_d, snap) = open();
        let v = places(&snap, "kennedy", 10).expect("search");
        assert_eq!(codes(&v), vec!["airport:JFK"]);
        let v = places(&snap, "kenedy", 10).expect("search");
        assert_eq!(codes(&v), vec!["airport:JFK"]);
        let v = places(&snap, "Heathorw", 10).expect("transposition");
        assert_eq!(codes(&v), vec!["airport:LHR"]);
    }

    #[test]
    fn prefix_of_several_words_ranks_busier_first() {
        let (_d, snap) = open();
        let v = places(&snap, "new y", 10).expect("search");
        // Busier first: the NYC metro (750, all its airports), JFK (300), LGA (200).
        assert_eq!(codes(&v), vec!["metro:NYC", "airport:JFK", "airport:LGA"]);
        let v = places(&snap, "lon", 10).expect("search");
        assert_eq!(codes(&v), vec!["metro:LON", "airport:LHR", "airport:LGW"]);
    }

    #[test]
    fn exact_prefixes_rank_above_typos() {
        let (_d, snap) = open();
        // "newa" is an exact prefix of "newark" (EWR, 250); "new y..." (the NYC metro 750,
        // JFK 300, LGA 200) is one edit away. They outrank EWR but only match with a typo,
        // so they come after every exact match.
        // The NYC metro now matches "newa" exactly too (Newark, EWR's city, is one of its
        // airports' cities) and, busier, comes first.
        let v = places(&snap, "newa", 10).expect("search");
        assert_eq!(
            codes(&v),
            vec!["metro:NYC", "airport:EWR", "airport:JFK", "airport:LGA"]
        );
        let v = places(&snap, "londn", 10).expect("search");
        assert_eq!(codes(&v), vec!["metro:LON", "airport:LHR", "airport:LGW"]);
    }

    #[test]
    fn limit_cuts_the_answer() {
        let (_d, snap) = open();
        let v = places(&snap, "n", 2).expect("search");
        assert_eq!(v.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn bad_input_names_the_parameter() {
        let (_d, snap) = open();
        let e = places(&snap, "  ", 10).expect_err("empty q");
        assert_eq!(e.parameter.as_deref(), Some("q"));
        let long = "x".repeat(65);
        let e = places(&snap, &long, 10).expect_err("long q");
        assert_eq!(e.parameter.as_deref(), Some("q"));
        let e = places(&snap, "jfk", 0).expect_err("limit 0");
        assert_eq!(e.parameter.as_deref(), Some("limit"));
        let e = places(&snap, "jfk", 51).expect_err("limit 51");
        assert_eq!(e.status, 400);
        // No word at all is a valid query with no answer.
        let v = places(&snap, "--", 10).expect("punctuation only");
        assert_eq!(v, json!([]));
    }

    #[test]
    fn params_are_checked() {
        let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            parse_params(&p(&[("q", "jfk")])).expect("ok"),
            ("jfk".to_string(), 10)
        );
        assert_eq!(
            parse_params(&p(&[("q", "jfk"), ("limit", "50")])).expect("ok"),
            ("jfk".to_string(), 50)
        );
        let e = parse_params(&p(&[])).expect_err("missing");
        assert_eq!(e.code, "missing_parameter");
        let e = parse_params(&p(&[("q", "a"), ("limit", "x")])).expect_err("bad limit");
        assert_eq!(e.parameter.as_deref(), Some("limit"));
        let e = parse_params(&p(&[("q", "a"), ("q", "b")])).expect_err("twice");
        assert_eq!(e.parameter.as_deref(), Some("q"));
        let e = parse_params(&p(&[("q", "a"), ("lmit", "3")])).expect_err("unknown");
        assert_eq!(e.parameter.as_deref(), Some("lmit"));
    }
}
