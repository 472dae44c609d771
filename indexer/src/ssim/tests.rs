//! Unit tests: field decoders, record-level errors, and the joining rules on small files.

use super::date::days_from_civil;
use super::record::*;
use super::*;
use crate::Error;

/// A valid type-2 record (mode `m`, airline XX, validity 01JAN24-31DEC24).
fn carrier(m: &str) -> String {
    rec(&[(1, "2"), (2, m), (3, "XX"), (15, "01JAN2431DEC24")])
}

/// A valid type-3 record: XX 100 IVI 01 leg 01 J, 01JUN24-30JUN24 daily, AAA 10:00 +0100
/// -> BBB 12:00 +0200, then the overrides.
fn leg(overrides: &[(usize, &str)]) -> String {
    let mut fields = vec![
        (1, "3"),
        (3, "XX"),
        (6, " 100"),
        (10, "01"),
        (12, "01"),
        (14, "J"),
        (15, "01JUN2430JUN24"),
        (29, "1234567"),
        (37, "AAA10001000+0100"),
        (55, "BBB12001200+0200"),
        (73, "320"),
        (76, "JY"),
    ];
    fields.extend_from_slice(overrides);
    rec(&fields)
}

/// A 200-column record of blanks with `(column, text)` written in.
fn rec(fields: &[(usize, &str)]) -> String {
    let mut b = vec![b' '; 200];
    for (col, text) in fields {
        for (i, c) in text.bytes().enumerate() {
            b[col - 1 + i] = c;
        }
    }
    String::from_utf8(b).unwrap()
}

