//! CSV feed readers: airports, metros, MCT, fares and availability (CONTRACT.md section 2).
//!
//! Every reader has the shape `read_x(file_name, bytes, lenient) -> Result<Parsed<Row>>`:
//!
//! - The first record must be the contract's header, byte for byte (a UTF-8 byte-order mark
//!   before it is accepted and dropped; CRLF line ends are accepted). A missing or different
//!   header is an [`Error::FeedFile`] even in lenient mode.
//! - Strict mode (`lenient == false`): the first bad row is an [`Error::Feed`] naming the
//!   1-based line (header = line 1) and the column. Lenient mode: bad rows are skipped and
//!   counted in [`Skipped`], which keeps the first [`MAX_SKIP_MESSAGES`] messages.
//! - Nothing is trimmed: `" RUN"` is not an airport code and `"12 "` is not a number.
//!   Quoted fields (RFC 4180: `"a, ""b"""`) work; empty lines are ignored.
//! - Every row must have exactly the header's number of fields, every field must be valid
//!   UTF-8 and at most [`MAX_FIELD_BYTES`] long; rows with more than [`MAX_FIELDS`] fields are
//!   rejected with their own message. The size of the whole file is the caller's concern.
//! - No input makes a reader panic.

use crate::error::{Error, Result};
use csv::ByteRecord;
use std::path::Path;

pub mod airports;
pub mod availability;
pub mod fares;
pub mod mct;
pub mod metros;

pub use airports::{read_airports, AirportRow};
pub use availability::{carrier_str, pad_carrier, read_availability, AvailRow};
pub use fares::{
    currency_decimals, parse_days_of_week, read_fares, Cabin, FareRow, Money, PassengerType,
};
pub use mct::{mct_minutes, read_mct, ConnType, MctRow, DEFAULT_MCT_MINUTES};
pub use metros::{read_metros, MetroRow};

/// A row with more fields than this is rejected outright.
pub const MAX_FIELDS: usize = 64;
/// A field longer than this (in bytes) is rejected.
pub const MAX_FIELD_BYTES: usize = 1024;
/// How many skip messages [`Skipped::first_errors`] keeps.
pub const MAX_SKIP_MESSAGES: usize = 10;

/// Rows a lenient read skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// How many rows were skipped.
    pub rows: usize,
    /// The messages of the first skipped rows (at most [`MAX_SKIP_MESSAGES`]), in file order.
    pub first_errors: Vec<String>,
}

impl Skipped {
    fn record(&mut self, err: &Error) {
        self.rows += 1;
        if self.first_errors.len() < MAX_SKIP_MESSAGES {
            self.first_errors.push(err.to_string());
        }
    }
}

/// What a reader returns: the good rows in file order and what was skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed<T> {
    pub rows: Vec<T>,
    /// The 1-based line of each row in `rows`, for errors found when rows are compiled.
    pub lines: Vec<usize>,
    pub skipped: Skipped,
}

/// Reads a whole feed file into memory (the readers work on bytes).
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("read", path, e))
}

/// The row being parsed: the file name and its 1-based line, for error messages.
pub(crate) struct RowCtx<'a> {
    pub file: &'a str,
    pub line: usize,
    pub header: &'static [&'static str],
}

impl RowCtx<'_> {
    /// A row error on column `col` (an index into the header).
    pub fn err(&self, col: usize, message: impl Into<String>) -> Error {
        let field = self.header.get(col).copied().unwrap_or("(row)");
        Error::feed(self.file, self.line, field, message)
    }
}

/// The field at `col` (the driver has checked the field count, so it is always there).
#[inline]
pub(crate) fn field(rec: &ByteRecord, col: usize) -> &[u8] {
    rec.get(col).unwrap_or(&[])
}

/// The field at `col` as text (the driver has checked UTF-8).
pub(crate) fn field_str<'r>(ctx: &RowCtx<'_>, rec: &'r ByteRecord, col: usize) -> Result<&'r str> {
    std::str::from_utf8(field(rec, col)).map_err(|_| ctx.err(col, "not valid UTF-8"))
}

