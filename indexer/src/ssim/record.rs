//! Record level: splitting the file into 200-byte records and decoding their fields.

use std::collections::HashMap;

use super::{date, Carrier, LegRecord, SsimFile, TimeMode};
use crate::{Error, Result};

pub(super) const RECORD_LEN: usize = 200;

/// Reads an SSIM Chapter 7 file. `file_name` is only used in error messages. See the
/// module documentation for what is an error and what `lenient` skips.
pub fn parse(file_name: &str, bytes: &[u8], lenient: bool) -> Result<SsimFile> {
    let mut reader = Reader {
        lenient,
        out: SsimFile {
            file_name: file_name.to_string(),
            ..SsimFile::default()
        },
        carrier: None,
        run: Vec::new(),
    };
    for (line, bytes) in split_records(bytes) {
        let rec = Rec {
            b: bytes,
            line,
            file: file_name,
        };
        if let Err(e) = reader.record(&rec) {
            reader.skip_or_fail(e)?;
            // A skipped leg breaks the run its segment records would attach to.
            if rec.b.first() == Some(&b'3') {
                reader.run.clear();
            }
        }
    }
    let mut out = reader.out;
    drop_duplicates(&mut out, lenient)?;
    Ok(out)
}

/// Splits into `(1-based line number, record bytes)`. Lines end in LF or CRLF; a file with
/// no LF at all is read as bare 200-byte records.
fn split_records(bytes: &[u8]) -> Vec<(usize, &[u8])> {
    if !bytes.contains(&b'\n') {
        return bytes
            .chunks(RECORD_LEN)
            .enumerate()
            .map(|(i, r)| (i + 1, r))
            .collect();
    }
    let mut out = Vec::with_capacity(bytes.len() / (RECORD_LEN + 1) + 1);
    let mut lines = bytes.split(|&b| b == b'\n').enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        // The text after the final LF is not a line when it is empty.
        if line.is_empty() && lines.peek().is_none() {
            break;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.push((i + 1, line));
    }
    out
}

/// One record with its position, for field access and error messages.
pub(super) struct Rec<'a> {
    pub(super) b: &'a [u8],
    pub(super) line: usize,
    pub(super) file: &'a str,
}

impl<'a> Rec<'a> {
    /// Columns `from..=to`, 1-based as in the SSIM manual. Empty when out of range, so a
    /// short record can never panic (lengths are checked before fields are read anyway).
    fn col(&self, from: usize, to: usize) -> &'a [u8] {
        self.b.get(from - 1..to).unwrap_or(&[])
    }

    fn err(&self, field: &str, message: impl Into<String>) -> Error {
        Error::feed(self.file, self.line, field, message)
    }

    /// Decodes one field, turning a message into an error that names the field.
    fn field<T>(
        &self,
        field: &str,
        from: usize,
        to: usize,
        f: impl FnOnce(&'a [u8]) -> Result<T, String>,
    ) -> Result<T> {
        let raw = self.col(from, to);
        f(raw).map_err(|m| {
            let cols = if from == to {
                format!("col {from}")
            } else {
                format!("cols {from}-{to}")
            };
            self.err(field, format!("{cols} {}: {m}", show(raw)))
        })
    }
}

/// A field's raw bytes quoted for a message (lossy for non-ASCII).
fn show(raw: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(raw))
}

struct Reader {
    lenient: bool,
    out: SsimFile,
    /// The current carrier block (index into `out.carriers`); `None` outside a block.
    carrier: Option<usize>,
    /// Indices (into `out.legs`) of the latest run of type-3 records of one flight and IVI
    /// with increasing leg sequence: the legs a type-4 record can refer to.
    run: Vec<usize>,
}

impl Reader {
    fn skip_or_fail(&mut self, e: Error) -> Result<()> {
        match e {
            Error::Feed { field, .. } if self.lenient => {
                *self.out.skipped.entry(field).or_insert(0) += 1;
                Ok(())
            }
            e => Err(e),
        }
    }

