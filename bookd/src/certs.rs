//! The cluster's certificates (`bookd certs init`, `bookd certs issue`).
//!
//! A cluster directory `D` holds the cluster CA (`D/ca.crt`, `D/ca.key`) and one certificate
//! per node (`D/NAME.crt`, `D/NAME.key`), signed by the CA; bookd's own is named `bookd`.
//! Keys are ECDSA P-256 in PKCS#8 PEM, written with mode 0600; certificates are PEM.
//!
//! - `init` creates the CA and bookd's certificate; it refuses to touch a directory that
//!   already has a CA (a new CA would lock every node out).
//! - `issue` signs a new certificate for a node with the existing CA, replacing the node's
//!   previous one if any (that is how a node's certificate is rotated). Each node certificate
//!   names the node as its common name and DNS subject alternative name, and allows both
//!   TLS client and server authentication.
//!
//! Files are written to a temporary name and renamed into place, so a crash never leaves a
//! half-written key or certificate.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// File names in the cluster directory.
pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
/// bookd's own node name.
pub const BOOKD_NAME: &str = "bookd";
/// Common name of every cluster CA. Certificates are chained by signature, so two clusters'
/// CAs with the same name still refuse each other's nodes.
const CA_COMMON_NAME: &str = "flight appliance cluster CA";
const ORGANIZATION: &str = "flight appliance";
/// Validity: the CA 20 years, node certificates 10 (re-issue to rotate), both starting a day
/// early to tolerate clock skew.
const CA_YEARS: i32 = 20;
const NODE_YEARS: i32 = 10;
/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("invalid node name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("{path}: a cluster CA already exists there; refusing to replace it (every node certificate depends on it)")]
    CaExists { path: PathBuf },
    #[error("{path}: missing (run `bookd certs init --cluster-dir {dir}` first)")]
    CaMissing { path: PathBuf, dir: String },
    #[error("{path}: missing (run `bookd certs issue --cluster-dir {dir} --name {name}`)")]
    NodeMissing {
        path: PathBuf,
        dir: String,
        name: String,
    },
    #[error("{path}: {op} failed: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CertsError + 'a {
    move |cause| CertsError::Io {
        op,
        path: path.to_path_buf(),
        cause,
    }
}

fn gen_err(e: rcgen::Error) -> CertsError {
    CertsError::Generate(e.to_string())
}

/// What `init` or `issue` wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub files: Vec<PathBuf>,
}

/// Node names are 1 to 64 characters of `[a-z0-9-]`, not starting or ending with `-`
/// (they are DNS names in the certificates and file names in the cluster directory).
pub fn validate_name(name: &str) -> Result<(), CertsError> {
    let bad = |why| {
        Err(CertsError::InvalidName {
            name: name.chars().take(80).collect(),
            why,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("only a-z, 0-9 and - are allowed");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("must not start or end with -");
    }
    if name == "ca" {
        return bad("\"ca\" is the cluster CA's own file name");
    }
    Ok(())
}

/// `D/NAME.crt` and `D/NAME.key`.
pub fn node_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

fn today() -> (i32, u8, u8) {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i32)
        .unwrap_or(0);
    // A day early: tolerate clocks a little behind.
    let (y, m, d) = format::date::civil_from_days(days - 1);
    (y, m as u8, d as u8)
}

fn set_validity(p: &mut CertificateParams, years: i32) {
    let (y, m, d) = today();
    // 28th at most, so the same day exists in the end year.
    let d = d.min(28);
    p.not_before = rcgen::date_time_ymd(y, m, d);
    p.not_after = rcgen::date_time_ymd(y + years, m, d);
}

/// The CA's parameters. Its name and key usages are fixed, so `issue` rebuilds the issuer
/// from them and the CA key without parsing `ca.crt` (and then checks the chain).
fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut p, CA_YEARS);
    p
}

fn node_params(name: &str) -> Result<CertificateParams, CertsError> {
    let mut p = CertificateParams::new(vec![name.to_string()]).map_err(gen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    set_validity(&mut p, NODE_YEARS);
    Ok(p)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertsError> {
    write_via_tmp(path, bytes, mode, false)
}

/// As [`write_atomic`], but fails with [`CertsError::CaExists`] when `path` exists, also
/// when another process creates it meanwhile (the file is linked into place, never
/// renamed over).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertsError> {
    write_via_tmp(path, bytes, mode, true)
}

fn write_via_tmp(path: &Path, bytes: &[u8], mode: u32, exclusive: bool) -> Result<(), CertsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    let res = f
        .write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io("write", &tmp));
    drop(f);
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if exclusive {
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        return match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(CertsError::CaExists {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(io("link", path)(e)),
        };
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io("rename", path)(e));
    }
    Ok(())
}