/// Shows at most 200 bytes of a field in a message, lossily decoded, with control
/// characters escaped (`\n`, `\u{7f}`): a quoted field may hold line ends, and an error is
/// one line.
pub(crate) fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(200)];
    let mut s = String::with_capacity(cut.len());
    for c in String::from_utf8_lossy(cut).chars() {
        if c.is_control() {
            s.extend(c.escape_debug());
        } else {
            s.push(c);
        }
    }
    if bytes.len() > cut.len() {
        s.push('…');
    }
    s
}

/// Reads the header and every row of a feed, calling `parse_row` on each structurally sound
/// row (right field count, sizes within limits, UTF-8) with the rows kept so far.
/// `parse_row` must leave its state unchanged when it returns an error (e.g. record a
/// duplicate key only on success).
pub(crate) fn drive<T>(
    file: &str,
    bytes: &[u8],
    lenient: bool,
    header: &'static [&'static str],
    parse_row: impl FnMut(&RowCtx<'_>, &ByteRecord, &[T]) -> Result<T>,
) -> Result<Parsed<T>> {
    let run = drive_partial(file, bytes, lenient, header, parse_row)?;
    match run.fatal {
        Some(e) => Err(e),
        None => Ok(run.parsed),
    }
}

/// What [`drive_partial`] read, including what it had read when a fatal error stopped it.
pub(crate) struct Run<T> {
    pub parsed: Parsed<T>,
    /// The line of each message in `parsed.skipped.first_errors`.
    pub skip_lines: Vec<usize>,
    /// The error that stopped the read (strict mode: the first bad row).
    pub fatal: Option<Error>,
}

/// [`drive`], but a row error that stops the read comes back with the rows read before it.
/// Only a bad header (or an unreadable file) is an `Err`.
pub(crate) fn drive_partial<T>(
    file: &str,
    bytes: &[u8],
    lenient: bool,
    header: &'static [&'static str],
    mut parse_row: impl FnMut(&RowCtx<'_>, &ByteRecord, &[T]) -> Result<T>,
) -> Result<Run<T>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut rec = ByteRecord::new();
    let file_err = |message: String| Error::FeedFile {
        file: file.to_string(),
        message,
    };
    let expected = header.join(",");
    let got = reader
        .read_byte_record(&mut rec)
        .map_err(|e| file_err(format!("cannot read the header: {e}")))?;
    if !got {
        return Err(file_err(format!(
            "empty file: expected the header `{expected}`"
        )));
    }
    let mut lines = LineCounter::new(bytes);
    let header_line = lines.line_at(rec.position().map_or(0, |p| p.byte() as usize));
    if rec.len() != header.len() || rec.iter().zip(header).any(|(a, b)| a != b.as_bytes()) {
        let found = if rec.len() <= MAX_FIELDS {
            rec.iter().map(show).collect::<Vec<_>>().join(",")
        } else {
            show(rec.as_slice())
        };
        return Err(file_err(format!(
            "line {header_line}: expected the header `{expected}`, found `{found}`"
        )));
    }

    let mut run = Run {
        parsed: Parsed {
            rows: Vec::new(),
            lines: Vec::new(),
            skipped: Skipped::default(),
        },
        skip_lines: Vec::new(),
        fatal: None,
    };
    loop {
        match reader.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                run.fatal = Some(file_err(format!("unreadable CSV: {e}")));
                break;
            }
        }
        let ctx = RowCtx {
            file,
            line: lines.line_at(rec.position().map_or(0, |p| p.byte() as usize)),
            header,
        };
        let result =
            check_structure(&ctx, &rec).and_then(|()| parse_row(&ctx, &rec, &run.parsed.rows));
        match result {
            Ok(row) => {
                run.parsed.rows.push(row);
                run.parsed.lines.push(ctx.line);
            }
            Err(e) if lenient && e.is_row_error() => {
                if run.parsed.skipped.first_errors.len() < MAX_SKIP_MESSAGES {
                    run.skip_lines.push(ctx.line);
                }
                run.parsed.skipped.record(&e);
            }
            Err(e) => {
                run.fatal = Some(e);
                break;
            }
        }
    }
    Ok(run)
}