fn file(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

fn parse_ok(lines: &[String]) -> SsimFile {
    parse("t.ssim", file(lines).as_bytes(), false).unwrap()
}

/// The (line, field, message) of the error a strict parse gives.
fn parse_err(lines: &[String]) -> (usize, String, String) {
    match parse("t.ssim", file(lines).as_bytes(), false) {
        Err(Error::Feed {
            file,
            line,
            field,
            message,
        }) => {
            assert_eq!(file, "t.ssim");
            (line, field, message)
        }
        other => panic!("expected a feed error, got {other:?}"),
    }
}

fn d(y: i32, m: u32, day: u32) -> i32 {
    days_from_civil(y, m, day)
}

// ---- field decoders ------------------------------------------------------------------

#[test]
fn station_must_be_three_upper_case_letters() {
    assert_eq!(parse_station(b"CDG"), Ok(*b"CDG"));
    for bad in [&b"CD1"[..], b"cdg", b"CD ", b"   ", b"CDGX"] {
        assert!(parse_station(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn time_is_hhmm_within_a_day() {
    assert_eq!(parse_time(b"0000"), Ok(0));
    assert_eq!(parse_time(b"1945"), Ok(19 * 60 + 45));
    assert_eq!(parse_time(b"2359"), Ok(1439));
    for bad in [&b"2400"[..], b"1260", b"12:0", b"    ", b"123", b"-100"] {
        assert!(parse_time(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn variation_is_signed_hhmm_up_to_fourteen_hours() {
    assert_eq!(parse_variation(b"+0400"), Ok(240));
    assert_eq!(parse_variation(b"-0700"), Ok(-420));
    assert_eq!(parse_variation(b"+0530"), Ok(330));
    assert_eq!(parse_variation(b"+1400"), Ok(840));
    assert_eq!(parse_variation(b"-0000"), Ok(0));
    for bad in [
        &b"0400 "[..],
        b"+1401",
        b"+1500",
        b"+0460",
        b" 0400",
        b"+04:0",
        b"     ",
    ] {
        assert!(parse_variation(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn days_of_operation_are_positional_digits() {
    assert_eq!(parse_days(b"1234567"), Ok(0x7f));
    assert_eq!(parse_days(b"1 3 5 7"), Ok(0b101_0101));
    assert_eq!(parse_days(b"      7"), Ok(0b100_0000));
    assert!(parse_days(b"       ").is_err());
    assert!(parse_days(b"2      ").is_err());
    assert!(parse_days(b"1.3....").is_err());
}

#[test]
fn frequency_rate_blank_or_one_is_weekly_two_fortnightly() {
    assert_eq!(parse_frequency_rate(b" "), Ok(1));
    assert_eq!(parse_frequency_rate(b"1"), Ok(1));
    assert_eq!(parse_frequency_rate(b"2"), Ok(2));
    assert!(parse_frequency_rate(b"3").is_err());
    assert!(parse_frequency_rate(b"X").is_err());
}

#[test]
fn date_variation_blank_digit_or_a() {
    assert_eq!(parse_date_variation(b" "), Ok(None));
    assert_eq!(parse_date_variation(b"0"), Ok(Some(0)));
    assert_eq!(parse_date_variation(b"2"), Ok(Some(2)));
    assert_eq!(parse_date_variation(b"A"), Ok(Some(-1)));
    assert!(parse_date_variation(b"B").is_err());
    assert!(parse_date_variation(b"-").is_err());
}

#[test]
fn airline_flight_number_ivi_leg_and_suffix_decoders() {
    assert_eq!(parse_airline(b"XX "), Ok("XX".to_string()));
    assert_eq!(parse_airline(b"ABC"), Ok("ABC".to_string()));
    assert_eq!(parse_airline(b"9E "), Ok("9E".to_string()));
    for bad in [&b" XX"[..], b"X  ", b"xx ", b"12 ", b"X X"] {
        assert!(parse_airline(bad).is_err(), "{bad:?}");
    }
    assert_eq!(parse_flight_number(b"  41"), Ok(41));
    assert_eq!(parse_flight_number(b"0041"), Ok(41));
    assert_eq!(parse_flight_number(b"9999"), Ok(9999));
    assert!(parse_flight_number(b"    ").is_err());
    assert!(parse_flight_number(b"41  ").is_err());
    assert!(parse_flight_number(b" 4 1").is_err());
    assert_eq!(parse_ivi_low(b"07"), Ok(7));
    assert_eq!(parse_ivi_low(b" 7"), Ok(7));
    assert_eq!(parse_ivi_low(b"99"), Ok(99));
    assert!(parse_ivi_low(b"  ").is_err());
    assert_eq!(parse_overflow(b" "), Ok(0));
    assert_eq!(parse_overflow(b"1"), Ok(1));
    assert!(parse_overflow(b"X").is_err());
    assert_eq!(parse_leg_seq(b"01"), Ok(1));
    assert!(parse_leg_seq(b"00").is_err());
    assert!(parse_leg_seq(b" 1").is_err());
    assert_eq!(parse_suffix(b" "), Ok(None));
    assert_eq!(parse_suffix(b"Z"), Ok(Some(b'Z')));
    assert!(parse_suffix(b"z").is_err());
}

#[test]
fn codeshare_designators_are_normalised() {
    assert_eq!(
        parse_codeshares(b"AF 1234/KL 0056  "),
        Ok(vec!["AF 1234".to_string(), "KL 0056".to_string()])
    );
    assert_eq!(
        parse_codeshares(b"AF1234 KLM56A /9E7"),
        Ok(vec![
            "AF 1234".to_string(),
            "KLM 0056A".to_string(),
            "9E 0007".to_string()
        ])
    );
    assert!(parse_codeshares(b"      ").is_err());
    assert!(parse_codeshares(b"AF 12345").is_err());
    assert!(parse_codeshares(b"AF").is_err());
    assert_eq!(parse_operating_carrier(b"  AF 1234"), Ok("AF".to_string()));
    assert_eq!(parse_operating_carrier(b"KLM"), Ok("KLM".to_string()));
    assert!(parse_operating_carrier(b"    ").is_err());
}

// ---- record-level errors name line and field ------------------------------------------

#[test]
fn wrong_record_length_is_an_error_naming_the_line() {
    let short = leg(&[])[..150].to_string();
    let (line, field, msg) = parse_err(&[carrier("L"), short]);
    assert_eq!((line, field.as_str()), (2, "record length"));
    assert!(msg.contains("150"), "{msg}");
}

#[test]
fn unknown_record_type_is_an_error() {
    let (line, field, _) = parse_err(&[carrier("L"), rec(&[(1, "7")])]);
    assert_eq!((line, field.as_str()), (2, "record type"));
}

#[test]
fn leg_outside_a_carrier_block_is_an_error() {
    let (line, field, _) = parse_err(&[leg(&[])]);
    assert_eq!((line, field.as_str()), (1, "record type"));
    let trailer = rec(&[(1, "5"), (3, "XX")]);
    let (line, _, _) = parse_err(&[carrier("L"), leg(&[]), trailer, leg(&[])]);
    assert_eq!(line, 4);
}

#[test]
fn bad_fields_name_line_and_field() {
    let cases: Vec<(Vec<(usize, &str)>, &str)> = vec![
        (vec![(37, "A1A")], "departure station"),
        (vec![(55, "bbb")], "arrival station"),
        (vec![(40, "2500")], "passenger STD"),
        (vec![(62, "12 0")], "passenger STA"),
        (vec![(48, "*0100")], "departure UTC variation"),
        (vec![(66, "+2000")], "arrival UTC variation"),
        (vec![(15, "31JUN24")], "period from"),
        (vec![(22, "30XYZ24")], "period to"),
        (vec![(15, "10JUN2401JUN24")], "period of operation"),
        (vec![(29, "       ")], "days of operation"),
        (vec![(36, "3")], "frequency rate"),
        (vec![(193, "X")], "departure date variation"),
        (vec![(194, "?")], "arrival date variation"),
        (vec![(3, "YY")], "airline"),
        (vec![(6, "ABCD")], "flight number"),
        (vec![(10, "X1")], "itinerary variation"),
        (vec![(128, "Q")], "itinerary variation overflow"),
        (vec![(12, "00")], "leg sequence"),
        (vec![(14, "1")], "service type"),
        (vec![(2, "a")], "operational suffix"),
        (vec![(73, "7\u{7f}7")], "aircraft type"),
    ];
    for (overrides, field) in cases {
        let (line, got, msg) = parse_err(&[carrier("L"), leg(&[]), leg(&overrides)]);
        assert_eq!((line, got.as_str()), (3, field), "{overrides:?}: {msg}");
        assert!(msg.contains("col"), "message names the columns: {msg}");
    }
}

#[test]
fn bad_carrier_record_fields_are_errors() {
    let (line, field, _) = parse_err(&[carrier("X")]);
    assert_eq!((line, field.as_str()), (1, "time mode"));
    let bad = rec(&[(1, "2"), (2, "L"), (3, "XX"), (15, "01JAN2432DEC24")]);
    let (_, field, _) = parse_err(&[bad]);
    assert_eq!(field, "schedule validity to");
}

#[test]
fn explicit_arrival_before_departure_is_an_error() {
    // AAA 10:00 +0100 (09:00Z) -> BBB 12:00 +0200 (10:00Z); arriving the day before
    // (`A`) is impossible, and so is an explicit same-day arrival before departure.
    let (line, field, _) = parse_err(&[carrier("L"), leg(&[(193, "0A")])]);
    assert_eq!((line, field.as_str()), (2, "arrival date variation"));
    let (_, field, _) = parse_err(&[carrier("L"), leg(&[(55, "BBB08000800+0200"), (193, "00")])]);
    assert_eq!(field, "arrival date variation");
}

#[test]
fn lenient_skips_and_counts_bad_records_by_field() {
    let lines = [
        carrier("L"),
        leg(&[(37, "A1A")]),
        leg(&[(10, "02")]),
        leg(&[(10, "03"), (40, "9999")]),
        leg(&[(10, "04"), (40, "9999")]),
        "short".to_string(),
    ];
    let f = parse("t.ssim", file(&lines).as_bytes(), true).unwrap();
    assert_eq!(f.legs.len(), 1);
    assert_eq!(f.legs[0].ivi, 2);
    assert_eq!(f.skipped.get("departure station"), Some(&1));
    assert_eq!(f.skipped.get("passenger STD"), Some(&2));
    assert_eq!(f.skipped.get("record length"), Some(&1));
    assert_eq!(f.skipped_total(), 4);
}

// ---- record framing --------------------------------------------------------------------

#[test]
fn filler_crlf_and_bare_records_are_read_alike() {
    let zero = "0".repeat(200);
    let lines = [carrier("L"), zero.clone(), leg(&[]), zero];
    let lf = parse("t", file(&lines).as_bytes(), false).unwrap();
    let crlf = parse("t", (lines.join("\r\n") + "\r\n").as_bytes(), false).unwrap();
    let bare = parse("t", lines.concat().as_bytes(), false).unwrap();
    let no_final_eol = parse("t", lines.join("\n").as_bytes(), false).unwrap();
    for f in [&crlf, &bare, &no_final_eol] {
        assert_eq!(f.legs, lf.legs);
    }
    assert_eq!(lf.legs.len(), 1);
    assert_eq!(lf.legs[0].line, 3);
    let (_, field, _) = match parse("t", (lines.concat() + "3").as_bytes(), false) {
        Err(Error::Feed {
            line,
            field,
            message,
            ..
        }) => (line, field, message),
        other => panic!("{other:?}"),
    };
    assert_eq!(field, "record length");
}

#[test]
fn empty_line_in_the_middle_is_an_error() {
    let text = format!("{}\n\n{}\n", carrier("L"), leg(&[]));
    match parse("t", text.as_bytes(), false) {
        Err(Error::Feed { line, field, .. }) => {
            assert_eq!((line, field.as_str()), (2, "record length"))
        }
        other => panic!("{other:?}"),
    }
}

// ---- decoded values ---------------------------------------------------------------------

#[test]
fn leg_fields_are_decoded() {
    let f = parse_ok(&[
        carrier("L"),
        leg(&[(2, "Z"), (6, "0974"), (10, "05"), (128, "1"), (193, "01")]),
    ]);
    let l = &f.legs[0];
    assert_eq!(l.suffix, Some(b'Z'));
    assert_eq!(
        (l.airline.as_str(), l.flight_number, l.ivi),
        ("XX", 974, 105)
    );
    assert_eq!(
        (l.period_from, l.period_to),
        (d(2024, 6, 1), d(2024, 6, 30))
    );
    assert_eq!((l.dep, l.std_min, l.dep_utc_offset_min), (*b"AAA", 600, 60));
    assert_eq!(
        (l.arr, l.sta_min, l.arr_utc_offset_min),
        (*b"BBB", 720, 120)
    );
    assert_eq!((l.aircraft.as_str(), l.prbd.as_str()), ("320", "JY"));
    assert_eq!(
        (l.dep_date_variation, l.arr_date_variation),
        (Some(0), Some(1))
    );
}

#[test]
fn open_period_ends_at_carrier_validity_or_after_a_year() {
    let f = parse_ok(&[carrier("L"), leg(&[(22, "00XXX00")])]);
    assert!(f.legs[0].open_ended);
    assert_eq!(f.legs[0].period_to, d(2024, 12, 31));
    // A period starting after the validity end runs 365 days.
    let f = parse_ok(&[carrier("L"), leg(&[(15, "01FEB2500XXX00")])]);
    assert_eq!(f.legs[0].period_to, d(2025, 2, 1) + 364);
    // No validity end at all: likewise.
    let open_carrier = rec(&[(1, "2"), (2, "U"), (3, "XX"), (15, "01JAN2400XXX00")]);
    let f = parse_ok(&[open_carrier, leg(&[(22, "00XXX00")])]);
    assert_eq!(f.legs[0].period_to, d(2024, 6, 1) + 364);
}

#[test]
fn fortnightly_counts_monday_to_sunday_weeks_from_the_period_start_week() {
    // 2024-06-01 is a Saturday. Days 6 (Sat) and 1 (Mon): the week of Mon 27 May is an
    // operating week (Sat 1 Jun), the week of 3 Jun is not (no Mon 3 Jun, no Sat 8 Jun),
    // the week of 10 Jun is (Mon 10, Sat 15).
    let f = parse_ok(&[carrier("L"), leg(&[(29, "1    6 "), (36, "2")])]);
    let dates: Vec<i32> = f.legs[0].dates().collect();
    let expected: Vec<i32> = [(6, 1), (6, 10), (6, 15), (6, 24), (6, 29)]
        .iter()
        .map(|&(m, day)| d(2024, m, day))
        .collect();
    assert_eq!(dates, expected);
}

#[test]
fn segment_data_dei_010_and_050_attach_to_the_covered_legs() {
    let lines = [
        carrier("L"),
        leg(&[]),
        leg(&[
            (12, "02"),
            (37, "BBB13001300+0200"),
            (55, "CCC15001500+0300"),
        ]),
        rec(&[
            (1, "4"),
            (3, "XX"),
            (6, " 100"),
            (10, "01"),
            (12, "01"),
            (14, "J"),
            (29, "AC"),
            (31, "010AAACCCAF 0012/KL 34"),
        ]),
        rec(&[
            (1, "4"),
            (3, "XX"),
            (6, " 100"),
            (10, "01"),
            (12, "02"),
            (14, "J"),
            (29, "BC"),
            (31, "050BBBCCCYY"),
        ]),
    ];
    let f = parse_ok(&lines);
    assert_eq!(f.legs[0].codeshares, vec!["AF 0012", "KL 0034"]);
    assert_eq!(f.legs[1].codeshares, vec!["AF 0012", "KL 0034"]);
    assert_eq!(f.legs[0].operating_carrier, None);
    assert_eq!(f.legs[1].operating_carrier.as_deref(), Some("YY"));
    let (pats, _) = patterns(&f);
    assert_eq!(pats.len(), 1);
    assert_eq!(pats[0].legs[1].operating_carrier.as_deref(), Some("YY"));
    assert_eq!(pats[0].legs[0].codeshares, vec!["AF 0012", "KL 0034"]);
}

#[test]
fn segment_data_that_does_not_match_its_leg_is_an_error() {
    let wrong_flight = rec(&[
        (1, "4"),
        (3, "XX"),
        (6, " 101"),
        (10, "01"),
        (12, "01"),
        (31, "010AAABBBAF 1"),
    ]);
    let (line, field, _) = parse_err(&[carrier("L"), leg(&[]), wrong_flight]);
    assert_eq!((line, field.as_str()), (3, "segment key"));
    let wrong_stations = rec(&[
        (1, "4"),
        (3, "XX"),
        (6, " 100"),
        (10, "01"),
        (12, "01"),
        (31, "010AAACCCAF 1"),
    ]);
    let (_, field, _) = parse_err(&[carrier("L"), leg(&[]), wrong_stations]);
    assert_eq!(field, "board/off point");
    let bad_data = rec(&[
        (1, "4"),
        (3, "XX"),
        (6, " 100"),
        (10, "01"),
        (12, "01"),
        (31, "010AAABBB%%"),
    ]);
    let (_, field, _) = parse_err(&[carrier("L"), leg(&[]), bad_data]);
    assert_eq!(field, "DEI 010 data");
    let orphan = rec(&[
        (1, "4"),
        (3, "XX"),
        (6, " 100"),
        (10, "01"),
        (12, "01"),
        (31, "010AAABBBAF 1"),
    ]);
    let (_, field, _) = parse_err(&[carrier("L"), orphan]);
    assert_eq!(field, "segment key");
}

// ---- duplicates and conflicts ------------------------------------------------------------

#[test]
fn exact_duplicate_is_dropped_and_counted() {
    let mut dup = leg(&[]);
    dup.replace_range(194..200, "000042"); // only the serial number differs
    let f = parse_ok(&[carrier("L"), leg(&[]), dup]);
    assert_eq!((f.legs.len(), f.duplicates, f.leg_records_read), (1, 1, 2));
    let (pats, stats) = patterns(&f);
    assert_eq!(pats.len(), 1);
    assert_eq!((stats.duplicates, stats.dated_legs), (1, 30));
}

#[test]
fn conflicting_records_fail_strictly_naming_both_lines() {
    let other = leg(&[(15, "15JUN2415JUL24"), (40, "1100")]);
    let (line, field, msg) = parse_err(&[carrier("L"), leg(&[]), other.clone()]);
    assert_eq!((line, field.as_str()), (3, "leg key"));
    assert!(msg.contains("line 2") && msg.contains("line 3"), "{msg}");
    assert!(msg.contains("2024-06-15"), "{msg}");
    // Lenient: the first is kept, the other dropped whole and counted.
    let text = file(&[carrier("L"), leg(&[]), other]);
    let f = parse("t", text.as_bytes(), true).unwrap();
    assert_eq!((f.legs.len(), f.conflicts, f.legs[0].line), (1, 1, 2));
    assert_eq!(patterns(&f).1.conflicts, 1);
}

#[test]
fn same_key_on_disjoint_dates_is_two_records() {
    let later = leg(&[(15, "01JUL2431JUL24"), (40, "1100")]);
    // Overlapping periods whose weekdays never meet are disjoint too.
    let mondays = leg(&[(10, "02"), (29, "1      ")]);
    let tuesdays = leg(&[(10, "02"), (29, " 2     "), (40, "1100")]);
    let f = parse_ok(&[carrier("L"), leg(&[]), later, mondays, tuesdays]);
    assert_eq!((f.legs.len(), f.duplicates, f.conflicts), (4, 0, 0));
    let (pats, _) = patterns(&f);
    assert_eq!(pats.len(), 4);
}

// ---- times and joining ---------------------------------------------------------------------

#[test]
fn local_mode_times_subtract_the_variation() {
    let f = parse_ok(&[carrier("L"), leg(&[])]);
    let (pats, _) = patterns(&f);
    let l = &pats[0].legs[0];
    assert_eq!((l.dep_utc_min, l.arr_utc_min), (9 * 60, 10 * 60));
    let dated = expand(&pats);
    assert_eq!(dated.len(), 30);
    assert_eq!(dated[0].dep_utc, i64::from(d(2024, 6, 1)) * 1440 + 540);
    assert_eq!(dated[0].dep_local_date, d(2024, 6, 1));
}

#[test]
fn utc_mode_times_are_utc_and_local_date_uses_the_variation() {
    // 23:30Z at +0100 is 00:30 local the next day.
    let f = parse_ok(&[
        carrier("U"),
        leg(&[(37, "AAA23302330+0100"), (55, "BBB01000100+0200")]),
    ]);
    let (pats, _) = patterns(&f);
    let l = &pats[0].legs[0];
    assert_eq!((l.dep_utc_min, l.arr_utc_min), (23 * 60 + 30, 1440 + 60));
    let dated = expand(&pats);
    assert_eq!(dated[0].dep_local_date, d(2024, 6, 2));
}

#[test]
fn blank_date_variation_on_an_overnight_leg_arrives_the_next_day() {
    let f = parse_ok(&[
        carrier("L"),
        leg(&[(37, "CDG19451945+0200"), (55, "RUN08400840+0400")]),
    ]);
    let (pats, _) = patterns(&f);
    let l = &pats[0].legs[0];
    assert_eq!(l.dep_utc_min, 17 * 60 + 45);
    assert_eq!(l.arr_utc_min, 1440 + 4 * 60 + 40);
}

#[test]
fn explicit_date_variations_are_used_as_written() {
    // Departs the day before the base date (A), arrives two days after.
    let f = parse_ok(&[carrier("U"), leg(&[(193, "A2")])]);
    let (pats, _) = patterns(&f);
    let l = &pats[0].legs[0];
    assert_eq!(
        (l.dep_utc_min, l.arr_utc_min),
        (-1440 + 600, 2 * 1440 + 720)
    );
}

#[test]
fn through_flight_legs_join_and_later_legs_follow_the_previous_arrival() {
    // Leg 2 departs BBB at 01:00 local, i.e. after leg 1's 23:00 arrival: next day.
    let f = parse_ok(&[
        carrier("L"),
        leg(&[(37, "AAA20002000+0100"), (55, "BBB23002300+0200")]),
        leg(&[
            (12, "02"),
            (37, "BBB01000100+0200"),
            (55, "CCC03000300+0200"),
        ]),
    ]);
    let (pats, stats) = patterns(&f);
    assert_eq!((pats.len(), stats.legs_not_joined), (1, 0));
    let p = &pats[0];
    assert_eq!(p.legs.len(), 2);
    assert_eq!(p.legs[1].dep_utc_min, 1440 - 60);
    assert_eq!(p.legs[1].arr_utc_min, 1440 + 60);
    assert_eq!(stats.dated_legs, 60);
    let dated = expand(&pats);
    let leg2 = dated.iter().find(|l| l.leg_seq == 2).unwrap();
    assert_eq!(leg2.dep_local_date, d(2024, 6, 2)); // flight date 1 June
}

#[test]
fn legs_that_do_not_join_become_separate_flights_and_are_counted() {
    let f = parse_ok(&[
        carrier("L"),
        leg(&[]),
        leg(&[
            (12, "02"),
            (37, "CCC13001300+0200"),
            (55, "AAA15001500+0100"),
        ]),
    ]);
    let (pats, stats) = patterns(&f);
    assert_eq!((pats.len(), stats.legs_not_joined), (2, 1));
    assert!(pats
        .iter()
        .all(|p| p.legs.len() == 1 && p.dates.len() == 30));
}

#[test]
fn explicit_departure_before_the_previous_arrival_does_not_join() {
    let f = parse_ok(&[
        carrier("L"),
        leg(&[]),
        leg(&[
            (12, "02"),
            (37, "BBB11001100+0200"),
            (55, "CCC15001500+0200"),
            (193, "00"),
        ]),
    ]);
    let (pats, stats) = patterns(&f);
    assert_eq!((pats.len(), stats.legs_not_joined), (2, 1));
}

#[test]
fn legs_join_only_on_dates_both_operate() {
    // Leg 1 daily, leg 2 only on Mondays: Mondays are two-leg flights, other days one leg.
    let f = parse_ok(&[
        carrier("L"),
        leg(&[]),
        leg(&[
            (12, "02"),
            (29, "1      "),
            (37, "BBB13001300+0200"),
            (55, "CCC15001500+0200"),
        ]),
    ]);
    let (pats, stats) = patterns(&f);
    assert_eq!(stats.legs_not_joined, 0);
    let mut shapes: Vec<(usize, usize)> =
        pats.iter().map(|p| (p.legs.len(), p.dates.len())).collect();
    shapes.sort();
    assert_eq!(shapes, vec![(1, 26), (2, 4)]);
    assert_eq!(stats.dated_legs, 26 + 8);
}

#[test]
fn suffixed_flights_are_separate_from_unsuffixed() {
    let f = parse_ok(&[
        carrier("L"),
        leg(&[]),
        leg(&[(2, "A"), (37, "BBB13001300+0200"), (55, "AAA15001500+0100")]),
    ]);
    let (pats, stats) = patterns(&f);
    assert_eq!((pats.len(), f.conflicts, stats.legs_not_joined), (2, 0, 0));
    let suffixes: Vec<Option<u8>> = pats.iter().map(|p| p.suffix).collect();
    assert!(suffixes.contains(&None) && suffixes.contains(&Some(b'A')));
}

#[test]
fn expand_is_sorted_by_departure() {
    let f = parse_ok(&[
        carrier("L"),
        leg(&[(6, " 200"), (37, "AAA08001000+0100")]),
        leg(&[(6, " 100"), (37, "AAA09001000+0100")]),
    ]);
    let dated = expand(&patterns(&f).0);
    assert!(dated.windows(2).all(|w| w[0].dep_utc <= w[1].dep_utc));
    assert_eq!(dated[0].flight_number, 200);
}