/// Creates the directory (mode 0700) when it does not exist.
fn ensure_dir(dir: &Path) -> Result<(), CertsError> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::metadata(dir) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(CertsError::Invalid {
            path: dir.to_path_buf(),
            why: "is not a directory".into(),
        }),
        Err(_) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create directory", dir)),
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, CertsError> {
    let md = fs::metadata(path).map_err(io("stat", path))?;
    if md.len() > MAX_PEM_BYTES {
        return Err(CertsError::Invalid {
            path: path.to_path_buf(),
            why: format!("{} bytes is too large for a PEM file", md.len()),
        });
    }
    fs::read(path).map_err(io("read", path))
}

/// Makes the cluster CA (`D/ca.crt`, `D/ca.key`) and bookd's certificate (`D/bookd.crt`,
/// `D/bookd.key`). Refuses when `D/ca.crt` or `D/ca.key` exists.
pub fn init(dir: &Path) -> Result<Written, CertsError> {
    ensure_dir(dir)?;
    let ca_crt = dir.join(CA_CERT_FILE);
    let ca_key = dir.join(CA_KEY_FILE);
    for p in [&ca_crt, &ca_key] {
        if fs::symlink_metadata(p).is_ok() {
            return Err(CertsError::CaExists { path: p.clone() });
        }
    }
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = ca_params().self_signed(&key).map_err(gen_err)?;
    // The key first: a CA certificate without its key would block a retry less obviously.
    // Both are created exclusively: of two `init` at once, one makes the CA and the other
    // is refused (a rename would let the second replace the first's CA, or mix the two).
    write_new(&ca_key, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&ca_crt, cert.pem().as_bytes(), 0o644)?;
    let mut files = vec![ca_crt, ca_key];
    files.extend(issue(dir, BOOKD_NAME)?.files);
    Ok(Written { files })
}

/// Issues (or re-issues) the certificate of node `name`, signed by the cluster CA in `dir`.
pub fn issue(dir: &Path, name: &str) -> Result<Written, CertsError> {
    validate_name(name)?;
    let ca_crt = dir.join(CA_CERT_FILE);
    let ca_key_path = dir.join(CA_KEY_FILE);
    for p in [&ca_crt, &ca_key_path] {
        if fs::metadata(p).is_err() {
            return Err(CertsError::CaMissing {
                path: p.clone(),
                dir: dir.display().to_string(),
            });
        }
    }
    let key_pem =
        String::from_utf8(read_limited(&ca_key_path)?).map_err(|_| CertsError::Invalid {
            path: ca_key_path.clone(),
            why: "not a PEM file".into(),
        })?;
    let ca_key = KeyPair::from_pem(&key_pem).map_err(|e| CertsError::Invalid {
        path: ca_key_path.clone(),
        why: format!("not a usable private key: {e}"),
    })?;
    let ca_der = load_ca(dir)?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let node_key = KeyPair::generate().map_err(gen_err)?;
    let cert = node_params(name)?
        .signed_by(&node_key, &issuer)
        .map_err(gen_err)?;
    // The CA key and ca.crt must belong together: check the new certificate chains to it.
    check_chain(&ca_der, cert.der()).map_err(|why| CertsError::Invalid {
        path: ca_crt.clone(),
        why: format!("does not match {}: {why}", ca_key_path.display()),
    })?;
    let (crt_path, key_path) = node_paths(dir, name);
    write_atomic(&key_path, node_key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&crt_path, cert.pem().as_bytes(), 0o644)?;
    Ok(Written {
        files: vec![crt_path, key_path],
    })
}

/// Verifies that `leaf` chains to `ca` as a TLS client certificate would be checked.
fn check_chain(ca: &CertificateDer<'static>, leaf: &CertificateDer<'static>) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| e.to_string())?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
    verifier
        .verify_client_cert(leaf, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The cluster CA certificate (`D/ca.crt`).
pub fn load_ca(dir: &Path) -> Result<CertificateDer<'static>, CertsError> {
    let path = dir.join(CA_CERT_FILE);
    if fs::metadata(&path).is_err() {
        return Err(CertsError::CaMissing {
            path,
            dir: dir.display().to_string(),
        });
    }
    let bytes = read_limited(&path)?;
    CertificateDer::from_pem_slice(&bytes).map_err(|e| CertsError::Invalid {
        path,
        why: format!("no PEM certificate: {e}"),
    })
}