    fn record(&mut self, rec: &Rec<'_>) -> Result<()> {
        if rec.b.len() == RECORD_LEN && rec.b.iter().all(|&b| b == b'0') {
            return Ok(()); // block filler
        }
        if rec.b.len() != RECORD_LEN {
            return Err(rec.err(
                "record length",
                format!("expected {RECORD_LEN} bytes, found {}", rec.b.len()),
            ));
        }
        match rec.b[0] {
            b'1' => Ok(()), // header: nothing a search needs
            b'2' => {
                let carrier = parse_carrier(rec)?;
                self.out.carriers.push(carrier);
                self.carrier = Some(self.out.carriers.len() - 1);
                self.run.clear();
                Ok(())
            }
            b'3' => self.leg(rec),
            b'4' => self.segment(rec),
            b'5' => {
                self.carrier = None;
                self.run.clear();
                Ok(())
            }
            other => Err(rec.err(
                "record type",
                format!("col 1: unknown record type {}", show(&[other])),
            )),
        }
    }

    fn current_carrier(&self, rec: &Rec<'_>) -> Result<(usize, &Carrier)> {
        self.carrier
            .and_then(|i| self.out.carriers.get(i).map(|c| (i, c)))
            .ok_or_else(|| {
                rec.err(
                    "record type",
                    "flight record outside a carrier block (no type-2 record before it)",
                )
            })
    }

    fn leg(&mut self, rec: &Rec<'_>) -> Result<()> {
        let (carrier_idx, carrier) = self.current_carrier(rec)?;
        let leg = parse_leg(rec, carrier_idx, carrier)?;
        self.out.leg_records_read += 1;
        // A new run starts unless this is the next leg of the same flight and IVI.
        let continues = self
            .run
            .last()
            .and_then(|&i| self.out.legs.get(i))
            .is_some_and(|p| {
                p.suffix == leg.suffix
                    && p.airline == leg.airline
                    && p.flight_number == leg.flight_number
                    && p.ivi == leg.ivi
                    && p.leg_seq < leg.leg_seq
            });
        if !continues {
            self.run.clear();
        }
        self.run.push(self.out.legs.len());
        self.out.legs.push(leg);
        Ok(())
    }

    fn segment(&mut self, rec: &Rec<'_>) -> Result<()> {
        self.current_carrier(rec)?;
        let suffix = rec.field("operational suffix", 2, 2, parse_suffix)?;
        let airline = rec.field("airline", 3, 5, parse_airline)?;
        let number = rec.field("flight number", 6, 9, parse_flight_number)?;
        let ivi_low = rec.field("itinerary variation", 10, 11, parse_ivi_low)?;
        let ivi_high = rec.field("itinerary variation overflow", 28, 28, parse_overflow)?;
        let ivi = ivi_high * 100 + ivi_low;
        let leg_seq = rec.field("leg sequence", 12, 13, parse_leg_seq)?;
        let dei = rec.field("data element identifier", 31, 33, |s| {
            digits(s).ok_or_else(|| "expected 3 digits".to_string())
        })?;
        let board = rec.field("board point", 34, 36, parse_optional_station)?;
        let off = rec.field("off point", 37, 39, parse_optional_station)?;

        let run: Vec<&LegRecord> = self
            .run
            .iter()
            .filter_map(|&i| self.out.legs.get(i))
            .collect();
        let Some(last) = run.last() else {
            return Err(rec.err(
                "segment key",
                "segment data record does not follow a flight leg record",
            ));
        };
        if last.suffix != suffix
            || last.airline != airline
            || last.flight_number != number
            || last.ivi != ivi
        {
            return Err(rec.err(
                "segment key",
                format!(
                    "cols 2-14 {}: segment data does not belong to the preceding leg {} (line {})",
                    show(rec.col(2, 14)),
                    last.describe(),
                    last.line
                ),
            ));
        }
        // Which legs of the run the segment covers: from the leg leaving the board point to
        // the leg reaching the off point; without stations, the leg named by the key.
        let range = match (board, off) {
            (Some(board), Some(off)) => {
                let start = run.iter().position(|l| l.dep == board);
                start.and_then(|s| {
                    run[s..]
                        .iter()
                        .position(|l| l.arr == off)
                        .map(|e| (s, s + e))
                })
            }
            _ => run
                .iter()
                .position(|l| l.leg_seq == leg_seq)
                .map(|i| (i, i)),
        };
        let Some((from, to)) = range else {
            return Err(rec.err(
                "board/off point",
                format!(
                    "cols 34-39 {}: no leg of {} runs between these stations",
                    show(rec.col(34, 39)),
                    last.describe()
                ),
            ));
        };
        let targets: Vec<usize> = self.run[from..=to].to_vec();
        match dei {
            10 => {
                let designators = rec.field("DEI 010 data", 40, 194, parse_codeshares)?;
                for i in targets {
                    if let Some(leg) = self.out.legs.get_mut(i) {
                        for d in &designators {
                            if !leg.codeshares.contains(d) {
                                leg.codeshares.push(d.clone());
                            }
                        }
                    }
                }
            }
            50 => {
                let carrier = rec.field("DEI 050 data", 40, 194, parse_operating_carrier)?;
                for i in targets {
                    if let Some(leg) = self.out.legs.get_mut(i) {
                        leg.operating_carrier = Some(carrier.clone());
                    }
                }
            }
            _ => {} // other segment data does not matter to a search
        }
        Ok(())
    }
}

