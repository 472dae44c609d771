//! Test harness: builds snapshots, starts the real `searchd` binary, and talks HTTP/1.1 to
//! it with a minimal client over std TCP.
#![allow(dead_code)]

pub mod snapshot;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use snapshot::build_test_snapshot;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running `searchd` with its log lines collected.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `searchd --snapshot SNAP --listen 127.0.0.1:0 --admin-token ...` plus `extra`,
    /// and waits until it listens and `/readyz` answers 200.
    pub fn start(snapshot: &Path, extra: &[&str]) -> Server {
        Server::start_logging(snapshot, extra, "info")
    }

    /// [`Server::start`] with `SEARCHD_LOG` set to `log_filter` (which must keep the
    /// `listening` line, target `searchd::server` at info).
    pub fn start_logging(snapshot: &Path, extra: &[&str], log_filter: &str) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_searchd"));
        cmd.arg("--snapshot")
            .arg(snapshot)
            .args(["--listen", "127.0.0.1:0", "--admin-token", ADMIN_TOKEN])
            .args(extra)
            .env("SEARCHD_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start searchd");
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(addr) = listening_addr(&line) {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr);
                        }
                    }
                    logs.lock().expect("log lock").push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "searchd did not start listening; log:\n{}",
                    logs.lock().expect("log lock").join("\n")
                );
            }
        };
        let server = Server { child, addr, logs };
        server.wait_ready();
        server
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = try_request(self.addr, "GET", "/readyz", &[]) {
                if r.status == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "searchd never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, target: &str) -> Response {
        request(self.addr, "GET", target, &[])
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().expect("log lock").join("\n")
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let st = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM failed");
        self.wait_exit(Duration::from_secs(20))
            .expect("searchd exits after SIGTERM")
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The readiness document's `data`.
    pub fn ready(&self) -> serde_json::Value {
        let r = self.get("/readyz");
        assert_eq!(r.status, 200, "readyz: {}", r.text());
        r.json()["data"].clone()
    }

    /// Waits until `/readyz` reports `snapshot_id`.
    pub fn wait_for_snapshot(&self, snapshot_id: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.ready()["snapshot_id"] == snapshot_id {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["message"] != "listening" {
        return None;
    }
    v["addr"].as_str()?.parse().ok()
}

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// One request on a new connection (`Connection: close`).
pub fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    try_request(addr, method, target, headers).unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

pub fn try_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut c = Client::connect(addr)?;
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    h.push(("Connection", "close"));
    c.send(method, target, &h)
}

/// A keep-alive HTTP/1.1 connection.
pub struct Client {
    stream: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.set_write_timeout(Some(Duration::from_secs(20)))?;
        s.set_nodelay(true)?;
        Ok(Client {
            stream: BufReader::new(s),
            addr,
        })
    }

    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send_raw(req.as_bytes(), method == "HEAD")
    }

    pub fn get(&mut self, target: &str) -> std::io::Result<Response> {
        self.send("GET", target, &[])
    }

    /// Writes raw bytes and reads one response.
    pub fn send_raw(&mut self, bytes: &[u8], head: bool) -> std::io::Result<Response> {
        self.stream.get_mut().write_all(bytes)?;
        self.read_response(head)
    }

    fn read_response(&mut self, head: bool) -> std::io::Result<Response> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.stream.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if !head {
            if let Some(len) = find("content-length") {
                let n: usize = len.parse().map_err(|_| bad(format!("bad length {len}")))?;
                body.resize(n, 0);
                self.stream.read_exact(&mut body)?;
            } else if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
                loop {
                    let mut size = String::new();
                    self.stream.read_line(&mut size)?;
                    let n = usize::from_str_radix(size.trim(), 16)
                        .map_err(|_| bad(format!("bad chunk size {size:?}")))?;
                    let mut chunk = vec![0; n + 2];
                    self.stream.read_exact(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
            } else {
                self.stream.read_to_end(&mut body)?;
            }
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A temporary directory holding the snapshot link `snap`.
pub struct SnapDir {
    pub dir: tempfile::TempDir,
}

impl SnapDir {
    pub fn new() -> SnapDir {
        SnapDir {
            dir: tempfile::tempdir().expect("create a temporary directory"),
        }
    }

    pub fn link(&self) -> PathBuf {
        self.dir.path().join("snap")
    }

    /// Publishes a valid snapshot variant; returns its id.
    pub fn publish(&self, variant: u64) -> String {
        let gen = build_test_snapshot(&self.link(), variant);
        format::snapshot::read_manifest(&gen)
            .expect("read the new manifest")
            .snapshot_id
    }

    /// Publishes a generation whose places archive is damaged, the way `publish` does
    /// (a new generation directory, then the link renamed over). Returns its directory.
    pub fn publish_corrupt(&self) -> PathBuf {
        let current = std::fs::canonicalize(self.link()).expect("resolve the link");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(".snap.gen-{nanos:020}-{}", std::process::id());
        let gen = self.dir.path().join(&name);
        copy_dir(&current, &gen);
        let victim = gen.join("places.rkyv");
        let mut bytes = std::fs::read(&victim).expect("read places.rkyv");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&victim, bytes).expect("damage places.rkyv");
        let tmp = self.dir.path().join(".snap.link-corrupt");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&name, &tmp).expect("create link");
        std::fs::rename(&tmp, self.link()).expect("rename link");
        gen
    }
}

/// Copies a directory tree (a snapshot generation, a committed fixture).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("list directory") {
        let entry = entry.expect("directory entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy file");
        }
    }
}
