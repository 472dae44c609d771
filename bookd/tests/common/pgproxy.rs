//! A fault-injecting PostgreSQL proxy for tests: bookd connects to it over TCP, it relays
//! every connection to a real server (a unix socket or TCP address) and, when armed, breaks
//! the connection around one chosen `COMMIT` so that the client cannot know the outcome.
//!
//! It follows the frontend protocol: untyped start-up packets (SSL/GSS requests are
//! answered `N` here, so the relayed session is always plain), then typed messages. The
//! armed fault fires on the first simple-query `COMMIT` (what tokio-postgres sends for
//! `Transaction::commit`) that ends a transaction in which some statement carried one of
//! the armed needles, either in its SQL text or in its bound parameters (e.g. the
//! request's `Idempotency-Key`, or an order id), or on the Sync that commits a writing
//! statement run on its own (an implicit transaction) that carried one. Parse messages
//! are remembered per connection, because cached prepared statements are later executed
//! by name only.
//! New connections are always accepted, so the client's pool can reconnect after a cut.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Largest message relayed (bookd's are a few KiB); a bigger length is a framing bug.
const MAX_MESSAGE: usize = 16 << 20;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// What to do with the chosen COMMIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Close both sides instead of forwarding the COMMIT: the server never sees it and the
    /// transaction rolls back when its backend notices the closed connection.
    DropBeforeCommit,
    /// Forward the COMMIT, wait for the server's answer, swallow it and close both sides:
    /// the transaction committed, the client only saw its connection die.
    DropAfterCommit,
    /// Close the client's side at once, forward the COMMIT to the server only after the
    /// delay (a COMMIT still in the network when the client saw the connection die), wait
    /// for the answer, then close: the transaction commits after the client gave up on it.
    LateCommit(Duration),
    /// Close the client's side at once and never forward the COMMIT; the server's side
    /// stays open (its transaction idle, holding its locks, as behind a network partition)
    /// until the server closes it or the delay passes.
    BlackHole(Duration),
}

/// A fault that fired.
#[derive(Clone, Debug)]
pub struct Fired {
    pub fault: Fault,
    /// The server's answer to the COMMIT (`COMMIT`, `ROLLBACK`, or `error: ...`); `None`
    /// when the COMMIT was never forwarded. `BlackHole`: `closed by server` when the server
    /// ended the session (its backend was terminated), `None` when the delay passed.
    pub server_reply: Option<String>,
}

struct Armed {
    fault: Fault,
    needles: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Shared {
    armed: Mutex<Option<Armed>>,
    fired: Mutex<Vec<Fired>>,
}

#[derive(Clone, Debug)]
pub enum Upstream {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl Upstream {
    async fn connect(&self) -> std::io::Result<Pin<Box<dyn Io>>> {
        Ok(match self {
            Upstream::Unix(p) => Box::pin(UnixStream::connect(p).await?),
            Upstream::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                Box::pin(s)
            }
        })
    }
}

pub struct PgProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl PgProxy {
    /// Listens on 127.0.0.1 (a free port) and relays to `upstream`.
    pub async fn start(upstream: Upstream) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = client.set_nodelay(true);
                let up = upstream.clone();
                let sh = sh.clone();
                tokio::spawn(async move {
                    if let Ok(server) = up.connect().await {
                        relay(client, server, sh).await;
                    }
                });
            }
        });
        PgProxy {
            addr,
            shared,
            accept,
        }
    }

    /// A libpq URL to the proxy.
    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgresql://{user}@{}/{db}", self.addr)
    }

    /// Arms `fault` for the next transaction that carries one of `needles` (one shot).
    pub fn arm(&self, fault: Fault, needles: &[&str]) {
        assert!(!needles.is_empty(), "a fault needs something to recognise");
        *self.shared.armed.lock().expect("lock") = Some(Armed {
            fault,
            needles: needles.iter().map(|n| n.as_bytes().to_vec()).collect(),
        });
    }

    /// Disarms; true when a fault was still armed (it never fired).
    pub fn disarm(&self) -> bool {
        self.shared.armed.lock().expect("lock").take().is_some()
    }

    /// The faults fired since the last call.
    pub fn take_fired(&self) -> Vec<Fired> {
        std::mem::take(&mut *self.shared.fired.lock().expect("lock"))
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One protocol message: its tag (`None` for start-up packets) and its whole bytes.
struct Msg {
    tag: Option<u8>,
    raw: Vec<u8>,
}

impl Msg {
    /// The payload after the tag and length.
    fn body(&self) -> &[u8] {
        let skip = if self.tag.is_some() { 5 } else { 4 };
        &self.raw[skip..]
    }
}

async fn read_len(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<(usize, [u8; 4])> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let n = i32::from_be_bytes(len);
    let n = usize::try_from(n).unwrap_or(0);
    if !(4..=MAX_MESSAGE).contains(&n) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad message length {n}"),
        ));
    }
    Ok((n, len))
}