/// 1-based line numbers of records, counted from the bytes: `csv`'s own `Position::line`
/// is the line where the reader stood when the record began, which is the line before it
/// after a CRLF or a blank line, and it does not count lone CRs, which end records too.
struct LineCounter<'a> {
    bytes: &'a [u8],
    /// Where the last record started (never a line end).
    at: usize,
    /// The line of `at`.
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            at: 0,
            line: 1,
        }
    }

    /// The line of the record `csv` placed at byte `pos`: line ends (and blank lines) from
    /// there on come before the record. Records must be asked for in file order.
    fn line_at(&mut self, pos: usize) -> usize {
        let b = self.bytes;
        let mut start = pos.clamp(self.at, b.len());
        while start < b.len() && matches!(b[start], b'\r' | b'\n') {
            start += 1;
        }
        for i in self.at..start {
            // A line ends at LF, at CR LF (counted at the LF) and at a lone CR.
            if b[i] == b'\n' || (b[i] == b'\r' && b.get(i + 1) != Some(&b'\n')) {
                self.line += 1;
            }
        }
        self.at = start;
        self.line
    }
}

fn check_structure(ctx: &RowCtx<'_>, rec: &ByteRecord) -> Result<()> {
    let n = ctx.header.len();
    if rec.len() > MAX_FIELDS {
        return Err(ctx.err(
            usize::MAX,
            format!(
                "row has {} fields, more than the limit of {MAX_FIELDS}",
                rec.len()
            ),
        ));
    }
    if rec.len() < n {
        return Err(ctx.err(
            rec.len(),
            format!("missing: the row has {} fields, expected {n}", rec.len()),
        ));
    }
    if rec.len() > n {
        return Err(ctx.err(
            usize::MAX,
            format!("the row has {} fields, expected {n}", rec.len()),
        ));
    }
    for (i, f) in rec.iter().enumerate() {
        if f.len() > MAX_FIELD_BYTES {
            return Err(ctx.err(
                i,
                format!(
                    "field is {} bytes long, more than the limit of {MAX_FIELD_BYTES}",
                    f.len()
                ),
            ));
        }
    }
    if !rec.as_slice().is_ascii() {
        for (i, f) in rec.iter().enumerate() {
            if std::str::from_utf8(f).is_err() {
                return Err(ctx.err(i, "not valid UTF-8"));
            }
        }
    }
    Ok(())
}

// ---- small field parsers shared by the readers ----

/// An airport or metro code: exactly 3 ASCII uppercase letters or digits.
pub(crate) fn parse_code(ctx: &RowCtx<'_>, rec: &ByteRecord, col: usize) -> Result<[u8; 3]> {
    let f = field(rec, col);
    match f {
        [a, b, c]
            if f.iter()
                .all(|x| x.is_ascii_uppercase() || x.is_ascii_digit()) =>
        {
            Ok([*a, *b, *c])
        }
        [] => Err(ctx.err(col, "empty; expected a 3-character code")),
        _ => Err(ctx.err(
            col,
            format!(
                "`{}` is not a code of 3 uppercase letters or digits",
                show(f)
            ),
        )),
    }
}

/// True for an airline designator: 2 or 3 ASCII uppercase letters or digits.
pub(crate) fn is_carrier(f: &[u8]) -> bool {
    (2..=3).contains(&f.len())
        && f.iter()
            .all(|x| x.is_ascii_uppercase() || x.is_ascii_digit())
}

/// A required airline designator as a `String`.
pub(crate) fn parse_carrier(ctx: &RowCtx<'_>, rec: &ByteRecord, col: usize) -> Result<String> {
    let f = field(rec, col);
    if is_carrier(f) {
        Ok(String::from_utf8_lossy(f).into_owned())
    } else if f.is_empty() {
        Err(ctx.err(col, "empty; expected a carrier code"))
    } else {
        Err(ctx.err(
            col,
            format!(
                "`{}` is not a carrier code (2-3 uppercase letters or digits)",
                show(f)
            ),
        ))
    }
}

/// A booking class: one ASCII uppercase letter.
pub(crate) fn parse_class(ctx: &RowCtx<'_>, rec: &ByteRecord, col: usize) -> Result<u8> {
    match field(rec, col) {
        [c] if c.is_ascii_uppercase() => Ok(*c),
        f => Err(ctx.err(
            col,
            format!("`{}` is not a booking class (one letter A-Z)", show(f)),
        )),
    }
}

