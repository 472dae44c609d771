//! Following Patroni's leader (`--patroni-api`), so that bookd writes only to the node
//! Patroni says is the primary.
//!
//! libpq's `target_session_attrs=read-write` alone is not enough: when only Patroni dies on
//! the primary's node, its PostgreSQL stays up as a read-write primary. For the leader key's
//! TTL its standbys still follow it; then one is promoted, the other follows the new
//! primary, and every commit on the old one waits forever for a synchronous standby that
//! never comes (strict mode). A pool that only asks "is this node read-write?" keeps its
//! connections there, and its requests hang.
//!
//! So a background task asks each node's Patroni REST API `GET /primary` (200 only on the
//! leader holding the leader key) every [`POLL_EVERY`], each call bounded by
//! [`PROBE_TIMEOUT`] and [`MAX_RESPONSE`] bytes, and publishes the leader with a generation
//! that changes whenever the leader does ([`Leader`]). New pool connections go to the
//! leader's host only ([`LeaderConnect`]), and each connection's task closes its socket as
//! soon as the generation it was opened under ends: every statement still running on a
//! node that is no longer the leader (a COMMIT waiting for a synchronous standby included)
//! fails at once with a closed connection, which the service treats as "outcome unknown"
//! and settles on the new primary. Closed connections are dropped by the pool's recycle
//! check (`is_closed`, no round trip), so the request path costs nothing more.
//!
//! No node answering 200 for [`LOSE_AFTER`] rounds (the leader's Patroni is dead or cut
//! off) means no leader: bookd stops writing to the old one right away (connections
//! closed, new ones wait for a leader until the pool's create timeout) instead of writing
//! there until a standby takes over. Commits made on the old primary while its standbys are
//! still attached are safe, but one acknowledged by a standby just after another was
//! promoted would be lost; after [`LOSE_AFTER`] rounds there are none. Two nodes answering
//! 200 at once is treated the same way (no leader), and so is a node saying it is not
//! the leader any more (at once, with no waiting rounds).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::{Config, NoTls};

use crate::error::{Error, Result};

/// How often every node's Patroni is asked who leads.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// The longest one `GET /primary` may take (connect, request, response).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes of a response read at most (Patroni's answer is a JSON status of about 1 KiB; only
/// its status line matters).
pub const MAX_RESPONSE: usize = 8 * 1024;
/// Consecutive rounds in which the leader's Patroni does not answer before it stops being
/// the leader (one missed answer under load is not a failover).
pub const LOSE_AFTER: u32 = 3;

/// A Patroni REST endpoint, `http://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}:{}", self.host, self.port)
    }
}

