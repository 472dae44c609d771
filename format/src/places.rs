//! The tantivy index of places (airports and metro areas), for autocomplete.
//!
//! One document per airport and per metro. `code` is the exact IATA code, `text` holds the
//! lower-cased words of code, name and city for prefix and one-typo matches, `rank` orders
//! equally good matches (busier places first).

use std::path::Path;

use tantivy::schema::{Field, Schema, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexWriter};

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

/// Builds the index into the empty directory `dir`. `rank[i]` ranks airport `i` (e.g. its
/// departures); a metro ranks as the sum of its airports.
pub fn build(dir: &Path, places: &Places, rank: &[u64]) -> Result<()> {
    let (schema, f) = schema();
    let index = Index::create_in_dir(dir, schema).map_err(tv)?;
    // One thread: the index is small, and the snapshot build already uses every core.
    let mut w: IndexWriter = index.writer_with_num_threads(1, 15_000_000).map_err(tv)?;
    let code_str = |c: &[u8; 3]| String::from_utf8_lossy(c).into_owned();
    for (i, a) in places.airports.iter().enumerate() {
        let code = code_str(&a.iata);
        let text = format!("{} {} {}", code, a.name, a.city).to_lowercase();
        w.add_document(doc!(
            f.code => code,
            f.kind => "airport",
            f.name => a.name.clone(),
            f.city => a.city.clone(),
            f.country => String::from_utf8_lossy(&a.country).into_owned(),
            f.text => text,
            f.rank => rank.get(i).copied().unwrap_or(0),
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
        // say New York, EWR says Newark); ties go to the alphabetically first.
        let mut cities: Vec<&str> = members_of()
            .map(|a| a.city.as_str())
            .filter(|c| !c.is_empty())
            .collect();
        cities.sort_unstable();
        let mut city = String::new();
        let mut best = 0;
        for c in &cities {
            let n = cities.iter().filter(|x| *x == c).count();
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
        let r: u64 = m
            .airports
            .iter()
            .map(|&a| rank.get(a as usize).copied().unwrap_or(0))
            .sum();
        w.add_document(doc!(
            f.code => code.clone(),
            f.kind => "metro",
            f.name => name,
            f.city => city.clone(),
            f.country => country,
            f.text => format!("{} {}", code, city).to_lowercase(),
            f.rank => r,
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
