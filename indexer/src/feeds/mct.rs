//! The minimum connection time feed:
//! `station,connection_type,minutes,arrival_carrier,departure_carrier`.
//!
//! Rules: `station` is `*` (every station) or a 3-character code; `connection_type` is one of
//! `DD DI ID II *` (arriving leg domestic/international, then departing leg); `minutes` is a
//! whole number in 0..=2880; each carrier is empty (any) or 2-3 uppercase letters/digits.
//! Two rows with the same `(station, connection_type, arrival_carrier, departure_carrier)` are
//! ambiguous: the second is a row error (lenient: the first is kept).
//!
//! Lookup ([`mct_minutes`]) follows CONTRACT.md: among the matching rows the most specific
//! wins, compared in this order: a named station beats `*`; then more carriers given beats
//! fewer; then an exact connection type beats `*`. **Tie-break** (rows equally specific by
//! those three rules, e.g. one names only the arriving carrier and another only the
//! departing one): the **larger** minutes win. An MCT is a safety minimum, so when the
//! table is ambiguous the conservative value never sells a connection that one of the
//! matching rules forbids, and the result does not depend on row order. No matching row:
//! [`DEFAULT_MCT_MINUTES`].

use super::{drive, field, is_carrier, parse_code, parse_uint, show, Parsed, RowCtx};
use crate::error::Result;
use csv::ByteRecord;
use std::collections::HashMap;

/// The header, column by column.
pub const HEADER: &[&str] = &[
    "station",
    "connection_type",
    "minutes",
    "arrival_carrier",
    "departure_carrier",
];

/// The MCT when no row matches.
pub const DEFAULT_MCT_MINUTES: u16 = 60;
/// The largest MCT a row may give (48 hours).
pub const MAX_MCT_MINUTES: u16 = 2880;

/// The connection type of an MCT row: `*` or arriving/departing domestic (D) or
/// international (I).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnType {
    Any,
    DD,
    DI,
    ID,
    II,
}

impl ConnType {
    /// The exact type of a connection from (arriving leg international, departing leg
    /// international).
    pub fn of(conn: (bool, bool)) -> ConnType {
        match conn {
            (false, false) => ConnType::DD,
            (false, true) => ConnType::DI,
            (true, false) => ConnType::ID,
            (true, true) => ConnType::II,
        }
    }

    /// The feed's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnType::Any => "*",
            ConnType::DD => "DD",
            ConnType::DI => "DI",
            ConnType::ID => "ID",
            ConnType::II => "II",
        }
    }
}

/// One MCT rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MctRow {
    /// `None` = `*`, every station.
    pub station: Option<[u8; 3]>,
    pub connection_type: ConnType,
    pub minutes: u16,
    /// `None` = any carrier.
    pub arrival_carrier: Option<String>,
    /// `None` = any carrier.
    pub departure_carrier: Option<String>,
}

/// Reads an MCT feed (see the module docs for the rules).
pub fn read_mct(file_name: &str, bytes: &[u8], lenient: bool) -> Result<Parsed<MctRow>> {
    type Key = (Option<[u8; 3]>, ConnType, Option<String>, Option<String>);
    let mut seen: HashMap<Key, usize> = HashMap::new();
    drive(file_name, bytes, lenient, HEADER, |ctx, rec, _| {
        let row = parse_row(ctx, rec)?;
        let key = (
            row.station,
            row.connection_type,
            row.arrival_carrier.clone(),
            row.departure_carrier.clone(),
        );
        if let Some(first) = seen.get(&key) {
            return Err(ctx.err(
                0,
                format!("duplicate rule: same station, type and carriers as line {first}"),
            ));
        }
        seen.insert(key, ctx.line);
        Ok(row)
    })
}

