//! The checkpointer thread: copies the WAL into the main file off the
//! writer thread.
//!
//! A checkpoint copies pages and fsyncs twice; run by the writer after a
//! commit (SQLite's automatic checkpoint) it delayed every request of the
//! next group commit. This thread, on a connection of its own, runs a
//! PASSIVE checkpoint twice a second while commits come in, so the writer
//! keeps its automatic checkpoint only as a backstop: when it fires (4,000
//! WAL pages), the frames are already copied but for the last few, and
//! that checkpoint completes at once, so the WAL starts again from its
//! head. PASSIVE, as every checkpoint of the server but the last one at
//! shutdown: it never waits for a reader (Litestream holds one open on
//! purpose) and copies only frames every reader has moved past, so
//! Litestream sees each frame before it leaves the WAL.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use ops_base::error::Result;

/// How often the thread looks for new commits to checkpoint.
const EVERY: Duration = Duration::from_millis(500);

/// Commits the writer made, bumped after each one; the thread checkpoints
/// when it moved.
pub(super) type Commits = Arc<AtomicU64>;

pub(super) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Checkpoints while `replicated` is unset (with Litestream the WAL is
    /// Litestream's to checkpoint).
    pub(super) fn start(
        path: &Path,
        commits: Commits,
        replicated: Arc<AtomicBool>,
    ) -> Result<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::ZERO)?;
        let stop: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("db-checkpoint".into())
            .spawn(move || run(&conn, &commits, &thread_stop, &replicated))
            .expect("spawn checkpoint thread");
        Ok(Checkpointer {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread and waits for it (before the writer's last,
    /// truncating checkpoint).
    pub(super) fn stop(&self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn run(
    conn: &Connection,
    commits: &AtomicU64,
    stop: &(Mutex<bool>, Condvar),
    replicated: &AtomicBool,
) {
    let (flag, wake) = stop;
    let mut seen = commits.load(Ordering::Relaxed);
    let mut stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
    while !*stopped {
        stopped = wake
            .wait_timeout(stopped, EVERY)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        let now = commits.load(Ordering::Relaxed);
        if now != seen && !*stopped && !replicated.load(Ordering::SeqCst) {
            seen = now;
            if let Err(e) = passive(conn) {
                // Busy (another checkpoint runs) or a storage fault the
                // writer reports: the next round tries again.
                log::debug!("background checkpoint failed: {e}");
            }
        }
    }
}

fn passive(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}
