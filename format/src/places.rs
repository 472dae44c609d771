//! The tantivy index of places (airports and metro areas), for autocomplete.
//!
//! One document per airport and per metro. `code` is the exact IATA code, `text` holds the
//! lower-cased words of code, name and city for prefix and one-typo matches (and the same
//! words folded to ASCII where they differ, so `sao paulo` finds `São Paulo` without a
//! typo), `rank` orders equally good matches: see [`rank_key`].

use std::path::Path;

use tantivy::postings::Postings;
use tantivy::schema::{Field, Schema, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::schema::{FieldType, IndexRecordOption};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, SimpleTokenizer, TextAnalyzer};
use tantivy::{doc, DocSet, Index, IndexWriter, SegmentReader, TantivyDocument, TERMINATED};

use crate::model::Places;
use crate::{Error, Result};

/// The fields of the places index.
#[derive(Clone, Copy, Debug)]
pub struct PlaceFields {
    pub code: Field,
    pub kind: Field,
    pub name: Field,
    pub city: Field,
    pub country: Field,
    pub text: Field,
    pub rank: Field,
}

pub fn schema() -> (Schema, PlaceFields) {
    let mut b = Schema::builder();
    let fields = PlaceFields {
        code: b.add_text_field("code", STRING | STORED),
        kind: b.add_text_field("kind", STRING | STORED),
        name: b.add_text_field("name", STORED),
        city: b.add_text_field("city", STORED),
        country: b.add_text_field("country", STORED),
        text: b.add_text_field("text", TEXT),
        rank: b.add_u64_field("rank", FAST | INDEXED | STORED),
    };
    (b.build(), fields)
}

/// Resolves the fields of an opened index, refusing an index with another schema.
pub fn fields(index: &Index) -> Result<PlaceFields> {
    let s = index.schema();
    let get = |name: &str| {
        s.get_field(name)
            .map_err(|_| Error::Places(format!("the index has no field `{name}`")))
    };
    Ok(PlaceFields {
        code: get("code")?,
        kind: get("kind")?,
        name: get("name")?,
        city: get("city")?,
        country: get("country")?,
        text: get("text")?,
        rank: get("rank")?,
    })
}

fn tv(e: tantivy::TantivyError) -> Error {
    Error::Places(e.to_string())
}

/// The analyzer that folds words to ASCII (`São` -> `sao`), for the index's second spelling
/// of a place's words and for queries.
pub fn folding_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The words of `text` a query may type in another spelling, space separated (empty when
/// there are none): each word folded to ASCII where that differs (`São` -> `sao`), and each
/// word written with an apostrophe also without it (`O'Hare` -> `ohare`: the tokenizer
/// splits `o'hare` into `o` and `hare`, so `ohare` would otherwise match nothing).
fn folded_words(text: &str) -> String {
    let words = |mut analyzer: TextAnalyzer, text: &str| {
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    };
    let plain = || {
        TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(LowerCaser)
            .build()
    };
    let mut original = words(plain(), text);
    let joined = text.replace(['\'', '\u{2019}'], "");
    let mut variants = words(plain(), &joined);
    variants.extend(words(folding_analyzer(), text));
    variants.extend(words(folding_analyzer(), &joined));
    let mut out = String::new();
    for w in variants {
        if !original.contains(&w) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&w);
            original.push(w);
        }
    }
    out
}

/// Highest traffic figure the rank key holds (far above any season's dated legs).
const MAX_TRAFFIC: u64 = (1 << 45) - 1;

/// The `rank` of a place: one number whose descending order is the order of equally good
/// matches, so that the index's top-k by `rank` is already that order and ties never cut
/// a result list at random. Busier first (`traffic`: dated passenger legs from or to the place,
/// a metro's being its airports' sum), then a metro before an airport, then an airport of a
/// metro area before other airports (with a schedule that does not serve a city, `lon`
/// still lists Heathrow before Londrina), then by code.
pub fn rank_key(traffic: u64, metro: bool, metro_member: bool, code: &[u8; 3]) -> u64 {
    // Codes are base-36 digits (letters, and digits in some feeds): 36^3 < 2^16.
    let digit = |b: u8| match b {
        b'0'..=b'9' => u64::from(b - b'0'),
        b'A'..=b'Z' => u64::from(b - b'A') + 10,
        b'a'..=b'z' => u64::from(b - b'a') + 10,
        _ => 35,
    };
    let code_index = code.iter().fold(0, |acc, &b| acc * 36 + digit(b));
    debug_assert!(code_index < 1 << 16);
    (traffic.min(MAX_TRAFFIC) << 18)
        | (u64::from(metro) << 17)
        | (u64::from(metro_member && !metro) << 16)
        | ((1 << 16) - 1 - code_index)
}