fn parse_carrier(rec: &Rec<'_>) -> Result<Carrier> {
    let time_mode = rec.field("time mode", 2, 2, |s| match s {
        b"U" => Ok(TimeMode::Utc),
        b"L" => Ok(TimeMode::Local),
        _ => Err("expected U or L".to_string()),
    })?;
    let airline = rec.field("airline", 3, 5, parse_airline)?;
    let validity_from = rec.field("schedule validity from", 15, 21, |s| {
        if is_blank(s) {
            Ok(None)
        } else {
            parse_date(s).map(Some)
        }
    })?;
    let validity_to = rec.field("schedule validity to", 22, 28, |s| {
        if is_blank(s) || s == b"00XXX00" {
            Ok(None)
        } else {
            parse_date(s).map(Some)
        }
    })?;
    Ok(Carrier {
        airline,
        time_mode,
        validity_from,
        validity_to,
        line: rec.line,
    })
}

fn parse_leg(rec: &Rec<'_>, carrier_idx: usize, carrier: &Carrier) -> Result<LegRecord> {
    let suffix = rec.field("operational suffix", 2, 2, parse_suffix)?;
    let airline = rec.field("airline", 3, 5, parse_airline)?;
    if airline != carrier.airline {
        return Err(rec.err(
            "airline",
            format!(
                "cols 3-5: leg airline {airline} differs from the carrier record's {} (line {})",
                carrier.airline, carrier.line
            ),
        ));
    }
    let flight_number = rec.field("flight number", 6, 9, parse_flight_number)?;
    let ivi_low = rec.field("itinerary variation", 10, 11, parse_ivi_low)?;
    let ivi_high = rec.field("itinerary variation overflow", 128, 128, parse_overflow)?;
    let leg_seq = rec.field("leg sequence", 12, 13, parse_leg_seq)?;
    let service_type = rec.field("service type", 14, 14, |s| match s {
        [c @ b'A'..=b'Z'] => Ok(*c),
        _ => Err("expected a letter A-Z".to_string()),
    })?;
    let period_from = rec.field("period from", 15, 21, parse_date)?;
    let to = rec.field("period to", 22, 28, |s| {
        if s == b"00XXX00" {
            Ok(None)
        } else {
            parse_date(s).map(Some)
        }
    })?;
    let (period_to, open_ended) = match to {
        Some(to) if to < period_from => {
            return Err(rec.err(
                "period of operation",
                format!(
                    "cols 15-28 {}: period ends before it starts",
                    show(rec.col(15, 28))
                ),
            ))
        }
        Some(to) => (to, false),
        None => (open_end(period_from, carrier), true),
    };
    let days = rec.field("days of operation", 29, 35, parse_days)?;
    let frequency_rate = rec.field("frequency rate", 36, 36, parse_frequency_rate)?;
    let dep = rec.field("departure station", 37, 39, parse_station)?;
    let std_min = rec.field("passenger STD", 40, 43, parse_time)?;
    let dep_utc_offset_min = rec.field("departure UTC variation", 48, 52, parse_variation)?;
    let arr = rec.field("arrival station", 55, 57, parse_station)?;
    let sta_min = rec.field("passenger STA", 62, 65, parse_time)?;
    let arr_utc_offset_min = rec.field("arrival UTC variation", 66, 70, parse_variation)?;
    let aircraft = rec.field("aircraft type", 73, 75, parse_text)?;
    let prbd = rec.field("PRBD", 76, 95, parse_text)?;
    let dep_date_variation =
        rec.field("departure date variation", 193, 193, parse_date_variation)?;
    let arr_date_variation = rec.field("arrival date variation", 194, 194, parse_date_variation)?;
    let leg = LegRecord {
        carrier: carrier_idx,
        suffix,
        airline,
        flight_number,
        ivi: ivi_high * 100 + ivi_low,
        leg_seq,
        service_type,
        period_from,
        period_to,
        open_ended,
        days,
        frequency_rate,
        dep,
        std_min,
        dep_utc_offset_min,
        arr,
        sta_min,
        arr_utc_offset_min,
        aircraft,
        prbd,
        dep_date_variation,
        arr_date_variation,
        codeshares: Vec::new(),
        operating_carrier: None,
        line: rec.line,
    };
    // An explicit arrival date variation is trusted, so it must make sense.
    if leg.arr_date_variation.is_some() {
        let (dep, arr) = leg.raw_times(carrier.time_mode);
        if arr <= dep {
            return Err(rec.err(
                "arrival date variation",
                format!(
                    "col 194 {}: the arrival ({} min) is not after the departure ({} min)",
                    show(rec.col(194, 194)),
                    arr,
                    dep
                ),
            ));
        }
    }
    Ok(leg)
}

