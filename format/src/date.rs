//! Civil dates as days since 1970-01-01 (proleptic Gregorian), the unit every file uses.

/// Days since 1970-01-01 of a civil date. `month` 1-12, `day` 1-31 (not range-checked here).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    // Howard Hinnant's algorithm: shift the year to start in March so leap days come last.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day number.
pub fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day of the week, Monday = 0 .. Sunday = 6 (SSIM numbers them 1..7).
#[inline]
pub fn weekday(days: i32) -> u32 {
    // 1970-01-01 was a Thursday (3).
    (days + 3).rem_euclid(7) as u32
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// A checked civil date: `None` when the month or day does not exist.
pub fn checked_days(year: i32, month: u32, day: u32) -> Option<i32> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// Parses `YYYY-MM-DD` (years 0001-9999).
pub fn parse_iso(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |s: &[u8]| -> Option<u32> {
        s.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let y = num(&b[0..4])?;
    let m = num(&b[5..7])?;
    let d = num(&b[8..10])?;
    if y == 0 {
        return None;
    }
    checked_days(y as i32, m, d)
}

/// Formats `YYYY-MM-DD`.
pub fn format_iso(days: i32) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Formats minutes since 1970-01-01T00:00Z as RFC 3339 with `Z`.
pub fn format_utc_minutes(minutes: i64) -> String {
    let days = minutes.div_euclid(1440);
    let mod_min = minutes.rem_euclid(1440);
    format!(
        "{}T{:02}:{:02}:00Z",
        format_iso(days as i32),
        mod_min / 60,
        mod_min % 60
    )
}

/// Formats local minutes since 1970-01-01T00:00 (wall clock) as `YYYY-MM-DDTHH:MM`.
pub fn format_local_minutes(minutes: i64) -> String {
    let days = minutes.div_euclid(1440);
    let mod_min = minutes.rem_euclid(1440);
    format!(
        "{}T{:02}:{:02}",
        format_iso(days as i32),
        mod_min / 60,
        mod_min % 60
    )
}

/// Formats seconds since the Unix epoch as RFC 3339 with `Z` (second precision).
pub fn format_utc_seconds(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let s = seconds.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        format_iso(days as i32),
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_day_of_four_centuries() {
        for days in -200_000..200_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert_eq!(checked_days(y, m, d), Some(days));
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(parse_iso("2013-01-01"), Some(15706));
        assert_eq!(weekday(15706), 1); // 2013-01-01 was a Tuesday
        assert_eq!(format_iso(15706), "2013-01-01");
        assert_eq!(parse_iso("2013-02-29"), None);
        assert_eq!(parse_iso("2012-02-29"), Some(days_from_civil(2012, 2, 29)));
        assert_eq!(parse_iso("2013-1-01"), None);
        assert_eq!(format_utc_minutes(-1), "1969-12-31T23:59:00Z");
    }
}
