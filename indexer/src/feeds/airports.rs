//! The airports feed: `iata,icao,name,city,subd,country,tz,lat,lon`.
//!
//! Rules: `iata` is 3 uppercase letters/digits and unique (a repeat is a row error; lenient
//! keeps the first); `icao`, `city` and `subd` are free text (may be empty); `name` is
//! non-empty; `country` is 2 uppercase letters; `tz` looks like an IANA name (non-empty,
//! only ASCII letters, digits and `/ _ - +`, no leading/trailing/double `/`) and names a zone
//! of the time zone database (jiff's: the system's; the check is skipped on a machine that
//! has none); `lat` in [-90, 90] and `lon` in [-180, 180], plain
//! decimal numbers (no `NaN`/`inf`).

use super::{drive, field, field_str, parse_code, show, Parsed, RowCtx};
use crate::error::Result;
use csv::ByteRecord;
use std::collections::HashMap;

/// The header, column by column.
pub const HEADER: &[&str] = &[
    "iata", "icao", "name", "city", "subd", "country", "tz", "lat", "lon",
];

/// One airport.
#[derive(Debug, Clone, PartialEq)]
pub struct AirportRow {
    pub iata: [u8; 3],
    pub icao: String,
    pub name: String,
    pub city: String,
    pub subd: String,
    pub country: [u8; 2],
    pub tz: String,
    pub lat: f64,
    pub lon: f64,
}

/// Reads an airports feed (see the module docs for the rules).
pub fn read_airports(file_name: &str, bytes: &[u8], lenient: bool) -> Result<Parsed<AirportRow>> {
    let mut seen: HashMap<[u8; 3], usize> = HashMap::new();
    drive(file_name, bytes, lenient, HEADER, |ctx, rec, _| {
        let row = parse_row(ctx, rec)?;
        if let Some(first) = seen.get(&row.iata) {
            return Err(ctx.err(
                0,
                format!(
                    "duplicate airport `{}` (first on line {first})",
                    show(&row.iata)
                ),
            ));
        }
        seen.insert(row.iata, ctx.line);
        Ok(row)
    })
}

