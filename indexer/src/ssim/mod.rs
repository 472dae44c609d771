//! IATA SSIM Chapter 7 reader: fixed 200-byte records into flight patterns.
//!
//! [`parse`] reads the records (types 1-5), [`patterns`] joins legs into through flights
//! with their operating dates, [`expand`] lists every dated leg. Dates are `i32` days
//! since 1970-01-01 (see [`date`]); instants are minutes since 1970-01-01T00:00Z.
//!
//! # Decisions (what the reader does with real-world quirks)
//!
//! - **Records.** Lines end in LF or CRLF; a file without any LF is read as bare 200-byte
//!   records. Lines made only of `0` are block filler and skipped. Any other line that is
//!   not exactly 200 bytes, an unknown record type, or a bad field is an [`Error::Feed`]
//!   naming file, 1-based line and field; with `lenient` the record is skipped and counted
//!   in [`SsimFile::skipped`] under the field's name. A type-3/4 record outside a carrier
//!   block (no type 2 since the file start or the last type 5) is such an error too, and so
//!   is a type-3 airline that differs from its carrier record's.
//! - **Time mode.** The type-2 record's column 2 (`U`/`L`) applies to the period, days of
//!   operation and times of the type-3 records after it. The *base date* of a record is a
//!   date of its period: in mode `L` the local date at the flight's first origin, in mode
//!   `U` a UTC date. `dep_utc_min = date_variation*1440 + STD - variation` (mode `L`) or
//!   `date_variation*1440 + STD` (mode `U`), minutes from 00:00 UTC of the base date.
//! - **Multi-leg dates.** Every leg of a through flight carries the flight's (first leg's)
//!   date as its period date, and its date variations count from that date. The Gna sample
//!   agrees: all 42 joined multi-leg flights give identical period and days on every leg,
//!   and no later leg departs on a later local date, so the sample cannot contradict the
//!   convention, only fail to refute it.
//! - **Blank date variations.** Blank means 0, but real files leave it blank on overnight
//!   legs (Gna CDG 19:45 -> RUN 08:40). When a blank arrival variation puts the arrival at
//!   or before the departure, whole days are added until it is after. Likewise a later leg
//!   of a through flight with a blank departure variation that would depart before the
//!   previous leg arrives is moved on by whole days. An *explicit* variation is trusted: an
//!   explicit arrival not after its departure is a field error, and an explicit departure
//!   before the previous leg's arrival means the legs do not join.
//! - **Open periods.** `00XXX00` as the period end means "until further notice": it ends at
//!   the carrier record's schedule validity end (type 2 cols 22-28) if that is on or after
//!   the period start, otherwise at period start + 364 days (one year of schedule).
//! - **Frequency rate.** Blank or `1` is weekly, `2` fortnightly: weeks are Monday-to-Sunday
//!   calendar weeks and the week containing the period start operates, then every other.
//! - **Duplicates.** Two records with the same key (airline, flight number, suffix, IVI,
//!   leg sequence) and the same content (every field this reader uses, including period,
//!   days, time mode and attached DEI 010/050 data; not the serial number, meals, terminals)
//!   are one record: the later is dropped and counted. Same key, different content and a
//!   common operating date is a conflict: an error naming both lines, or with `lenient` the
//!   first record in file order is kept and the other dropped whole and counted. The same
//!   key on disjoint dates (e.g. split periods, or Gna XX974 IVI 01 leg 01 in two carrier
//!   blocks) is simply several records.
//!   The rule holds across the files of one build too ([`drop_duplicates_across_files`]):
//!   a record of a later `--ssim` file is compared with those of the earlier files, so a
//!   flight given in two files is still one leg per date, never two.
//! - **Suffixes.** The operational suffix (col 2) is part of the flight's identity: `XX777A`
//!   and `XX777` are different flights even with equal flight number, IVI and leg.
//! - **Joining.** Legs are grouped by (carrier block, airline, flight number, suffix, IVI).
//!   On each date, the group's legs operating that date are taken in leg-sequence order and
//!   a leg continues the through flight when its departure station is the previous leg's
//!   arrival station and its departure is not before that arrival (gaps in the numbering are
//!   allowed). A leg that does not join (Gna XX974: leg 01 RUN->DZA, leg 02 CDG->RUN) starts
//!   a separate flight with the same date; such flights are counted in
//!   [`Stats::legs_not_joined`], never an error. A later leg whose earlier legs do not
//!   operate that date is a flight starting at that leg, not counted.
//! - **Segment data (type 4).** DEI 010 (codeshare marketing designators, `/`-separated,
//!   kept as `CC NNNN[S]`) and DEI 050 (operating carrier, kept as the airline designator)
//!   are attached to the legs of the preceding run of type-3 records of the same flight
//!   (same suffix, airline, number, IVI, increasing leg sequence) from the leg departing the
//!   board point to the leg arriving at the off point. Other DEIs are ignored.

pub mod date;
mod normalize;
mod record;
#[doc(hidden)]
pub mod testgen;

use std::collections::BTreeMap;

pub use normalize::{expand, patterns, DatedLeg, FlightPattern, PatternLeg, Stats};
pub use record::{drop_duplicates_across_files, parse};

/// How a carrier block's periods and times are expressed (type-2 record, column 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeMode {
    /// `U`: times are UTC, period dates are UTC dates.
    Utc,
    /// `L`: times are local at the station, period dates are local dates at the origin.
    Local,
}