/// Builds the index into the empty directory `dir`. `traffic[i]` is airport `i`'s dated
/// passenger legs (departing or arriving); a metro's is the sum of its airports'.
pub fn build(dir: &Path, places: &Places, traffic: &[u64]) -> Result<()> {
    let (schema, f) = schema();
    let index = Index::create_in_dir(dir, schema).map_err(tv)?;
    // One thread: the index is small, and the snapshot build already uses every core.
    let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).map_err(tv)?;
    let code_str = |c: &[u8; 3]| String::from_utf8_lossy(c).into_owned();
    let mut member = vec![false; places.airports.len()];
    for &a in places.metros.iter().flat_map(|m| &m.airports) {
        if let Some(slot) = member.get_mut(a as usize) {
            *slot = true;
        }
    }
    for (i, a) in places.airports.iter().enumerate() {
        let code = code_str(&a.iata);
        let mut text = format!("{} {} {}", code, a.name, a.city).to_lowercase();
        let folded = folded_words(&text);
        if !folded.is_empty() {
            text.push(' ');
            text.push_str(&folded);
        }
        w.add_document(doc!(
            f.code => code,
            f.kind => "airport",
            f.name => a.name.clone(),
            f.city => a.city.clone(),
            f.country => String::from_utf8_lossy(&a.country).into_owned(),
            f.text => text,
            f.rank => rank_key(
                traffic.get(i).copied().unwrap_or(0),
                false,
                member[i],
                &a.iata
            ),
        ))
        .map_err(tv)?;
    }
    for m in &places.metros {
        let code = code_str(&m.code);
        let members_of = || {
            m.airports
                .iter()
                .filter_map(|&a| places.airports.get(a as usize))
        };
        let first = members_of().next();
        // The metro is named after the city most of its airports serve (NYC: JFK and LGA
        // say New York, EWR says Newark), an airport serving a city also when its name says
        // it (YTO: YTZ says Toronto, YYZ says Mississauga but is "Toronto Pearson"); ties go
        // to the alphabetically first.
        let mut cities: Vec<&str> = members_of()
            .map(|a| a.city.as_str())
            .filter(|c| !c.is_empty())
            .collect();
        cities.sort_unstable();
        cities.dedup();
        let mut city = String::new();
        let mut best = 0;
        for c in &cities {
            let lc = c.to_lowercase();
            let n = members_of()
                .filter(|a| a.city == *c || a.name.to_lowercase().contains(&lc))
                .count();
            if n > best {
                best = n;
                city = c.to_string();
            }
        }
        if city.is_empty() {
            city = first.map(|a| a.name.clone()).unwrap_or_default();
        }
        let country = first
            .map(|a| String::from_utf8_lossy(&a.country).into_owned())
            .unwrap_or_default();
        let members: Vec<String> = m
            .airports
            .iter()
            .filter_map(|&a| places.airports.get(a as usize))
            .map(|a| code_str(&a.iata))
            .collect();
        let name = format!("{} (all airports: {})", city, members.join(", "));
        let t: u64 = m
            .airports
            .iter()
            .map(|&a| traffic.get(a as usize).copied().unwrap_or(0))
            .fold(0, u64::saturating_add);
        // Every member's city finds the metro (ROM: Roma and Rome; SPK: Sapporo).
        let mut text = format!("{} {} {}", code, city, cities.join(" ")).to_lowercase();
        let folded = folded_words(&text);
        if !folded.is_empty() {
            text.push(' ');
            text.push_str(&folded);
        }
        w.add_document(doc!(
            f.code => code.clone(),
            f.kind => "metro",
            f.name => name,
            f.city => city.clone(),
            f.country => country,
            f.text => text,
            f.rank => rank_key(t, true, false, &m.code),
        ))
        .map_err(tv)?;
    }
    w.commit().map_err(tv)?;
    w.wait_merging_threads().map_err(tv)?;
    Ok(())
}

pub fn open(dir: &Path) -> Result<Index> {
    Index::open_in_dir(dir).map_err(tv)
}

/// Checks the index's files as far as tantivy can: every file's own checksum, then every
/// segment opened as a searcher opens it. tantivy trusts the lengths and offsets inside its
/// files and panics on some damaged ones (a segment file shorter than its footer, for one),
/// so a panic here is caught and reported as corruption: a damaged index is refused when
/// the snapshot is opened rather than crashing the server that serves it.
pub fn check(index: &Index) -> Result<()> {
    let run = || -> Result<()> {
        let mut bad: Vec<String> = index
            .validate_checksum()
            .map_err(tv)?
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        if !bad.is_empty() {
            bad.sort();
            return Err(Error::Places(format!(
                "checksum mismatch in {}",
                bad.join(", ")
            )));
        }
        // Read everything a query can read: a file that is sound on its own but not the
        // one its segment expects (swapped in) only fails when its contents are used.
        let io = |e: std::io::Error| Error::Places(e.to_string());
        let schema = index.schema();
        for segment in index.searchable_segments().map_err(tv)? {
            let reader = SegmentReader::open(&segment).map_err(tv)?;
            for (field, entry) in schema.fields() {
                if entry.is_indexed() {
                    let inverted = reader.inverted_index(field).map_err(tv)?;
                    let mut terms = inverted.terms().stream().map_err(io)?;
                    let mut positions = Vec::new();
                    while terms.advance() {
                        let info = terms.value().clone();
                        let mut postings = inverted
                            .read_postings_from_terminfo(
                                &info,
                                IndexRecordOption::WithFreqsAndPositions,
                            )
                            .map_err(io)?;
                        while postings.doc() != TERMINATED {
                            postings.positions(&mut positions);
                            postings.advance();
                        }
                    }
                }
                if entry.has_fieldnorms() {
                    let norms = reader.get_fieldnorms_reader(field).map_err(tv)?;
                    for doc in 0..reader.max_doc() {
                        norms.fieldnorm_id(doc);
                    }
                }
            }
            for (_, entry) in schema.fields() {
                if entry.is_fast() && matches!(entry.field_type(), FieldType::U64(_)) {
                    let column = reader.fast_fields().u64(entry.name()).map_err(tv)?;
                    for doc in 0..reader.max_doc() {
                        column.first(doc);
                    }
                }
            }
            let store = reader.get_store_reader(0).map_err(io)?;
            for doc in store.iter::<TantivyDocument>(None) {
                doc.map_err(tv)?;
            }
        }
        Ok(())
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(result) => result,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err(Error::Places(format!(
                "a damaged index file made tantivy fail ({why})"
            )))
        }
    }
}