/// An unsigned decimal integer (digits only, no sign, no blanks) within `max`.
pub(crate) fn parse_uint(
    ctx: &RowCtx<'_>,
    rec: &ByteRecord,
    col: usize,
    min: u32,
    max: u32,
) -> Result<u32> {
    let f = field(rec, col);
    let bad = || {
        ctx.err(
            col,
            format!("`{}` is not a whole number in {min}..={max}", show(f)),
        )
    };
    if f.is_empty() || f.len() > 10 || !f.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let v = f.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    if v < u64::from(min) || v > u64::from(max) {
        return Err(bad());
    }
    Ok(v as u32)
}

/// A date `YYYY-MM-DD` as days since 1970-01-01.
pub(crate) fn parse_date_field(ctx: &RowCtx<'_>, rec: &ByteRecord, col: usize) -> Result<i32> {
    let f = field(rec, col);
    parse_date(f)
        .ok_or_else(|| ctx.err(col, format!("`{}` is not a valid date YYYY-MM-DD", show(f))))
}

// ---- civil dates ----

pub use format::date::{civil_from_days, days_from_civil};

/// Parses exactly `YYYY-MM-DD` (a real calendar day) into days since 1970-01-01; `None`
/// for anything else.
pub fn parse_date(s: &[u8]) -> Option<i32> {
    std::str::from_utf8(s)
        .ok()
        .and_then(format::date::parse_iso)
}