fn parse_row(ctx: &RowCtx<'_>, rec: &ByteRecord) -> Result<AirportRow> {
    let iata = parse_code(ctx, rec, 0)?;
    let icao = field_str(ctx, rec, 1)?.to_string();
    let name = field_str(ctx, rec, 2)?;
    if name.is_empty() {
        return Err(ctx.err(2, "empty; an airport needs a name"));
    }
    let city = field_str(ctx, rec, 3)?.to_string();
    let subd = field_str(ctx, rec, 4)?.to_string();
    let country = match field(rec, 5) {
        [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => [*a, *b],
        f => {
            return Err(ctx.err(
                5,
                format!("`{}` is not a country code (2 uppercase letters)", show(f)),
            ))
        }
    };
    let tz = field_str(ctx, rec, 6)?;
    if !is_iana_like(tz) {
        return Err(ctx.err(
            6,
            format!(
                "`{}` does not look like an IANA time zone name",
                show(tz.as_bytes())
            ),
        ));
    }
    if !zone_known(tz) {
        return Err(ctx.err(
            6,
            format!(
                "`{}` is not an IANA time zone of the time zone database",
                show(tz.as_bytes())
            ),
        ));
    }
    let lat = parse_degrees(ctx, rec, 7, 90.0)?;
    let lon = parse_degrees(ctx, rec, 8, 180.0)?;
    Ok(AirportRow {
        iata,
        icao,
        name: name.to_string(),
        city,
        subd,
        country,
        tz: tz.to_string(),
        lat,
        lon,
    })
}

/// `Area/City`, `Etc/GMT+4`, `UTC`, `America/Argentina/Buenos_Aires`, `America/Port-au-Prince`.
fn is_iana_like(tz: &str) -> bool {
    !tz.is_empty()
        && tz
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
        && tz.as_bytes()[0].is_ascii_alphabetic()
        && !tz.ends_with('/')
        && !tz.contains("//")
}

/// True when the time zone database has `tz`, or there is no database to ask.
fn zone_known(tz: &str) -> bool {
    let db = jiff::tz::db();
    db.is_definitively_empty() || db.get(tz).is_ok()
}

fn parse_degrees(ctx: &RowCtx<'_>, rec: &ByteRecord, col: usize, limit: f64) -> Result<f64> {
    let f = field(rec, col);
    // Plain decimals only: sign, digits, one point (Rust's parser would also take `inf`,
    // `NaN` and exponents).
    let plain = !f.is_empty()
        && f.iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'));
    let v = if plain {
        std::str::from_utf8(f)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
    } else {
        None
    };
    match v {
        Some(v) if (-limit..=limit).contains(&v) => Ok(v),
        Some(_) => Err(ctx.err(col, format!("{} is outside [-{limit}, {limit}]", show(f)))),
        None => Err(ctx.err(col, format!("`{}` is not a decimal number", show(f)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    const H: &str = "iata,icao,name,city,subd,country,tz,lat,lon\n";

    fn fail(body: &str) -> (usize, String, String) {
        match read_airports("airports.csv", format!("{H}{body}").as_bytes(), false) {
            Err(Error::Feed {
                line,
                field,
                message,
                ..
            }) => (line, field, message),
            other => panic!("expected a row error, got {other:?}"),
        }
    }

    #[test]
    fn feeds_airports_good() {
        let body = "RUN,FMEE,\"Roland Garros Airport, \"\"Gillot\"\"\",St Denis,,RE,Indian/Reunion,-20.8871,55.5103\n\
                    CDG,LFPG,Charles de Gaulle,Paris,Ile-de-France,FR,Europe/Paris,49.0128,2.55\n";
        let p = read_airports("a.csv", format!("{H}{body}").as_bytes(), false);
        let p = p.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.skipped.rows, 0);
        let r = &p.rows[0];
        assert_eq!(&r.iata, b"RUN");
        assert_eq!(r.name, "Roland Garros Airport, \"Gillot\"");
        assert_eq!(r.subd, "");
        assert_eq!(&r.country, b"RE");
        assert_eq!(r.tz, "Indian/Reunion");
        assert_eq!((r.lat, r.lon), (-20.8871, 55.5103));
    }

    #[test]
    fn feeds_airports_bad_fields() {
        let ok = [
            "RUN",
            "FMEE",
            "N",
            "C",
            "S",
            "RE",
            "Indian/Reunion",
            "-20.8",
            "55.5",
        ];
        let cases: &[(usize, &str, &str)] = &[
            (0, "run", "iata"),
            (0, "RU", "iata"),
            (0, "RUNX", "iata"),
            (0, "", "iata"),
            (2, "", "name"),
            (5, "re", "country"),
            (5, "REU", "country"),
            (6, "", "tz"),
            (6, "Indian/ Reunion", "tz"),
            (6, "Indian/Reunion/", "tz"),
            (7, "90.5", "lat"),
            (7, "NaN", "lat"),
            (7, "1e1", "lat"),
            (7, "", "lat"),
            (7, " 1.0", "lat"),
            (8, "-180.01", "lon"),
            (8, "inf", "lon"),
            (8, "1.2.3", "lon"),
        ];
        for &(col, value, name) in cases {
            let mut row = ok.map(str::to_string);
            row[col] = value.to_string();
            let (line, field, message) = fail(&format!(
                "CDG,LFPG,X,,,FR,Europe/Paris,49,2\n{}\n",
                row.join(",")
            ));
            assert_eq!((line, field.as_str()), (3, name), "{value:?}: {message}");
        }
        let (line, field, msg) =
            fail("RUN,,N,,,RE,Indian/Reunion,0,0\nRUN,,M,,,RE,Indian/Reunion,0,0\n");
        assert_eq!((line, field.as_str()), (3, "iata"));
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn feeds_airports_lenient_keeps_first_duplicate() {
        let body = "RUN,,First,,,RE,Indian/Reunion,0,0\nRUN,,Second,,,RE,Indian/Reunion,0,0\nBAD\nMRU,,M,,,MU,Indian/Mauritius,0,0\n";
        let p = read_airports("a.csv", format!("{H}{body}").as_bytes(), true);
        let p = p.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].name, "First");
        assert_eq!(p.skipped.rows, 2);
        assert!(p.skipped.first_errors[0].starts_with("a.csv:3: field `iata`"));
        assert!(p.skipped.first_errors[1].starts_with("a.csv:4: field `icao`"));
    }

    #[test]
    fn feeds_airports_unknown_time_zone_is_a_row_error() {
        if jiff::tz::db().is_definitively_empty() {
            return; // no time zone database on this machine: nothing to check against
        }
        for tz in ["Mars/Olympus", "Europe/Pariss", "Nowhere"] {
            let (line, field, msg) = fail(&format!(
                "CDG,LFPG,X,,,FR,Europe/Paris,49,2\nRUN,,N,,,RE,{tz},0,0\n"
            ));
            assert_eq!((line, field.as_str()), (3, "tz"), "{tz}: {msg}");
            assert!(msg.contains("IANA"), "{msg}");
        }
        // Lenient: counted, the good rows kept.
        let body = "RUN,,N,,,RE,Indian/Reunion,0,0\nXXX,,N,,,RE,Mars/Olympus,0,0\n";
        let p = read_airports("a.csv", format!("{H}{body}").as_bytes(), true);
        let p = p.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.rows.len(), p.skipped.rows), (1, 1));
    }

    #[test]
    fn feeds_airports_wrong_header() {
        for h in [
            "",
            "iata,icao,name\n",
            "IATA,icao,name,city,subd,country,tz,lat,lon\n",
        ] {
            let r = read_airports("a.csv", h.as_bytes(), true);
            assert!(matches!(r, Err(Error::FeedFile { .. })), "{h:?}");
        }
    }
}
