//! Response compression: a body is sent gzip-encoded when the client's `Accept-Encoding`
//! admits gzip and the body is large enough to gain from it (a 1-stop answer of 50
//! itineraries shrinks from ~50 KB to ~4 KB). Clients that do not ask get the same bytes as
//! before; deflate runs at its fastest level, since the answer's CPU is the search's budget.

use std::io::Write as _;

use flate2::write::GzEncoder;
use flate2::Compression;
use hyper::body::Bytes;
use hyper::header::{HeaderMap, ACCEPT_ENCODING};

/// Smallest body sent compressed: below it gzip's frame and the CPU buy little.
pub const GZIP_MIN_BYTES: u64 = 1024;
/// Largest body compressed on the runtime worker that serves the request; a larger one
/// (up to ~1 MB for 1,000 itineraries) is compressed on the blocking pool, so that it does
/// not hold the worker's other connections for milliseconds, when a work permit is free at
/// once (else it is sent unencoded).
pub const GZIP_INLINE_MAX_BYTES: u64 = 64 * 1024;
/// Longest `Accept-Encoding` value read (real ones are tens of bytes); a longer one is not
/// parsed and the answer is sent unencoded.
const MAX_ACCEPT_ENCODING_BYTES: usize = 1024;

/// Whether the request's `Accept-Encoding` fields admit gzip (RFC 9110 §12.5.3): `gzip`
/// (or its alias `x-gzip`) with a weight above zero, or else `*` with one. A weight that is
/// not a valid qvalue counts as zero: when in doubt, the identity encoding is sent, which
/// every client takes.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut any) = (None, None);
    let mut read = 0usize;
    for value in headers.get_all(ACCEPT_ENCODING) {
        read += value.len();
        if read > MAX_ACCEPT_ENCODING_BYTES {
            return false;
        }
        let Ok(value) = value.to_str() else {
            return false;
        };
        for item in value.split(',') {
            let mut fields = item.split(';');
            let coding = fields.next().unwrap_or("").trim();
            let mut admitted = true;
            for param in fields {
                let Some((name, v)) = param.split_once('=') else {
                    continue;
                };
                if name.trim().eq_ignore_ascii_case("q") {
                    admitted = qvalue_above_zero(v.trim());
                }
            }
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(admitted);
            } else if coding == "*" {
                any = Some(admitted);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, and above zero.
fn qvalue_above_zero(v: &str) -> bool {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let digits_ok = frac.len() <= 3 && frac.bytes().all(|b| b.is_ascii_digit());
    match int {
        "1" => digits_ok && frac.bytes().all(|b| b == b'0'),
        "0" => digits_ok && frac.bytes().any(|b| b != b'0'),
        _ => false,
    }
}

/// The gzip encoding of `chunks` joined; `None` if the encoder failed (then the body goes
/// unencoded).
pub fn gzip(chunks: &[Bytes]) -> Option<Vec<u8>> {
    let len: usize = chunks.iter().map(Bytes::len).sum();
    // JSON answers shrink 8-12 fold; a quarter is room enough that the buffer rarely grows.
    let mut enc = GzEncoder::new(Vec::with_capacity(len / 4 + 64), Compression::fast());
    for c in chunks {
        enc.write_all(c).ok()?;
    }
    let out = enc.finish().ok()?;
    debug_assert!(out.len() >= 18, "a gzip member has a header and a trailer");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;
    use std::io::Read as _;

    fn admits(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                ACCEPT_ENCODING,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{v}: {e}")),
            );
        }
        accepts_gzip(&h)
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        assert!(!admits(&[]));
        assert!(admits(&["gzip"]));
        assert!(admits(&["GZip"]));
        assert!(admits(&["x-gzip"]));
        assert!(admits(&["gzip, deflate, br"]));
        assert!(admits(&["br;q=1.0, gzip;q=0.8, *;q=0.1"]));
        assert!(admits(&["identity", "gzip;q=0.001"]));
        assert!(admits(&["*"]));
        assert!(admits(&["gzip ; Q=1"]));
        assert!(!admits(&["identity"]));
        assert!(!admits(&["br, deflate"]));
        assert!(!admits(&["gzip;q=0"]));
        assert!(!admits(&["gzip;q=0.000"]));
        assert!(!admits(&["*;q=0"]));
        // Named gzip beats the wildcard, either way.
        assert!(!admits(&["gzip;q=0, *"]));
        assert!(admits(&["*;q=0, gzip"]));
        // Not qvalues: counted as zero.
        assert!(!admits(&["gzip;q=2"]));
        assert!(!admits(&["gzip;q=0.5000"]));
        assert!(!admits(&["gzip;q=1.5"]));
        assert!(!admits(&["gzip;q=-1"]));
        assert!(!admits(&["gzip;q="]));
        // Too long to be read.
        assert!(!admits(&[&format!("gzip, {}", "x".repeat(2000))]));
    }

    #[test]
    fn gzip_round_trips_every_chunk_in_order() {
        let chunks = [
            Bytes::from_static(b"{\"data\":"),
            Bytes::from(vec![b'7'; 5000]),
            Bytes::from_static(b"}"),
        ];
        let z = gzip(&chunks).unwrap_or_default();
        assert!(z.len() < 200, "{} bytes", z.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("not gzip: {e}"));
        assert_eq!(out, chunks.concat());
    }
}