/// The end of an open period (see the module doc).
fn open_end(from: i32, carrier: &Carrier) -> i32 {
    match carrier.validity_to {
        Some(to) if to >= from => to,
        _ => from + 364,
    }
}

// ---- field decoders: each returns the reason when the field is bad -------------------

fn is_blank(s: &[u8]) -> bool {
    s.iter().all(|&b| b == b' ')
}

/// All-digit field as a number (at most 9 digits, so no overflow).
fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &b| n * 10 + u32::from(b - b'0')))
}

pub(super) fn parse_date(s: &[u8]) -> Result<i32, String> {
    date::parse_ddmmmyy(s).ok_or_else(|| "expected a date DDMMMYY".to_string())
}

pub(super) fn parse_suffix(s: &[u8]) -> Result<Option<u8>, String> {
    match s {
        [b' '] => Ok(None),
        [c @ b'A'..=b'Z'] => Ok(Some(*c)),
        _ => Err("expected blank or a letter A-Z".to_string()),
    }
}

/// Airline designator: 2 or 3 upper-case letters/digits, left-aligned in 3 columns.
pub(super) fn parse_airline(s: &[u8]) -> Result<String, String> {
    let code = match s {
        [_, _, b' '] => &s[..2],
        [_, _, _] => s,
        _ => return Err("expected a 2- or 3-character airline designator".to_string()),
    };
    let valid = code
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && !code.iter().all(u8::is_ascii_digit);
    if valid {
        Ok(String::from_utf8_lossy(code).into_owned())
    } else {
        Err("expected a 2- or 3-character airline designator".to_string())
    }
}

/// Flight number: up to 4 digits, right-aligned (leading blanks or zeros).
pub(super) fn parse_flight_number(s: &[u8]) -> Result<u16, String> {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    digits(&s[start..])
        .filter(|_| s.len() == 4)
        .map(|n| n as u16)
        .ok_or_else(|| "expected a flight number of 1-4 digits".to_string())
}

