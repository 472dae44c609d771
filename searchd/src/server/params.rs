//! Strict decoding of query strings and path segments: `application/x-www-form-urlencoded`
//! (`+` is a space, `%XX` a byte), and the result must be UTF-8. A bad escape or bytes that
//! are not UTF-8 are a 400 naming the parameter.

use crate::api::ApiError;

/// Most parameters accepted in one query string.
pub const MAX_PARAMS: usize = 64;

/// Decodes `a=1&b=x%20y` into pairs, in order. Empty pieces (`a=1&&b=2`) are skipped; a
/// piece without `=` is a parameter with an empty value.
pub fn decode_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for piece in query.split('&') {
        if piece.is_empty() {
            continue;
        }
        if out.len() == MAX_PARAMS {
            return Err(ApiError::new(
                400,
                "too_many_parameters",
                "Too many parameters",
                format!("at most {MAX_PARAMS} query parameters are accepted"),
            ));
        }
        let (raw_key, raw_value) = piece.split_once('=').unwrap_or((piece, ""));
        let key = decode_component(raw_key, true).map_err(|why| {
            // The key itself is undecodable: name it as sent.
            ApiError::bad_parameter(raw_key, format!("the parameter name {why}"))
        })?;
        let value = decode_component(raw_value, true)
            .map_err(|why| ApiError::bad_parameter(&key, format!("the value {why}")))?;
        out.push((key, value));
    }
    Ok(out)
}

/// Decodes one percent-encoded component; `plus_is_space` for query strings.
pub fn decode_component(s: &str, plus_is_space: bool) -> Result<String, String> {
    if !s.contains(['%', '+']) {
        return Ok(s.to_string());
    }
    let b = s.as_bytes();
    let mut bytes = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c))) {
                    (Some(h), Some(l)) => {
                        bytes.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        return Err(format!(
                            "has an invalid percent escape at byte {i} (expected %XX with two hex digits)"
                        ))
                    }
                }
            }
            b'+' if plus_is_space => {
                bytes.push(b' ');
                i += 1;
            }
            c => {
                bytes.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| "is not valid UTF-8 once percent-decoded".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn decodes_forms() {
        assert_eq!(
            decode_query("q=new+york&limit=5").expect("ok"),
            pairs(&[("q", "new york"), ("limit", "5")])
        );
        assert_eq!(
            decode_query("q=%C3%BCr%2B1&&flag").expect("ok"),
            pairs(&[("q", "ür+1"), ("flag", "")])
        );
        assert_eq!(decode_query("").expect("ok"), pairs(&[]));
    }

    #[test]
    fn names_the_parameter_at_fault() {
        let e = decode_query("limit=5&q=%zz").expect_err("bad escape");
        assert_eq!(e.parameter.as_deref(), Some("q"));
        assert_eq!(e.status, 400);
        let e = decode_query("q=%ff%fe").expect_err("not utf-8");
        assert_eq!(e.parameter.as_deref(), Some("q"));
        let e = decode_query("q%=1").expect_err("bad key");
        assert_eq!(e.parameter.as_deref(), Some("q%"));
        let e = decode_query("q=%4").expect_err("short escape");
        assert_eq!(e.parameter.as_deref(), Some("q"));
        let many = vec!["a=1"; MAX_PARAMS + 1].join("&");
        assert_eq!(
            decode_query(&many).expect_err("many").code,
            "too_many_parameters"
        );
    }
}
