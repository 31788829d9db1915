//! A full disk with Litestream, on a small file system (a tmpfs, so these
//! tests run as root, as CI does; they are skipped with a message
//! otherwise): where the database and Litestream's staging live, and
//! where the replica lives. Sixteen clients write all along; the server
//! and Litestream are killed with SIGKILL and the database restored from
//! the replica: no write acknowledged more than 2 s before the kill may be
//! missing, and health must say while the replica lags.

use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::replication::{litestream, litestream_available};
use crate::storage::{fill, Tmpfs};
use crate::util::{wait_for, wait_until, Client, Server};

/// Nothing acknowledged longer ago than this before the kill may be lost.
const SHIPPED_WITHIN: Duration = Duration::from_secs(2);
const CLIENTS: usize = 16;

/// Clients creating tasks until stopped, each acknowledged task recorded
/// with the moment its 201 arrived.
struct Load {
    acks: Arc<Mutex<Vec<(i64, Instant)>>>,
    refused: Arc<AtomicU64>,
    /// Answers that are neither 201 nor 503 `storage_unavailable`.
    others: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// `clients` writing, each pausing `pause` between writes.
    fn start(svc: &Client, clients: usize, pause: Duration) -> Load {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicU64::new(0));
        let others = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|c| {
                let (svc, acks, refused, stop, others) = (
                    svc.clone(),
                    acks.clone(),
                    refused.clone(),
                    stop.clone(),
                    others.clone(),
                );
                std::thread::spawn(move || {
                    let prompt = "p".repeat(2048);
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let body =
                            json!({"title": format!("client {c} #{n}"), "description": prompt})
                                .to_string();
                        match svc.try_raw("POST", "/api/tasks", body.as_bytes()) {
                            Ok(r) if r.status == 201 => {
                                acks.lock()
                                    .unwrap()
                                    .push((r.json["id"].as_i64().unwrap(), Instant::now()));
                                std::thread::sleep(pause);
                            }
                            Ok(r) if r.status == 503 && r.error() == "storage_unavailable" => {
                                refused.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            Ok(r) => {
                                others
                                    .lock()
                                    .unwrap()
                                    .push(format!("{} {}", r.status, r.text));
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            // Killed: not acknowledged.
                            Err(_) => std::thread::sleep(Duration::from_millis(50)),
                        }
                    }
                })
            })
            .collect();
        Load {
            acks,
            refused,
            others,
            stop,
            threads,
        }
    }

    fn acked(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    fn last_ack(&self) -> Option<Instant> {
        self.acks.lock().unwrap().iter().map(|a| a.1).max()
    }

    /// Stops the clients; the acknowledged writes. Any answer but 201 or
    /// 503 `storage_unavailable` fails the test, with the server's log.
    fn finish(self, srv: &Server) -> Vec<(i64, Instant)> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let others = std::mem::take(&mut *self.others.lock().unwrap());
        assert!(
            others.is_empty(),
            "{} unexpected answers, the first: {}\n--- server errors ---\n{}",
            others.len(),
            others[0],
            srv.log()
                .lines()
                .filter(|l| l.contains("ERROR"))
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::mem::take(&mut *self.acks.lock().unwrap())
    }
}

/// A server replicated by Litestream (the shipped configuration), the
/// database on `db`, the replica at `replica`.
struct Replicated {
    srv: Server,
    ls: Child,
    replica: String,
}