fn parse_row(ctx: &RowCtx<'_>, rec: &ByteRecord) -> Result<MctRow> {
    let station = if field(rec, 0) == b"*" {
        None
    } else {
        Some(parse_code(ctx, rec, 0)?)
    };
    let connection_type = match field(rec, 1) {
        b"*" => ConnType::Any,
        b"DD" => ConnType::DD,
        b"DI" => ConnType::DI,
        b"ID" => ConnType::ID,
        b"II" => ConnType::II,
        f => return Err(ctx.err(1, format!("`{}` is not one of DD DI ID II *", show(f)))),
    };
    let minutes = parse_uint(ctx, rec, 2, 0, u32::from(MAX_MCT_MINUTES))? as u16;
    let carrier = |col: usize| -> Result<Option<String>> {
        let f = field(rec, col);
        if f.is_empty() {
            Ok(None)
        } else if is_carrier(f) {
            Ok(Some(String::from_utf8_lossy(f).into_owned()))
        } else {
            Err(ctx.err(
                col,
                format!(
                    "`{}` is not a carrier code (2-3 uppercase letters or digits, or empty)",
                    show(f)
                ),
            ))
        }
    };
    Ok(MctRow {
        station,
        connection_type,
        minutes,
        arrival_carrier: carrier(3)?,
        departure_carrier: carrier(4)?,
    })
}

