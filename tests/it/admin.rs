//! `ops-center admin`: run as a second process beside a live server on the
//! same database file.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::json;

use ops_center::protocol::events::EventList;

use crate::client::{task, TaskSpec};
use crate::util::{bin, Client, Server, ADMIN, TOKEN};

const NEW_TOKEN: &str = "rotated-service-token-abcdefghijklmnop";

/// Runs `ops-center admin ARGS` with only `env` set and `stdin` as input.
fn admin(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("admin")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start ops-center admin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("wait for ops-center admin")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The `task_ids.raised` events `c` sees.
fn raised(c: &Client) -> EventList {
    c.events("?kind=task_ids.raised").ok()
}

fn db_arg(srv: &Server) -> String {
    srv.db_path().to_str().unwrap().to_string()
}

#[test]
fn set_service_token_from_stdin_takes_effect_on_the_running_server() {
    let srv = Server::start();
    let db = db_arg(&srv);
    assert_eq!(srv.service().get("/api/auth/me").status, 200);

    let o = admin(
        &["set-service-token", "--db", &db],
        &[],
        &format!("{NEW_TOKEN}\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("service token from standard input set"),
        "{}",
        text(&o)
    );

    // No restart: the server reads the token on every request.
    let new = srv.client().header("X-OPS-Service-Token", NEW_TOKEN);
    assert_eq!(new.me().ok().role, "service");
    assert_eq!(srv.service().get("/api/auth/me").status, 401, "old token");

    // The same token again changes nothing and says so.
    let o = admin(
        &["set-service-token"],
        &[("OPS_DB", &db), ("OPS_SERVICE_TOKEN", NEW_TOKEN)],
        "",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("nothing changed"),
        "{}",
        text(&o)
    );
    // --stdin reads standard input even with OPS_SERVICE_TOKEN set (e.g.
    // still exported with the previous token).
    const THIRD: &str = "third-service-token-0123456789abcdefgh";
    let o = admin(
        &["set-service-token", "--stdin", "--db", &db],
        &[("OPS_SERVICE_TOKEN", NEW_TOKEN)],
        &format!("{THIRD}\n"),
    );
    assert!(o.status.success(), "{}", text(&o));
    let third = srv.client().header("X-OPS-Service-Token", THIRD);
    assert_eq!(third.get("/api/auth/me").status, 200);
    assert_eq!(new.get("/api/auth/me").status, 401);

    let events = third.events("?limit=1000");
    let rotations = events
        .ok()
        .events
        .iter()
        .filter(|e| e.kind == "settings.changed" && e.actor == "cli:admin")
        .count();
    assert_eq!(rotations, 2, "{}", events.text);
    assert!(!events.text.contains(NEW_TOKEN), "the token never shows");
    assert!(!events.text.contains(THIRD), "the token never shows");
}

#[test]
fn set_service_token_refuses_bad_input_and_changes_nothing() {
    let srv = Server::start();
    let db = db_arg(&srv);
    let before = srv.fingerprint();
    // (arguments, environment, standard input, expected in stderr)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &["set-service-token", "--db", &db],
            &[],
            "short-token\n",
            "at least 32",
        ),
        (
            &["set-service-token", "--db", &db],
            &[("OPS_SERVICE_TOKEN", &"ab".repeat(20))],
            "",
            "8 different",
        ),
        (
            &["set-service-token", "--db", &db],
            &[],
            "",
            "set OPS_SERVICE_TOKEN",
        ),
        (
            &["set-service-token", "--db", &db, "--token", NEW_TOKEN],
            &[],
            "",
            "not taken from the command line",
        ),
        (
            &["set-service-token", "--db", "/nonexistent/ops.db"],
            &[("OPS_SERVICE_TOKEN", NEW_TOKEN)],
            "",
            "not found",
        ),
        (&["set-service-token", "--bogus"], &[], "", "unknown option"),
        (&["rotate-everything"], &[], "", "unknown admin command"),
    ];
    for (args, env, stdin, expected) in cases {
        let o = admin(args, env, stdin);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{args:?} should fail: {}", text(&o));
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {}",
            text(&o)
        );
    }
    assert!(!Path::new("/nonexistent/ops.db").exists());
    assert_eq!(
        srv.fingerprint(),
        before,
        "a refused command changed nothing"
    );
    assert_eq!(srv.service().get("/api/auth/me").status, 200);
}