/// Reads messages into `tx` until EOF or error. `startup`: untyped packets first.
async fn reader(mut r: impl AsyncRead + Unpin, startup: bool, tx: mpsc::Sender<Msg>) {
    let mut typed = !startup;
    loop {
        let msg = if typed {
            let mut tag = [0u8; 1];
            if r.read_exact(&mut tag).await.is_err() {
                return;
            }
            let Ok((n, len)) = read_len(&mut r).await else {
                return;
            };
            let mut raw = Vec::with_capacity(n + 1);
            raw.push(tag[0]);
            raw.extend_from_slice(&len);
            raw.resize(n + 1, 0);
            if r.read_exact(&mut raw[5..]).await.is_err() {
                return;
            }
            Msg {
                tag: Some(tag[0]),
                raw,
            }
        } else {
            let Ok((n, len)) = read_len(&mut r).await else {
                return;
            };
            let mut raw = len.to_vec();
            raw.resize(n, 0);
            if r.read_exact(&mut raw[4..]).await.is_err() {
                return;
            }
            let code = raw
                .get(4..8)
                .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .unwrap_or(0);
            // After an SSL/GSS request another start-up packet follows; after the
            // start-up message (or a cancel request) the session is typed.
            if code != SSL_REQUEST && code != GSSENC_REQUEST {
                typed = true;
            }
            Msg { tag: None, raw }
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

/// A NUL-terminated string at the start of `b`, and the rest after it.
fn cstr(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == 0) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// The state of the session as the proxy tracks it.
#[derive(Default)]
struct Session {
    /// Prepared statement name -> SQL text.
    statements: HashMap<Vec<u8>, Vec<u8>>,
    in_tx: bool,
    /// A statement of the current transaction carried an armed needle.
    matched: bool,
    /// A writing statement outside a transaction carried an armed needle: it commits at
    /// the next Sync (an implicit transaction).
    implicit_matched: bool,
}

/// Whether `sql` changes data (its COMMIT is worth cutting when it runs on its own).
fn writes(sql: &[u8]) -> bool {
    let text = String::from_utf8_lossy(sql)
        .trim_start()
        .to_ascii_uppercase();
    let verbs = ["INSERT", "UPDATE", "DELETE"];
    verbs.iter().any(|v| text.starts_with(v))
        || (text.starts_with("WITH") && verbs.iter().any(|v| text.contains(v)))
}

enum Phase {
    Relay,
    /// COMMIT (or the Sync ending an implicit transaction) forwarded; the server's answer,
    /// up to ReadyForQuery, is swallowed and ends the session. `implicit`: the statement's
    /// own CommandComplete is not the COMMIT's.
    AwaitReply {
        fault: Fault,
        implicit: bool,
        /// ReadyForQuery messages of earlier requests still to come first.
        before: usize,
        reply: Option<String>,
    },
    /// The client side is closed; the COMMIT goes to the server at the deadline.
    Late(tokio::time::Instant, Msg, Fault, bool),
    /// The client side is closed; the session ends at the deadline or when the server
    /// closes it.
    Hole(tokio::time::Instant),
}

async fn relay(client: TcpStream, server: Pin<Box<dyn Io>>, shared: Arc<Shared>) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = tokio::io::split(server);
    let mut cw = Some(cw);
    let mut sw = sw;
    let (ctx, mut crx) = mpsc::channel(64);
    let (stx, mut srx) = mpsc::channel(64);
    let creader = tokio::spawn(reader(cr, true, ctx));
    let sreader = tokio::spawn(reader(sr, false, stx));
    let mut session = Session::default();
    let mut phase = Phase::Relay;
    // ReadyForQuery messages still to come: one per Query or Sync forwarded. The COMMIT's
    // answer is the one after those (tokio-postgres may send the COMMIT before it has read
    // the previous Sync's ReadyForQuery).
    let mut pending_z: usize = 0;
    loop {
        let late_at = match &phase {
            Phase::Late(at, ..) | Phase::Hole(at) => Some(*at),
            _ => None,
        };
        tokio::select! {
            m = crx.recv(), if matches!(phase, Phase::Relay) => {
                let Some(m) = m else { break };
                if m.tag.is_none() {
                    let code = m
                        .body()
                        .get(..4)
                        .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .unwrap_or(0);
                    if code == SSL_REQUEST || code == GSSENC_REQUEST {
                        // No encryption: the client goes on in plain text.
                        let Some(w) = cw.as_mut() else { break };
                        if w.write_all(b"N").await.is_err() {
                            break;
                        }
                        continue;
                    }
                } else if let Some((fault, implicit)) = inspect(&mut session, &m, &shared) {
                    match fault {
                        Fault::DropBeforeCommit => {
                            record(&shared, fault, None);
                            break;
                        }
                        Fault::DropAfterCommit => {
                            if sw.write_all(&m.raw).await.is_err() {
                                record(&shared, fault, Some("error: write failed".into()));
                                break;
                            }
                            phase = Phase::AwaitReply { fault, implicit, before: pending_z, reply: None };
                            pending_z += 1;
                            continue;
                        }
                        Fault::LateCommit(d) => {
                            // The client sees its connection die now.
                            creader.abort();
                            cw = None;
                            phase = Phase::Late(tokio::time::Instant::now() + d, m, fault, implicit);
                            continue;
                        }
                        Fault::BlackHole(d) => {
                            creader.abort();
                            cw = None;
                            phase = Phase::Hole(tokio::time::Instant::now() + d);
                            continue;
                        }
                    }
                }
                if matches!(m.tag, Some(b'Q' | b'S')) {
                    pending_z += 1;
                }
                if sw.write_all(&m.raw).await.is_err() {
                    break;
                }
            }
            m = srx.recv() => {
                let Some(m) = m else {
                    if let Phase::Hole(_) = phase {
                        record(&shared, Fault::BlackHole(Duration::ZERO), Some("closed by server".into()));
                    }
                    break;
                };
                if m.tag == Some(b'Z') {
                    pending_z = pending_z.saturating_sub(1);
                }
                match &mut phase {
                    Phase::AwaitReply { fault, implicit, before, reply } => {
                        if *before > 0 {
                            // An answer to something sent before the COMMIT.
                            if m.tag == Some(b'Z') {
                                *before -= 1;
                            }
                            continue;
                        }
                        match m.tag {
                            Some(b'C') if !*implicit && reply.is_none() => {
                                *reply = Some(String::from_utf8_lossy(cstr(m.body()).0).into_owned());
                            }
                            Some(b'E') if reply.is_none() => {
                                *reply = Some(format!("error: {}", String::from_utf8_lossy(m.body())));
                            }
                            Some(b'Z') => {
                                let r = reply.take().unwrap_or_else(|| "COMMIT".into());
                                record(&shared, *fault, Some(r));
                                break;
                            }
                            _ => {}
                        }
                    }
                    Phase::Late(..) | Phase::Hole(_) => {} // the client is gone
                    Phase::Relay => {
                        let Some(w) = cw.as_mut() else { break };
                        if w.write_all(&m.raw).await.is_err() {
                            break;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(late_at.unwrap_or_else(tokio::time::Instant::now)), if late_at.is_some() => {
                let Phase::Late(_, m, fault, implicit) = std::mem::replace(&mut phase, Phase::Relay) else {
                    record(&shared, Fault::BlackHole(Duration::ZERO), None);
                    break; // the black hole's time is up
                };
                if sw.write_all(&m.raw).await.is_err() {
                    record(&shared, fault, Some("error: write failed".into()));
                    break;
                }
                phase = Phase::AwaitReply { fault, implicit, before: pending_z, reply: None };
                pending_z += 1;
            }
        }
    }
    // Both sides close: the readers' halves with their tasks, the writers here.
    creader.abort();
    sreader.abort();
    drop(cw);
    let _ = sw.shutdown().await;
}

fn record(shared: &Shared, fault: Fault, server_reply: Option<String>) {
    shared.fired.lock().expect("lock").push(Fired {
        fault,
        server_reply,
    });
}

/// Tracks the session; returns the armed fault when `m` is the COMMIT it should hit (and
/// whether that COMMIT is the Sync of an implicit transaction).
fn inspect(s: &mut Session, m: &Msg, shared: &Shared) -> Option<(Fault, bool)> {
    let body = m.body();
    let carries = |bytes: &[u8]| -> bool {
        let armed = shared.armed.lock().expect("lock");
        armed
            .as_ref()
            .is_some_and(|a| a.needles.iter().any(|n| contains(bytes, n)))
    };
    match m.tag? {
        b'P' => {
            let (name, rest) = cstr(body);
            let (sql, _) = cstr(rest);
            s.statements.insert(name.to_vec(), sql.to_vec());
        }
        b'B' => {
            let (_portal, rest) = cstr(body);
            let (stmt, _) = cstr(rest);
            let sql = s
                .statements
                .get(stmt)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if carries(sql) || carries(body) {
                if s.in_tx {
                    s.matched = true;
                } else if writes(sql) {
                    s.implicit_matched = true;
                }
            }
        }
        b'S' => {
            let hit = !s.in_tx && s.implicit_matched;
            s.implicit_matched = false;
            if hit {
                let armed = shared.armed.lock().expect("lock").take();
                return armed.map(|a| (a.fault, true));
            }
        }
        b'Q' => {
            let (sql, _) = cstr(body);
            let text = String::from_utf8_lossy(sql).trim().to_ascii_uppercase();
            let text = text.trim_end_matches(';').trim();
            if text.starts_with("BEGIN") || text.starts_with("START TRANSACTION") {
                s.in_tx = true;
                s.matched = false;
            } else if text == "COMMIT" || text == "END" {
                let hit = s.in_tx && s.matched;
                s.in_tx = false;
                s.matched = false;
                if hit {
                    let armed = shared.armed.lock().expect("lock").take();
                    return armed.map(|a| (a.fault, false));
                }
            } else if text.starts_with("ROLLBACK") && !text.starts_with("ROLLBACK TO") {
                s.in_tx = false;
                s.matched = false;
            } else if s.in_tx && carries(sql) {
                s.matched = true;
            }
        }
        _ => {}
    }
    None
}
