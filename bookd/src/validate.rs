//! Request bodies: parsed by hand from JSON so every error names the field at fault.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{ApiError, Money};
use crate::offers::{PaxCounts, ResolvedOffer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaxType {
    Adult,
    Child,
    Infant,
}

impl PaxType {
    pub fn as_str(&self) -> &'static str {
        match self {
            PaxType::Adult => "adult",
            PaxType::Child => "child",
            PaxType::Infant => "infant",
        }
    }
    pub fn parse(s: &str) -> Option<PaxType> {
        match s {
            "adult" => Some(PaxType::Adult),
            "child" => Some(PaxType::Child),
            "infant" => Some(PaxType::Infant),
            _ => None,
        }
    }
}

/// Personal data: encrypted at rest, never logged (no `Debug` output of the fields).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Passenger {
    #[serde(rename = "type")]
    pub ptype: PaxType,
    pub given_name: String,
    pub family_name: String,
    pub born_on: String,
}

impl std::fmt::Debug for Passenger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Passenger({}, ..)", self.ptype.as_str())
    }
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    pub email: String,
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Contact(..)")
    }
}

#[derive(Debug, Clone)]
pub struct BookingInput {
    pub offer_id: String,
    pub passengers: Vec<Passenger>,
    pub contact: Contact,
}

#[derive(Debug, Clone)]
pub enum OrderSource {
    Hold(String),
    Offer(BookingInput),
}

#[derive(Clone)]
pub struct OrderInput {
    pub source: OrderSource,
    pub token: String,
    pub expected_total: Option<(i64, String)>,
}

/// The largest party an offer can carry: 9 seated (adults and children) and an infant on
/// each adult's lap.
pub const MAX_PASSENGERS: usize = 18;

fn obj(body: &Value) -> Result<&serde_json::Map<String, Value>, ApiError> {
    body.as_object()
        .ok_or_else(|| ApiError::bad("body", "the body must be a JSON object"))
}

fn string_field<'a>(
    map: &'a serde_json::Map<String, Value>,
    name: &str,
    path: &str,
    max: usize,
) -> Result<&'a str, ApiError> {
    match map.get(name) {
        None | Some(Value::Null) => Err(ApiError::missing(path)),
        Some(Value::String(s)) => {
            if s.is_empty() {
                Err(ApiError::bad(path, "must not be empty"))
            } else if s.chars().count() > max {
                Err(ApiError::bad(path, format!("at most {max} characters")))
            } else {
                Ok(s)
            }
        }
        Some(_) => Err(ApiError::bad(path, "must be a string")),
    }
}

/// Names: 1-64 characters, letters, spaces, apostrophes and hyphens, with a letter.
pub fn check_name(s: &str, path: &str) -> Result<(), ApiError> {
    let n = s.chars().count();
    if n == 0 || n > 64 {
        return Err(ApiError::bad(path, "must have 1-64 characters"));
    }
    if !s
        .chars()
        .all(|c| c.is_alphabetic() || c == ' ' || c == '\'' || c == '-' || c == '\u{2019}')
    {
        return Err(ApiError::bad(
            path,
            "only letters, spaces, apostrophes and hyphens are allowed",
        ));
    }
    if !s.chars().any(char::is_alphabetic) || s.starts_with(' ') || s.ends_with(' ') {
        return Err(ApiError::bad(
            path,
            "must contain a letter and no leading or trailing space",
        ));
    }
    Ok(())
}