impl Replicated {
    fn start(db: &Path, replica: String, reserve_mb: &str) -> Replicated {
        let srv = Server::start_on(
            tempfile::tempdir().unwrap(),
            db.to_path_buf(),
            &[
                ("OPS_REPLICA", "litestream"),
                ("OPS_DB_INIT", "1"),
                ("OPS_DB_RESERVE_MB", reserve_mb),
            ],
        );
        let r = srv.service().put(
            "/api/settings/replication_max_lag_seconds",
            &json!({"value": "5"}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        let log = srv.dir.path().join("litestream.log");
        let log = std::fs::File::create(&log).unwrap();
        let ls = litestream(&["replicate"], db, &replica)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start litestream");
        let svc = srv.service();
        wait_for(30, "the replica in sync", || {
            let h = svc.get("/api/dispatch/health?workers=false").json;
            (h["ok"] == true && h["replication"]["last_ok_at"].is_string()).then_some(())
        });
        Replicated { srv, ls, replica }
    }

    fn health(&self) -> Value {
        self.srv
            .service()
            .get("/api/dispatch/health?workers=false")
            .json
    }

    /// Kills both with SIGKILL at once; the moment of the kill.
    fn kill(&mut self) -> Instant {
        let killed = Instant::now();
        let _ = self.ls.kill();
        self.srv.signal_and_wait("KILL");
        let _ = self.ls.wait();
        killed
    }

    /// Keeps the logs and files of a failed round in a folder that outlives
    /// the test; its path.
    fn keep(&self, out: &Path) -> std::path::PathBuf {
        let keep = std::env::temp_dir().join(format!("ops-disk-full-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(
            self.srv.dir.path().join("litestream.log"),
            keep.join("litestream.log"),
        );
        let _ = std::fs::copy(self.srv.log_path(), keep.join("server.log"));
        for suffix in ["", "-wal", "-shm"] {
            let mut from = self.srv.db_path().into_os_string();
            from.push(suffix);
            let _ = std::fs::copy(&from, keep.join(format!("original.db{suffix}")));
        }
        let _ = std::fs::copy(out, keep.join("restored.db"));
        let _ = std::process::Command::new("cp")
            .args(["-a", self.replica.trim_start_matches("file://")])
            .arg(keep.join("replica"))
            .status();
        keep
    }

    /// Restores the replica into a new file and counts, of `acks`, those
    /// missing: (missing, missing older than SHIPPED_WITHIN, the oldest
    /// missing's age).
    fn restore_and_count(
        &self,
        acks: &[(i64, Instant)],
        killed: Instant,
    ) -> (usize, usize, Duration) {
        let out = self.srv.dir.path().join("restored.db");
        let o = litestream(&["restore"], &self.srv.db_path(), &self.replica)
            .arg("-o")
            .arg(&out)
            .arg(self.srv.db_path())
            .output()
            .expect("litestream restore");
        assert!(
            o.status.success(),
            "restore failed: {}{}\n--- litestream replicate ---\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(self.srv.dir.path().join("litestream.log")).unwrap_or_default()
        );
        let conn = rusqlite::Connection::open(&out).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap_or_else(|e| e.to_string());
        if check != "ok" {
            panic!(
                "the restored database is damaged (logs kept in {}): {}",
                self.keep(&out).display(),
                check.lines().take(5).collect::<Vec<_>>().join("; ")
            );
        }
        let mut have = conn.prepare("SELECT 1 FROM tasks WHERE id = ?1").unwrap();
        let (mut missing, mut old, mut oldest) = (0, 0, Duration::ZERO);
        for (id, at) in acks {
            if !have.exists([id]).unwrap() {
                let age = killed.saturating_duration_since(*at);
                missing += 1;
                oldest = oldest.max(age);
                if age > SHIPPED_WITHIN {
                    old += 1;
                }
            }
        }
        if old > 0 {
            eprintln!(
                "{old} writes older than {SHIPPED_WITHIN:?} missing: logs kept in {}",
                self.keep(&out).display()
            );
        }
        (missing, old, oldest)
    }
}

/// The `-wal` and staging sizes now, in bytes.
fn sizes(db: &Path) -> (u64, u64) {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::fs::metadata(&wal).map_or(0, |m| m.len());
    let staging = ops_center::db::replica::dir_size(&db.parent().unwrap().join("litestream"));
    (wal, staging)
}

/// What was seen while the disk was full.
#[derive(Default, Debug)]
struct Seen {
    max_lag: f64,
    max_wal: u64,
    max_staging: u64,
    health_ok_while_full: bool,
}

fn watch(rep: &Replicated, db: &Path, for_: Duration, seen: &mut Seen) {
    let until = Instant::now() + for_;
    while Instant::now() < until {
        let h = rep.health();
        if h["ok"] == true {
            seen.health_ok_while_full = true;
        }
        let lag = h["replication"]["lag_seconds"].as_f64().unwrap_or(0.0);
        seen.max_lag = seen.max_lag.max(lag);
        let (wal, staging) = sizes(db);
        seen.max_wal = seen.max_wal.max(wal);
        seen.max_staging = seen.max_staging.max(staging);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How a round of `database_disk_fills` goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Round {
    /// Space comes back before the kill: writes must resume, without a
    /// restart.
    Recover,
    /// The kill comes while the disk is still full.
    KillWhileFull,
    /// The disk never fills (the control).
    NoFill,
}

/// The disk holding the database and Litestream's staging fills under
/// load (from the moment Litestream starts), then both are killed and the
/// replica restored.
fn database_disk_fills(round: Round) {
    let recover = round == Round::Recover;
    if !litestream_available() {
        return;
    }
    let Some(fs) = Tmpfs::mount("96m") else {
        return;
    };
    let replica_dir = tempfile::tempdir().unwrap();
    let db = fs.path().join("ops.db");
    let mut rep = Replicated::start(
        &db,
        format!("file://{}", replica_dir.path().display()),
        "16",
    );
    let svc = rep.srv.service();
    let load = Load::start(&svc, CLIENTS, Duration::ZERO);
    wait_for(30, "writes under load", || {
        (load.acked() > 300).then_some(())
    });

    if round == Round::NoFill {
        // The same load, the disk never fills: the restored replica is
        // whole all the same (the server's own checkpoints beside
        // Litestream's made this damaged, one round in six). A time of
        // load, not a wait for a state: the sleep is the scenario.
        std::thread::sleep(Duration::from_secs(8));
        let killed = rep.kill();
        let acks = load.finish(&rep.srv);
        let (missing, old, oldest) = rep.restore_and_count(&acks, killed);
        eprintln!(
            "under load from Litestream's start: {} writes acknowledged, {missing} missing after \
             the kill, {old} of them older than {SHIPPED_WITHIN:?}, the oldest {oldest:?}",
            acks.len()
        );
        assert_eq!(old, 0, "{old} writes lost older than {SHIPPED_WITHIN:?}");
        return;
    }
    // The disk fills: writes are refused within a second, the replica
    // keeps what was acknowledged.
    let filler = fill(fs.path());
    let filled = Instant::now();
    let refused_before = load.refused.load(Ordering::SeqCst);
    wait_for(10, "writes refused", || {
        (load.refused.load(Ordering::SeqCst) > refused_before).then_some(())
    });
    let refused_after = filled.elapsed();
    let mut seen = Seen::default();
    watch(&rep, &db, Duration::from_secs(6), &mut seen);
    let h = rep.health();
    assert_eq!(h["storage_ok"], false, "{h}");
    assert!(
        h["warnings"].to_string().contains("reserve was released"),
        "{h}"
    );
    let acked_while_full = load
        .acks
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.1 > filled + Duration::from_secs(1))
        .count();

    let mut resumed = None;
    if recover {
        std::fs::remove_file(&filler).unwrap();
        let freed = Instant::now();
        wait_for(30, "writes back after space returned", || {
            load.last_ack().filter(|t| *t > freed).map(|_| ())
        });
        resumed = Some(freed.elapsed());
        wait_for(30, "health ok again", || {
            (rep.health()["ok"] == true).then_some(())
        });
        // Two more seconds of load after the recovery, for the restore
        // to be checked against (a time of load, not a wait for a state).
        std::thread::sleep(Duration::from_secs(2));
    }
    let killed = rep.kill();
    let acks = load.finish(&rep.srv);
    let failed_commits = rep
        .srv
        .log()
        .lines()
        .filter(|l| l.contains("group commit of") && l.contains("failed"))
        .count();
    let (missing, old, oldest) = rep.restore_and_count(&acks, killed);
    eprintln!(
        "disk full where the database lives ({}): {} writes acknowledged, refused {:?} after the \
         disk filled ({failed_commits} commits met the full disk), {acked_while_full} \
         acknowledged later while full, writes back {:?} after space returned; while full: \
         replica lag at most {:.1} s, WAL at most {:.1} MB, staging at most {:.1} MB, health ok \
         {}; after the kill {missing} missing, {old} of them older than {SHIPPED_WITHIN:?}, the \
         oldest {oldest:?}",
        if recover {
            "space back before the kill"
        } else {
            "killed while full"
        },
        acks.len(),
        refused_after,
        resumed,
        seen.max_lag,
        seen.max_wal as f64 / 1e6,
        seen.max_staging as f64 / 1e6,
        seen.health_ok_while_full
    );
    assert!(!seen.health_ok_while_full, "health said ok on a full disk");
    assert_eq!(acked_while_full, 0, "writes acknowledged on a full disk");
    assert_eq!(
        old, 0,
        "{old} writes acknowledged more than {SHIPPED_WITHIN:?} before the kill were lost"
    );
    assert!(seen.max_lag < 5.0, "the replica fell behind: {seen:?}");
}

#[test]
fn database_disk_full_with_litestream_recovers_and_loses_nothing_acknowledged() {
    database_disk_fills(Round::Recover);
}

#[test]
fn litestream_replica_restores_whole_under_load_from_its_start() {
    database_disk_fills(Round::NoFill);
}

#[test]
fn database_disk_full_with_litestream_killed_while_full_loses_nothing_acknowledged() {
    database_disk_fills(Round::KillWhileFull);
}

/// The disk holding the replica fills: the server goes on, health turns
/// not ok as the lag passes replication_max_lag_seconds, and once space is
/// back the replica catches up.
#[test]
fn replica_disk_full_shows_in_health_and_recovers() {
    if !litestream_available() {
        return;
    }
    let Some(fs) = Tmpfs::mount("64m") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ops.db");
    let replica = fs.path().join("replica");
    let mut rep = Replicated::start(&db, format!("file://{}", replica.display()), "64");
    let svc = rep.srv.service();
    // A steadier load than above: the replica's disk must hold what
    // piles up while it is full.
    let load = Load::start(&svc, 4, Duration::from_millis(20));
    wait_for(30, "writes under load", || {
        (load.acked() > 300).then_some(())
    });
    let filler = fill(fs.path());
    let filled = Instant::now();
    let h = wait_for(60, "health not ok as the replica lags", || {
        let h = rep.health();
        (h["ok"] == false).then_some(h)
    });
    let noticed = filled.elapsed();
    let rep_state = &h["replication"];
    assert!(rep_state["lag_seconds"].as_f64().unwrap() > 5.0, "{h}");
    assert!(
        rep_state["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no space left"),
        "{h}"
    );
    assert_eq!(h["storage_ok"], true, "the server's own disk is fine: {h}");
    let report = svc.post("/api/watchdog/run", &json!({})).json;
    assert!(
        report["alerts"].to_string().contains("replication.lag"),
        "{report}"
    );
    let acked_while_full = load.acked();
    wait_until(30, "the server to go on writing", || {
        load.acked() > acked_while_full
    });

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    wait_for(60, "the replica caught up", || {
        let h = rep.health();
        (h["ok"] == true).then_some(())
    });
    let caught_up = freed.elapsed();
    // Two more seconds of load after the catch-up, for the restore to be
    // checked against (a time of load, not a wait for a state).
    std::thread::sleep(Duration::from_secs(2));
    let killed = rep.kill();
    let acks = load.finish(&rep.srv);
    let (missing, old, oldest) = rep.restore_and_count(&acks, killed);
    eprintln!(
        "disk full where the replica lives: {} writes acknowledged; health not ok {noticed:?} \
         after the replica's disk filled, the replica caught up {caught_up:?} after space \
         returned; after the kill {missing} missing, {old} older than {SHIPPED_WITHIN:?}, the \
         oldest {oldest:?}",
        acks.len()
    );
    assert_eq!(old, 0, "{old} writes lost older than {SHIPPED_WITHIN:?}");
}

/// Disk headroom with Litestream: the peaks of the WAL, Litestream's
/// staging and the database under the load above (16 clients writing
/// 2 KiB prompts as fast as they are answered; OPS_HEADROOM_CLIENTS and
/// OPS_HEADROOM_PAUSE_MS between a client's writes make it lighter) for
/// OPS_HEADROOM_SECONDS (default 300). Long, so run by hand:
/// `cargo test --test it -- --ignored headroom --nocapture`.
#[test]
#[ignore]
fn headroom_with_litestream() {
    if !litestream_available() {
        return;
    }
    let secs: u64 = std::env::var("OPS_HEADROOM_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dir = tempfile::tempdir().unwrap();
    let replica = tempfile::tempdir().unwrap();
    let db = dir.path().join("ops.db");
    let mut rep = Replicated::start(&db, format!("file://{}", replica.path().display()), "64");
    let env = |k: &str, d: u64| -> u64 {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let clients = env("OPS_HEADROOM_CLIENTS", CLIENTS as u64) as usize;
    let pause = Duration::from_millis(env("OPS_HEADROOM_PAUSE_MS", 0));
    let load = Load::start(&rep.srv.service(), clients, pause);
    let started = Instant::now();
    let (mut wal, mut staging, mut max_lag) = (0u64, 0u64, 0f64);
    let mut marks = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        let (w, s) = sizes(&db);
        wal = wal.max(w);
        staging = staging.max(s);
        let lag = rep.health()["replication"]["lag_seconds"]
            .as_f64()
            .unwrap_or(0.0);
        max_lag = max_lag.max(lag);
        let at = started.elapsed().as_secs();
        if at % 60 == 0 && marks.last().map(|m: &(u64, u64, u64)| m.0) != Some(at) {
            marks.push((at, wal, staging));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let writes = load.acked();
    let db_bytes = std::fs::metadata(&db).map_or(0, |m| m.len());
    let killed = rep.kill();
    let acks = load.finish(&rep.srv);
    let (_, old, oldest) = rep.restore_and_count(&acks, killed);
    // What the start-up check costs on a file this size.
    let restored = rep.srv.dir.path().join("restored.db");
    let conn = rusqlite::Connection::open(&restored).unwrap();
    let t = Instant::now();
    let _: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .unwrap();
    let quick = t.elapsed();
    let t = Instant::now();
    let _: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    let full = t.elapsed();
    eprintln!(
        "start-up check of the restored {:.1} MB file: quick_check {quick:?}, integrity_check {full:?}",
        std::fs::metadata(&restored).map_or(0, |m| m.len()) as f64 / 1e6
    );
    eprintln!(
        "headroom over {secs} s, {clients} clients pausing {pause:?}, {writes} writes ({:.0}/s): WAL at most {:.1} MB, staging at most \
         {:.1} MB, database {:.1} MB at the end, replica lag at most {max_lag:.1} s; peaks so far \
         by minute (s, WAL MB, staging MB): {:?}; after the kill {old} lost older than \
         {SHIPPED_WITHIN:?}, the oldest lost {oldest:?}",
        writes as f64 / secs as f64,
        wal as f64 / 1e6,
        staging as f64 / 1e6,
        db_bytes as f64 / 1e6,
        marks
            .iter()
            .map(|(s, w, st)| (*s, *w / 1_000_000, *st / 1_000_000))
            .collect::<Vec<_>>()
    );
}
