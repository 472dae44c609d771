//! The fares feed (one-way fares):
//! `carrier,origin,destination,fare_basis,booking_class,cabin,passenger_type,amount,currency,`
//! `first_travel_date,last_travel_date,days_of_week,advance_purchase_days,refundable,change_fee`.
//!
//! Rules:
//! - `carrier` 2-3 uppercase letters/digits; `origin`/`destination` 3-character codes, not
//!   equal; `fare_basis` 1-15 uppercase letters/digits; `booking_class` one letter A-Z.
//! - `cabin` exactly `economy|premium_economy|business|first`; `passenger_type` exactly
//!   `ADT|CHD|INF` (case matters, as in the contract).
//! - `amount` and `change_fee` are plain decimal strings in the currency's units: digits,
//!   optionally `.` and 1..=d digits where d is the currency's number of decimals
//!   ([`currency_decimals`]: 2 by default, 0 for JPY KRW etc., 3 for BHD IQD JOD KWD LYD OMR
//!   TND). Rejected: empty, a sign, an exponent, a bare `.` at either end (`5.`, `.5`), more
//!   decimals than the currency has (also `100.0` in JPY), amounts above 10^15 minor units.
//!   `change_fee` may be empty (no change allowed at a fee: `None`); it is in `currency`.
//!   `currency` is 3 uppercase letters.
//! - Travel dates are `YYYY-MM-DD` or empty (open); when both are given, first <= last.
//! - `days_of_week`, decided here: either the SSIM positional form, exactly 7 characters
//!   where position i (1-based) is the digit i or ` ` or `.` (`1.3.5..`, `12345  `), or a
//!   shorter strictly increasing list of distinct digits 1-7 (`135`, `67`). Both forms are
//!   unambiguous (`1234567` is both). At least one day must be allowed. An empty field means
//!   every day (like an empty travel date means open). Bit 0 of the result is Monday.
//! - `advance_purchase_days` a whole number 0..=999 (required); `refundable` exactly
//!   `true|false`.
//!
//! Duplicate fares are not checked: two rows with the same key simply compete on price.

use super::{
    drive, field, parse_carrier, parse_class, parse_code, parse_date, parse_uint, show, Parsed,
    RowCtx,
};
use crate::error::Result;
use csv::ByteRecord;

/// The header, column by column.
pub const HEADER: &[&str] = &[
    "carrier",
    "origin",
    "destination",
    "fare_basis",
    "booking_class",
    "cabin",
    "passenger_type",
    "amount",
    "currency",
    "first_travel_date",
    "last_travel_date",
    "days_of_week",
    "advance_purchase_days",
    "refundable",
    "change_fee",
];

const C_CARRIER: usize = 0;
const C_ORIGIN: usize = 1;
const C_DEST: usize = 2;
const C_BASIS: usize = 3;
const C_CLASS: usize = 4;
const C_CABIN: usize = 5;
const C_PTC: usize = 6;
const C_AMOUNT: usize = 7;
const C_CURRENCY: usize = 8;
const C_FIRST: usize = 9;
const C_LAST: usize = 10;
const C_DOW: usize = 11;
const C_ADVANCE: usize = 12;
const C_REFUNDABLE: usize = 13;
const C_CHANGE_FEE: usize = 14;

/// The largest advance purchase a fare may require.
pub const MAX_ADVANCE_PURCHASE_DAYS: u16 = 999;
/// The largest amount, in minor units, a fare may have (10^15).
pub const MAX_MINOR: i64 = 1_000_000_000_000_000;

/// A cabin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cabin {
    Economy,
    PremiumEconomy,
    Business,
    First,
}

impl Cabin {
    /// The contract's spelling: `economy|premium_economy|business|first`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cabin::Economy => "economy",
            Cabin::PremiumEconomy => "premium_economy",
            Cabin::Business => "business",
            Cabin::First => "first",
        }
    }

    /// Parses the contract's spelling (exact, lowercase).
    pub fn parse(s: &str) -> Option<Cabin> {
        match s {
            "economy" => Some(Cabin::Economy),
            "premium_economy" => Some(Cabin::PremiumEconomy),
            "business" => Some(Cabin::Business),
            "first" => Some(Cabin::First),
            _ => None,
        }
    }
}