/// Itinerary variation id, low two digits (cols 10-11); a leading blank reads as 0.
pub(super) fn parse_ivi_low(s: &[u8]) -> Result<u16, String> {
    match s {
        [b' ', d] | [b'0', d] if d.is_ascii_digit() => Ok(u16::from(d - b'0')),
        _ => digits(s)
            .filter(|_| s.len() == 2)
            .map(|n| n as u16)
            .ok_or_else(|| "expected 2 digits".to_string()),
    }
}

/// IVI overflow (hundreds) digit; blank = 0.
pub(super) fn parse_overflow(s: &[u8]) -> Result<u16, String> {
    match s {
        [b' '] => Ok(0),
        [d @ b'0'..=b'9'] => Ok(u16::from(d - b'0')),
        _ => Err("expected blank or a digit".to_string()),
    }
}

pub(super) fn parse_leg_seq(s: &[u8]) -> Result<u8, String> {
    match digits(s) {
        Some(n @ 1..=99) if s.len() == 2 => Ok(n as u8),
        _ => Err("expected 2 digits 01-99".to_string()),
    }
}

/// Days of operation: column `i` (1-7) holds the digit `i` or a blank. Returns a bit mask
/// with bit 0 = Monday.
pub(super) fn parse_days(s: &[u8]) -> Result<u8, String> {
    if s.len() != 7 {
        return Err("expected 7 columns".to_string());
    }
    let mut mask = 0u8;
    for (i, &b) in s.iter().enumerate() {
        if b == b'1' + i as u8 {
            mask |= 1 << i;
        } else if b != b' ' {
            return Err(format!("column {} must be {} or blank", i + 1, i + 1));
        }
    }
    if mask == 0 {
        return Err("no day of operation".to_string());
    }
    Ok(mask)
}

pub(super) fn parse_frequency_rate(s: &[u8]) -> Result<u8, String> {
    match s {
        [b' '] | [b'1'] => Ok(1),
        [b'2'] => Ok(2),
        _ => Err("expected blank (weekly) or 2 (fortnightly)".to_string()),
    }
}

pub(super) fn parse_station(s: &[u8]) -> Result<[u8; 3], String> {
    match s {
        [a, b, c] if s.iter().all(u8::is_ascii_uppercase) => Ok([*a, *b, *c]),
        _ => Err("expected a 3-letter station code".to_string()),
    }
}

fn parse_optional_station(s: &[u8]) -> Result<Option<[u8; 3]>, String> {
    if is_blank(s) {
        Ok(None)
    } else {
        parse_station(s).map(Some)
    }
}

/// `HHMM`, 0000-2359, as minutes after midnight.
pub(super) fn parse_time(s: &[u8]) -> Result<i16, String> {
    match (
        s.len(),
        s.get(..2).and_then(digits),
        s.get(2..).and_then(digits),
    ) {
        (4, Some(h @ 0..=23), Some(m @ 0..=59)) => Ok((h * 60 + m) as i16),
        _ => Err("expected a time HHMM (0000-2359)".to_string()),
    }
}

/// UTC/local time variation `±HHMM` (at most 14 hours), as minutes: local = UTC + this.
pub(super) fn parse_variation(s: &[u8]) -> Result<i16, String> {
    let sign = match s.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err("expected a variation ±HHMM".to_string()),
    };
    match (
        s.len(),
        s.get(1..3).and_then(digits),
        s.get(3..).and_then(digits),
    ) {
        (5, Some(h @ 0..=14), Some(m @ 0..=59)) if h * 60 + m <= 14 * 60 => {
            Ok(sign * (h * 60 + m) as i16)
        }
        _ => Err("expected a variation ±HHMM of at most 14 hours".to_string()),
    }
}

/// Date variation: blank (`None`, resolved later), `0`-`9` days, or `A` (the day before).
pub(super) fn parse_date_variation(s: &[u8]) -> Result<Option<i8>, String> {
    match s {
        [b' '] => Ok(None),
        [d @ b'0'..=b'9'] => Ok(Some((d - b'0') as i8)),
        [b'A'] => Ok(Some(-1)),
        _ => Err("expected blank, a digit or A".to_string()),
    }
}