/// A node's certificate chain and private key (`D/NAME.crt`, `D/NAME.key`).
pub fn load_identity(
    dir: &Path,
    name: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CertsError> {
    validate_name(name)?;
    let (crt, key) = node_paths(dir, name);
    for p in [&crt, &key] {
        if fs::metadata(p).is_err() {
            return Err(CertsError::NodeMissing {
                path: p.clone(),
                dir: dir.display().to_string(),
                name: name.to_string(),
            });
        }
    }
    let crt_bytes = read_limited(&crt)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&crt_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| CertsError::Invalid {
            path: crt.clone(),
            why: format!("unreadable PEM certificate: {e}"),
        })?;
    if chain.is_empty() {
        return Err(CertsError::Invalid {
            path: crt,
            why: "no certificate in the file".into(),
        });
    }
    let key_bytes = read_limited(&key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| CertsError::Invalid {
        path: key,
        why: format!("no PEM private key: {e}"),
    })?;
    Ok((chain, key_der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A certificate of the cluster CA that has expired is refused by the client verifier
    /// bookd uses (`quic::server_config` builds the same `WebPkiClientVerifier`).
    #[test]
    fn an_expired_node_certificate_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("c");
        init(&dir).expect("init");
        let key_pem = fs::read_to_string(dir.join(CA_KEY_FILE)).expect("ca key");
        let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&key_pem).expect("key"));
        let node_key = KeyPair::generate().expect("key");
        let mut p = node_params("n1").expect("params");
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let expired = p.signed_by(&node_key, &issuer).expect("signs");
        let ca = load_ca(&dir).expect("ca");
        let err = check_chain(&ca, expired.der()).expect_err("an expired certificate");
        assert!(err.to_lowercase().contains("expired"), "{err}");
        // Control: the same, valid today, is accepted.
        let valid = node_params("n1")
            .expect("params")
            .signed_by(&node_key, &issuer)
            .expect("signs");
        check_chain(&ca, valid.der()).expect("a valid certificate");
    }

    #[test]
    fn names_are_validated() {
        for ok in ["bookd", "search-1", "a", &"x".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Search",
            "a_b",
            "a.b",
            "../x",
            "-a",
            "a-",
            "ca",
            &"x".repeat(65),
            "é",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn init_issue_and_refusals() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("cluster");
        let w = init(&dir).expect("init");
        assert_eq!(w.files.len(), 4);
        for f in ["ca.key", "bookd.key"] {
            let mode = fs::metadata(dir.join(f)).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        assert!(matches!(init(&dir), Err(CertsError::CaExists { .. })));
        issue(&dir, "search-1").expect("issue");
        let ca = load_ca(&dir).expect("ca");
        let (chain, _key) = load_identity(&dir, "search-1").expect("identity");
        check_chain(&ca, &chain[0]).expect("chains to the CA");
        // Re-issue replaces.
        issue(&dir, "search-1").expect("re-issue");
        assert!(matches!(
            issue(&dir, "Bad_Name"),
            Err(CertsError::InvalidName { .. })
        ));
        // Another cluster's CA does not accept this node.
        let other = tmp.path().join("other");
        init(&other).expect("init other");
        let other_ca = load_ca(&other).expect("other ca");
        assert!(check_chain(&other_ca, &chain[0]).is_err());
        // Without a CA, issue names the missing file.
        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).expect("mkdir");
        assert!(matches!(
            issue(&empty, "n1"),
            Err(CertsError::CaMissing { .. })
        ));
        assert!(matches!(
            load_identity(&dir, "nobody"),
            Err(CertsError::NodeMissing { .. })
        ));
    }

    #[test]
    fn a_mismatched_ca_key_is_detected() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        init(&a).expect("a");
        init(&b).expect("b");
        fs::copy(b.join(CA_KEY_FILE), a.join(CA_KEY_FILE)).expect("copy");
        assert!(matches!(issue(&a, "n1"), Err(CertsError::Invalid { .. })));
    }
}
