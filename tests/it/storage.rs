//! Storage failures: a full disk answers 503 and recovers by itself, a
//! database the server cannot write stops it at start with a clear message,
//! and generated secrets go to a private file instead of stdout.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ops_center::protocol::tasks::TaskView;

use crate::client::{task, TaskSpec};
use crate::util::{bin, wait_until, Server, TOKEN};

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A tmpfs of `size` mounted on a temp dir, unmounted on drop.
pub(crate) struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with the reason printed) when this process cannot mount.
    pub(crate) fn mount(size: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("SKIPPED: mounting a small file system needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                eprintln!("SKIPPED: mount -t tmpfs failed: {other:?}");
                None
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `dir` with one file, to the last byte.
pub(crate) fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

#[test]
fn full_disk_answers_503_then_recovers_without_losing_acknowledged_writes() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let db = fs.path().join("ops.db");
    let mut srv = Server::start_on(tempfile::tempdir().unwrap(), db.clone(), &[]);
    let svc = srv.service();
    let mut acked: Vec<(i64, String)> = Vec::new();
    let prompt = "x".repeat(16 * 1024);
    let create = |acked: &mut Vec<(i64, String)>, n: usize| {
        let title = format!("task {n}");
        let r = svc
            .create_task(&task(&title).agent("codex").description(&prompt))
            .res();
        if r.status == 201 {
            acked.push((r.body::<TaskView>().id, title));
        }
        r
    };
    for n in 0..5 {
        assert_eq!(create(&mut acked, n).status, 201);
    }
    let filler = fill(fs.path());

    // Writes are refused with a 503 that names the cause.
    let mut refused = None;
    for n in 5..2000 {
        let r = create(&mut acked, n);
        if r.status != 201 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("writes kept succeeding on a full disk");
    let e = r.refused(503, "storage_unavailable");
    assert!(e.message.contains("full"), "{}", r.text);
    assert!(r.header("retry-after").is_some(), "no Retry-After");
    let again = create(&mut acked, 9999);
    assert_eq!(again.status, 503, "{}", again.text);

    // Health says so; reads keep working.
    // Read whole as its type: every other field is still there.
    let h = svc.health("").ok();
    assert!(!h.ok, "{h:?}");
    assert!(!h.storage_ok, "{h:?}");
    assert!(h.warnings.iter().any(|w| w.contains("full")), "{h:?}");
    assert!(h.storage.db_bytes > 0);
    let (first, title) = acked[0].clone();
    assert_eq!(svc.task(first).ok().task.title, title);

    // 1 MiB freed: writes come back within seconds, without a restart.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(1024 * 1024)).unwrap();
    drop(f);
    let freed = Instant::now();
    let mut n = 10_000;
    wait_until(20, "writes to recover after space was freed", || {
        n += 1;
        let r = create(&mut acked, n);
        assert!(r.status == 201 || r.status == 503, "{}", r.text);
        r.status == 201
    });
    eprintln!(
        "writes recovered {:?} after space was freed",
        freed.elapsed()
    );
    let h = svc.get("/api/dispatch/health").json;
    assert_eq!(h["ok"], true, "{h}");
    assert_eq!(h["storage_ok"], true, "{h}");

    let status = srv.signal_and_wait("TERM");
    assert!(status.success(), "{status}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    for (id, title) in &acked {
        let got: String = conn
            .query_row("SELECT title FROM tasks WHERE id = ?1", [id], |r| r.get(0))
            .unwrap_or_else(|e| panic!("acknowledged task {id} lost: {e}"));
        assert_eq!(&got, title);
    }
}

#[test]
fn unwritable_database_stops_start_up_with_a_clear_message() {
    let mut srv = Server::start();
    let db = srv.db_path();
    assert!(srv.signal_and_wait("TERM").success());
    let dir = db.parent().unwrap().to_path_buf();

    // As root the server runs as nobody, who may not reach the build's
    // binary (a checkout under a 0700 folder): it runs a copy beside the
    // database, in the folder made readable below.
    let exe = if is_root() {
        let copy = dir.join("ops-center");
        std::fs::copy(bin(), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    } else {
        PathBuf::from(bin())
    };
    let mut cmd = Command::new(&exe);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env_clear()
        .env("OPS_SERVICE_TOKEN", TOKEN)
        .stdin(Stdio::null());
    let user = if is_root() {
        // Root writes anything: run as nobody, who may read but not write
        // the root-owned file and folder.
        use std::os::unix::process::CommandExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        cmd.uid(65534).gid(65534);
        "nobody".to_string()
    } else {
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        std::env::var("USER").unwrap_or_default()
    };
    let out = cmd.output().expect("run ops-center");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started on an unwritable file: {stderr}"
    );
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(stderr.contains(&format!("user {user}")), "{stderr}");
    assert!(stderr.contains("chown"), "{stderr}");
    assert!(!stderr.contains("internal error"), "{stderr}");
}

#[test]
fn generated_secrets_go_to_a_private_file_not_stdout() {
    let mut srv = Server::start_with(&[
        ("OPS_SERVICE_TOKEN", ""),
        ("OPS_ADMIN_USER", ""),
        ("OPS_ADMIN_PASSWORD", ""),
    ]);
    let path = srv.credentials_path();
    let meta = std::fs::metadata(&path).expect("credentials file written");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let token = srv.printed("generated service token: ");
    let password = srv.printed("password ");
    assert!(token.len() >= 32 && password.len() >= 12);
    let banner = srv.banner.join("\n");
    assert!(banner.contains(&path.display().to_string()), "{banner}");
    assert!(banner.contains("delete"), "{banner}");
    assert!(
        !banner.contains(&token) && !banner.contains(&password),
        "{banner}"
    );
    assert!(!srv.log().contains(&token) && !srv.log().contains(&password));
    let r = srv
        .client()
        .header("X-OPS-Service-Token", &token)
        .get("/api/auth/me");
    assert_eq!(r.status, 200, "{}", r.text);
    srv.login("admin", &password);

    // Nothing is generated again, so nothing is written again.
    std::fs::remove_file(&path).unwrap();
    srv.restart();
    assert!(!path.exists());
    assert!(srv.banner.is_empty(), "{:?}", srv.banner);
}

/// Another process holding the database's write lock for longer than the
/// busy timeout (as Litestream checkpointing a large WAL on a loaded
/// machine can) gets the writes of that moment answered 503
/// `database_busy` with Retry-After, never 500; they go through again once
/// the lock is gone.
#[test]
fn a_write_lock_held_elsewhere_answers_503_database_busy() {
    let srv = Server::start();
    let svc = srv.service();
    svc.new_task(&task("before"));
    let other = srv.sql_write();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = svc.create_task(&task("while locked"));
    r.refused(503, "database_busy");
    assert!(r.header("retry-after").is_some(), "no Retry-After");
    other.execute_batch("ROLLBACK").unwrap();
    drop(other);
    svc.create_task(&task("after")).ok();
    let h = svc.health("").ok();
    assert!(h.ok, "a busy moment is no storage fault: {h:?}");
}
