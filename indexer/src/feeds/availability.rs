//! The availability feed: `carrier,flight_number,date,origin,booking_class,seats`, the seats
//! left in a booking class on one leg (the leg departing `origin` on local `date`).
//!
//! Rules: `carrier` 2-3 uppercase letters/digits; `flight_number` a whole number 1..=9999
//! (leading zeros allowed: `0102` = 102); `date` `YYYY-MM-DD`; `origin` a 3-character code;
//! `booking_class` one letter A-Z; `seats` 0..=999. A repeated
//! `(carrier, flight_number, date, origin, booking_class)` is a row error (lenient: the first
//! is kept).
//!
//! Built for ~11 million rows: one reused `csv::ByteRecord`, no allocation per row, and the
//! carrier is stored as `[u8; 3]` padded with a trailing space for 2-character designators
//! (`b"XX "`; see [`carrier_str`]) instead of a `String`, so a row is 16 bytes. Duplicates
//! are found without extra memory while the rows arrive in key order (what a generator or
//! a database export produces). From the first row out of order on, each kept row's line is
//! recorded (4 bytes) and at the end the row indices are sorted by packed 128-bit key (rayon,
//! 4 bytes each); every row repeating an earlier row's key is then an error (strict: the
//! first one, unless a malformed row comes earlier) or a counted skip (lenient). This beat a
//! hash set 3:1 at 11 M rows and needs a sixth of its memory.

use super::{
    drive_partial, field, is_carrier, parse_class, parse_code, parse_date_field, parse_uint, show,
    Parsed, RowCtx, MAX_SKIP_MESSAGES,
};
use crate::error::{Error, Result};
use csv::ByteRecord;
use rayon::slice::ParallelSliceMut;

/// The header, column by column.
pub const HEADER: &[&str] = &[
    "carrier",
    "flight_number",
    "date",
    "origin",
    "booking_class",
    "seats",
];

/// The most seats a row may give.
pub const MAX_SEATS: u16 = 999;

/// Seats left in one booking class of one dated leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AvailRow {
    /// The designator, space-padded on the right: `*b"XX "`, `*b"U2 "`, `*b"ABC"`.
    pub carrier: [u8; 3],
    pub flight_number: u16,
    /// Local departure date at `origin`, days since 1970-01-01.
    pub date: i32,
    pub origin: [u8; 3],
    /// One ASCII letter A-Z.
    pub booking_class: u8,
    pub seats: u16,
}

impl AvailRow {
    /// The carrier without its padding.
    pub fn carrier(&self) -> &str {
        carrier_str(&self.carrier)
    }

    /// The row's identity packed into the low 92 bits of an integer, ordered like
    /// `(carrier, flight_number, date, origin, booking_class)`: carrier 24 bits, flight 14,
    /// date 22 (days since 0001-01-01; the reader only accepts years 1-9999, other dates are
    /// clamped), origin 24, class 8.
    pub fn key(&self) -> u128 {
        let code = |c: [u8; 3]| u128::from(u32::from_be_bytes([0, c[0], c[1], c[2]]));
        let date = (i64::from(self.date) - i64::from(FIRST_DAY)).clamp(0, (1 << 22) - 1);
        (code(self.carrier) << 68)
            | (u128::from(self.flight_number & 0x3fff) << 54)
            | ((date as u128) << 32)
            | (code(self.origin) << 8)
            | u128::from(self.booking_class)
    }
}

/// 0001-01-01 as days since 1970-01-01: the smallest date the reader accepts.
const FIRST_DAY: i32 = -719_162;

/// A space-padded carrier code as text (`b"XX "` -> `"XX"`).
pub fn carrier_str(c: &[u8; 3]) -> &str {
    let n = if c[2] == b' ' { 2 } else { 3 };
    std::str::from_utf8(&c[..n]).unwrap_or("")
}

/// Pads a 2-3 character designator to `[u8; 3]`; `None` when it is not one.
pub fn pad_carrier(s: &str) -> Option<[u8; 3]> {
    match *s.as_bytes() {
        [a, b] if is_carrier(&[a, b]) => Some([a, b, b' ']),
        [a, b, c] if is_carrier(&[a, b, c]) => Some([a, b, c]),
        _ => None,
    }
}