/// The minimum connection time at `station` for a connection of type `conn` (arriving leg
/// international, departing leg international) from `arr_carrier` to `dep_carrier`.
/// Precedence and tie-break: see the module docs.
pub fn mct_minutes(
    rows: &[MctRow],
    station: [u8; 3],
    conn: (bool, bool),
    arr_carrier: &str,
    dep_carrier: &str,
) -> u16 {
    let exact = ConnType::of(conn);
    let carrier_ok = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    rows.iter()
        .filter(|r| r.station.is_none_or(|s| s == station))
        .filter(|r| r.connection_type == ConnType::Any || r.connection_type == exact)
        .filter(|r| carrier_ok(&r.arrival_carrier, arr_carrier))
        .filter(|r| carrier_ok(&r.departure_carrier, dep_carrier))
        .map(|r| {
            let carriers =
                u8::from(r.arrival_carrier.is_some()) + u8::from(r.departure_carrier.is_some());
            // Lexicographic: station named, carriers given, exact type, then larger minutes.
            (
                r.station.is_some(),
                carriers,
                r.connection_type != ConnType::Any,
                r.minutes,
            )
        })
        .max()
        .map_or(DEFAULT_MCT_MINUTES, |k| k.3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    const H: &str = "station,connection_type,minutes,arrival_carrier,departure_carrier\n";

    fn rows(body: &str) -> Vec<MctRow> {
        read_mct("mct.csv", format!("{H}{body}").as_bytes(), false)
            .unwrap_or_else(|e| panic!("{e}"))
            .rows
    }

    const DOM: (bool, bool) = (false, false);
    const DI: (bool, bool) = (false, true);
    const INTL: (bool, bool) = (true, true);

    #[test]
    fn feeds_mct_parses() {
        let r = rows("*,*,45,,\nRUN,DI,90,XX,\nCDG,II,2880,,AF\n");
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].station, None);
        assert_eq!(r[0].connection_type, ConnType::Any);
        assert_eq!(r[1].station, Some(*b"RUN"));
        assert_eq!(r[1].arrival_carrier.as_deref(), Some("XX"));
        assert_eq!(r[1].departure_carrier, None);
        assert_eq!(r[2].minutes, 2880);
    }

    #[test]
    fn feeds_mct_bad_fields() {
        for (row, name) in [
            ("run,*,45,,", "station"),
            ("**,*,45,,", "station"),
            ("RUN,D,45,,", "connection_type"),
            ("RUN,dd,45,,", "connection_type"),
            ("RUN,*,2881,,", "minutes"),
            ("RUN,*,-1,,", "minutes"),
            ("RUN,*, 45,,", "minutes"),
            ("RUN,*,,,", "minutes"),
            ("RUN,*,45,X,", "arrival_carrier"),
            ("RUN,*,45,,XXXX", "departure_carrier"),
            ("RUN,*,45,,xx", "departure_carrier"),
            ("RUN,*,45,", "departure_carrier"),
            ("*,*,45,,", "station"), // duplicate of line 2
        ] {
            match read_mct("mct.csv", format!("{H}*,*,30,,\n{row}\n").as_bytes(), false) {
                Err(Error::Feed { line, field, .. }) => {
                    assert_eq!((line, field.as_str()), (3, name), "{row}")
                }
                other => panic!("{row}: {other:?}"),
            }
        }
        let p = read_mct(
            "mct.csv",
            format!("{H}*,*,30,,\n*,*,40,,\nRUN,X,1,,\n").as_bytes(),
            true,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.rows.len(), p.skipped.rows), (1, 2));
        assert_eq!(p.rows[0].minutes, 30);
        assert!(matches!(
            read_mct("mct.csv", b"station,type,minutes\n", true),
            Err(Error::FeedFile { .. })
        ));
    }

    #[test]
    fn feeds_mct_default_when_nothing_matches() {
        assert_eq!(mct_minutes(&[], *b"RUN", DOM, "XX", "XX"), 60);
        let r = rows("CDG,*,90,,\nRUN,II,120,,\nRUN,*,45,YY,\n");
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "XX", "XX"), 60);
    }

    #[test]
    fn feeds_mct_named_station_beats_star() {
        // The star row is more specific in carriers and type, but the station comes first.
        let r = rows("*,DD,90,XX,XX\nRUN,*,30,,\n");
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "XX", "XX"), 30);
        assert_eq!(mct_minutes(&r, *b"MRU", DOM, "XX", "XX"), 90);
        assert_eq!(mct_minutes(&r, *b"MRU", DOM, "XX", "YY"), 60);
    }

    #[test]
    fn feeds_mct_more_carriers_beat_fewer() {
        // The two-carrier row beats one-carrier rows, which beat the no-carrier row, whatever
        // their connection types.
        let r = rows("RUN,DD,40,,\nRUN,*,50,XX,\nRUN,*,70,XX,YY\n");
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "XX", "YY"), 70);
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "XX", "XX"), 50);
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "ZZ", "YY"), 40);
        assert_eq!(mct_minutes(&r, *b"RUN", INTL, "ZZ", "YY"), 60);
        // A departure-carrier-only row counts as one carrier too.
        let r = rows("RUN,DD,40,,\nRUN,*,35,,YY\n");
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "ZZ", "YY"), 35);
    }

    #[test]
    fn feeds_mct_exact_type_beats_star() {
        let r = rows("RUN,*,45,,\nRUN,DI,90,,\nRUN,II,120,,\n");
        assert_eq!(mct_minutes(&r, *b"RUN", DI, "XX", "XX"), 90);
        assert_eq!(mct_minutes(&r, *b"RUN", INTL, "XX", "XX"), 120);
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "XX", "XX"), 45);
        assert_eq!(mct_minutes(&r, *b"RUN", (true, false), "XX", "XX"), 45);
        // Exact type beats star even when the star row has larger minutes.
        let r = rows("RUN,*,200,,\nRUN,DD,20,,\n");
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "XX", "XX"), 20);
    }

    #[test]
    fn feeds_mct_ties_take_the_larger_minutes() {
        // Equally specific: one names the arriving carrier, the other the departing one.
        let r = rows("RUN,DD,40,XX,\nRUN,DD,75,,YY\n");
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "XX", "YY"), 75);
        let r = rows("RUN,DD,75,XX,\nRUN,DD,40,,YY\n");
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "XX", "YY"), 75);
        // Duplicate keys can only come from hand-built rows; the larger still wins.
        let mut r = rows("RUN,DD,40,,\n");
        r.push(MctRow {
            minutes: 35,
            ..r[0].clone()
        });
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "XX", "YY"), 40);
        r.reverse();
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "XX", "YY"), 40);
    }

    #[test]
    fn feeds_mct_zero_minutes_is_a_rule() {
        let r = rows("RUN,*,0,,\n");
        assert_eq!(mct_minutes(&r, *b"RUN", DOM, "XX", "XX"), 0);
    }
}
