//! API types shared by the engine and the HTTP server: the error object of the contract and
//! the money shape. Response bodies of each endpoint are defined next to the code that
//! builds them (`engine`, `places`) and serialized by the server inside the
//! `{"data": ..., "meta": {...}}` envelope.

use serde::Serialize;

/// A contract error: `{"code", "title", "detail", "source": {"parameter"}}` with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// The query parameter (or body field) at fault, if any.
    pub parameter: Option<String>,
}

impl ApiError {
    /// 400 for a bad query parameter; `detail` says what is wrong with it.
    pub fn bad_parameter(parameter: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            code: "invalid_parameter",
            title: "Invalid parameter",
            detail: detail.into(),
            parameter: Some(parameter.to_string()),
        }
    }

    pub fn missing_parameter(parameter: &str) -> Self {
        ApiError {
            status: 400,
            code: "missing_parameter",
            title: "Missing parameter",
            detail: format!("`{parameter}` is required"),
            parameter: Some(parameter.to_string()),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError {
            status: 404,
            code: "not_found",
            title: "Not found",
            detail: detail.into(),
            parameter: None,
        }
    }

    pub fn offer_expired(detail: impl Into<String>) -> Self {
        ApiError {
            status: 410,
            code: "offer_expired",
            title: "Offer expired",
            detail: detail.into(),
            parameter: None,
        }
    }

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
        }
    }

    /// The JSON error object (without the envelope).
    pub fn to_json(&self) -> serde_json::Value {
        let mut obj = serde_json::json!({
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
        });
        if let Some(p) = &self.parameter {
            obj["source"] = serde_json::json!({ "parameter": p });
        }
        obj
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

/// Money as the contract writes it: a decimal string and an ISO currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Money {
    pub amount: String,
    pub currency: String,
}

pub use format::model::currency_decimals;

impl Money {
    pub fn from_minor(minor: i64, currency: &[u8; 3]) -> Money {
        let d = currency_decimals(currency);
        let cur = String::from_utf8_lossy(currency).into_owned();
        if d == 0 {
            return Money {
                amount: minor.to_string(),
                currency: cur,
            };
        }
        let scale = 10i64.pow(d);
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        let amount = format!(
            "{sign}{}.{:0width$}",
            abs / scale as u64,
            abs % scale as u64,
            width = d as usize
        );
        Money {
            amount,
            currency: cur,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_renders_minor_units_by_currency() {
        assert_eq!(Money::from_minor(12340, b"USD").amount, "123.40");
        assert_eq!(Money::from_minor(5, b"EUR").amount, "0.05");
        assert_eq!(Money::from_minor(1200, b"JPY").amount, "1200");
        assert_eq!(Money::from_minor(1234, b"KWD").amount, "1.234");
        // The indexer parses CLF with 4 decimals; rendering must use the same table.
        assert_eq!(Money::from_minor(12345, b"CLF").amount, "1.2345");
    }

    #[test]
    fn error_json_names_the_parameter() {
        let e = ApiError::bad_parameter("adults", "must be 1-9");
        assert_eq!(e.to_json()["source"]["parameter"], "adults");
        assert_eq!(e.status, 400);
    }
}
