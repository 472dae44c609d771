//! Contract shapes: the error object and money (mirrors `searchd::api`).

use serde::Serialize;
use serde_json::{json, Value};

/// A contract error: `{"code", "title", "detail", "source": {"parameter"}}` with a status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// The body field, query parameter or header at fault, if any.
    pub parameter: Option<String>,
    /// Extra machine-readable facts (e.g. the new price of `price_changed`), written as the
    /// error object's `meta` member.
    pub meta: Option<Value>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// The methods a `405`'s resource takes, for its `Allow` header (RFC 9110 15.5.6).
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(
        status: u16,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            title,
            detail: detail.into(),
            parameter: None,
            meta: None,
            retry_after: None,
            allow: None,
        }
    }

    pub fn with_parameter(mut self, p: impl Into<String>) -> Self {
        self.parameter = Some(p.into());
        self
    }

    pub fn with_meta(mut self, meta: Value) -> Self {
        self.meta = Some(meta);
        self
    }

    pub fn bad(parameter: &str, detail: impl Into<String>) -> Self {
        Self::new(400, "invalid_parameter", "Invalid parameter", detail).with_parameter(parameter)
    }

    pub fn missing(parameter: &str) -> Self {
        Self::new(
            400,
            "missing_parameter",
            "Missing parameter",
            format!("`{parameter}` is required"),
        )
        .with_parameter(parameter)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not_found", "Not found", detail)
    }

    pub fn offer_expired(detail: impl Into<String>) -> Self {
        Self::new(410, "offer_expired", "Offer expired", detail)
    }

    pub fn seats_unavailable(detail: impl Into<String>) -> Self {
        Self::new(409, "seats_unavailable", "Seats unavailable", detail)
    }

    pub fn price_changed(price: &Money) -> Self {
        Self::new(
            409,
            "price_changed",
            "Price changed",
            format!("the price is now {} {}", price.amount, price.currency),
        )
        .with_meta(json!({ "price": price }))
    }

    pub fn order_not_created(detail: impl Into<String>) -> Self {
        Self::new(502, "order_not_created", "Order not created", detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(500, "internal_error", "Internal error", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut e = Self::new(503, "service_unavailable", "Service unavailable", detail);
        e.retry_after = Some(1);
        e
    }

    /// The JSON error object (without the envelope).
    pub fn to_json(&self) -> Value {
        let mut obj = json!({
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
        });
        if let Some(p) = &self.parameter {
            obj["source"] = json!({ "parameter": p });
        }
        if let Some(m) = &self.meta {
            obj["meta"] = m.clone();
        }
        obj
    }

    /// The whole error body.
    pub fn body(&self, request_id: &str) -> Value {
        json!({ "errors": [self.to_json()], "meta": { "request_id": request_id } })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        tracing::warn!(error = ?e, "database error");
        // Connection, resource and shutdown classes are transient; others are bugs.
        let transient = e.as_db_error().is_none_or(|d| {
            let c = d.code().code();
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57")
                || c == "40001"
                || c == "40P01"
        });
        if transient {
            ApiError::unavailable("the booking database is unavailable; retry later")
        } else {
            ApiError::internal("the request failed inside bookd")
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::warn!(error = %e, "database pool error");
        ApiError::unavailable("the booking database is unavailable; retry later")
    }
}

/// Money as the contract writes it: a decimal string and an ISO currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Money {
    pub amount: String,
    pub currency: String,
}

/// Minor-unit digits of a currency (ISO 4217; 2 unless listed).
pub fn currency_decimals(currency: &str) -> u32 {
    match <[u8; 3]>::try_from(currency.as_bytes()) {
        Ok(code) => format::model::currency_decimals(&code),
        Err(_) => 2,
    }
}

impl Money {
    pub fn from_minor(minor: i64, currency: &str) -> Money {
        let d = currency_decimals(currency);
        if d == 0 {
            return Money {
                amount: minor.to_string(),
                currency: currency.to_string(),
            };
        }
        let scale = 10u64.pow(d);
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        Money {
            amount: format!(
                "{sign}{}.{:0width$}",
                abs / scale,
                abs % scale,
                width = d as usize
            ),
            currency: currency.to_string(),
        }
    }

    /// Parses `{"amount": "123.40", "currency": "USD"}` into minor units; `None` when the
    /// amount has more decimals than the currency or is not a decimal.
    pub fn parse_minor(amount: &str, currency: &str) -> Option<i64> {
        let d = currency_decimals(currency) as usize;
        let (int, frac) = match amount.split_once('.') {
            Some((i, f)) => (i, f),
            None => (amount, ""),
        };
        if int.is_empty()
            || int.len() > 12
            || !int.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > d
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (amount.contains('.') && frac.is_empty())
        {
            return None;
        }
        let mut v: i64 = int.parse().ok()?;
        for _ in 0..d {
            v = v.checked_mul(10)?;
        }
        let mut f: i64 = 0;
        for i in 0..d {
            let digit = frac
                .as_bytes()
                .get(i)
                .map(|b| i64::from(b - b'0'))
                .unwrap_or(0);
            f = f * 10 + digit;
        }
        v.checked_add(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips() {
        assert_eq!(Money::from_minor(12340, "USD").amount, "123.40");
        assert_eq!(Money::parse_minor("123.4", "USD"), Some(12340));
        assert_eq!(Money::parse_minor("123.40", "USD"), Some(12340));
        assert_eq!(Money::parse_minor("123", "JPY"), Some(123));
        assert_eq!(Money::parse_minor("1.234", "USD"), None);
        assert_eq!(Money::parse_minor("1.", "USD"), None);
        assert_eq!(Money::parse_minor("-1", "USD"), None);
        assert_eq!(Money::parse_minor("1'; drop", "USD"), None);
    }
}