/// A passenger type code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PassengerType {
    Adt,
    Chd,
    Inf,
}

impl PassengerType {
    /// `ADT|CHD|INF`.
    pub fn as_str(self) -> &'static str {
        match self {
            PassengerType::Adt => "ADT",
            PassengerType::Chd => "CHD",
            PassengerType::Inf => "INF",
        }
    }
}

/// An amount of money in the currency's minor units (cents, or yen, or fils).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    pub minor: i64,
    pub currency: [u8; 3],
}

impl Money {
    /// The currency code as text.
    pub fn currency_str(&self) -> &str {
        std::str::from_utf8(&self.currency).unwrap_or("???")
    }

    /// The amount as the contract's decimal string: `123.40` (EUR), `1500` (JPY),
    /// `1.250` (KWD); negative amounts get a leading `-`.
    pub fn amount_string(&self) -> String {
        let decimals = currency_decimals(&self.currency);
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        if decimals == 0 {
            return format!("{sign}{abs}");
        }
        let unit = 10u64.pow(decimals);
        format!(
            "{sign}{}.{:0width$}",
            abs / unit,
            abs % unit,
            width = decimals as usize
        )
    }

    /// Parses a non-negative decimal amount in `currency` (the feed's rules; see the
    /// module docs). The error is a message without position.
    pub fn parse(amount: &[u8], currency: [u8; 3]) -> std::result::Result<Money, String> {
        parse_minor(amount, currency_decimals(&currency) as u8)
            .map(|minor| Money { minor, currency })
    }
}

/// How many decimals (minor unit digits) an ISO 4217 currency has: 0 for BIF CLP DJF GNF
/// ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF, 3 for BHD IQD JOD KWD LYD OMR TND,
/// 4 for CLF UYW, 2 for every other code.
pub use format::model::currency_decimals;

fn parse_minor(s: &[u8], decimals: u8) -> std::result::Result<i64, String> {
    if s.is_empty() {
        return Err("empty; expected an amount".into());
    }
    if s[0] == b'-' {
        return Err(format!("`{}`: negative amounts are not allowed", show(s)));
    }
    if s.iter().any(|b| matches!(b, b'e' | b'E')) {
        return Err(format!("`{}`: exponents are not allowed", show(s)));
    }
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(p) => (&s[..p], Some(&s[p + 1..])),
        None => (s, None),
    };
    let digits = |x: &[u8]| !x.is_empty() && x.iter().all(u8::is_ascii_digit);
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(format!("`{}` is not a decimal amount like 123.40", show(s)));
    }
    let frac = frac.unwrap_or(&[]);
    if frac.len() > usize::from(decimals) {
        return Err(format!(
            "`{}` has {} decimals; the currency has {decimals}",
            show(s),
            frac.len()
        ));
    }
    let too_large = || format!("`{}` is too large", show(s));
    let mut v: i64 = 0;
    for &d in int {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(d - b'0')))
            .filter(|v| *v <= MAX_MINOR)
            .ok_or_else(too_large)?;
    }
    for i in 0..usize::from(decimals) {
        let d = frac.get(i).map_or(0, |d| i64::from(d - b'0'));
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(d))
            .ok_or_else(too_large)?;
    }
    if v > MAX_MINOR {
        return Err(too_large());
    }
    Ok(v)
}

/// Parses a `days_of_week` field into a mask with bit 0 = Monday (see the module docs);
/// `None` when it is malformed or allows no day.
pub fn parse_days_of_week(s: &[u8]) -> Option<u8> {
    if s.is_empty() {
        return Some(0x7f);
    }
    let mut mask = 0u8;
    if s.len() == 7 {
        for (i, &c) in s.iter().enumerate() {
            if c == b'1' + i as u8 {
                mask |= 1 << i;
            } else if c != b' ' && c != b'.' {
                return None;
            }
        }
    } else {
        let mut last = 0u8;
        for &c in s {
            if !(b'1'..=b'7').contains(&c) || c <= last {
                return None;
            }
            last = c;
            mask |= 1 << (c - b'1');
        }
    }
    (mask != 0).then_some(mask)
}