#[test]
fn set_admin_password_creates_and_rotates_admins() {
    let srv = Server::start();
    let db = db_arg(&srv);

    // A new admin, user and password on stdin.
    let o = admin(
        &["set-admin-password", "--db", &db],
        &[],
        "ops-owner\nfirst-password-4821\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("\"ops-owner\" created"), "{}", text(&o));
    assert!(
        out.contains(&format!("other global admins remain: {ADMIN}")),
        "{}",
        text(&o)
    );
    let owner = srv.login("ops-owner", "first-password-4821");
    assert_eq!(owner.me().ok().role, "admin");

    // Rotating it from the environment ends its sessions.
    let o = admin(
        &["set-admin-password", "--user", "ops-owner"],
        &[
            ("OPS_DB", &db),
            ("OPS_ADMIN_PASSWORD", "second-password-9377"),
        ],
        "",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("sessions were ended"),
        "{}",
        text(&o)
    );
    assert_eq!(owner.get("/api/auth/me").status, 401, "old session ended");
    let old = srv.client().log_in("ops-owner", "first-password-4821");
    assert_eq!(old.status, 401);
    srv.login("ops-owner", "second-password-9377");

    // Weak or missing input is refused.
    for (args, env, stdin, expected) in [
        (
            vec!["set-admin-password", "--db", &db, "--user", "x"],
            vec![("OPS_ADMIN_PASSWORD", "short")],
            "",
            "at least 12",
        ),
        (
            vec!["set-admin-password", "--db", &db, "--user", "bad name"],
            vec![("OPS_ADMIN_PASSWORD", "long-enough-password")],
            "",
            "admin user",
        ),
        (
            vec!["set-admin-password", "--db", &db],
            vec![],
            "",
            "no admin user given",
        ),
        (
            vec!["set-admin-password", "--db", &db, "--password", "x"],
            vec![],
            "",
            "not taken from the command line",
        ),
    ] {
        let o = admin(&args, &env, stdin);
        assert!(!o.status.success(), "{args:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(expected),
            "{args:?}: expected {expected:?}: {}",
            text(&o)
        );
    }
}

#[test]
fn backup_is_a_private_consistent_copy_taken_while_serving() {
    let srv = Server::start();
    let db = db_arg(&srv);
    srv.service()
        .new_task(&task("kept in the backup").description("p"));
    let to = srv.dir.path().join("copy.db");
    let to_s = to.to_str().unwrap();

    let o = admin(&["backup", "--db", &db, "--to", to_s], &[], "");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("integrity check ok"),
        "{}",
        text(&o)
    );
    let mode = std::fs::metadata(&to).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy holds secrets");
    let copy = rusqlite::Connection::open(&to).unwrap();
    let title: String = copy
        .query_row(
            "SELECT title FROM tasks ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(title, "kept in the backup");
    let token: String = copy
        .query_row(
            "SELECT value FROM ops_settings WHERE key = 'service_api_token'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(token, TOKEN);
    drop(copy);
    // The server kept serving.
    assert_eq!(srv.service().get("/api/tasks").status, 200);

    // Never overwrites; says what is missing.
    let before = std::fs::read(&to).unwrap();
    for (args, expected) in [
        (
            vec!["backup", "--db", &db, "--to", to_s],
            "refusing to overwrite",
        ),
        (vec!["backup", "--db", &db], "needs --to FILE"),
        (
            vec!["backup", "--db", &db, "--to", "/nonexistent/dir/x.db"],
            "does not exist",
        ),
        (
            vec![
                "backup",
                "--db",
                "/nonexistent/ops.db",
                "--to",
                "/tmp/never.db",
            ],
            "not found",
        ),
    ] {
        let o = admin(&args, &[], "");
        assert!(!o.status.success(), "{args:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(expected),
            "{args:?}: expected {expected:?}: {}",
            text(&o)
        );
    }
    assert_eq!(std::fs::read(&to).unwrap(), before);
    assert!(!Path::new("/tmp/never.db").exists());
}

#[test]
fn check_passes_a_good_file_and_fails_on_wrong_task_counts() {
    let mut srv = Server::start();
    srv.service().new_task(&task("counted").agent("codex"));
    assert!(srv.signal_and_wait("TERM").success());
    let db = srv.db_path().display().to_string();

    let o = admin(&["check", "--db", &db], &[], "");
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("integrity check: ok"), "{out}");
    let current = format!(
        "schema version: {} (current)",
        ops_center::store::db::migrate::latest()
    );
    assert!(out.contains(&current), "{out}");
    assert!(out.contains("task counts: ok (1 tasks)"), "{out}");
    assert!(
        out.contains("last stop: clean (task ids continue above 1)"),
        "{out}"
    );

    srv.sql_write()
        .execute("UPDATE task_counts SET n = n + 2 WHERE n > 0", [])
        .unwrap();
    let o = admin(&["check", "--db", &db], &[], "");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("task_counts says 3, the rows are 1"), "{out}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("failed its checks: task counts"),
        "{}",
        text(&o)
    );

    let o = admin(&["check", "--db", "/nonexistent/ops.db"], &[], "");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

