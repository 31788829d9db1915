//! `ops-center serve`: open the database, set up secrets, serve HTTP until
//! SIGTERM or SIGINT, then shut down cleanly.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::ServeConfig;
use ops_app::accounts;
use ops_http::{App, LoginLimiter, Streams, WaitingRoom};
use ops_store::db::Db;

pub fn run(cfg: ServeConfig) -> Result<(), String> {
    limit_malloc_arenas();
    // Signals are caught from here on, so a SIGTERM during start-up still
    // ends in a clean shutdown.
    let mut signals = Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;

    // The file is checked before anything opens it for writing: a missing
    // or empty file is created only when that cannot replace a replica's
    // data, and a damaged one is refused, not served.
    let start_check = ops_store::db::startup::StartCheck {
        path: &cfg.db_path,
        init: cfg.init,
        replicated: cfg.replication.configured(),
        full: cfg.check_full,
    };
    let found = ops_store::db::startup::check(&start_check)?;
    // Readers: one per handler thread, plus the watchdog and a spare.
    let db = Db::open(&cfg.db_path, cfg.sync, cfg.http_threads as u32 + 2).map_err(refusal)?;
    if found == ops_store::db::startup::Found::Unchecked {
        let checked = db
            .read()
            .map_err(refusal)
            .and_then(|conn| ops_store::db::startup::check_open(&conn, &start_check));
        if let Err(e) = checked {
            db.close();
            return Err(e);
        }
    }
    if let crate::config::Replication::Litestream { dir } = &cfg.replication {
        // Litestream's staging and control socket go there; it starts
        // after the server and does not make the folder for its socket.
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
        {
            log::warn!("cannot create Litestream's folder {}: {e}", dir.display());
        }
        db.set_replicated();
        db.replica.start(&cfg.db_path, dir);
    }
    db.space.start(
        &cfg.db_path,
        cfg.reserve_bytes,
        cfg.replication.configured(),
        db.replica.disk_full_probe(),
    );
    // Held until the process ends: `admin restore` refuses a file in use.
    let _in_use = ops_store::db::FileLock::shared(&cfg.db_path)
        .map_err(|e| format!("cannot lock {}: {e}", cfg.db_path.display()))?;
    let shown = accounts::bootstrap(&db, &cfg.secrets).map_err(|e| {
        db.close();
        format!("cannot start: {}", refusal(e))
    })?;

    let listener =
        ops_http::bind(cfg.bind).map_err(|e| format!("cannot listen on {}: {e}", cfg.bind))?;
    // The first write of this run: a file the last server did not stop
    // cleanly may miss tasks whose ids clients hold; they are skipped.
    match ops_app::serving::start_serving(&db) {
        Ok(Some(r)) => log::warn!(
            "the last server on {} did not stop cleanly (a crash, a power loss, or a copy of a file a server \
             was writing: a Litestream restore): task ids now continue above {} (the file knew of {}), so that \
             no id given before is given again",
            cfg.db_path.display(),
            r.to,
            r.from
        ),
        Ok(None) => {}
        Err(e) => {
            db.close();
            return Err(format!("cannot start: {e}"));
        }
    }
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| cfg.bind.to_string());

    let shown = show_secrets(shown, &cfg.db_path).inspect_err(|_| db.close())?;
    let mut out = std::io::stdout().lock();
    for line in &shown {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "listening on http://{addr}");
    let _ = out.flush();
    drop(out);
    log::info!(
        "serving {} with {} handler threads",
        cfg.db_path.display(),
        cfg.http_threads
    );

    // Workers are judged stale only once they have had the stale window to
    // send this process a heartbeat.
    ops_app::dispatch::serving_since(ops_base::time::now_ms());
    let db = Arc::new(db);
    let app = Arc::new(App {
        db: db.clone(),
        trust_proxy: cfg.trust_proxy,
        test_clock: cfg.test_clock,
        login_limiter: LoginLimiter::new(),
        waiting: WaitingRoom::start(db.clone()),
        streams: Streams::start(db.clone(), cfg.stream_limits),
    });
    let server = match ops_http::serve(app.clone(), listener, cfg.http_threads, cfg.http_limits) {
        Ok(server) => server,
        Err(e) => {
            app.streams.stop();
            let _ = ops_app::serving::stop_serving(&app.db);
            app.db.close();
            return Err(e);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let watchdog = ops_app::watchdog::spawn(db.clone(), stop.clone());
    let retention = ops_app::retention::spawn(db, stop.clone());

    let signal = signals.forever().next();
    log::info!("signal {signal:?} received: finishing requests in flight, then stopping");
    stop.store(true, Ordering::SeqCst);
    // Parked claims are answered while the connections are still served.
    app.waiting.stop();
    // Streams end (and their connections close) before the loop stops.
    app.streams.stop();
    server.shutdown();
    let _ = watchdog.join();
    let _ = retention.join();
    // The last write: the file was stopped cleanly.
    if let Err(e) = ops_app::serving::stop_serving(&app.db) {
        log::error!(
            "cannot mark the database as stopped cleanly: {e}; the next start skips task ids"
        );
    }
    app.db.close();
    log::info!("stopped cleanly");
    Ok(())
}

/// A start-up failure as the operator reads it: what is wrong and what to
/// do, without the "internal error:" an API client would see.
fn refusal(e: ops_base::error::Error) -> String {
    match e {
        ops_base::error::Error::Internal(m) => m,
        other => other.to_string(),
    }
}

/// The file next to the database that receives generated secrets.
pub fn credentials_path(db_path: &Path) -> PathBuf {
    db_path.with_file_name("initial-credentials")
}

/// Returns the lines to print about generated secrets. On a terminal they
/// are the secrets themselves, shown once. Otherwise stdout is a log (under
/// systemd, the journal, kept for weeks and readable by group adm), so the
/// secrets go to a file only this user can read and only its path is
/// printed.
fn show_secrets(lines: Vec<String>, db_path: &Path) -> Result<Vec<String>, String> {
    if lines.is_empty() || std::io::stdout().is_terminal() {
        return Ok(lines);
    }
    let path = credentials_path(db_path);
    write_private(&path, &lines).map_err(|e| {
        format!(
            "cannot write the generated secrets to {}: {e}; set them with `ops-center admin \
             set-admin-password` and `ops-center admin set-service-token`",
            path.display()
        )
    })?;
    Ok(vec![format!(
        "generated secrets written to {} (readable only by user {}): read them, then delete the file",
        path.display(),
        ops_base::os_user::current_user()
    )])
}

/// Writes `lines` to `path` through a temporary file created with mode
/// 0600 (so the secrets are never readable by others, even briefly) and
/// renamed over any older file.
fn write_private(path: &Path, lines: &[String]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        for line in lines {
            writeln!(f, "{line}")?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// glibc gives threads that allocate at the same time their own malloc
/// arenas (up to 8 per core), and each arena keeps what was freed in it.
/// With a handler pool, the event loop, the writer and the
/// readers' page caches spread over them, the server's RSS grew to several
/// times what it holds at once. One arena keeps it to that; small
/// allocations still come from per-thread caches without the arena's lock.
/// Called before any thread starts.
///
/// Blocks of 1 MiB and more (a password hash's 19 MiB above all) are
/// always their own mapping, given back to the system when freed. glibc's
/// default threshold moves up to the size of the last such block freed,
/// after which each login's 19 MiB came from the heap and stayed in the
/// process (200 failed logins left it at 1.1 GB); a fixed threshold turns
/// that off.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no thread is
    // allocating concurrently this early.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}