/// Parses `--patroni-api`: comma-separated `http://HOST:PORT` (a trailing `/` allowed;
/// IPv6 as `[ADDR]`), in the order of the hosts of `--database-url`.
pub fn parse_endpoints(list: &str) -> Result<Vec<Endpoint>> {
    let bad = |item: &str, why: &str| {
        Error::Config(format!(
            "--patroni-api: {item:?} is not http://HOST:PORT ({why})"
        ))
    };
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim) {
        let rest = item
            .strip_prefix("http://")
            .ok_or_else(|| bad(item, "only http:// is supported"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad(item, "no port"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains(['/', '@', '[', ']', ' ']) {
            return Err(bad(item, "bad host"));
        }
        let port: u16 = port.parse().map_err(|_| bad(item, "bad port"))?;
        if port == 0 {
            return Err(bad(item, "bad port"));
        }
        out.push(Endpoint {
            host: host.to_string(),
            port,
        });
    }
    Ok(out)
}

/// One connection configuration per host of `base` (a multi-host `--database-url`), each
/// with everything else `base` sets, in the order of its hosts.
pub fn node_configs(base: &Config) -> Result<Vec<Config>> {
    let hosts = base.get_hosts();
    let ports = base.get_ports();
    let addrs = base.get_hostaddrs();
    if hosts.is_empty() {
        return Err(Error::Config("--database-url names no host".into()));
    }
    if ports.len() > 1 && ports.len() != hosts.len() {
        return Err(Error::Config(
            "--database-url: give one port, or one per host".into(),
        ));
    }
    let mut out = Vec::with_capacity(hosts.len());
    for (i, host) in hosts.iter().enumerate() {
        let mut c = Config::new();
        match host {
            Host::Tcp(h) => c.host(h.as_str()),
            Host::Unix(p) => c.host_path(p),
        };
        if let Some(a) = addrs.get(i) {
            c.hostaddr(*a);
        }
        if let Some(p) = ports.get(i).or(ports.first()) {
            c.port(*p);
        }
        if let Some(u) = base.get_user() {
            c.user(u);
        }
        if let Some(p) = base.get_password() {
            c.password(p);
        }
        if let Some(d) = base.get_dbname() {
            c.dbname(d);
        }
        if let Some(o) = base.get_options() {
            c.options(o);
        }
        if let Some(a) = base.get_application_name() {
            c.application_name(a);
        }
        if let Some(t) = base.get_connect_timeout() {
            c.connect_timeout(*t);
        }
        if let Some(t) = base.get_tcp_user_timeout() {
            c.tcp_user_timeout(*t);
        }
        c.keepalives(base.get_keepalives());
        c.keepalives_idle(base.get_keepalives_idle());
        if let Some(t) = base.get_keepalives_interval() {
            c.keepalives_interval(t);
        }
        if let Some(n) = base.get_keepalives_retries() {
            c.keepalives_retries(n);
        }
        c.ssl_mode(base.get_ssl_mode());
        c.ssl_negotiation(base.get_ssl_negotiation());
        c.channel_binding(base.get_channel_binding());
        // Still checked on connect: Patroni's word and the server's must agree.
        c.target_session_attrs(base.get_target_session_attrs());
        out.push(c);
    }
    Ok(out)
}

/// The leader as last seen: `node` indexes the hosts of `--database-url` (and the
/// endpoints of `--patroni-api`); `generation` changes every time `node` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderState {
    pub generation: u64,
    pub node: Option<usize>,
}

/// The published leader (see the module documentation).
#[derive(Debug)]
pub struct Leader {
    tx: watch::Sender<LeaderState>,
}

impl Leader {
    /// No leader known yet (connections wait for the first round).
    pub fn new() -> Arc<Leader> {
        Arc::new(Leader {
            tx: watch::channel(LeaderState {
                generation: 0,
                node: None,
            })
            .0,
        })
    }

    pub fn current(&self) -> LeaderState {
        *self.tx.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<LeaderState> {
        self.tx.subscribe()
    }

    /// Publishes `node`; a new generation when it differs from the current one.
    pub fn set(&self, node: Option<usize>) -> bool {
        self.tx.send_if_modified(|s| {
            if s.node == node {
                return false;
            }
            s.node = node;
            s.generation += 1;
            true
        })
    }
}

/// What one node's Patroni said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `200`: it runs the primary and holds the leader key.
    Leader,
    /// Another HTTP status: it is not the leader.
    NotLeader,
    /// No valid answer within [`PROBE_TIMEOUT`].
    Unreachable,
}

/// The leader after one round of probes: `current` the leader so far, `misses` the rounds
/// in a row its Patroni did not answer (updated here).
pub fn decide(current: Option<usize>, misses: &mut u32, probes: &[Probe]) -> Option<usize> {
    let mut leaders = probes
        .iter()
        .enumerate()
        .filter(|(_, p)| **p == Probe::Leader)
        .map(|(i, _)| i);
    match (leaders.next(), leaders.next()) {
        (Some(l), None) => {
            *misses = 0;
            Some(l)
        }
        // Two claim the lead (a moment in a switchover, or a split): write to neither.
        (Some(_), Some(_)) => {
            *misses = 0;
            None
        }
        (None, _) => {
            let c = current?;
            if probes.get(c) == Some(&Probe::NotLeader) {
                // It says so itself: no reason to wait.
                *misses = 0;
                return None;
            }
            *misses += 1;
            if *misses >= LOSE_AFTER {
                *misses = 0;
                None
            } else {
                Some(c)
            }
        }
    }
}

/// Reads the status of an HTTP response's status line (`HTTP/1.x NNN ...`).
pub fn parse_status(response: &[u8]) -> Option<u16> {
    let end = response.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&response[..end]).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok()
}

/// `GET /primary` on one endpoint, bounded in time and size.
pub async fn probe(ep: &Endpoint) -> Probe {
    match tokio::time::timeout(PROBE_TIMEOUT, get_status(ep, "/primary")).await {
        Ok(Some(200)) => Probe::Leader,
        Ok(Some(_)) => Probe::NotLeader,
        _ => Probe::Unreachable,
    }
}

