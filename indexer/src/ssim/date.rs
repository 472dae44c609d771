//! Civil-date helpers. A date is an `i32` count of days since 1970-01-01 (proleptic
//! Gregorian calendar); the algorithms are Howard Hinnant's `days_from_civil` /
//! `civil_from_days`, which are exact for every `i32` year we can meet here.

pub use format::date::{civil_from_days, days_from_civil, format_iso};

/// Day of the week, Monday = 0 .. Sunday = 6.
pub fn weekday(date: i32) -> u8 {
    format::date::weekday(date) as u8
}

/// The Monday that starts the (Monday-to-Sunday) calendar week containing `date`.
pub fn week_monday(date: i32) -> i32 {
    date - i32::from(weekday(date))
}

const MONTHS: [&[u8; 3]; 12] = [
    b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC",
];

/// Parses an SSIM date `DDMMMYY` (e.g. `09JUN05`). Two-digit years 00-69 are 2000-2069,
/// 70-99 are 1970-1999. Month names must be upper case, as SSIM writes them.
/// Returns `None` for anything that is not a real calendar date.
pub fn parse_ddmmmyy(s: &[u8]) -> Option<i32> {
    if s.len() != 7 {
        return None;
    }
    let d = two_digits(&s[0..2])?;
    let mon = MONTHS.iter().position(|m| &s[2..5] == *m)? as u32 + 1;
    let yy = two_digits(&s[5..7])? as i32;
    let y = if yy < 70 { 2000 + yy } else { 1900 + yy };
    format::date::checked_days(y, mon, d)
}

/// Formats a date as SSIM `DDMMMYY`. Only meaningful for 1970-2069 (the range
/// [`parse_ddmmmyy`] reads back).
pub fn format_ddmmmyy(date: i32) -> String {
    let (y, m, d) = civil_from_days(date);
    let mon = MONTHS
        .get((m as usize).wrapping_sub(1))
        .map_or("???", |m| std::str::from_utf8(&m[..]).unwrap_or("???"));
    format!("{d:02}{mon}{:02}", y.rem_euclid(100))
}

fn two_digits(s: &[u8]) -> Option<u32> {
    match s {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some(u32::from(a - b'0') * 10 + u32::from(b - b'0')),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days_in_month(y: i32, m: u32) -> u32 {
        match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            _ => 28,
        }
    }

    #[test]
    fn civil_round_trip_over_two_centuries() {
        let start = days_from_civil(1900, 1, 1);
        let end = days_from_civil(2100, 12, 31);
        let (mut y, mut m, mut d) = (1900, 1, 1);
        for z in start..=end {
            assert_eq!(civil_from_days(z), (y, m, d), "day {z}");
            assert_eq!(days_from_civil(y, m, d), z);
            d += 1;
            if d > days_in_month(y, m) {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn weekday_is_monday_zero() {
        assert_eq!(weekday(0), 3); // Thursday 1970-01-01
        assert_eq!(weekday(days_from_civil(2005, 5, 22)), 6); // Sunday
        assert_eq!(weekday(days_from_civil(2005, 5, 23)), 0); // Monday
        assert_eq!(weekday(-1), 2);
        assert_eq!(
            week_monday(days_from_civil(2005, 5, 22)),
            days_from_civil(2005, 5, 16)
        );
    }

    #[test]
    fn parse_ddmmmyy_accepts_real_dates_and_pivots_years() {
        assert_eq!(parse_ddmmmyy(b"09JUN05"), Some(days_from_civil(2005, 6, 9)));
        assert_eq!(
            parse_ddmmmyy(b"31DEC69"),
            Some(days_from_civil(2069, 12, 31))
        );
        assert_eq!(parse_ddmmmyy(b"01JAN70"), Some(0));
        assert_eq!(
            parse_ddmmmyy(b"29FEB00"),
            Some(days_from_civil(2000, 2, 29))
        );
        assert_eq!(parse_ddmmmyy(b"29FEB99"), None);
        assert_eq!(parse_ddmmmyy(b"31APR05"), None);
        assert_eq!(parse_ddmmmyy(b"00JAN05"), None);
        assert_eq!(parse_ddmmmyy(b"09jun05"), None);
        assert_eq!(parse_ddmmmyy(b"9JUN05 "), None);
        assert_eq!(parse_ddmmmyy(b"00XXX00"), None);
        assert_eq!(parse_ddmmmyy(b"09JUN5"), None);
    }

    #[test]
    fn format_round_trips() {
        for z in [0, 12_000, 25_000, days_from_civil(2069, 12, 31)] {
            assert_eq!(parse_ddmmmyy(format_ddmmmyy(z).as_bytes()), Some(z));
        }
        assert_eq!(format_iso(days_from_civil(2005, 10, 29)), "2005-10-29");
    }
}