/// Reads an availability feed (see the module docs for the rules).
pub fn read_availability(file_name: &str, bytes: &[u8], lenient: bool) -> Result<Parsed<AvailRow>> {
    // While every key is larger than the last, duplicates are adjacent and found here.
    let mut last_key: Option<u128> = None;
    // The index of the first row out of key order, and the line of every row kept from it.
    let mut unsorted_from: Option<usize> = None;
    let mut lines: Vec<u32> = Vec::new();
    let mut run = drive_partial(file_name, bytes, lenient, HEADER, |ctx, rec, kept| {
        let row = parse_row(ctx, rec)?;
        if unsorted_from.is_none() {
            let key = row.key();
            match last_key {
                Some(last) if key == last => return Err(duplicate(ctx.file, ctx.line, &row)),
                Some(last) if key < last => unsorted_from = Some(kept.len()),
                _ => last_key = Some(key),
            }
        }
        if unsorted_from.is_some() {
            lines.push(u32::try_from(ctx.line).unwrap_or(u32::MAX));
        }
        Ok(row)
    })?;
    let Some(from) = unsorted_from else {
        return match run.fatal {
            Some(e) => Err(e),
            None => Ok(run.parsed),
        };
    };

    // Out of order: sort the row indices by key and flag every row that repeats the key of
    // an earlier one. A flagged row is never before `from` (those were checked above).
    let rows = &run.parsed.rows;
    let dups = repeated_rows(rows);
    let line_of = |i: usize| {
        i.checked_sub(from)
            .and_then(|k| lines.get(k))
            .map_or(0, |&l| l as usize)
    };
    let dup_error = |i: usize| duplicate(file_name, line_of(i), &rows[i]);
    if let Some(e) = run.fatal {
        // Strict mode stopped at a bad row; an earlier duplicate is the first bad row.
        let stop = match &e {
            Error::Feed { line, .. } => *line,
            _ => usize::MAX,
        };
        return match dups.first() {
            Some(&i) if line_of(i) < stop => Err(dup_error(i)),
            _ => Err(e),
        };
    }
    if let Some(&i) = dups.first() {
        if !lenient {
            return Err(dup_error(i));
        }
    } else {
        return Ok(run.parsed);
    }

    // Lenient: drop the repeats, count them, and keep the first messages in line order.
    let mut messages: Vec<(usize, String)> = run
        .skip_lines
        .iter()
        .copied()
        .zip(std::mem::take(&mut run.parsed.skipped.first_errors))
        .collect();
    for &i in dups.iter().take(MAX_SKIP_MESSAGES) {
        messages.push((line_of(i), dup_error(i).to_string()));
    }
    messages.sort_by_key(|m| m.0);
    messages.truncate(MAX_SKIP_MESSAGES);
    run.parsed.skipped.first_errors = messages.into_iter().map(|m| m.1).collect();
    run.parsed.skipped.rows += dups.len();
    let mut next_dup = dups.iter().peekable();
    let keep: Vec<bool> = (0..run.parsed.rows.len())
        .map(|index| next_dup.next_if_eq(&&index).is_none())
        .collect();
    let mut k = keep.iter();
    run.parsed
        .rows
        .retain(|_| k.next().copied().unwrap_or(true));
    let mut k = keep.iter();
    run.parsed
        .lines
        .retain(|_| k.next().copied().unwrap_or(true));
    Ok(run.parsed)
}

/// The indices (ascending) of the rows whose key an earlier row already has: sort
/// `key << 36 | index` (keys use 92 bits) and compare neighbours.
fn repeated_rows(rows: &[AvailRow]) -> Vec<usize> {
    const INDEX_BITS: u32 = 36;
    const INDEX_MASK: u128 = (1 << INDEX_BITS) - 1;
    if rows.len() as u128 > INDEX_MASK {
        // 68 billion rows cannot come from a file under 2 GiB.
        return Vec::new();
    }
    let mut order: Vec<u128> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.key() << INDEX_BITS) | i as u128)
        .collect();
    order.par_sort_unstable();
    let mut dups: Vec<usize> = order
        .windows(2)
        .filter(|w| w[0] >> INDEX_BITS == w[1] >> INDEX_BITS)
        .map(|w| (w[1] & INDEX_MASK) as usize)
        .collect();
    dups.sort_unstable();
    dups
}

fn duplicate(file: &str, line: usize, row: &AvailRow) -> Error {
    Error::feed(
        file,
        line,
        HEADER[0],
        format!(
            "duplicate: an earlier row has the same carrier, flight_number, date, origin and \
             booking_class ({} {} {} {} {})",
            row.carrier(),
            row.flight_number,
            super::format_date(row.date),
            show(&row.origin),
            char::from(row.booking_class)
        ),
    )
}

