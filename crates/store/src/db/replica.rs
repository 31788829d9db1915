//! How far behind the replica is: with Litestream replicating the file
//! (`OPS_REPLICA=litestream`), a thread asks Litestream through its control
//! socket, about once a second, to sync the database to the replica and
//! to wait until it has (`POST /sync {"wait": true}`, Litestream 0.5.9 or
//! later). Litestream first copies everything the WAL holds into its
//! staging files, then uploads every staged file; when it answers, every
//! write committed before the request was sent is in the replica. That instant is
//! `last_ok_at`, and the lag is the time since: about a second while
//! Litestream keeps up, growing while it cannot stage (a full disk) or
//! upload (a full or unreachable replica), or does not run.
//!
//! Asking, rather than reading Litestream's metrics, also drives recovery:
//! Litestream backs off for up to five minutes after repeated failures,
//! and a request makes it try again at once, so a replica catches up as
//! soon as space or the network is back.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ops_protocol::health::Replication;

/// The Litestream configuration the package ships (the same file as
/// `examples/litestream.yml`).
pub const LITESTREAM_CONFIG: &str = "/usr/share/ops-center/litestream.yml";

/// How often Litestream is asked, while it answers.
const EVERY: Duration = Duration::from_secs(1);
/// How often after a failure (an unreachable replica costs one upload
/// attempt each time).
const AFTER_FAILURE: Duration = Duration::from_secs(2);
/// How long Litestream may take to stage and upload, per request.
const SYNC_TIMEOUT_SECS: u64 = 10;

/// The control socket in Litestream's folder (`socket.path` of the shipped
/// configuration).
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("control.sock")
}

/// The staging files (`meta-path` of the shipped configuration).
pub fn staging_path(dir: &Path) -> PathBuf {
    dir.join("meta")
}

#[derive(Default)]
struct State {
    /// Wall-clock ms of the last request whose sync completed.
    last_ok: Option<i64>,
    /// Why the last request failed, while it did.
    error: Option<String>,
    /// Whether the last failure said the disk is full.
    disk_full: bool,
    /// Bytes under the staging folder at the last request.
    staging_bytes: u64,
}

/// The replication monitor: off unless `start` was called.
#[derive(Default)]
pub struct Monitor {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Inner {
    configured: AtomicBool,
    /// Wall-clock ms when the monitor started: the lag before any answer
    /// counts from there.
    started: Mutex<i64>,
    state: Mutex<State>,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// The wall clock in ms (replication lag is real time, whatever the test
/// clock of `ops_base::time` says).
fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Monitor {
    /// Starts asking the Litestream whose folder is `dir` about `db`.
    pub fn start(&self, db: &Path, dir: &Path) {
        let db = std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf());
        self.inner.configured.store(true, Ordering::SeqCst);
        *lock(&self.inner.started) = wall_ms();
        let inner = self.inner.clone();
        let (socket, staging) = (socket_path(dir), staging_path(dir));
        log::info!(
            "replication: asking Litestream through {} how far behind the replica of {} is",
            socket.display(),
            db.display()
        );
        let thread = std::thread::Builder::new()
            .name("replica".into())
            .spawn(move || run(&inner, &db, &socket, &staging))
            .expect("spawn replica thread");
        *lock(&self.thread) = Some(thread);
    }

    pub fn stop(&self) {
        *lock(&self.inner.stop) = true;
        self.inner.wake.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }

    /// What health and the metrics show.
    pub fn status(&self) -> Replication {
        if !self.inner.configured.load(Ordering::SeqCst) {
            return Replication {
                configured: false,
                lag_seconds: None,
                last_ok_at: None,
                error: None,
            };
        }
        let now = wall_ms();
        let state = lock(&self.inner.state);
        let since = state.last_ok.unwrap_or_else(|| *lock(&self.inner.started));
        Replication {
            configured: true,
            lag_seconds: Some(((now - since).max(0) as f64 / 100.0).round() / 10.0),
            last_ok_at: state.last_ok.map(ops_base::time::rfc3339),
            error: state.error.clone(),
        }
    }

    /// Whether Litestream's last failure was a full disk (its staging
    /// files could not be written).
    pub fn disk_full(&self) -> bool {
        lock(&self.inner.state).disk_full
    }

    /// A probe of `disk_full` that outlives this borrow (for the space
    /// thread).
    pub fn disk_full_probe(&self) -> impl Fn() -> bool + Send + 'static {
        let inner = self.inner.clone();
        move || lock(&inner.state).disk_full
    }

    /// Bytes in Litestream's staging folder at the last check.
    pub fn staging_bytes(&self) -> u64 {
        lock(&self.inner.state).staging_bytes
    }