async fn get_status(ep: &Endpoint, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect((ep.host.as_str(), ep.port))
        .await
        .ok()?;
    let host = if ep.host.contains(':') {
        format!("[{}]:{}", ep.host, ep.port)
    } else {
        format!("{}:{}", ep.host, ep.port)
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bookd\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.ok()?;
    // Up to the end of the response or MAX_RESPONSE bytes (reading it all lets Patroni
    // finish writing instead of logging a broken pipe; the cap bounds what a bad peer can
    // make us read).
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while buf.len() < MAX_RESPONSE {
        match s.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n.min(MAX_RESPONSE - buf.len())]),
            // A reset after a complete status line still tells the status.
            Err(_) => break,
        }
    }
    parse_status(&buf)
}

/// One round of probes: every endpoint at once, each bounded by [`PROBE_TIMEOUT`], so the
/// round is too. In the endpoints' order.
pub async fn probe_round(endpoints: &Arc<[Endpoint]>) -> Vec<Probe> {
    let mut round = tokio::task::JoinSet::new();
    for i in 0..endpoints.len() {
        let eps = endpoints.clone();
        round.spawn(async move { (i, probe(&eps[i]).await) });
    }
    let mut probes = vec![Probe::Unreachable; endpoints.len()];
    while let Some(r) = round.join_next().await {
        if let Ok((i, p)) = r {
            if let Some(slot) = probes.get_mut(i) {
                *slot = p;
            }
        }
    }
    probes
}

/// `--patroni-api` and the hosts of `--database-url` must line up: the leader's index
/// names a host.
pub fn check_counts(endpoints: usize, hosts: usize) -> Result<()> {
    if endpoints != hosts {
        return Err(Error::Config(format!(
            "--patroni-api lists {endpoints} endpoints for {hosts} hosts of --database-url \
             (one per host, in the same order)"
        )));
    }
    Ok(())
}

