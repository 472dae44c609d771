//! The embedded PostgreSQL cluster: initialised and started under the state directory,
//! reachable only through a private unix socket directory (no TCP), run as the
//! unprivileged `postgres` system user when bookd runs as root.
//!
//! Layout of `STATE`: `pgdata/` (the cluster, owned by the cluster user), `pgsock/` (the
//! socket directory, mode 0700), `postgres.log`, `bookd.lock` (held by the process that
//! owns the cluster: a serving bookd, or `bookd keys` when no bookd is running).

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The port only names the socket file (`.s.PGSQL.5432`); there is no TCP listener.
pub const SOCKET_PORT: u16 = 5432;
pub const DB_USER: &str = "postgres";
pub const DB_NAME: &str = "postgres";

/// The directory of `initdb`/`postgres`: `$BOOKD_PG_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin` that has `initdb`.
pub fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("BOOKD_PG_BIN_DIR") {
        let p = PathBuf::from(d);
        if p.join("initdb").is_file() {
            return Some(p);
        }
    }
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(ver) = name.parse::<u32>() else {
            continue;
        };
        let bin = entry.path().join("bin");
        if bin.join("initdb").is_file() && best.as_ref().is_none_or(|(v, _)| ver > *v) {
            best = Some((ver, bin));
        }
    }
    best.map(|(_, p)| p)
}

/// The account the cluster runs as: `postgres` when we are root, else ourselves.
#[derive(Clone, Copy, Debug)]
struct RunAs {
    uid: u32,
    gid: u32,
    switch: bool,
}

fn run_as() -> Result<RunAs> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if uid != 0 {
        return Ok(RunAs {
            uid,
            gid,
            switch: false,
        });
    }
    let name = CString::new("postgres").map_err(|e| Error::Embedded(e.to_string()))?;
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the two
    // fields out immediately, before any other call could overwrite it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(Error::Embedded(
            "bookd runs as root and there is no `postgres` system user to run the cluster as \
             (install PostgreSQL with scripts/install-postgres.sh, or pass --database-url)"
                .into(),
        ));
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(RunAs {
        uid,
        gid,
        switch: true,
    })
}

fn chown(path: &Path, who: RunAs) -> Result<()> {
    if !who.switch {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(who.uid), Some(who.gid))
        .map_err(|e| Error::io("chown", path, e))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("chmod", path, e))
}

fn command(bin: &Path, who: RunAs, cwd: &Path) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(cwd)
        .env("LC_ALL", "C.UTF-8")
        .env_remove("PGDATA");
    if who.switch {
        // std drops supplementary groups (setgroups(0)) when changing uid as root.
        c.uid(who.uid).gid(who.gid).env("HOME", cwd);
    }
    c
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// The postmaster pid of `data` if it is running (a `postgres` process for that directory).
pub fn running_postmaster(data: &Path) -> Option<i32> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    if !pid_alive(pid) {
        return None;
    }
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "postgres" {
        return None;
    }
    Some(pid)
}

/// An exclusive lock on `STATE/bookd.lock`, held while this process owns the cluster.
pub struct StateLock {
    _file: fs::File,
}

/// Who holds the state lock, written in `bookd.lock` by the holder: a serving bookd holds it
/// for as long as it runs, a `bookd keys` command only for a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Server,
    Keys,
}

impl Holder {
    fn word(self) -> &'static str {
        match self {
            Holder::Server => "server",
            Holder::Keys => "keys",
        }
    }
}

/// Longest a starting bookd waits for a `bookd keys` command to release the state
/// directory (it initialises and starts the cluster, writes a row, stops it: ~1-2 s).
const KEYS_HOLD_WAIT: Duration = Duration::from_secs(60);

impl StateLock {
    /// `Ok(None)` when another process holds it.
    pub fn try_acquire(state_dir: &Path) -> Result<Option<StateLock>> {
        Self::try_acquire_as(state_dir, Holder::Server)
    }