/// `admin restore` puts a backup back: never while a server uses the
/// database, never a backup that fails its checks, and the database it
/// replaces is kept aside.
#[test]
fn restore_replaces_a_stopped_database_with_a_checked_backup() {
    let mut srv = Server::start();
    let db = db_arg(&srv);
    let svc = srv.service();
    svc.new_task(&task("in the backup").description("p"));
    let backup = srv.dir.path().join("backup.db");
    let backup_s = backup.to_str().unwrap();
    let o = admin(&["backup", "--db", &db, "--to", backup_s], &[], "");
    assert!(o.status.success(), "{}", text(&o));
    svc.new_task(&task("after the backup").description("p"));

    // The server holds the file: refused, nothing changed.
    let before = srv.fingerprint();
    let o = admin(&["restore", "--db", &db, "--from", backup_s], &[], "");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("in use by a running server"),
        "{}",
        text(&o)
    );
    assert_eq!(srv.fingerprint(), before);

    // A backup that fails its checks: refused.
    let bad = srv.dir.path().join("bad.db");
    let mut bytes = std::fs::read(&backup).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 4096].fill(0x5a);
    std::fs::write(&bad, &bytes).unwrap();
    let status = srv.signal_and_wait("TERM");
    assert!(status.success());
    let o = admin(
        &["restore", "--db", &db, "--from", bad.to_str().unwrap()],
        &[],
        "",
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("nothing was restored"), "{}", text(&o));

    // Stopped, with a good backup: restored, the old file kept aside.
    let o = admin(&["restore", "--db", &db, "--from", backup_s], &[], "");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("kept as"), "{}", text(&o));
    let aside: Vec<_> = std::fs::read_dir(srv.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".before-restore-"))
        .collect();
    assert!(!aside.is_empty(), "the replaced database is kept");
    let mode = std::fs::metadata(srv.db_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        text(&o).contains(
            "task ids: the next task gets an id above 1002 (the backup's highest was 1, the replaced file's 2, margin 1000)"
        ),
        "{}",
        text(&o)
    );
    srv.start_again();
    let titles = srv.service().get("/api/tasks").text;
    assert!(titles.contains("in the backup"), "{titles}");
    assert!(!titles.contains("after the backup"), "{titles}");
    let o = admin(&["check", "--db", &db], &[], "");
    assert!(o.status.success(), "{}", text(&o));

    // Restore then create: task 2, acknowledged before the restore and
    // lost with it, is never given again; the move is recorded.
    let svc = srv.service();
    assert_eq!(svc.new_task(&task("after the restore")), 1003);
    let ev = raised(&svc);
    assert_eq!(ev.total, 1, "{ev:?}");
    let e = &ev.events[0];
    assert_eq!(e.actor, "cli:admin");
    assert_eq!(
        e.payload,
        json!({"from": 1, "to": 1002, "margin": 1000, "at_least": 2, "reason": "restore"})
    );
    // The restore left the file as a clean stop does: the start did not
    // move the mark again, nor does a clean restart.
    srv.restart();
    assert_eq!(srv.service().new_task(&task("next")), 1004);
    assert_eq!(raised(&srv.service()).total, 1);
}

/// `--id-margin` chooses how many ids a restore skips; a bad value is
/// refused before anything is touched.
#[test]
fn restore_takes_an_id_margin_and_refuses_a_bad_one() {
    let mut srv = Server::start();
    let db = db_arg(&srv);
    for i in 0..3 {
        srv.service().new_task(&task(&format!("t{i}")));
    }
    let backup = srv.dir.path().join("backup.db");
    let backup_s = backup.to_str().unwrap();
    assert!(admin(&["backup", "--db", &db, "--to", backup_s], &[], "")
        .status
        .success());
    assert!(srv.signal_and_wait("TERM").success());
    let before = std::fs::read(srv.db_path()).unwrap();
    for bad in ["-1", "many", "1000000001", ""] {
        let o = admin(
            &[
                "restore",
                "--db",
                &db,
                "--from",
                backup_s,
                "--id-margin",
                bad,
            ],
            &[],
            "",
        );
        assert!(!o.status.success(), "{bad:?}: {}", text(&o));
        assert!(text(&o).contains("--id-margin"), "{}", text(&o));
        assert_eq!(std::fs::read(srv.db_path()).unwrap(), before, "{bad:?}");
    }
    let o = admin(
        &[
            "restore",
            "--db",
            &db,
            "--from",
            backup_s,
            "--id-margin=50000",
        ],
        &[],
        "",
    );
    assert!(o.status.success(), "{}", text(&o));
    srv.start_again();
    assert_eq!(srv.service().new_task(&task("next")), 50004);
}

