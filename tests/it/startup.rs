//! What `serve` checks before it serves a file: an empty (zero-length)
//! file is refused unless `--init`; a missing file is refused when
//! replication is configured (a new database would replace the replica's
//! latest state) unless `--init` or `OPS_DB_INIT=1`; a damaged file is
//! refused with the damage and the way back, and nothing is written to it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{task, TaskSpec};
use crate::util::{bin, Server, TOKEN};

/// Runs `ops-center serve` on `db` with `args` and `env`, expecting it to
/// refuse: returns its output once it exits (panics if it starts serving).
fn refused_start(db: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OPS_SERVICE_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run ops-center serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve did not refuse {}: {}{}",
                db.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && !stdout.contains("listening on"),
        "serve started on {}: {stdout}",
        db.display()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("internal error"),
        "a start-up refusal is no internal error: {stderr}"
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn bytes(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        f.read_to_end(&mut v).unwrap();
    }
    v
}

/// A stopped server's database with 200 tasks in it.
fn stopped_with_tasks() -> Server {
    let mut srv = Server::start();
    let svc = srv.service();
    for i in 0..200 {
        svc.new_task(&task(&format!("task {i}")).description(&"y".repeat(500)));
    }
    assert!(srv.signal_and_wait("TERM").success());
    srv
}

#[test]
fn an_empty_file_is_refused_unless_init() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ops.db");
    std::fs::write(&db, b"").unwrap();
    let out = refused_start(&db, &[], &[]);
    let err = stderr(&out);
    for needle in [
        db.display().to_string().as_str(),
        "empty (zero-length)",
        "--init",
        "OPS_DB_INIT=1",
        "admin restore --from",
    ] {
        assert!(err.contains(needle), "{needle:?} not in: {err}");
    }
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "nothing written");

    // With --init the same file becomes a new database.
    let mut started = serve(&db, &["--init"], &dir.path().join("init.log"));
    crate::harness::end(&mut started.child);
    assert!(std::fs::metadata(&db).unwrap().len() > 0);
    // And so with OPS_DB_INIT=1.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ops.db");
    std::fs::write(&db, b"").unwrap();
    let srv = Server::start_on(dir, db, &[("OPS_DB_INIT", "1")]);
    assert_eq!(srv.service().get("/api/tasks").status, 200);
}

