//! The writer thread: the only connection that writes.
//!
//! Requests arrive on a channel. The thread takes everything waiting, runs it
//! in one `BEGIN IMMEDIATE` transaction with a savepoint per request (a
//! failing request rolls back alone), commits once, and only then answers
//! each request. A burst of N writes thus costs one commit, not N.
//! Checkpoints are not its work: the checkpointer thread
//! (`checkpoint.rs`) copies the WAL while the writer goes on.
//!
//! When the disk refuses a commit (full, read-only, I/O error) the thread
//! records the cause for health, answers the batch with it, and keeps
//! going: it retries a checkpoint every second, so the WAL can be reused as
//! soon as space is back, and the next commit that succeeds clears it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use rusqlite::Connection;

use super::bus::Bus;
use super::checkpoint::Commits;
use super::space::Space;
use crate::events;
use ops_base::error::{Error, Result, Storage};

/// The bus and the newest event already published on it.
struct Published {
    last_id: i64,
    bus: Arc<Bus>,
}

impl Published {
    /// Reads what the last commit appended to `events` and publishes it.
    /// Run right after a commit, on the writer's own connection, so nothing
    /// can be appended in between and nothing uncommitted is seen.
    fn after_commit(&mut self, conn: &Connection) {
        if !self.bus.has_subscribers() {
            // Nobody listens (an admin command): just keep up.
            if let Ok(id) = events::last_id(conn) {
                self.last_id = id;
            }
            return;
        }
        loop {
            match events::after(conn, self.last_id, None, 1000) {
                Ok(batch) if batch.is_empty() => return,
                Ok(batch) => {
                    let more = batch.len() == 1000;
                    self.last_id = batch.last().map_or(self.last_id, |e| e.event.id);
                    self.bus.publish(batch);
                    if !more {
                        return;
                    }
                }
                Err(e) => {
                    log::error!("cannot read the committed events to publish them: {e}");
                    return;
                }
            }
        }
    }
}

/// Why a batch did not commit; cloned to every request of the batch.
#[derive(Clone)]
enum Failure {
    Storage(Storage),
    /// Another process held the write lock past `busy_timeout`
    /// (Litestream checkpointing a large WAL on a loaded machine): 503
    /// `database_busy`, not 500.
    Busy(String),
    Other(String),
}

impl Failure {
    fn of(e: &rusqlite::Error) -> Failure {
        if matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ) {
            return Failure::Busy(e.to_string());
        }
        match Storage::of(e) {
            Some(s) => Failure::Storage(s),
            None => Failure::Other(e.to_string()),
        }
    }

    fn into_error(self) -> Error {
        match self {
            Failure::Storage(s) => Error::StorageUnavailable(s),
            Failure::Busy(_) => ops_base::error::busy_database(),
            Failure::Other(e) => Error::Internal(format!("commit failed: {e}")),
        }
    }
}

/// The storage fault of the last commit, `None` once one succeeded.
type Fault = Arc<Mutex<Option<Storage>>>;

/// Called once the batch's fate is known: `Ok` when it committed.
type Reply = Box<dyn FnOnce(Result<(), Failure>) + Send>;
/// Runs one request inside its savepoint and returns how to answer it,
/// with the storage fault it met, if any; given a failure instead of the
/// connection, answers the request with it at once (and returns `None`).
type Job = Box<dyn FnOnce(Result<&Connection, Failure>) -> Option<(Reply, Option<Storage>)> + Send>;

enum Msg {
    Job(Job),
    Stop,
}

/// The most requests committed together; bounds the latency of the first.
const MAX_BATCH: usize = 512;
/// While the disk refuses commits, the checkpoint is retried this often.
const FAULT_RETRY: Duration = Duration::from_secs(1);

pub struct Writer {
    tx: Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    fault: Fault,
}