/// A start on a file the last server did not stop cleanly — a copy of a
/// file a server was writing, as Litestream restores one, or a file whose
/// server was killed — may miss tasks whose ids clients hold: it skips
/// 1,000 ids first and records it (`task_ids.raised`, for operators
/// only). A clean stop leaves nothing to skip.
#[test]
fn a_start_on_a_file_not_stopped_cleanly_never_reuses_an_id() {
    let mut srv = Server::start();
    let db = db_arg(&srv);
    let svc = srv.service();
    for i in 1..=3 {
        assert_eq!(svc.new_task(&task(&format!("t{i}"))), i);
    }
    // What a replica holds: a copy of the file while the server writes it.
    let replica = srv.dir.path().join("replica.db");
    let replica_s = replica.to_str().unwrap();
    assert!(admin(&["backup", "--db", &db, "--to", replica_s], &[], "")
        .status
        .success());
    for i in 4..=6 {
        assert_eq!(svc.new_task(&task(&format!("t{i}"))), i);
    }
    // A clean restart skips nothing.
    srv.restart();
    let svc = srv.service();
    assert_eq!(svc.new_task(&task("t7")), 7);
    assert_eq!(raised(&svc).total, 0);

    // The host is lost; the file comes back from the replica, by copy, as
    // `litestream restore` writes it: tasks 4 to 7 are gone with it, and
    // none of their ids is given again.
    assert!(srv.signal_and_wait("TERM").success());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db}{suffix}"));
    }
    std::fs::copy(&replica, &db).unwrap();
    srv.start_again();
    let svc = srv.service();
    assert_eq!(svc.tasks("?limit=100").ok().total, 3);
    assert_eq!(
        svc.new_task(&task("after the restore")),
        1004,
        "past the replica's 3 by the margin, past the 7 acknowledged"
    );
    let ev = raised(&svc);
    assert_eq!(ev.total, 1, "{ev:?}");
    assert_eq!(ev.events[0].actor, "server", "{ev:?}");
    assert_eq!(
        ev.events[0].payload,
        json!({"from": 3, "to": 1003, "margin": 1000, "at_least": 0, "reason": "unclean_stop"})
    );
    assert!(srv.log().contains("did not stop cleanly"), "{}", srv.log());
    // Operators see it; a member sees no event of no workspace.
    let (_, member) = srv.user("member", Some((1, "member")));
    assert_eq!(raised(&member).total, 0);

    // Killed: the next start skips the margin too.
    srv.signal_and_wait("KILL");
    srv.start_again();
    let svc = srv.service();
    assert_eq!(svc.new_task(&task("after a crash")), 2005);
    assert_eq!(raised(&svc).total, 2);
}

/// `admin restore` refuses while any process has the database open, not
/// only a server: Litestream replicating it, or any SQLite connection.
#[test]
fn restore_refuses_while_another_process_holds_the_file() {
    let mut srv = Server::start();
    let db = db_arg(&srv);
    srv.service().new_task(&task("kept").description("p"));
    let backup = srv.dir.path().join("backup.db");
    let backup_s = backup.to_str().unwrap();
    let o = admin(&["backup", "--db", &db, "--to", backup_s], &[], "");
    assert!(o.status.success(), "{}", text(&o));
    assert!(srv.signal_and_wait("TERM").success());

    // A reader in this (the test's) process, with a read transaction open.
    let reader = srv.sql();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    let before = std::fs::read(srv.db_path()).unwrap();
    let o = admin(&["restore", "--db", &db, "--from", backup_s], &[], "");
    assert!(!o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(&format!("is open in process {}", std::process::id())),
        "{out}"
    );
    assert!(out.contains("nothing was restored"), "{out}");
    assert_eq!(std::fs::read(srv.db_path()).unwrap(), before);
    drop(reader);

    // Litestream replicating the stopped server's file.
    if crate::replication::litestream_available() {
        let replica = tempfile::tempdir().unwrap();
        let mut ls = crate::replication::litestream(
            &["replicate"],
            &srv.db_path(),
            &format!("file://{}", replica.path().display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        crate::util::wait_for(30, "litestream to open the file", || {
            ops_center::db::lock_holder(&srv.db_path()).unwrap()
        });
        let o = admin(&["restore", "--db", &db, "--from", backup_s], &[], "");
        assert!(!o.status.success(), "{}", text(&o));
        let _ = ls.kill();
        let _ = ls.wait();
        let out = text(&o);
        assert!(out.contains("(litestream)"), "{out}");
    }

    // Nobody holds it: restored.
    let o = admin(&["restore", "--db", &db, "--from", backup_s], &[], "");
    assert!(o.status.success(), "{}", text(&o));
}