/// Starts `ops-center serve` on `db` with `args`, expecting it to serve.
fn serve(db: &Path, args: &[&str], log: &Path) -> crate::harness::Started {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(args)
        .env_clear()
        .env("OPS_SERVICE_TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    crate::harness::start_serve(cmd, log, Duration::from_secs(60)).expect("serves")
}

#[test]
fn a_missing_file_is_refused_when_replication_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ops.db");
    for env in [
        vec![("OPS_REPLICA", "litestream")],
        // As the shipped unit starts it: Litestream's environment file.
        vec![("LITESTREAM_REPLICA_URL", "file:///nowhere")],
    ] {
        let out = refused_start(&db, &[], &env);
        let err = stderr(&out);
        for needle in [
            "does not exist",
            "replica",
            "litestream restore",
            "ops-center serve --init",
            "OPS_DB_INIT=1",
        ] {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
        assert!(!db.exists(), "no file created");
    }
    // Told so, it starts a new database.
    let srv = Server::start_on(
        dir,
        db.clone(),
        &[("OPS_REPLICA", "litestream"), ("OPS_DB_INIT", "1")],
    );
    assert_eq!(srv.service().get("/api/tasks").status, 200);
    drop(srv);
    // An existing database needs no --init.
    let mut srv = Server::start();
    assert!(srv.signal_and_wait("TERM").success());
    srv.set_env("OPS_REPLICA", "litestream");
    srv.start_again();
    assert_eq!(srv.service().get("/api/tasks").status, 200);
}

#[test]
fn a_damaged_file_is_refused_with_the_damage_and_left_as_it_was() {
    let srv = stopped_with_tasks();
    let good = srv.db_path();
    let check = |db: &Path, args: &[&str]| {
        let before = bytes(db);
        let out = refused_start(db, args, &[]);
        let err = stderr(&out);
        for needle in [
            "is damaged and is not served",
            "admin check --db",
            "admin restore --from",
            "litestream restore",
        ] {
            assert!(err.contains(needle), "{needle:?} not in: {err}");
        }
        assert!(
            bytes(db) == before,
            "the damaged file was written to: {err}"
        );
        err
    };

    // Cut by 1,000 bytes.
    let cut = srv.dir.path().join("cut.db");
    std::fs::copy(&good, &cut).unwrap();
    let len = std::fs::metadata(&cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len - 1000)
        .unwrap();
    let err = check(&cut, &[]);
    eprintln!("cut by 1000 bytes: {err}");

    // Eight pages overwritten.
    let pages = srv.dir.path().join("pages.db");
    std::fs::copy(&good, &pages).unwrap();
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&pages)
            .unwrap();
        for page in [4u64, 9, 14, 19, 24, 29, 34, 39] {
            f.seek(SeekFrom::Start(page * 4096)).unwrap();
            f.write_all(&[0xa5; 4096]).unwrap();
        }
    }
    let err = check(&pages, &[]);
    assert!(err.contains("quick_check"), "{err}");
    let err = check(&pages, &["--check-full"]);
    assert!(err.contains("integrity_check"), "{err}");
    // --init never initializes over damage.
    check(&pages, &["--init"]);

    // Not a database at all.
    let junk = srv.dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x42u8; 64 * 1024]).unwrap();
    check(&junk, &[]);
}

#[test]
fn the_full_check_passes_a_good_file_and_a_newer_schema_is_refused_plainly() {
    let srv = stopped_with_tasks();
    // `--check-full` on a good file: it serves.
    let db = srv.db_path();
    let log = srv.dir.path().join("full.log");
    let mut started = serve(&db, &["--check-full"], &log);
    crate::harness::end(&mut started.child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("integrity_check ok"), "{text}");

    // A file from a newer build.
    srv.sql_write()
        .execute_batch("PRAGMA user_version = 999")
        .unwrap();
    let out = refused_start(&db, &[], &[]);
    let err = stderr(&out);
    assert!(err.contains("newer than this binary"), "{err}");
}

/// A file damaged while it is served: the requests that meet the damage
/// answer 503 `storage_unavailable` naming it, never 500, and the next
/// start refuses the file.
#[test]
fn damage_found_while_serving_answers_503_and_the_next_start_refuses() {
    let mut srv = stopped_with_tasks();
    srv.start_again();
    let db = srv.db_path();
    let len = std::fs::metadata(&db).unwrap().len();
    {
        let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
        let pages = len / 4096;
        for page in (pages / 4..pages).step_by(3) {
            f.seek(SeekFrom::Start(page * 4096)).unwrap();
            f.write_all(&[0x5a; 4096]).unwrap();
        }
    }
    let svc = srv.service();
    let mut seen = None;
    for _ in 0..20 {
        let r = svc.get("/api/tasks?limit=1000");
        assert_ne!(r.status, 500, "{}", r.text);
        if r.status == 503 {
            seen = Some(r);
            break;
        }
        let w = svc.post(
            "/api/tasks",
            &json!({"title": "after the damage", "description": "z".repeat(3000)}),
        );
        assert_ne!(w.status, 500, "{}", w.text);
        if w.status == 503 {
            seen = Some(w);
            break;
        }
    }
    let r = seen.expect("no request met the damage");
    assert_eq!(r.error(), "storage_unavailable", "{}", r.text);
    assert!(r.text.contains("damaged"), "{}", r.text);
    let _ = srv.signal_and_wait("KILL");
    let out = refused_start(&db, &[], &[]);
    assert!(stderr(&out).contains("is damaged"), "{}", stderr(&out));
}