fn parse_row(ctx: &RowCtx<'_>, rec: &ByteRecord) -> Result<AvailRow> {
    let carrier = match *field(rec, 0) {
        [a, b] if is_carrier(&[a, b]) => [a, b, b' '],
        [a, b, c] if is_carrier(&[a, b, c]) => [a, b, c],
        ref f => {
            return Err(ctx.err(
                0,
                format!(
                    "`{}` is not a carrier code (2-3 uppercase letters or digits)",
                    show(f)
                ),
            ))
        }
    };
    Ok(AvailRow {
        carrier,
        flight_number: parse_uint(ctx, rec, 1, 1, 9999)? as u16,
        date: parse_date_field(ctx, rec, 2)?,
        origin: parse_code(ctx, rec, 3)?,
        booking_class: parse_class(ctx, rec, 4)?,
        seats: parse_uint(ctx, rec, 5, 0, u32::from(MAX_SEATS))? as u16,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::feeds::days_from_civil;

    const H: &str = "carrier,flight_number,date,origin,booking_class,seats\n";

    #[test]
    fn feeds_availability_good() {
        let body = "XX,102,2005-06-14,RUN,Y,9\nXX,0102,2005-06-14,RUN,B,0\nABC,9999,2005-06-15,MRU,Y,999\n";
        let p = read_availability("a.csv", format!("{H}{body}").as_bytes(), false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.rows.len(), 3);
        let r = p.rows[0];
        assert_eq!(r.carrier, *b"XX ");
        assert_eq!(r.carrier(), "XX");
        assert_eq!(r.flight_number, 102);
        assert_eq!(r.date, days_from_civil(2005, 6, 14));
        assert_eq!((r.origin, r.booking_class, r.seats), (*b"RUN", b'Y', 9));
        assert_eq!(p.rows[1].flight_number, 102);
        assert_eq!(p.rows[2].carrier(), "ABC");
        assert_eq!(pad_carrier("U2"), Some(*b"U2 "));
        assert_eq!(pad_carrier("u2"), None);
        assert_eq!(std::mem::size_of::<AvailRow>(), 16);
    }

    #[test]
    fn feeds_availability_key_order() {
        let row = |c: &[u8; 3], f, d, o: &[u8; 3], k| AvailRow {
            carrier: *c,
            flight_number: f,
            date: d,
            origin: *o,
            booking_class: k,
            seats: 0,
        };
        let a = row(b"XX ", 9, 100, b"ZZZ", b'Z');
        assert!(a.key() < row(b"XXA", 1, -5, b"AAA", b'A').key());
        assert!(a.key() < row(b"XX ", 10, -5, b"AAA", b'A').key());
        assert!(row(b"XX ", 9, -1, b"ZZZ", b'Z').key() < a.key());
        assert!(a.key() < row(b"XX ", 9, 100, b"ZZZ", b'Z').key() + 1);
        assert!(row(b"XX ", 9, 100, b"ZZY", b'Z').key() < a.key());
        assert_eq!(FIRST_DAY, days_from_civil(1, 1, 1));
        let last = row(b"ZZZ", 9999, days_from_civil(9999, 12, 31), b"ZZZ", b'Z');
        assert!(last.key() < 1 << 92);
        assert!(row(b"XX ", 9, days_from_civil(9999, 12, 30), b"ZZZ", b'Z').key() < last.key());
    }

    #[test]
    fn feeds_availability_bad_fields() {
        for (row, name) in [
            ("X,1,2005-06-14,RUN,Y,1", "carrier"),
            ("XXXX,1,2005-06-14,RUN,Y,1", "carrier"),
            ("xx,1,2005-06-14,RUN,Y,1", "carrier"),
            ("XX,0,2005-06-14,RUN,Y,1", "flight_number"),
            ("XX,10000,2005-06-14,RUN,Y,1", "flight_number"),
            ("XX,12a,2005-06-14,RUN,Y,1", "flight_number"),
            ("XX,,2005-06-14,RUN,Y,1", "flight_number"),
            ("XX,1,2005-06-31,RUN,Y,1", "date"),
            ("XX,1,14JUN05,RUN,Y,1", "date"),
            ("XX,1,2005-06-14,RU,Y,1", "origin"),
            ("XX,1,2005-06-14,RUN,YY,1", "booking_class"),
            ("XX,1,2005-06-14,RUN,,1", "booking_class"),
            ("XX,1,2005-06-14,RUN,Y,1000", "seats"),
            ("XX,1,2005-06-14,RUN,Y,-1", "seats"),
            ("XX,1,2005-06-14,RUN,Y,", "seats"),
            ("XX,1,2005-06-14,RUN,Y", "seats"),
            ("XX,1,2005-06-14,RUN,Y,1,1", "(row)"),
            ("XX,1,2005-06-14,RUN,Y,5", "carrier"), // duplicate of line 2, in order
            ("XX,001,2005-06-14,RUN,Y,5", "carrier"), // the same key spelled differently
        ] {
            let text = format!("{H}XX,1,2005-06-14,RUN,Y,1\n{row}\n");
            match read_availability("a.csv", text.as_bytes(), false) {
                Err(Error::Feed { line, field, .. }) => {
                    assert_eq!((line, field.as_str()), (3, name), "{row}")
                }
                other => panic!("{row}: {other:?}"),
            }
        }
    }

    #[test]
    fn feeds_availability_duplicates_out_of_order() {
        let body = "XX,5,2005-06-14,RUN,Y,1\n\
                    XX,3,2005-06-14,RUN,Y,2\n\
                    XX,7,2005-06-14,RUN,Y,3\n\
                    XX,5,2005-06-14,RUN,Y,4\n\
                    XX,3,2005-06-14,RUN,Y,5\n\
                    XX,3,2005-06-14,RUN,B,6\n";
        match read_availability("a.csv", format!("{H}{body}").as_bytes(), false) {
            Err(Error::Feed { line, .. }) => assert_eq!(line, 5),
            other => panic!("{other:?}"),
        }
        let p = read_availability("a.csv", format!("{H}{body}").as_bytes(), true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.skipped.rows, 2);
        let seats: Vec<u16> = p.rows.iter().map(|r| r.seats).collect();
        assert_eq!(seats, [1, 2, 3, 6]);
        assert!(p.skipped.first_errors[0].contains("XX 5 2005-06-14 RUN Y"));
    }

    #[test]
    fn feeds_availability_first_bad_row_wins_out_of_order() {
        let line_of =
            |body: &str| match read_availability("a.csv", format!("{H}{body}").as_bytes(), false) {
                Err(Error::Feed { line, field, .. }) => (line, field),
                other => panic!("{other:?}"),
            };
        // Out of order, then a duplicate (line 5), then a malformed row (line 6).
        let body = "XX,5,2005-06-14,RUN,Y,1\nXX,3,2005-06-14,RUN,Y,2\nXX,9,2005-06-14,RUN,Y,2\nXX,5,2005-06-14,RUN,Y,3\nXX,1,2005-06-14,RUN,Y,-1\n";
        assert_eq!(line_of(body), (5, "carrier".to_string()));
        // The malformed row first (line 4), the duplicate after it (line 5).
        let body = "XX,5,2005-06-14,RUN,Y,1\nXX,3,2005-06-14,RUN,Y,2\nXX,1,2005-06-14,RUN,Y,-1\nXX,5,2005-06-14,RUN,Y,3\n";
        assert_eq!(line_of(body), (4, "seats".to_string()));
        // Lenient: messages of both kinds in line order.
        let body =
            "XX,5,2005-06-14,RUN,Y,1\nXX,3,2005-06-14,RUN,Y,2\nbad\nXX,5,2005-06-14,RUN,Y,3\nbad\n";
        let p = read_availability("a.csv", format!("{H}{body}").as_bytes(), true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.rows.len(), p.skipped.rows), (2, 3));
        let lines: Vec<&str> = p.skipped.first_errors.iter().map(|m| &m[..8]).collect();
        assert_eq!(lines, ["a.csv:4:", "a.csv:5:", "a.csv:6:"]);
    }

    #[test]
    fn feeds_availability_lenient_in_order_and_header() {
        let body =
            "XX,1,2005-06-14,RUN,Y,1\nXX,1,2005-06-14,RUN,Y,2\nbad\nXX,2,2005-06-14,RUN,Y,3\n";
        let p = read_availability("a.csv", format!("{H}{body}").as_bytes(), true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.rows.len(), p.skipped.rows), (2, 2));
        assert_eq!(p.rows[1].seats, 3);
        assert!(matches!(
            read_availability(
                "a.csv",
                b"carrier,flight,date,origin,booking_class,seats\n",
                true
            ),
            Err(Error::FeedFile { .. })
        ));
    }
}