    /// As [`StateLock::try_acquire`], recording `holder` (and the pid) in the lock file.
    pub fn try_acquire_as(state_dir: &Path, holder: Holder) -> Result<Option<StateLock>> {
        use std::io::Write;
        let path = state_dir.join("bookd.lock");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Ok(None);
        }
        file.set_len(0)
            .and_then(|_| writeln!(file, "{} {}", holder.word(), std::process::id()))
            .map_err(|e| Error::io("write", &path, e))?;
        Ok(Some(StateLock { _file: file }))
    }

    /// The holder recorded in `STATE/bookd.lock` (`None`: unknown, e.g. an older bookd).
    pub fn holder(state_dir: &Path) -> Option<Holder> {
        let text = fs::read_to_string(state_dir.join("bookd.lock")).ok()?;
        match text.split_whitespace().next()? {
            "server" => Some(Holder::Server),
            "keys" => Some(Holder::Keys),
            _ => None,
        }
    }
}

/// Paths of an embedded cluster under a state directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub state_dir: PathBuf,
    pub data_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub log_file: PathBuf,
}

impl Layout {
    pub fn new(state_dir: &Path) -> Result<Layout> {
        fs::create_dir_all(state_dir).map_err(|e| Error::io("create", state_dir, e))?;
        let state_dir =
            fs::canonicalize(state_dir).map_err(|e| Error::io("resolve", state_dir, e))?;
        Ok(Layout {
            data_dir: state_dir.join("pgdata"),
            socket_dir: state_dir.join("pgsock"),
            log_file: state_dir.join("postgres.log"),
            state_dir,
        })
    }

    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(&self.socket_dir)
            .port(SOCKET_PORT)
            .user(DB_USER)
            .dbname(DB_NAME)
            .application_name("bookd")
            .connect_timeout(Duration::from_secs(5));
        c
    }
}

/// A running embedded cluster. Stopped by `stop` (or on drop) when this process started
/// or adopted it.
pub struct Embedded {
    pub layout: Layout,
    child: Option<Child>,
    pid: Option<i32>,
    owned: bool,
    _lock: Option<StateLock>,
}

