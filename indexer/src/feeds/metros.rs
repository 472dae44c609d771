//! The metro areas feed: `metro,iata`, one row per member airport.
//!
//! Both codes are 3 uppercase letters/digits. A metro code may equal an airport code
//! (`DFW` = DAL + DFW). Whether the member airport exists is the compiler's check. A repeated
//! `(metro, iata)` pair is a row error (lenient: the first is kept).

use super::{drive, parse_code, show, Parsed};
use crate::error::Result;
use std::collections::HashMap;

/// The header, column by column.
pub const HEADER: &[&str] = &["metro", "iata"];

/// One member airport of a metro area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetroRow {
    pub metro: [u8; 3],
    pub iata: [u8; 3],
}

/// Reads a metros feed (see the module docs for the rules).
pub fn read_metros(file_name: &str, bytes: &[u8], lenient: bool) -> Result<Parsed<MetroRow>> {
    let mut seen: HashMap<MetroRow, usize> = HashMap::new();
    drive(file_name, bytes, lenient, HEADER, |ctx, rec, _| {
        let row = MetroRow {
            metro: parse_code(ctx, rec, 0)?,
            iata: parse_code(ctx, rec, 1)?,
        };
        if let Some(first) = seen.get(&row) {
            return Err(ctx.err(
                1,
                format!(
                    "duplicate member `{}` of metro `{}` (first on line {first})",
                    show(&row.iata),
                    show(&row.metro)
                ),
            ));
        }
        seen.insert(row, ctx.line);
        Ok(row)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn feeds_metros_good_bad_lenient() {
        let good = "metro,iata\nNYC,JFK\nNYC,LGA\nDFW,DFW\n";
        let p = read_metros("m.csv", good.as_bytes(), false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.rows.len(), 3);
        assert_eq!(
            p.rows[2],
            MetroRow {
                metro: *b"DFW",
                iata: *b"DFW"
            }
        );

        for (body, line, name) in [
            ("nyc,JFK\n", 2, "metro"),
            ("NYC,JFK\nNYC,\n", 3, "iata"),
            ("NYC,JFK\nNYC,JFK\n", 3, "iata"),
            ("NYC\n", 2, "iata"),
            ("NYC,JFK,X\n", 2, "(row)"),
        ] {
            match read_metros("m.csv", format!("metro,iata\n{body}").as_bytes(), false) {
                Err(Error::Feed { line: l, field, .. }) => {
                    assert_eq!((l, field.as_str()), (line, name))
                }
                other => panic!("{body:?}: {other:?}"),
            }
        }
        let p = read_metros(
            "m.csv",
            b"metro,iata\nNYC,JFK\nNYC,JFK\nNY,JFK\nNYC,EWR\n",
            true,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.skipped.rows, 2);
        assert!(matches!(
            read_metros("m.csv", b"metro;iata\nNYC;JFK\n", true),
            Err(Error::FeedFile { .. })
        ));
    }
}
