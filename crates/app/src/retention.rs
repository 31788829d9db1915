//! Event retention (`events_retention_days`) on a thread of its own: every
//! `watchdog_interval_seconds` it deletes the events older than the
//! setting, in small batches, one writer job each, until none is left —
//! however large the backlog — and after each batch it leaves the writer
//! idle for as long as the batch took, so requests never wait behind more
//! than one batch and retention takes at most about half of the writer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ops_base::error::Result;
use ops_base::metrics::METRICS;
use ops_base::time::now_ms;
use ops_store::db::Db;
use ops_store::{events, settings};

const DAY_MS: i64 = 24 * 3600 * 1000;
/// Events examined per write transaction (at most this many deleted):
/// small enough never to hold the writer for long, and Litestream ships
/// small WAL steps.
const EXAMINE: i64 = 1000;
/// The least pause between two batches.
const MIN_YIELD: Duration = Duration::from_millis(2);

/// One retention run: deletes every event older than the setting (but
/// those still needed), batch after batch, until the backlog is gone or
/// `stop` is set. Returns how many events went.
pub fn run(db: &Db, now: i64, stop: &AtomicBool) -> Result<usize> {
    let days = settings::load(&*db.read()?)?.events_retention_days;
    if days == 0 {
        return Ok(0);
    }
    let cutoff = now - days * DAY_MS;
    let started = Instant::now();
    let mut after = 0;
    let mut total = 0;
    while !stop.load(Ordering::SeqCst) {
        let batch = Instant::now();
        let pruned = db.write(move |conn| {
            let p = events::prune_batch(conn, cutoff, after, EXAMINE)?;
            if p.deleted > 0 {
                events::release_free_pages(conn, 2 * p.deleted as i64)?;
            }
            Ok(p)
        })?;
        total += pruned.deleted;
        METRICS.pruned(pruned.deleted as u64);
        after = pruned.last_id;
        if pruned.done {
            break;
        }
        // Requests queued meanwhile go first, and get the writer to
        // themselves for as long as the batch held it.
        std::thread::sleep(batch.elapsed().max(MIN_YIELD));
    }
    if total > 0 {
        let secs = started.elapsed().as_secs_f64();
        METRICS.prune_rate(total as f64 / secs.max(0.001));
        log::info!(
            "retention: {total} old event(s) pruned in {:.1} s ({:.0}/s)",
            secs,
            total as f64 / secs.max(0.001)
        );
    }
    Ok(total)
}

/// The retention thread: a run every `watchdog_interval_seconds` (read
/// again every second) until `stop` is set.
pub fn spawn(db: Arc<Db>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("retention".into())
        .spawn(move || {
            let mut last_run = Instant::now();
            let mut period = super::watchdog::interval(&db);
            let mut last_read = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                if last_read.elapsed() >= Duration::from_secs(1) {
                    period = super::watchdog::interval(&db);
                    last_read = Instant::now();
                }
                if last_run.elapsed() < period {
                    continue;
                }
                if let Err(e) = run(&db, now_ms(), &stop) {
                    log::error!("event retention failed: {e}");
                }
                last_run = Instant::now();
            }
        })
        .expect("spawn retention thread")
}
