//! The writer thread: the only connection that writes.
//!
//! Requests arrive on a channel. The thread takes everything waiting, runs it
//! in one `BEGIN IMMEDIATE` transaction with a savepoint per request (a
//! failing request rolls back alone), commits once, and only then answers
//! each request. A burst of N writes thus costs one commit, not N.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use rusqlite::Connection;

use crate::error::{Error, Result};

/// Called once the batch's fate is known: `Ok` when it committed.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// Runs one request inside its savepoint and returns how to answer it.
type Job = Box<dyn FnOnce(&Connection) -> Reply + Send>;

enum Msg {
    Job(Job),
    Stop,
}

/// The most requests committed together; bounds the latency of the first.
const MAX_BATCH: usize = 512;
/// After this long without a write, the WAL is checkpointed and truncated.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(2);

pub struct Writer {
    tx: Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub(super) fn start(conn: Connection) -> Writer {
        let (tx, rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .expect("spawn writer thread");
        Writer {
            tx,
            thread: Mutex::new(Some(thread)),
        }
    }

    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::<Result<T>>();
        let job: Job = Box::new(move |conn: &Connection| -> Reply {
            let result = in_savepoint(conn, f);
            Box::new(move |committed: Result<(), String>| {
                let answer = match committed {
                    Ok(()) => result,
                    Err(e) => Err(Error::Internal(format!("commit failed: {e}"))),
                };
                reply_tx.send(answer);
            })
        });
        self.tx.send(Msg::Job(job)).map_err(|_| {
            Error::Internal("the database writer is unavailable (shutting down or failing)".into())
        })?;
        reply_rx.recv().ok_or_else(|| {
            Error::Internal("the database writer is unavailable (shutting down or failing)".into())
        })?
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

pub(crate) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn writer_loop(conn: Connection, rx: Receiver<Msg>) {
    let mut dirty = false;
    loop {
        let first = match rx.recv_timeout(IDLE_CHECKPOINT) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => {
                if dirty {
                    checkpoint(&conn);
                    dirty = false;
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
        if !jobs.is_empty() {
            commit_batch(&conn, jobs);
            dirty = true;
        }
        if stop {
            break;
        }
    }
    checkpoint(&conn);
    log::debug!("database writer stopped");
}

fn commit_batch(conn: &Connection, jobs: Vec<Job>) {
    if let Err(e) = control(conn, "BEGIN IMMEDIATE") {
        let msg = e.to_string();
        log::error!("cannot begin write transaction: {msg}");
        // Running the jobs outside a transaction would be wrong. Dropping
        // them drops their replies, which wakes each caller with an error.
        drop(jobs);
        return;
    }
    let replies: Vec<Reply> = jobs.into_iter().map(|job| job(conn)).collect();
    let outcome = control(conn, "COMMIT").map_err(|e| e.to_string());
    if let Err(e) = &outcome {
        log::error!("group commit of {} requests failed: {e}", replies.len());
        let _ = conn.execute_batch("ROLLBACK");
    }
    for reply in replies {
        reply(outcome.clone());
    }
}

fn checkpoint(conn: &Connection) {
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    }) {
        Ok((0, _, _)) => {}
        Ok((busy, log, done)) => {
            log::debug!("checkpoint incomplete (busy={busy}, wal={log}, done={done})")
        }
        Err(e) => log::warn!("checkpoint failed: {e}"),
    }
}