/// Free text (aircraft type, PRBD): printable ASCII, trimmed.
pub(super) fn parse_text(s: &[u8]) -> Result<String, String> {
    if s.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        Ok(String::from_utf8_lossy(s).trim().to_string())
    } else {
        Err("expected printable ASCII".to_string())
    }
}

/// Reads one `CC NNNN[S]` designator at `*pos` (airline, optional blanks, 1-4 digits,
/// optional suffix letter); the flight number may be missing when `need_number` is false.
fn designator(s: &[u8], pos: &mut usize, need_number: bool) -> Option<String> {
    let at = |i: usize| s.get(i).copied().unwrap_or(b' ');
    let start = *pos;
    let (a, b, c) = (at(start), at(start + 1), at(start + 2));
    let alnum = |x: u8| x.is_ascii_uppercase() || x.is_ascii_digit();
    if !alnum(a) || !alnum(b) {
        return None;
    }
    // A third letter belongs to the airline (`AFR1234`); a digit starts the number.
    let mut i = start + 2;
    let mut airline = vec![a, b];
    if c.is_ascii_uppercase() {
        airline.push(c);
        i += 1;
    }
    while at(i) == b' ' && i < s.len() {
        i += 1;
    }
    let num_start = i;
    while at(i).is_ascii_digit() && i - num_start < 4 {
        i += 1;
    }
    let number = digits(&s[num_start.min(s.len())..i.min(s.len())]);
    let airline = String::from_utf8_lossy(&airline).into_owned();
    let Some(number) = number else {
        if need_number {
            return None;
        }
        *pos = num_start;
        return Some(airline);
    };
    let mut out = format!("{airline} {number:04}");
    // A suffix letter is one letter standing alone after the number.
    if at(i).is_ascii_uppercase() && !alnum(at(i + 1)) {
        out.push(char::from(at(i)));
        i += 1;
    }
    if alnum(at(i)) {
        return None; // e.g. a 5-digit number
    }
    *pos = i;
    Some(out)
}

/// DEI 010 data: marketing designators separated by `/` or blanks, as `CC NNNN[S]`.
pub(super) fn parse_codeshares(s: &[u8]) -> Result<Vec<String>, String> {
    if !s.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return Err("expected printable ASCII".to_string());
    }
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        while matches!(s.get(pos), Some(b' ' | b'/')) {
            pos += 1;
        }
        if pos >= s.len() {
            break;
        }
        match designator(s, &mut pos, true) {
            Some(d) => out.push(d),
            None => return Err(format!("bad flight designator at data column {}", pos + 1)),
        }
    }
    if out.is_empty() {
        return Err("no flight designator".to_string());
    }
    Ok(out)
}

/// DEI 050 data: the operating airline's designator (anything after it is ignored).
pub(super) fn parse_operating_carrier(s: &[u8]) -> Result<String, String> {
    let mut pos = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    if pos >= s.len() {
        return Err("no airline designator".to_string());
    }
    designator(s, &mut pos, false)
        .map(|d| d.split(' ').next().unwrap_or_default().to_string())
        .ok_or_else(|| "expected an airline designator".to_string())
}

// ---- duplicates and conflicts ---------------------------------------------------------