impl Embedded {
    /// Owns the cluster of `state_dir`: takes the state lock (fails when another bookd
    /// holds it), initialises the cluster if needed, removes a stale `postmaster.pid`,
    /// adopts a postmaster left running by a crashed bookd, or starts one.
    /// A `bookd keys` command holding the lock is waited for (it only holds it for a moment).
    pub fn start(state_dir: &Path) -> Result<Embedded> {
        let layout = Layout::new(state_dir)?;
        let deadline = Instant::now() + KEYS_HOLD_WAIT;
        let lock = loop {
            if let Some(lock) = StateLock::try_acquire_as(&layout.state_dir, Holder::Server)? {
                break lock;
            }
            if StateLock::holder(&layout.state_dir) != Some(Holder::Keys) {
                return Err(Error::Embedded(format!(
                    "another bookd is running on state directory {}",
                    layout.state_dir.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(Error::Embedded(format!(
                    "a `bookd keys` command has held state directory {} for {} s",
                    layout.state_dir.display(),
                    KEYS_HOLD_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Self::start_locked(layout, lock)
    }

    /// For `bookd keys`: uses the cluster a running bookd owns (connecting to its socket),
    /// or owns it temporarily when no bookd is running.
    pub fn attach_or_start(state_dir: &Path) -> Result<Embedded> {
        let layout = Layout::new(state_dir)?;
        match StateLock::try_acquire_as(&layout.state_dir, Holder::Keys)? {
            Some(lock) => Self::start_locked(layout, lock),
            None => {
                if running_postmaster(&layout.data_dir).is_none() {
                    return Err(Error::Embedded(format!(
                        "a bookd holds {} but its PostgreSQL is not running (yet); retry",
                        layout.state_dir.display()
                    )));
                }
                Ok(Embedded {
                    layout,
                    child: None,
                    pid: None,
                    owned: false,
                    _lock: None,
                })
            }
        }
    }

    fn start_locked(layout: Layout, lock: StateLock) -> Result<Embedded> {
        let bin = find_bin_dir().ok_or_else(|| {
            Error::Embedded(
                "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin \
                 (run scripts/install-postgres.sh, set BOOKD_PG_BIN_DIR, or pass --database-url)"
                    .into(),
            )
        })?;
        let who = run_as()?;
        if who.switch {
            // The cluster user must be able to traverse the state directory.
            let md = fs::metadata(&layout.state_dir)
                .map_err(|e| Error::io("stat", &layout.state_dir, e))?;
            let mode = md.permissions().mode();
            if mode & 0o001 == 0 {
                set_mode(&layout.state_dir, (mode & 0o7777) | 0o001)?;
            }
        }
        if !layout.data_dir.join("PG_VERSION").is_file() {
            initdb(&bin, who, &layout)?;
        }
        if !layout.socket_dir.is_dir() {
            fs::create_dir_all(&layout.socket_dir)
                .map_err(|e| Error::io("create", &layout.socket_dir, e))?;
        }
        chown(&layout.socket_dir, who)?;
        set_mode(&layout.socket_dir, 0o700)?;

        let mut me = Embedded {
            layout,
            child: None,
            pid: None,
            owned: true,
            _lock: Some(lock),
        };
        if let Some(pid) = running_postmaster(&me.layout.data_dir) {
            tracing::info!(pid, "adopting the embedded PostgreSQL left running");
            me.pid = Some(pid);
            return Ok(me);
        }
        let pidfile = me.layout.data_dir.join("postmaster.pid");
        if pidfile.exists() {
            tracing::warn!("removing a stale postmaster.pid");
            fs::remove_file(&pidfile).map_err(|e| Error::io("remove", &pidfile, e))?;
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&me.layout.log_file)
            .map_err(|e| Error::io("open", &me.layout.log_file, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("open", &me.layout.log_file, e))?;
        let mut cmd = command(&bin.join("postgres"), who, &me.layout.state_dir);
        cmd.arg("-D")
            .arg(&me.layout.data_dir)
            .arg("-k")
            .arg(&me.layout.socket_dir)
            .arg("-p")
            .arg(SOCKET_PORT.to_string())
            .args(["-c", "listen_addresses="])
            .args(["-c", "unix_socket_permissions=0700"])
            .args(["-c", "max_connections=200"])
            // Durability stays the default (fsync and synchronous_commit on). These only
            // size memory and background work for a booking workload: a buffer cache that
            // holds the hot tables, checkpoints spaced out by WAL volume rather than forced
            // every 1 GB of WAL (each checkpoint makes the next change of every page log a
            // full 8 kB image), and no JIT compilation (short OLTP statements never repay
            // it; a misestimated plan crossing `jit_above_cost` paid ~170 ms).
            .args(["-c", "shared_buffers=256MB"])
            .args(["-c", "max_wal_size=4GB"])
            .args(["-c", "jit=off"])
            // A new 16 MB WAL segment is created by whichever backend needs it, holding
            // WALWriteLock, so every commit waits meanwhile. Zero-filled (the default) that
            // took ~30 ms (strace: open .. 16 MB of zeroes .. fsync .. rename), once per ~6 s
            // at 1,000 holds/s on a fresh cluster (segments are only recycled after the first
            // checkpoints), and those seconds had the highest p99 of open-loop runs; created
            // sparse (ext4 root file system, so not copy-on-write) it took ~4 ms, with no
            // measured cost to commit latency. The cost: a full disk then shows as a failed
            // WAL write (PostgreSQL restarts) rather than a failed segment creation.
            .args(["-c", "wal_init_zero=off"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a terminal's Ctrl-C reaches bookd, which then stops
            // the cluster in order after draining requests.
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| Error::Embedded(format!("cannot start postgres: {e}")))?;
        me.pid = Some(child.id() as i32);
        me.child = Some(child);
        me.wait_socket()?;
        Ok(me)
    }

    fn wait_socket(&mut self) -> Result<()> {
        let sock = self
            .layout
            .socket_dir
            .join(format!(".s.PGSQL.{SOCKET_PORT}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    self.pid = None;
                    let tail = fs::read_to_string(&self.layout.log_file)
                        .map(|t| {
                            t.lines()
                                .rev()
                                .take(5)
                                .collect::<Vec<_>>()
                                .into_iter()
                                .rev()
                                .collect::<Vec<_>>()
                                .join(" | ")
                        })
                        .unwrap_or_default();
                    return Err(Error::Embedded(format!(
                        "postgres exited during start-up ({status}); {}: {tail}",
                        self.layout.log_file.display()
                    )));
                }
            }
            // The postmaster writes "ready" on line 8 of postmaster.pid once it accepts
            // connections.
            let ready = fs::read_to_string(self.layout.data_dir.join("postmaster.pid"))
                .map(|t| t.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
                .unwrap_or(false);
            if ready && sock.exists() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Embedded(
                    "postgres did not become ready within 60 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether this process will stop the cluster.
    pub fn owned(&self) -> bool {
        self.owned
    }

    /// Fast shutdown (SIGINT), escalating to immediate (SIGQUIT) after 20 s.
    pub fn stop(&mut self) {
        if !self.owned {
            return;
        }
        let Some(pid) = self.pid.take() else {
            return;
        };
        // SAFETY: plain signals to the postmaster we started or adopted.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let gone = match self.child.as_mut() {
                Some(c) => matches!(c.try_wait(), Ok(Some(_)) | Err(_)),
                None => !pid_alive(pid),
            };
            if gone {
                break;
            }
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGQUIT) };
                std::thread::sleep(Duration::from_millis(500));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = None;
        tracing::info!("embedded PostgreSQL stopped");
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop();
    }
}

fn initdb(bin: &Path, who: RunAs, layout: &Layout) -> Result<()> {
    let tmp = layout.state_dir.join("pgdata.init");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| Error::io("remove", &tmp, e))?;
    }
    if layout.data_dir.exists() {
        // A data directory without PG_VERSION is a failed earlier attempt (we initialise
        // beside it and rename), or not ours: refuse to touch a non-empty one.
        let empty = fs::read_dir(&layout.data_dir)
            .map_err(|e| Error::io("list", &layout.data_dir, e))?
            .next()
            .is_none();
        if !empty {
            return Err(Error::Embedded(format!(
                "{} exists, is not empty and is not a PostgreSQL data directory",
                layout.data_dir.display()
            )));
        }
        fs::remove_dir(&layout.data_dir).map_err(|e| Error::io("remove", &layout.data_dir, e))?;
    }
    fs::create_dir(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    chown(&tmp, who)?;
    set_mode(&tmp, 0o700)?;
    let out = command(&bin.join("initdb"), who, &layout.state_dir)
        .arg("-D")
        .arg(&tmp)
        .args(["-U", DB_USER, "-E", "UTF8", "--locale=C", "--auth=trust"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Embedded(format!("cannot run initdb: {e}")))?;
    if !out.status.success() {
        return Err(Error::Embedded(format!(
            "initdb failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    // Trust only over the private socket directory; nothing listens on TCP.
    let hba = tmp.join("pg_hba.conf");
    fs::write(&hba, "local all all trust\n").map_err(|e| Error::io("write", &hba, e))?;
    chown(&hba, who)?;
    fs::rename(&tmp, &layout.data_dir).map_err(|e| Error::io("rename", &tmp, e))?;
    Ok(())
}