/// One fare.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FareRow {
    pub carrier: String,
    pub origin: [u8; 3],
    pub destination: [u8; 3],
    pub fare_basis: String,
    /// One ASCII letter A-Z.
    pub booking_class: u8,
    pub cabin: Cabin,
    pub passenger_type: PassengerType,
    pub amount: Money,
    /// Days since 1970-01-01; `None` = open.
    pub first_travel_date: Option<i32>,
    /// Days since 1970-01-01; `None` = open.
    pub last_travel_date: Option<i32>,
    /// Bit 0 = Monday ... bit 6 = Sunday; never 0.
    pub days_of_week: u8,
    pub advance_purchase_days: u16,
    pub refundable: bool,
    /// In the fare's currency; `None` when the field is empty.
    pub change_fee: Option<Money>,
}

/// Reads a fares feed (see the module docs for the rules).
pub fn read_fares(file_name: &str, bytes: &[u8], lenient: bool) -> Result<Parsed<FareRow>> {
    drive(file_name, bytes, lenient, HEADER, |ctx, rec, _| {
        parse_row(ctx, rec)
    })
}

fn parse_row(ctx: &RowCtx<'_>, rec: &ByteRecord) -> Result<FareRow> {
    let carrier = parse_carrier(ctx, rec, C_CARRIER)?;
    let origin = parse_code(ctx, rec, C_ORIGIN)?;
    let destination = parse_code(ctx, rec, C_DEST)?;
    if origin == destination {
        return Err(ctx.err(C_DEST, "equals the origin"));
    }
    let basis = field(rec, C_BASIS);
    if basis.is_empty()
        || basis.len() > 15
        || !basis
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(ctx.err(
            C_BASIS,
            format!(
                "`{}` is not a fare basis (1-15 uppercase letters or digits)",
                show(basis)
            ),
        ));
    }
    let booking_class = parse_class(ctx, rec, C_CLASS)?;
    let cabin = std::str::from_utf8(field(rec, C_CABIN))
        .ok()
        .and_then(Cabin::parse)
        .ok_or_else(|| {
            ctx.err(
                C_CABIN,
                format!(
                    "`{}` is not one of economy, premium_economy, business, first",
                    show(field(rec, C_CABIN))
                ),
            )
        })?;
    let passenger_type = match field(rec, C_PTC) {
        b"ADT" => PassengerType::Adt,
        b"CHD" => PassengerType::Chd,
        b"INF" => PassengerType::Inf,
        f => return Err(ctx.err(C_PTC, format!("`{}` is not one of ADT, CHD, INF", show(f)))),
    };
    // The currency first: the amount's decimals depend on it.
    let currency = match field(rec, C_CURRENCY) {
        [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => [*a, *b, *c],
        f => {
            return Err(ctx.err(
                C_CURRENCY,
                format!("`{}` is not a currency code (3 uppercase letters)", show(f)),
            ))
        }
    };
    let amount = Money::parse(field(rec, C_AMOUNT), currency).map_err(|m| ctx.err(C_AMOUNT, m))?;
    let date = |col: usize| -> Result<Option<i32>> {
        let f = field(rec, col);
        if f.is_empty() {
            return Ok(None);
        }
        parse_date(f).map(Some).ok_or_else(|| {
            ctx.err(
                col,
                format!("`{}` is not a valid date YYYY-MM-DD (or empty)", show(f)),
            )
        })
    };
    let first_travel_date = date(C_FIRST)?;
    let last_travel_date = date(C_LAST)?;
    if let (Some(a), Some(b)) = (first_travel_date, last_travel_date) {
        if a > b {
            return Err(ctx.err(C_LAST, "is before first_travel_date"));
        }
    }
    let days_of_week = parse_days_of_week(field(rec, C_DOW)).ok_or_else(|| {
        ctx.err(
            C_DOW,
            format!(
                "`{}` is not a days-of-week field like `1234567`, `1.3.5..` or `135` \
                 allowing at least one day",
                show(field(rec, C_DOW))
            ),
        )
    })?;
    let advance_purchase_days =
        parse_uint(ctx, rec, C_ADVANCE, 0, u32::from(MAX_ADVANCE_PURCHASE_DAYS))? as u16;
    let refundable = match field(rec, C_REFUNDABLE) {
        b"true" => true,
        b"false" => false,
        f => return Err(ctx.err(C_REFUNDABLE, format!("`{}` is not true or false", show(f)))),
    };
    let change_fee = match field(rec, C_CHANGE_FEE) {
        [] => None,
        f => Some(Money::parse(f, currency).map_err(|m| ctx.err(C_CHANGE_FEE, m))?),
    };
    Ok(FareRow {
        carrier,
        origin,
        destination,
        fare_basis: String::from_utf8_lossy(basis).into_owned(),
        booking_class,
        cabin,
        passenger_type,
        amount,
        first_travel_date,
        last_travel_date,
        days_of_week,
        advance_purchase_days,
        refundable,
        change_fee,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::feeds::days_from_civil;

    fn eur(s: &str) -> std::result::Result<i64, String> {
        Money::parse(s.as_bytes(), *b"EUR").map(|m| m.minor)
    }

    #[test]
    fn feeds_fares_money() {
        assert_eq!(eur("123.4"), Ok(12_340));
        assert_eq!(eur("123.40"), Ok(12_340));
        assert_eq!(eur("0"), Ok(0));
        assert_eq!(eur("007.05"), Ok(705));
        assert_eq!(eur("10000000000000"), Ok(1_000_000_000_000_000));
        for bad in [
            "",
            "-1",
            "+1",
            "1e3",
            "1E3",
            "12.345",
            "1.",
            ".5",
            "1.2.3",
            "1,00",
            " 1",
            "1 ",
            "abc",
            "10000000000000.01",
            "99999999999999999999999",
        ] {
            assert!(eur(bad).is_err(), "{bad:?}");
        }
        let jpy = |s: &str| Money::parse(s.as_bytes(), *b"JPY").map(|m| m.minor);
        assert_eq!(jpy("1500"), Ok(1500));
        assert!(jpy("1500.0").is_err());
        let kwd = |s: &str| Money::parse(s.as_bytes(), *b"KWD").map(|m| m.minor);
        assert_eq!(kwd("1.25"), Ok(1250));
        assert_eq!(kwd("1.250"), Ok(1250));
        assert!(kwd("1.2500").is_err());
        assert!(Money::parse(b"-0", *b"EUR").is_err());

        let m = |minor, c: &[u8; 3]| Money {
            minor,
            currency: *c,
        };
        assert_eq!(m(12_340, b"EUR").amount_string(), "123.40");
        assert_eq!(m(5, b"USD").amount_string(), "0.05");
        assert_eq!(m(1500, b"JPY").amount_string(), "1500");
        assert_eq!(m(1250, b"KWD").amount_string(), "1.250");
        assert_eq!(m(-705, b"EUR").amount_string(), "-7.05");
        assert_eq!(m(1, b"EUR").currency_str(), "EUR");
    }

    #[test]
    fn feeds_fares_days_of_week() {
        assert_eq!(parse_days_of_week(b"1234567"), Some(0x7f));
        assert_eq!(parse_days_of_week(b""), Some(0x7f));
        assert_eq!(parse_days_of_week(b"1.3.5.."), Some(0b0010101));
        assert_eq!(parse_days_of_week(b"     67"), Some(0b1100000));
        assert_eq!(parse_days_of_week(b"135"), Some(0b0010101));
        assert_eq!(parse_days_of_week(b"7"), Some(0b1000000));
        for bad in [
            &b"......."[..],
            b"       ",
            b"2134567",
            b"1 3",
            b"531",
            b"113",
            b"0",
            b"8",
            b"12345678",
            b"1-3",
            b"x",
        ] {
            assert_eq!(parse_days_of_week(bad), None, "{}", show(bad));
        }
    }

    const H: &str = "carrier,origin,destination,fare_basis,booking_class,cabin,passenger_type,amount,currency,first_travel_date,last_travel_date,days_of_week,advance_purchase_days,refundable,change_fee\n";
    const GOOD: [&str; 15] = [
        "XX",
        "RUN",
        "CDG",
        "YOW",
        "Y",
        "economy",
        "ADT",
        "850.00",
        "EUR",
        "2005-06-01",
        "2005-09-30",
        "1234567",
        "0",
        "true",
        "50",
    ];

    #[test]
    fn feeds_fares_good() {
        let body = format!(
            "{}\nXX,CDG,RUN,JLOWCHD,J,business,CHD,1200.5,EUR,,,1.3.5..,14,false,\n",
            GOOD.join(",")
        );
        let p = read_fares("fares.csv", format!("{H}{body}").as_bytes(), false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.rows.len(), 2);
        let f = &p.rows[0];
        assert_eq!(f.carrier, "XX");
        assert_eq!((&f.origin, &f.destination), (b"RUN", b"CDG"));
        assert_eq!(f.booking_class, b'Y');
        assert_eq!(f.cabin, Cabin::Economy);
        assert_eq!(f.passenger_type, PassengerType::Adt);
        assert_eq!(
            f.amount,
            Money {
                minor: 85_000,
                currency: *b"EUR"
            }
        );
        assert_eq!(f.first_travel_date, Some(days_from_civil(2005, 6, 1)));
        assert_eq!(f.last_travel_date, Some(days_from_civil(2005, 9, 30)));
        assert_eq!(f.days_of_week, 0x7f);
        assert!(f.refundable);
        assert_eq!(
            f.change_fee,
            Some(Money {
                minor: 5000,
                currency: *b"EUR"
            })
        );
        let g = &p.rows[1];
        assert_eq!(
            (g.cabin, g.passenger_type),
            (Cabin::Business, PassengerType::Chd)
        );
        assert_eq!(g.amount.minor, 120_050);
        assert_eq!((g.first_travel_date, g.last_travel_date), (None, None));
        assert_eq!(g.days_of_week, 0b10101);
        assert_eq!(g.advance_purchase_days, 14);
        assert_eq!(g.change_fee, None);
    }

    #[test]
    fn feeds_fares_bad_fields() {
        let cases: &[(usize, &str)] = &[
            (0, "X"),
            (0, ""),
            (0, "xx"),
            (1, "RU"),
            (2, "RUN"),
            (3, ""),
            (3, "YOW-1"),
            (3, "ABCDEFGHIJKLMNOP"),
            (3, "yow"),
            (4, "YY"),
            (4, "y"),
            (4, "1"),
            (5, "Economy"),
            (5, "premium"),
            (6, "adt"),
            (6, "ADULT"),
            (7, "-1"),
            (7, "1e2"),
            (7, "8.505"),
            (7, ""),
            (8, "eur"),
            (8, "EURO"),
            (9, "2005-02-30"),
            (9, "20050601"),
            (10, "2005-05-31"), // before the first travel date
            (11, "......."),
            (11, "8"),
            (11, "1 3"),
            (12, "-1"),
            (12, "1000"),
            (12, ""),
            (13, "yes"),
            (13, "TRUE"),
            (14, "1.234"),
            (14, "-5"),
        ];
        for &(col, value) in cases {
            let mut row = GOOD.map(str::to_string);
            row[col] = value.to_string();
            let text = format!("{H}{}\n{}\n", GOOD.join(","), row.join(","));
            match read_fares("fares.csv", text.as_bytes(), false) {
                Err(Error::Feed {
                    line,
                    field,
                    message,
                    ..
                }) => {
                    assert_eq!(
                        (line, field.as_str()),
                        (3, HEADER[col]),
                        "{value:?}: {message}"
                    )
                }
                other => panic!("{value:?}: {other:?}"),
            }
        }
        // The change fee's decimals follow the fare's currency.
        let mut row = GOOD.map(str::to_string);
        row[8] = "JPY".into();
        row[7] = "85000".into();
        row[14] = "50.5".into();
        let r = read_fares("f.csv", format!("{H}{}\n", row.join(",")).as_bytes(), false);
        assert!(matches!(r, Err(Error::Feed { field, .. }) if field == "change_fee"));
    }

    #[test]
    fn feeds_fares_lenient_and_header() {
        let text = format!(
            "{H}{}\nXX,RUN\n{}\n",
            GOOD.join(","),
            GOOD.join(",").replace("ADT", "XXX")
        );
        let p = read_fares("f.csv", text.as_bytes(), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.rows.len(), p.skipped.rows), (1, 2));
        assert!(p.skipped.first_errors[0].starts_with("f.csv:3: field `destination`"));
        assert!(p.skipped.first_errors[1].starts_with("f.csv:4: field `passenger_type`"));
        let short = H.replace(",change_fee", "");
        assert!(matches!(
            read_fares("f.csv", short.as_bytes(), true),
            Err(Error::FeedFile { .. })
        ));
    }
}