/// One carrier block (type-2 record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier {
    pub airline: String,
    pub time_mode: TimeMode,
    /// Schedule validity (cols 15-21 / 22-28); `None` when blank or open (`00XXX00`).
    pub validity_from: Option<i32>,
    pub validity_to: Option<i32>,
    pub line: usize,
}

/// One flight-leg record (type 3) with its segment data (type 4), fields decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegRecord {
    /// Index into [`SsimFile::carriers`].
    pub carrier: usize,
    pub suffix: Option<u8>,
    pub airline: String,
    pub flight_number: u16,
    /// Itinerary variation id, cols 10-11 plus col 128 as the hundreds digit.
    pub ivi: u16,
    pub leg_seq: u8,
    pub service_type: u8,
    pub period_from: i32,
    /// Inclusive; an open end (`00XXX00`) is already resolved (see the module doc).
    pub period_to: i32,
    pub open_ended: bool,
    /// Bit `i` set = operates on weekday `i` (Monday = 0).
    pub days: u8,
    /// 1 = weekly, 2 = fortnightly.
    pub frequency_rate: u8,
    pub dep: [u8; 3],
    /// Passenger STD, minutes after midnight (in the block's time mode).
    pub std_min: i16,
    pub dep_utc_offset_min: i16,
    pub arr: [u8; 3],
    pub sta_min: i16,
    pub arr_utc_offset_min: i16,
    pub aircraft: String,
    pub prbd: String,
    /// Cols 193/194; `None` = blank (0, resolved on overnight legs), `Some(-1)` = `A`.
    pub dep_date_variation: Option<i8>,
    pub arr_date_variation: Option<i8>,
    pub codeshares: Vec<String>,
    pub operating_carrier: Option<String>,
    pub line: usize,
}

impl LegRecord {
    /// True when the record's period, days of operation and frequency rate include `date`.
    pub fn operates_on(&self, date: i32) -> bool {
        if date < self.period_from || date > self.period_to {
            return false;
        }
        if self.days & (1 << date::weekday(date)) == 0 {
            return false;
        }
        if self.frequency_rate > 1 {
            let weeks = (date::week_monday(date) - date::week_monday(self.period_from)) / 7;
            if weeks % i32::from(self.frequency_rate) != 0 {
                return false;
            }
        }
        true
    }

    /// The operating dates, ascending.
    pub fn dates(&self) -> impl Iterator<Item = i32> + '_ {
        (self.period_from..=self.period_to).filter(move |&d| self.operates_on(d))
    }

    /// `(dep, arr)` in minutes from 00:00 UTC of the base date, with the date variations
    /// taken as written (blank = 0) and no overnight resolution.
    pub(crate) fn raw_times(&self, mode: TimeMode) -> (i32, i32) {
        let (dv_dep, dv_arr) = (
            i32::from(self.dep_date_variation.unwrap_or(0)),
            i32::from(self.arr_date_variation.unwrap_or(0)),
        );
        let (mut dep, mut arr) = (
            dv_dep * 1440 + i32::from(self.std_min),
            dv_arr * 1440 + i32::from(self.sta_min),
        );
        if mode == TimeMode::Local {
            dep -= i32::from(self.dep_utc_offset_min);
            arr -= i32::from(self.arr_utc_offset_min);
        }
        (dep, arr)
    }

    /// Same content in the sense of the duplicate rule (see the module doc).
    fn same_content(&self, other: &LegRecord, carriers: &[Carrier]) -> bool {
        let mode = |c: usize| carriers.get(c).map(|c| c.time_mode);
        self.same_content_in_modes(mode(self.carrier), other, mode(other.carrier))
    }

    /// [`Self::same_content`] for records that may come from different files, each with the
    /// time mode of its own carrier block.
    fn same_content_in_modes(
        &self,
        mode: Option<TimeMode>,
        other: &LegRecord,
        other_mode: Option<TimeMode>,
    ) -> bool {
        mode == other_mode
            && LegRecord {
                carrier: 0,
                line: 0,
                open_ended: false,
                ..self.clone()
            } == LegRecord {
                carrier: 0,
                line: 0,
                open_ended: false,
                ..other.clone()
            }
    }

    fn key(&self) -> (&str, u16, Option<u8>, u16, u8) {
        (
            &self.airline,
            self.flight_number,
            self.suffix,
            self.ivi,
            self.leg_seq,
        )
    }

    /// `XX974/01 leg 02`-style name for messages.
    pub fn describe(&self) -> String {
        let mut name = format!("{}{}", self.airline, self.flight_number);
        if let Some(c) = self.suffix {
            name.push(char::from(c));
        }
        format!("{name} IVI {:02} leg {:02}", self.ivi, self.leg_seq)
    }
}

/// A parsed SSIM file.
#[derive(Debug, Clone, Default)]
pub struct SsimFile {
    pub file_name: String,
    pub carriers: Vec<Carrier>,
    /// Type-3 records in file order, after dropping duplicates (and, lenient, conflicts).
    pub legs: Vec<LegRecord>,
    /// Type-3 records read and decoded (before dropping duplicates and conflicts).
    pub leg_records_read: usize,
    /// Exact duplicate type-3 records dropped.
    pub duplicates: usize,
    /// Conflicting type-3 records dropped (lenient only; strict mode fails instead).
    pub conflicts: usize,
    /// Records skipped under `lenient`, counted by the field that was wrong.
    pub skipped: BTreeMap<String, usize>,
}

impl SsimFile {
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }

    pub(crate) fn time_mode(&self, leg: &LegRecord) -> TimeMode {
        self.carriers
            .get(leg.carrier)
            .map_or(TimeMode::Local, |c| c.time_mode)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests;