impl Writer {
    /// Starts the thread; after each commit it publishes the new events
    /// to `bus` and counts the commit in `commits`.
    pub(super) fn start(
        conn: Connection,
        bus: Arc<Bus>,
        commits: Commits,
        space: Arc<Space>,
        replicated: Arc<AtomicBool>,
    ) -> Result<Writer> {
        let (tx, rx) = unbounded();
        let fault: Fault = Arc::default();
        let thread_fault = fault.clone();

        let published = Published {
            last_id: events::last_id(&conn)?,
            bus,
        };
        let thread = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || {
                writer_loop(
                    conn,
                    rx,
                    thread_fault,
                    published,
                    commits,
                    &space,
                    &replicated,
                )
            })
            .expect("spawn writer thread");
        Ok(Writer {
            tx,
            thread: Mutex::new(Some(thread)),
            fault,
        })
    }

    /// Why the last commit failed, while no later one succeeded.
    pub fn fault(&self) -> Option<Storage> {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The error of a request whose reply never came.
    fn unavailable(&self) -> Error {
        match self.fault() {
            Some(s) => Error::StorageUnavailable(s),
            None => Error::Internal(
                "the database writer is unavailable (shutting down or failing)".into(),
            ),
        }
    }

    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::<Result<T>>();
        let job: Job = Box::new(move |conn: Result<&Connection, Failure>| {
            let conn = match conn {
                Ok(conn) => conn,
                Err(failure) => {
                    reply_tx.send(Err(failure.into_error()));
                    return None;
                }
            };
            let result = in_savepoint(conn, f);
            let fault = match &result {
                Err(Error::StorageUnavailable(s)) => Some(*s),
                _ => None,
            };
            let reply: Reply = Box::new(move |committed: Result<(), Failure>| {
                let answer = match committed {
                    Ok(()) => result,
                    Err(f) => Err(f.into_error()),
                };
                reply_tx.send(answer);
            });
            Some((reply, fault))
        });
        self.tx
            .send(Msg::Job(job))
            .map_err(|_| self.unavailable())?;
        reply_rx.recv().ok_or_else(|| self.unavailable())?
    }

    /// Lets every request already queued finish, checkpoints, joins.
    pub fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// One reply from the writer thread to the request's thread. The waiting
/// thread sleeps at once instead of spinning: on a machine with few cores,
/// spinning handlers would take CPU time from the writer they wait for.
struct OneshotTx<T>(Arc<(Mutex<Option<Option<T>>>, Condvar)>);
struct OneshotRx<T>(Arc<(Mutex<Option<Option<T>>>, Condvar)>);

fn oneshot<T>() -> (OneshotTx<T>, OneshotRx<T>) {
    let shared = Arc::new((Mutex::new(None), Condvar::new()));
    (OneshotTx(shared.clone()), OneshotRx(shared))
}

impl<T> OneshotTx<T> {
    fn send(mut self, value: T) {
        self.put(Some(value));
    }

    fn put(&mut self, value: Option<T>) {
        let (slot, ready) = &*self.0;
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(value);
            ready.notify_one();
        }
    }
}

impl<T> Drop for OneshotTx<T> {
    /// A reply dropped unsent (its job was dropped) wakes the waiter with
    /// nothing.
    fn drop(&mut self) {
        self.put(None);
    }
}