pub fn check_email(s: &str, path: &str) -> Result<(), ApiError> {
    let bad = || ApiError::bad(path, "not a valid email address");
    if s.len() > 254 {
        return Err(bad());
    }
    let (local, domain) = s.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&*+/=?^_`{|}~.-".contains(c))
    {
        return Err(bad());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2
        || labels.iter().any(|l| {
            l.is_empty()
                || l.len() > 63
                || l.starts_with('-')
                || l.ends_with('-')
                || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        || labels
            .last()
            .is_some_and(|t| t.len() < 2 || !t.chars().all(|c| c.is_ascii_alphabetic()))
    {
        return Err(bad());
    }
    Ok(())
}

/// Days since the epoch of a strict `YYYY-MM-DD` real date (digits only, years 0001-9999).
pub fn parse_date(s: &str) -> Option<i32> {
    format::date::parse_iso(s)
}

/// Full years between two dates (days since the epoch).
pub fn age_years(born: i32, on: i32) -> i32 {
    let (by, bm, bd) = format::date::civil_from_days(born);
    let (ty, tm, td) = format::date::civil_from_days(on);
    let mut age = ty - by;
    if (tm, td) < (bm, bd) {
        age -= 1;
    }
    age
}

fn parse_passengers(map: &serde_json::Map<String, Value>) -> Result<Vec<Passenger>, ApiError> {
    let list = match map.get("passengers") {
        None | Some(Value::Null) => return Err(ApiError::missing("passengers")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::bad("passengers", "must be an array")),
    };
    if list.is_empty() || list.len() > MAX_PASSENGERS {
        return Err(ApiError::bad(
            "passengers",
            format!("1-{MAX_PASSENGERS} passengers"),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, p) in list.iter().enumerate() {
        let base = format!("passengers[{i}]");
        let m = p
            .as_object()
            .ok_or_else(|| ApiError::bad(&base, "must be an object"))?;
        let tpath = format!("{base}.type");
        let t = string_field(m, "type", &tpath, 16)?;
        let ptype = PaxType::parse(t)
            .ok_or_else(|| ApiError::bad(&tpath, "must be adult, child or infant"))?;
        let gpath = format!("{base}.given_name");
        let given = string_field(m, "given_name", &gpath, 256)?;
        check_name(given, &gpath)?;
        let fpath = format!("{base}.family_name");
        let family = string_field(m, "family_name", &fpath, 256)?;
        check_name(family, &fpath)?;
        let bpath = format!("{base}.born_on");
        let born = string_field(m, "born_on", &bpath, 32)?;
        if parse_date(born).is_none() {
            return Err(ApiError::bad(&bpath, "must be a real date YYYY-MM-DD"));
        }
        out.push(Passenger {
            ptype,
            given_name: given.to_string(),
            family_name: family.to_string(),
            born_on: born.to_string(),
        });
    }
    Ok(out)
}

fn parse_contact(map: &serde_json::Map<String, Value>) -> Result<Contact, ApiError> {
    let c = match map.get("contact") {
        None | Some(Value::Null) => return Err(ApiError::missing("contact")),
        Some(Value::Object(c)) => c,
        Some(_) => return Err(ApiError::bad("contact", "must be an object")),
    };
    let email = string_field(c, "email", "contact.email", 254)?;
    check_email(email, "contact.email")?;
    Ok(Contact {
        email: email.to_string(),
    })
}

fn parse_offer_id(map: &serde_json::Map<String, Value>) -> Result<String, ApiError> {
    let id = string_field(map, "offer_id", "offer_id", 1024)?;
    if !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::bad("offer_id", "not a valid offer id"));
    }
    Ok(id.to_string())
}

pub fn hold_request(body: &Value) -> Result<BookingInput, ApiError> {
    let map = obj(body)?;
    Ok(BookingInput {
        offer_id: parse_offer_id(map)?,
        passengers: parse_passengers(map)?,
        contact: parse_contact(map)?,
    })
}

pub fn order_request(body: &Value) -> Result<OrderInput, ApiError> {
    let map = obj(body)?;
    let source = match map.get("hold_id") {
        Some(Value::Null) | None => {
            if map.get("offer_id").is_none_or(Value::is_null) {
                return Err(ApiError::missing("hold_id").with_parameter("hold_id"));
            }
            OrderSource::Offer(BookingInput {
                offer_id: parse_offer_id(map)?,
                passengers: parse_passengers(map)?,
                contact: parse_contact(map)?,
            })
        }
        Some(_) => {
            let h = string_field(map, "hold_id", "hold_id", 64)?;
            if !h.starts_with("hld_") || !h[4..].chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(ApiError::bad("hold_id", "not a hold id"));
            }
            if map.get("offer_id").is_some_and(|v| !v.is_null()) {
                return Err(ApiError::bad(
                    "offer_id",
                    "give either hold_id or offer_id, not both",
                ));
            }
            OrderSource::Hold(h.to_string())
        }
    };
    let pay = match map.get("payment") {
        None | Some(Value::Null) => return Err(ApiError::missing("payment")),
        Some(Value::Object(p)) => p,
        Some(_) => return Err(ApiError::bad("payment", "must be an object")),
    };
    let ptype = string_field(pay, "type", "payment.type", 16)?;
    if ptype != "card" {
        return Err(ApiError::bad("payment.type", "only `card` is supported"));
    }
    let token = string_field(pay, "token", "payment.token", 128)?;
    if !token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::bad("payment.token", "not a card token"));
    }
    let expected_total = match map.get("expected_total") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            let cur = string_field(m, "currency", "expected_total.currency", 3)?;
            if cur.len() != 3 || !cur.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(ApiError::bad(
                    "expected_total.currency",
                    "an ISO 4217 code such as EUR",
                ));
            }
            let amount = match m.get("amount") {
                Some(Value::String(s)) if s.len() <= 20 => s.as_str(),
                None | Some(Value::Null) => return Err(ApiError::missing("expected_total.amount")),
                _ => {
                    return Err(ApiError::bad(
                        "expected_total.amount",
                        "a decimal string such as \"123.40\"",
                    ))
                }
            };
            let minor = Money::parse_minor(amount, cur).ok_or_else(|| {
                ApiError::bad(
                    "expected_total.amount",
                    "a decimal string such as \"123.40\"",
                )
            })?;
            Some((minor, cur.to_string()))
        }
        Some(_) => return Err(ApiError::bad("expected_total", "must be a money object")),
    };
    Ok(OrderInput {
        source,
        token: token.to_string(),
        expected_total,
    })
}

/// Passengers against the offer: counts per type, and ages at the first departure date
/// (adult 12+, child 2-11, infant under 2); nobody born after today.
pub fn check_against_offer(
    passengers: &[Passenger],
    offer: &ResolvedOffer,
    today: i32,
) -> Result<(), ApiError> {
    let mut counts = PaxCounts::default();
    for p in passengers {
        match p.ptype {
            PaxType::Adult => counts.adults += 1,
            PaxType::Child => counts.children += 1,
            PaxType::Infant => counts.infants += 1,
        }
    }
    if counts != offer.passengers {
        let o = offer.passengers;
        return Err(ApiError::bad(
            "passengers",
            format!(
                "the offer is for {} adult(s), {} child(ren), {} infant(s)",
                o.adults, o.children, o.infants
            ),
        ));
    }
    // Adult or child by the age when the journey starts; a lap infant must still be under
    // 2 on its last flight (one who turns 2 on the way needs a seat: a child).
    let dates: Vec<i32> = offer
        .legs
        .iter()
        .filter_map(|l| parse_date(&l.date))
        .collect();
    let travel = dates.iter().copied().min().unwrap_or(today);
    let last = dates.iter().copied().max().unwrap_or(travel);
    for (i, p) in passengers.iter().enumerate() {
        let path = format!("passengers[{i}].born_on");
        let born = parse_date(&p.born_on).ok_or_else(|| ApiError::bad(&path, "not a date"))?;
        if born > today {
            return Err(ApiError::bad(&path, "is in the future"));
        }
        let age = age_years(born, travel);
        let age_last = age_years(born, last);
        if p.ptype == PaxType::Infant && age < 2 && age_last >= 2 {
            return Err(ApiError::bad(
                &path,
                "an infant who turns 2 before the last flight needs a seat: book a child",
            ));
        }
        let ok = match p.ptype {
            PaxType::Adult => age >= 12,
            PaxType::Child => age < 12 && age_last >= 2,
            PaxType::Infant => age < 2,
        };
        if !ok {
            return Err(ApiError::bad(
                &path,
                format!(
                    "a passenger aged {age} at travel is not a{} {} (adult 12+, child 2-11, infant under 2)",
                    if p.ptype == PaxType::Adult || p.ptype == PaxType::Infant { "n" } else { "" },
                    p.ptype.as_str()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_emails() {
        assert!(check_name("Anne-Marie O'Neil", "n").is_ok());
        assert!(check_name("Zoë", "n").is_ok());
        assert!(check_name("Robert'); DROP TABLE orders;--", "n").is_err());
        assert!(check_name("", "n").is_err());
        assert!(check_name(&"a".repeat(65), "n").is_err());
        assert!(check_email("a.b+c@example.com", "e").is_ok());
        assert!(check_email("a@b", "e").is_err());
        assert!(check_email("a b@example.com", "e").is_err());
        assert!(check_email("x'@example.com; --", "e").is_err());
    }

    /// Regression: the list was capped at 9, so the largest party searchd offers (9
    /// adults with 9 infants) could never be held.
    #[test]
    fn a_full_party_with_lap_infants_fits() {
        let body = |adults: usize, infants: usize| {
            let mut list = Vec::new();
            for i in 0..adults + infants {
                let (t, born) = if i < adults {
                    ("adult", "1980-01-01")
                } else {
                    ("infant", "2029-06-01")
                };
                list.push(serde_json::json!({
                    "type": t, "given_name": "Ada", "family_name": "Lovelace", "born_on": born,
                }));
            }
            serde_json::json!({
                "offer_id": "x", "passengers": list, "contact": {"email": "a@example.com"},
            })
        };
        assert!(hold_request(&body(9, 9)).is_ok());
        let e = hold_request(&body(9, 10)).expect_err("19 passengers");
        assert_eq!(e.parameter.as_deref(), Some("passengers"));
    }

    /// Regression: ages were only checked on the first flight's date, so an infant who
    /// turns 2 before the return flight was booked on a lap on it (an airline needs a seat
    /// for them there), and could not be booked as a child either.
    #[test]
    fn an_infant_turning_2_before_the_return_flight_needs_a_seat() {
        let leg = |date: &str, origin: &str, destination: &str| crate::offers::LegRef {
            carrier: "XX".into(),
            flight_number: 100,
            date: date.into(),
            origin: origin.into(),
            destination: destination.into(),
            booking_class: "Y".into(),
        };
        let price = crate::offers::Price {
            amount_minor: 20000,
            currency: "EUR".into(),
        };
        let offer = |children: u8, infants: u8| ResolvedOffer {
            offer_id: "x".into(),
            legs: vec![
                leg("2030-01-10", "AAA", "BBB"),
                leg("2030-01-20", "BBB", "AAA"),
            ],
            passengers: PaxCounts {
                adults: 1,
                children,
                infants,
            },
            quoted: price.clone(),
            current: price.clone(),
            refundable: true,
            departs_ms: 0,
        };
        let pax = |ptype: PaxType, born_on: &str| Passenger {
            ptype,
            given_name: "Ada".into(),
            family_name: "Lovelace".into(),
            born_on: born_on.into(),
        };
        let today = parse_date("2030-01-01").expect("date");
        let adult = pax(PaxType::Adult, "1990-01-01");
        // 1 on the way out, 2 on the way back.
        let turning_2 = "2028-01-15";
        let e = check_against_offer(
            &[adult.clone(), pax(PaxType::Infant, turning_2)],
            &offer(0, 1),
            today,
        )
        .expect_err("no lap on the return flight");
        assert_eq!(e.parameter.as_deref(), Some("passengers[1].born_on"));
        assert!(check_against_offer(
            &[adult.clone(), pax(PaxType::Child, turning_2)],
            &offer(1, 0),
            today
        )
        .is_ok());
        // Under 2 on both flights: an infant, not a child.
        let baby = "2028-06-01";
        assert!(check_against_offer(
            &[adult.clone(), pax(PaxType::Infant, baby)],
            &offer(0, 1),
            today
        )
        .is_ok());
        assert!(
            check_against_offer(&[adult, pax(PaxType::Child, baby)], &offer(1, 0), today).is_err()
        );
    }

    #[test]
    fn dates_and_ages() {
        assert!(parse_date("2024-02-29").is_some());
        assert!(parse_date("2023-02-29").is_none());
        assert!(parse_date("2023-2-1").is_none());
        let b = parse_date("2000-06-15").expect("date");
        assert_eq!(age_years(b, parse_date("2012-06-14").expect("d")), 11);
        assert_eq!(age_years(b, parse_date("2012-06-15").expect("d")), 12);
    }

    /// Regression (fuzzing): the parts were read with `str::parse`, which takes a sign, so
    /// `born_on` `+163-10-01` (year 163), `-001-01-01` (year -1) and `2000-+1-+5` were
    /// accepted as real dates.
    #[test]
    fn a_date_with_a_sign_is_not_a_date() {
        for s in [
            "+163-10-01",
            "-001-01-01",
            "2000-+1-+5",
            "2000-01-+5",
            "0000-01-01",
        ] {
            assert_eq!(parse_date(s), None, "{s}");
        }
        let body = serde_json::json!({
            "offer_id": "x",
            "passengers": [{"type": "adult", "given_name": "Ada", "family_name": "Lovelace",
                            "born_on": "+163-10-01"}],
            "contact": {"email": "a@example.com"},
        });
        let e = hold_request(&body).expect_err("signed year");
        assert_eq!(e.parameter.as_deref(), Some("passengers[0].born_on"));
    }
}