/// Drops exact duplicates (counted) and resolves conflicts (error, or lenient: keep the
/// first in file order). See the module doc.
fn drop_duplicates(out: &mut SsimFile, lenient: bool) -> Result<()> {
    let legs = &out.legs;
    let mut order: Vec<usize> = (0..legs.len()).collect();
    order.sort_by(|&a, &b| legs[a].key().cmp(&legs[b].key()).then(a.cmp(&b)));
    let mut keep = vec![true; legs.len()];
    let mut kept: Vec<usize> = Vec::new();
    let (mut duplicates, mut conflicts) = (0, 0);
    for (pos, &i) in order.iter().enumerate() {
        let leg = &legs[i];
        if pos == 0 || legs[order[pos - 1]].key() != leg.key() {
            kept.clear();
        }
        let mut dropped = false;
        for &k in &kept {
            let first = &legs[k];
            if leg.same_content(first, &out.carriers) {
                duplicates += 1;
                dropped = true;
                break;
            }
            if let Some(d) = common_date(first, leg) {
                if !lenient {
                    return Err(Error::feed(
                        &out.file_name,
                        leg.line,
                        "leg key",
                        format!(
                            "{} operates on {} in line {} and in line {} with different content",
                            leg.describe(),
                            date::format_iso(d),
                            first.line,
                            leg.line
                        ),
                    ));
                }
                conflicts += 1;
                dropped = true;
                break;
            }
        }
        if dropped {
            keep[i] = false;
        } else {
            kept.push(i);
        }
    }
    if duplicates + conflicts > 0 {
        let mut i = 0;
        out.legs.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
    out.duplicates = duplicates;
    out.conflicts = conflicts;
    Ok(())
}

/// Applies the duplicate and conflict rules (see the module doc) across the files of one
/// build, in the given order: a record with the same key as a record of an earlier file is
/// dropped and counted in its file's [`SsimFile::duplicates`] when the content is the same;
/// with different content and a common operating date it is an error naming both files and
/// lines, or with `lenient` it is dropped and counted in [`SsimFile::conflicts`] (the
/// earlier file's record is kept). Each file must already be [`parse`]d (which applies the
/// rules within it).
pub fn drop_duplicates_across_files(files: &mut [SsimFile], lenient: bool) -> Result<()> {
    type Key = (String, u16, Option<u8>, u16, u8);
    let owned = |l: &LegRecord| -> Key {
        (
            l.airline.clone(),
            l.flight_number,
            l.suffix,
            l.ivi,
            l.leg_seq,
        )
    };
    // Records of the files already processed: key -> (file, leg) indexes.
    let mut earlier_legs: HashMap<Key, Vec<(usize, usize)>> = HashMap::new();
    let n_files = files.len();
    for fi in 0..n_files {
        let (earlier, rest) = files.split_at_mut(fi);
        let Some(file) = rest.first_mut() else {
            break;
        };
        let mut keep = vec![true; file.legs.len()];
        let (mut duplicates, mut conflicts) = (0, 0);
        for (li, leg) in file.legs.iter().enumerate() {
            let Some(prev) = earlier_legs.get(&owned(leg)) else {
                continue;
            };
            let mode = Some(file.time_mode(leg));
            for &(pf, pl) in prev {
                let Some((pfile, first)) = earlier.get(pf).and_then(|f| Some((f, f.legs.get(pl)?)))
                else {
                    continue;
                };
                if leg.same_content_in_modes(mode, first, Some(pfile.time_mode(first))) {
                    duplicates += 1;
                    keep[li] = false;
                    break;
                }
                if let Some(d) = common_date(first, leg) {
                    if !lenient {
                        return Err(Error::feed(
                            &file.file_name,
                            leg.line,
                            "leg key",
                            format!(
                                "{} operates on {} in {} line {} and in line {} with different content",
                                leg.describe(),
                                date::format_iso(d),
                                pfile.file_name,
                                first.line,
                                leg.line
                            ),
                        ));
                    }
                    conflicts += 1;
                    keep[li] = false;
                    break;
                }
            }
        }
        if duplicates + conflicts > 0 {
            let mut i = 0;
            file.legs.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        file.duplicates += duplicates;
        file.conflicts += conflicts;
        // The last file is compared with no later one: a build of one schedule (the usual
        // case, tens of millions of dated legs) pays nothing here.
        if fi + 1 < n_files {
            for (li, leg) in file.legs.iter().enumerate() {
                earlier_legs.entry(owned(leg)).or_default().push((fi, li));
            }
        }
    }
    Ok(())
}

/// The first date both records operate on, if any.
fn common_date(a: &LegRecord, b: &LegRecord) -> Option<i32> {
    let (from, to) = (
        a.period_from.max(b.period_from),
        a.period_to.min(b.period_to),
    );
    if from > to || a.days & b.days == 0 {
        return None;
    }
    (from..=to).find(|&d| a.operates_on(d) && b.operates_on(d))
}