impl<T> OneshotRx<T> {
    fn recv(self) -> Option<T> {
        let (slot, ready) = &*self.0;
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(value) = slot.take() {
                return value;
            }
            slot = ready.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Runs one of the fixed transaction-control statements, prepared once.
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    control(conn, "SAVEPOINT request")?;
    let result = match catch_unwind(AssertUnwindSafe(|| f(conn))) {
        Ok(r) => r,
        Err(panic) => Err(Error::Internal(format!(
            "write panicked: {}",
            panic_text(&panic)
        ))),
    };
    if result.is_err() {
        control(conn, "ROLLBACK TO request")?;
    }
    control(conn, "RELEASE request")?;
    result
}

pub fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn writer_loop(
    conn: Connection,
    rx: Receiver<Msg>,
    fault: Fault,
    mut published: Published,
    commits: Commits,
    space: &Space,
    replicated: &AtomicBool,
) {
    let faulted = || fault.lock().unwrap_or_else(|p| p.into_inner()).is_some();
    let mut was_gated = false;
    let mut autocheckpoint_off = false;
    // With Litestream the WAL is Litestream's to checkpoint: a checkpoint
    // of ours can land while it builds a snapshot from the database file,
    // and the replica then restores damaged.
    let mut leave_checkpoints = |conn: &Connection| {
        if !autocheckpoint_off && replicated.load(Ordering::SeqCst) {
            if let Err(e) = conn.pragma_update(None, "wal_autocheckpoint", 0) {
                log::error!("cannot turn the automatic checkpoint off: {e}");
            }
            autocheckpoint_off = true;
        }
    };
    loop {
        // The reserve is back (twice its size is free): the disk has room
        // again, whether or not a write comes to prove it.
        let gated = space.gated();
        if was_gated && !gated {
            *fault.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        was_gated = gated;
        let next = if faulted() {
            rx.recv_timeout(FAULT_RETRY)
        } else {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        let first = match next {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => {
                if !replicated.load(Ordering::SeqCst) {
                    reclaim_wal(&conn);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut jobs = Vec::new();
        let mut stop = false;
        match first {
            Msg::Job(j) => jobs.push(j),
            Msg::Stop => stop = true,
        }
        while !stop && jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => jobs.push(j),
                Ok(Msg::Stop) => stop = true,
                Err(_) => break,
            }
        }
        leave_checkpoints(&conn);
        if !jobs.is_empty() && space.gated() {
            // The disk filled and its reserve was released for checkpoints
            // and Litestream: nothing new is written until space is back.
            *fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(Storage::DiskFull);
            refuse(jobs, &Failure::Storage(Storage::DiskFull));
        } else if !jobs.is_empty() && commit_batch(&conn, jobs, &fault, space) {
            commits.fetch_add(1, Ordering::Relaxed);
            published.after_commit(&conn);
        }
        if stop {
            break;
        }
    }
    // With Litestream replicating the file, no checkpoint of ours, not even
    // this last one: what the WAL holds is safe in it, and Litestream
    // checkpoints it (a truncation behind its back made restored replicas
    // damaged, and so did checkpoints racing its snapshots).
    if !replicated.load(Ordering::SeqCst) {
        checkpoint(&conn, "TRUNCATE");
    }
    log::debug!("database writer stopped");
}

/// Runs the batch in one transaction, records its storage fault (or that
/// there is none) and answers every request. True when it committed.
fn commit_batch(conn: &Connection, jobs: Vec<Job>, fault: &Fault, space: &Space) -> bool {
    let record = |outcome: &Result<(), Failure>| {
        *fault.lock().unwrap_or_else(|p| p.into_inner()) = match outcome {
            Err(Failure::Storage(s)) => Some(*s),
            _ => None,
        };
        match outcome {
            Err(Failure::Storage(Storage::DiskFull)) => {
                space.full("a commit failed: the disk holding the database is full")
            }
            Err(Failure::Storage(Storage::Io)) => space.io_failed(),
            _ => {}
        }
    };
    if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
        log::error!("cannot begin write transaction: {e}");
        let failure = Failure::of(&e);
        record(&Err(failure.clone()));
        // Running the jobs outside a transaction would be wrong: each is
        // answered with why.
        refuse(jobs, &failure);
        return false;
    }
    let mut storage = None;
    let mut replies = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter();
    for job in jobs.by_ref() {
        let Some((reply, fault)) = job(Ok(conn)) else {
            continue;
        };
        replies.push(reply);
        // A full disk or an I/O error inside a statement may make SQLite
        // roll the whole transaction back: the rest of the batch cannot
        // commit, and says why.
        if conn.is_autocommit() {
            storage = Some(Failure::Storage(fault.unwrap_or(Storage::Io)));
            break;
        }
    }
    let outcome = match storage {
        Some(f) => Err(f),
        None => {
            let started = std::time::Instant::now();
            let committed = control(conn, "COMMIT").map_err(|e| Failure::of(&e));
            if committed.is_ok() {
                ops_base::metrics::METRICS.commit(started.elapsed());
            }
            committed
        }
    };
    if let Err(f) = &outcome {
        let cause = match f {
            Failure::Storage(s) => s.describe().to_string(),
            Failure::Busy(e) | Failure::Other(e) => e.clone(),
        };
        log::error!("group commit of {} requests failed: {cause}", replies.len());
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    record(&outcome);
    let committed = outcome.is_ok();
    for reply in replies {
        reply(outcome.clone());
    }
    // Requests not run because the transaction was lost: answered with why.
    if let Err(f) = &outcome {
        refuse(jobs, f);
    }
    committed
}

/// Answers each of `jobs` with `failure`, without running it.
fn refuse(jobs: impl IntoIterator<Item = Job>, failure: &Failure) {
    for job in jobs {
        let _ = job(Err(failure.clone()));
    }
}

/// A checkpoint in `mode`. The writer's own checkpoints are PASSIVE (the
/// automatic one, and the retries while the disk refuses commits): they
/// never wait for a reader (Litestream holds one open on purpose), so they
/// never stall writes, and they copy only frames every reader has moved
/// past, so Litestream sees each frame before it leaves the WAL. Only the
/// final one at shutdown truncates the file.
fn checkpoint(conn: &Connection, mode: &str) -> bool {
    match conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    }) {
        Ok((0, log, done)) if log == done => true,
        Ok((busy, log, done)) => {
            log::debug!("checkpoint {mode} incomplete (busy={busy}, wal={log}, done={done})");
            false
        }
        Err(e) => {
            log::warn!("checkpoint {mode} failed: {e}");
            false
        }
    }
}

/// After a failed commit: copies what it can into the main file and, if no
/// reader still needs the WAL, truncates it at once (without waiting for
/// readers) to give its space back for the next commit. Not while
/// Litestream replicates the file (the writer loop does not call it then):
/// Litestream's own checkpoints give the WAL back.
fn reclaim_wal(conn: &Connection) {
    if checkpoint(conn, "PASSIVE") {
        let _ = conn.busy_timeout(Duration::ZERO);
        checkpoint(conn, "TRUNCATE");
        let _ = conn.busy_timeout(Duration::from_millis(super::BUSY_TIMEOUT_MS.into()));
    }
}