/// The connection configuration of the node Patroni calls the leader, asked once, for a
/// short-lived command (`bookd keys --patroni-api`): one [`probe_round`], and exactly one
/// node answering 200, else an error (no leader right now, or two during a switchover:
/// the command is run again, rather than written to a node that may be a standby or an
/// old leader). `base` is `--database-url`; the result keeps its settings for that one
/// host (the server is still asked to be read-write on connect).
pub async fn leader_config(endpoints: &[Endpoint], base: &Config) -> Result<(usize, Config)> {
    let nodes = node_configs(base)?;
    check_counts(endpoints.len(), nodes.len())?;
    let probes = probe_round(&endpoints.to_vec().into()).await;
    let leader = pick_leader(&probes);
    match leader.and_then(|i| Some((i, nodes.get(i)?.clone()))) {
        Some(found) => Ok(found),
        None => Err(Error::Other(format!(
            "--patroni-api: no single Patroni leader (GET /primary: {}); nothing was written, \
             run the command again once the cluster has a leader",
            endpoints
                .iter()
                .zip(&probes)
                .map(|(e, p)| format!("{e} {p:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The leader of one round with no leader known before: the one node answering 200.
pub fn pick_leader(probes: &[Probe]) -> Option<usize> {
    decide(None, &mut 0, probes)
}

/// Starts the task that follows the leader: one round of probes every [`POLL_EVERY`] (all
/// endpoints at once, each bounded), until the returned handle is aborted.
pub fn spawn_poller(endpoints: Vec<Endpoint>, leader: Arc<Leader>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let endpoints: Arc<[Endpoint]> = endpoints.into();
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut misses = 0;
        loop {
            tick.tick().await;
            let probes = probe_round(&endpoints).await;
            let before = leader.current().node;
            let now = decide(before, &mut misses, &probes);
            if leader.set(now) {
                match now {
                    Some(n) => tracing::info!(
                        node = n,
                        endpoint = %endpoints[n],
                        "patroni leader; database connections go there"
                    ),
                    None => tracing::warn!(
                        ?probes,
                        "no patroni leader; connections to the old one are closed and writes \
                         wait for a leader"
                    ),
                }
            }
        }
    })
}

/// Opens pool connections to the leader's host only (see the module documentation).
pub struct LeaderConnect {
    nodes: Vec<Config>,
    leader: Arc<Leader>,
}

impl LeaderConnect {
    /// `nodes` in the order of the endpoints the leader's index refers to.
    pub fn new(nodes: Vec<Config>, leader: Arc<Leader>) -> LeaderConnect {
        LeaderConnect { nodes, leader }
    }
}

type ConnectResult =
    std::result::Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>;

impl deadpool_postgres::Connect for LeaderConnect {
    fn connect(&self, _: &Config) -> Pin<Box<dyn Future<Output = ConnectResult> + Send + '_>> {
        Box::pin(async move {
            let mut rx = self.leader.subscribe();
            loop {
                // Waits for a leader; the pool's create timeout bounds the wait (its error
                // is the answer while there is none).
                let waited = rx.wait_for(|s| s.node.is_some()).await.map(|s| *s);
                let Ok(state) = waited else {
                    // `self` holds the sender: never while this runs.
                    std::future::pending::<()>().await;
                    continue;
                };
                let Some(cfg) = state.node.and_then(|n| self.nodes.get(n)) else {
                    std::future::pending::<()>().await;
                    continue;
                };
                let (client, connection) = cfg.connect(NoTls).await?;
                if rx.borrow().generation != state.generation {
                    // The leader changed while connecting: this node may be the old one.
                    continue;
                }
                let generation = state.generation;
                let node = state.node;
                let task = tokio::spawn(async move {
                    tokio::select! {
                        r = connection => {
                            if let Err(e) = r {
                                tracing::warn!(error = %e, "database connection error");
                            }
                        }
                        // Dropping `connection` closes the socket: whatever runs on it
                        // fails now instead of waiting on a node that is not the leader.
                        _ = rx.wait_for(|s| s.generation != generation) => {
                            tracing::debug!(?node, "closed a connection to the old leader");
                        }
                    }
                });
                return Ok((client, task));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = parse_endpoints("http://127.0.0.1:8008, http://db2:8009/,http://[::1]:8010")
            .expect("valid");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].to_string(), "http://127.0.0.1:8008");
        assert_eq!(e[1].host, "db2");
        assert_eq!(e[2].host, "::1");
        for bad in [
            "https://h:1",
            "http://h",
            "http://h:0",
            "http://h:99999",
            "http://:80",
            "h:80",
            "",
        ] {
            assert!(parse_endpoints(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_line() {
        assert_eq!(
            parse_status(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n{}"),
            Some(200)
        );
        assert_eq!(
            parse_status(b"HTTP/1.1 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"HTTP/1.0 200 OK"), None, "no complete line");
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.0 2000 OK\r\n"), None);
        assert_eq!(parse_status(b"\xff\xfe\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[test]
    fn leader_decisions() {
        use Probe::*;
        let mut m = 0;
        assert_eq!(
            decide(None, &mut m, &[Unreachable, Leader, NotLeader]),
            Some(1)
        );
        // A new leader is taken at once.
        assert_eq!(
            decide(Some(1), &mut m, &[Leader, NotLeader, NotLeader]),
            Some(0)
        );
        // The leader's Patroni silent: kept for LOSE_AFTER - 1 rounds, then dropped.
        for _ in 1..LOSE_AFTER {
            assert_eq!(
                decide(Some(0), &mut m, &[Unreachable, NotLeader, NotLeader]),
                Some(0)
            );
        }
        assert_eq!(
            decide(Some(0), &mut m, &[Unreachable, NotLeader, NotLeader]),
            None
        );
        assert_eq!(
            decide(None, &mut m, &[Unreachable, NotLeader, NotLeader]),
            None
        );
        // An answer resets the count.
        let mut m = 0;
        assert_eq!(
            decide(Some(2), &mut m, &[NotLeader, NotLeader, Unreachable]),
            Some(2)
        );
        assert_eq!(
            decide(Some(2), &mut m, &[NotLeader, NotLeader, Leader]),
            Some(2)
        );
        assert_eq!(m, 0);
        // The leader saying it is not: dropped at once.
        assert_eq!(
            decide(Some(2), &mut m, &[NotLeader, NotLeader, NotLeader]),
            None
        );
        // Two claims: neither.
        assert_eq!(decide(Some(0), &mut m, &[Leader, Leader, NotLeader]), None);
    }

    #[test]
    fn generations() {
        let l = Leader::new();
        assert!(!l.set(None));
        assert!(l.set(Some(1)));
        assert!(!l.set(Some(1)));
        assert!(l.set(None));
        assert_eq!(
            l.current(),
            LeaderState {
                generation: 2,
                node: None
            }
        );
    }

    #[test]
    fn one_config_per_host() {
        let base: Config = "postgresql://u@h1:5001,h2:5002,h3:5003/db?target_session_attrs=read-write&connect_timeout=2&options=-c%20x%3D1"
            .parse()
            .expect("url");
        let nodes = node_configs(&base).expect("split");
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[1].get_hosts(), &[Host::Tcp("h2".into())]);
        assert_eq!(nodes[1].get_ports(), &[5002]);
        assert_eq!(nodes[2].get_user(), Some("u"));
        assert_eq!(nodes[2].get_dbname(), Some("db"));
        assert_eq!(nodes[0].get_options(), Some("-c x=1"));
        assert_eq!(
            nodes[0].get_connect_timeout(),
            Some(&Duration::from_secs(2))
        );
        assert_eq!(
            nodes[0].get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        let one_port: Config = "host=a,b port=7 user=u".parse().expect("kv");
        let nodes = node_configs(&one_port).expect("split");
        assert_eq!(nodes[1].get_ports(), &[7]);
    }

    /// A fake Patroni answering `status` once per connection.
    async fn fake(status: &'static str) -> Endpoint {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 512];
                let _ = s.read(&mut b).await;
                let _ = s.write_all(status.as_bytes()).await;
            }
        });
        Endpoint {
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[test]
    fn one_leader_or_none() {
        use Probe::*;
        assert_eq!(pick_leader(&[NotLeader, Leader, Unreachable]), Some(1));
        assert_eq!(pick_leader(&[NotLeader, NotLeader, Unreachable]), None);
        assert_eq!(pick_leader(&[Leader, Leader, NotLeader]), None);
        assert_eq!(pick_leader(&[]), None);
        assert!(check_counts(3, 3).is_ok());
        assert!(check_counts(1, 3).is_err());
    }

    #[tokio::test]
    async fn leader_config_is_the_leaders_host_only() {
        let base: Config = "host=h1,h2,h3 port=5001,5002,5003 user=u dbname=d \
                            target_session_attrs=read-write"
            .parse()
            .expect("config");
        let leader = fake("HTTP/1.0 200 OK\r\n\r\n{}").await;
        let replica = fake("HTTP/1.0 503 Service Unavailable\r\n\r\n").await;
        let (node, cfg) = leader_config(&[replica.clone(), leader.clone(), replica.clone()], &base)
            .await
            .expect("one leader");
        assert_eq!(node, 1);
        assert_eq!(cfg.get_hosts(), &[Host::Tcp("h2".into())]);
        assert_eq!(cfg.get_ports(), &[5002]);
        assert_eq!(cfg.get_user(), Some("u"));
        assert_eq!(
            cfg.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        for eps in [
            vec![replica.clone(), replica.clone(), replica.clone()],
            vec![leader.clone(), replica.clone(), leader.clone()],
        ] {
            let e = leader_config(&eps, &base)
                .await
                .expect_err("no single leader");
            assert!(e.to_string().contains("no single Patroni leader"), "{e}");
        }
        let e = leader_config(std::slice::from_ref(&leader), &base)
            .await
            .expect_err("one endpoint per host");
        assert!(e.to_string().contains("3 hosts"), "{e}");
    }

    #[tokio::test]
    async fn probes_are_bounded() {
        let ok = fake("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}").await;
        assert_eq!(probe(&ok).await, Probe::Leader);
        let no = fake("HTTP/1.0 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(probe(&no).await, Probe::NotLeader);
        // Accepts and never answers: bounded by PROBE_TIMEOUT.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let silent = Endpoint {
            host: "127.0.0.1".into(),
            port: l.local_addr().expect("addr").port(),
        };
        let started = std::time::Instant::now();
        assert_eq!(probe(&silent).await, Probe::Unreachable);
        assert!(started.elapsed() < PROBE_TIMEOUT + Duration::from_millis(500));
        drop(l);
        assert_eq!(probe(&silent).await, Probe::Unreachable);
    }
}