    pub fn configured(&self) -> bool {
        self.inner.configured.load(Ordering::SeqCst)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn run(inner: &Inner, db: &Path, socket: &Path, staging: &Path) {
    let mut logged_error: Option<String> = None;
    loop {
        let asked = wall_ms();
        let started = Instant::now();
        let answer = sync(socket, db);
        let staging_bytes = dir_size(staging);
        let pause = {
            let mut state = lock(&inner.state);
            state.staging_bytes = staging_bytes;
            match answer {
                Ok(()) => {
                    if logged_error.take().is_some() {
                        log::info!("replication: Litestream synced the replica again");
                    }
                    state.last_ok = Some(asked);
                    state.error = None;
                    state.disk_full = false;
                    EVERY
                }
                Err(e) => {
                    state.disk_full = is_local_disk_full(&e);
                    if logged_error.as_deref() != Some(e.as_str()) {
                        log::warn!("replication: {e}");
                        logged_error = Some(e.clone());
                    }
                    state.error = Some(e);
                    AFTER_FAILURE
                }
            }
        };
        let stop = lock(&inner.stop);
        let wait = pause.saturating_sub(started.elapsed());
        let (stop, _) = inner
            .wake
            .wait_timeout_while(stop, wait, |s| !*s)
            .unwrap_or_else(|p| p.into_inner());
        if *stop {
            return;
        }
    }
}

/// Whether Litestream's error says the disk it stages on is full (its
/// first step, `db sync`), not the replica's (`replica sync`), which the
/// server's space cannot help.
fn is_local_disk_full(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    (e.contains("no space left")
        || e.contains("disk full")
        || e.contains("disk is full")
        || e.contains("quota exceeded"))
        && !e.contains("replica sync")
}

/// Asks Litestream to sync `db` to its replica and wait for it.
fn sync(socket: &Path, db: &Path) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "Litestream's control socket {} does not answer ({e}): is ops-center-litestream.service \
             running, with the shipped configuration (Litestream 0.5.9 or later)?",
            socket.display()
        )
    })?;
    let io = |e: std::io::Error| format!("Litestream's control socket {}: {e}", socket.display());
    let timeout = Duration::from_secs(SYNC_TIMEOUT_SECS + 5);
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let body = serde_json::json!({
        "path": db.to_string_lossy(),
        "wait": true,
        "timeout": SYNC_TIMEOUT_SECS,
    })
    .to_string();
    let request = format!(
        "POST /sync HTTP/1.1\r\nHost: litestream\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io)?;
    let (status, body) = parse_response(&raw).ok_or_else(|| {
        format!(
            "Litestream's control socket {} answered garbage",
            socket.display()
        )
    })?;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status != 200 {
        let why = json["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
        return Err(format!("Litestream cannot sync the replica: {why}"));
    }
    // 200 to a sync with "wait": Litestream staged everything the WAL
    // held when it was asked, then uploaded everything staged. (The
    // transaction numbers it adds are read after that, and its own monitor
    // may have staged one more meanwhile: they need not match.)
    if json["status"].is_string() {
        Ok(())
    } else {
        Err(format!(
            "Litestream's answer to a sync is not one (Litestream 0.5.9 or later is needed): {}",
            String::from_utf8_lossy(&body).trim()
        ))
    }
}

/// The status and body of an HTTP/1.1 response (plain or chunked).
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let status = head
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let mut body = raw[split + 4..].to_vec();
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(pos) = rest.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..pos]).ok()?.trim(), 16).ok()?;
            if size == 0 || rest.len() < pos + 2 + size {
                break;
            }
            out.extend_from_slice(&rest[pos + 2..pos + 2 + size]);
            rest = rest.get(pos + 2 + size + 2..).unwrap_or_default();
        }
        body = out;
    }
    Some((status, body))
}

/// The bytes of the files under `dir` (0 when it does not exist).
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain), Some((200, b"{}".to_vec())));
        let chunked =
            b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((500, b"abcde".to_vec())));
        assert_eq!(parse_response(b"nonsense"), None);
    }

    #[test]
    fn full_disks_are_recognised() {
        assert!(is_local_disk_full(
            "Litestream cannot sync the replica: sync database: db sync: stage-write: disk full: write /x: no space left on device"
        ));
        assert!(is_local_disk_full(
            "Litestream cannot sync the replica: sync database: db sync: checkpoint: database or disk is full (13)"
        ));
        // The replica's disk: nothing the server's reserve can do.
        assert!(!is_local_disk_full(
            "Litestream cannot sync the replica: sync database: replica sync: write ltx file: write /r/ltx/0/1.ltx.tmp: no space left on device"
        ));
        assert!(!is_local_disk_full("connection refused"));
    }

    #[test]
    fn an_unconfigured_monitor_says_so() {
        let m = Monitor::default();
        let s = m.status();
        assert!(!s.configured && s.lag_seconds.is_none() && s.error.is_none());
    }
}