/// Formats a day number as `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    format::date::format_iso(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_parse_date_validates() {
        assert_eq!(parse_date(b"1970-01-01"), Some(0));
        assert_eq!(
            parse_date(b"2005-10-30"),
            Some(days_from_civil(2005, 10, 30))
        );
        assert_eq!(format_date(days_from_civil(2024, 2, 29)), "2024-02-29");
        for bad in [
            &b"2023-02-29"[..],
            b"1900-02-29",
            b"2005-13-01",
            b"2005-00-10",
            b"2005-01-00",
            b"2005-04-31",
            b"0000-01-01",
            b"2005-1-01",
            b"2005/01/01",
            b" 2005-01-01",
            b"2005-01-01 ",
            b"",
            b"+005-01-01",
        ] {
            assert_eq!(parse_date(bad), None, "{}", show(bad));
        }
        assert!(parse_date(b"2000-02-29").is_some());
        assert!(parse_date(b"9999-12-31").is_some());
    }

    #[test]
    fn feeds_error_messages_stay_on_one_line() {
        // A quoted field may hold line ends; a message quoting it must still be one line.
        let text = "iata,icao,name,city,subd,country,tz,lat,lon\n\"R\r\nN\",,N,,,RE,UTC,0,0\n";
        let e = crate::feeds::read_airports("a.csv", text.as_bytes(), false);
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.starts_with("a.csv:2: field `iata`"), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(msg.contains("R\\r\\nN"), "{msg}");
        let e = crate::feeds::read_metros("m.csv", b"metro,\"ia\nta\"\n", false);
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("ia\\nta"), "{msg}");
        assert_eq!(msg.lines().count(), 1, "{msg}");
        // Text that is not a control character is shown as it is.
        assert_eq!(show("Ålesund \"x\"".as_bytes()), "Ålesund \"x\"");
        assert_eq!(show(b"a\tb\x7f"), "a\\tb\\u{7f}");
    }

    /// The line of the first bad row (the header is `a,b`; a row is bad when `b` is `x`).
    fn bad_line(text: &str) -> Option<usize> {
        const H: &[&str] = &["a", "b"];
        let r = drive("t.csv", text.as_bytes(), false, H, |ctx, rec, _| {
            if field(rec, 1) == b"x" {
                Err(ctx.err(1, "bad"))
            } else {
                Ok(())
            }
        });
        match r {
            Err(Error::Feed { line, .. }) => Some(line),
            _ => None,
        }
    }

    #[test]
    fn feeds_line_numbers_with_crlf_blank_lines_and_cr() {
        assert_eq!(bad_line("a,b\n1,2\n1,2\n1,x\n"), Some(4));
        // CRLF line ends (RFC 4180's own).
        assert_eq!(bad_line("a,b\r\n1,2\r\n1,x\r\n"), Some(3));
        assert_eq!(bad_line("a,b\r\n1,2\r\n1,2\r\n1,x\r\n"), Some(4));
        // Blank lines are skipped but still counted.
        assert_eq!(bad_line("a,b\n1,2\n\n1,x\n"), Some(4));
        assert_eq!(bad_line("a,b\n\n\n1,2\n1,x\n"), Some(5));
        assert_eq!(bad_line("a,b\r\n1,2\r\n\r\n1,x\r\n"), Some(4));
        // A quoted field spanning lines counts its lines.
        assert_eq!(bad_line("a,b\r\n\"q\r\nq\",1\r\n1,x"), Some(4));
        // Old Mac line ends: the reader splits rows on a lone CR, so lines count them too.
        assert_eq!(bad_line("a,b\r1,2\r1,x\r"), Some(3));
        // A header after blank lines is on its own line.
        let r = drive("t.csv", b"\n\nz,b\n", false, &["a", "b"], |_, _, _| Ok(()));
        assert!(
            matches!(&r, Err(Error::FeedFile { message, .. }) if message.starts_with("line 3:")),
            "{r:?}"
        );
    }

    #[test]
    fn feeds_header_and_structure() {
        const H: &[&str] = &["a", "b"];
        let run = |s: &str, lenient| {
            drive("t.csv", s.as_bytes(), lenient, H, |ctx, rec, _| {
                field_str(ctx, rec, 0).map(str::to_string)
            })
        };
        assert!(matches!(run("", false), Err(Error::FeedFile { .. })));
        assert!(matches!(run("a,c\n", true), Err(Error::FeedFile { .. })));
        assert!(matches!(run("a,b,c\n", true), Err(Error::FeedFile { .. })));
        assert!(matches!(run(" a,b\n", true), Err(Error::FeedFile { .. })));
        assert_eq!(run("a,b", false).map(|p| p.rows.len()).ok(), Some(0));
        // BOM and CRLF accepted, quoted fields, empty lines ignored but counted.
        let p = run("\u{feff}a,b\r\n\"x, \"\"y\"\"\",1\r\n\r\nz,2\r\n", false).ok();
        let p = p.map(|p| p.rows);
        assert_eq!(p, Some(vec!["x, \"y\"".to_string(), "z".to_string()]));
        // Field count and line numbers (a quoted field spanning lines counts its lines).
        match run("a,b\n\"q\nq\",1\nx\n", false) {
            Err(Error::Feed { line, field, .. }) => assert_eq!((line, field.as_str()), (4, "b")),
            other => panic!("{other:?}"),
        }
        match run("a,b\nx,1,2\n", false) {
            Err(Error::Feed { line, field, .. }) => {
                assert_eq!((line, field.as_str()), (2, "(row)"))
            }
            other => panic!("{other:?}"),
        }
        let many = format!("a,b\n{}\n", vec!["x"; 65].join(","));
        match run(&many, false) {
            Err(Error::Feed { message, .. }) => assert!(message.contains("limit of 64")),
            other => panic!("{other:?}"),
        }
        let long = format!("a,b\n{},1\n", "x".repeat(1025));
        match run(&long, false) {
            Err(Error::Feed { field, message, .. }) => {
                assert_eq!(field, "a");
                assert!(message.contains("1024"));
            }
            other => panic!("{other:?}"),
        }
        assert!(run(&format!("a,b\n{},1\n", "x".repeat(1024)), false).is_ok());
        let mut bad = b"a,b\nok,1\n".to_vec();
        bad.extend_from_slice(b"x,\xff\xfe\n");
        match drive("t.csv", &bad, false, H, |_, _, _| Ok(())) {
            Err(Error::Feed {
                line,
                field,
                message,
                ..
            }) => {
                assert_eq!((line, field.as_str()), (3, "b"));
                assert!(message.contains("UTF-8"));
            }
            other => panic!("{other:?}"),
        }
        // Lenient: counts every skip, keeps 10 messages.
        let mut s = String::from("a,b\n");
        for i in 0..25 {
            s.push_str(if i % 2 == 0 { "x\n" } else { "y,1\n" });
        }
        let p = run(&s, true).ok();
        assert_eq!(p.as_ref().map(|p| p.rows.len()), Some(12));
        assert_eq!(p.as_ref().map(|p| p.skipped.rows), Some(13));
        assert_eq!(p.as_ref().map(|p| p.skipped.first_errors.len()), Some(10));
        let first = p.and_then(|p| p.skipped.first_errors.first().cloned());
        assert!(first.is_some_and(|m| m.starts_with("t.csv:2:")));
    }
}
