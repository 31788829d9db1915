//! What the database handle keeps in memory beside the file: tables read
//! once and then only where a commit changed them. Each cache says how it
//! stays right whoever writes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::heartbeats::{self, Heartbeat};
use crate::settings;
use ops_base::error::Result;
use ops_domain::settings::Settings;

/// A heartbeat as parsed once, with what a reader derived from it once.
pub struct Cached<T> {
    pub hb: Heartbeat,
    /// Shared, so a caller can hand it on without copying it.
    pub derived: Arc<T>,
}

/// The heartbeats as last read, parsed: health lists every worker on each
/// call, and with a thousand workers parsing each row's JSON columns again
/// and rebuilding what is derived from them was most of its time; then,
/// with a thousand workers heartbeating, re-checking every row's
/// `last_seen_at` against the table on each call (a scan and a sort of
/// the whole table under the lock) was.
///
/// So the table is read whole once, and afterwards only the rows that a
/// commit changed: the two writes of this table (a heartbeat, forgetting a
/// worker) call [`WorkerCache::changed`] once their commit returns, and the next
/// [`WorkerCache::list`] reads those rows again (a row gone leaves the cache). The
/// marks are taken before those rows are read, so a read can only see a
/// later commit, never miss one, and a commit after it is marked for the
/// next call. Every write of `worker_heartbeats` goes through this
/// process's writer and one of those two functions.
pub struct WorkerCache<T> {
    rows: Mutex<Rows<T>>,
    /// Workers whose row a commit changed since the last list; its own lock,
    /// so that marking never waits for a reader's SQL.
    changed: Mutex<HashSet<String>>,
}

struct Rows<T> {
    /// False until the table was read whole (and again after a failed read).
    loaded: bool,
    by_id: HashMap<String, Arc<Cached<T>>>,
    /// `by_id` in list order, made again only after a change; shared, so
    /// that a call copies no entry (with a thousand workers, cloning each
    /// one's `Arc` on every call showed in health's profile).
    sorted: Option<Arc<Vec<Arc<Cached<T>>>>>,
}

impl<T> Default for WorkerCache<T> {
    fn default() -> Self {
        WorkerCache {
            rows: Mutex::new(Rows {
                loaded: false,
                by_id: HashMap::new(),
                sorted: None,
            }),
            changed: Mutex::default(),
        }
    }
}

impl<T> WorkerCache<T> {
    /// Marks `worker_id`'s row as changed by a commit that has returned
    /// (or that failed: reading a row again is always right).
    pub fn changed(&self, worker_id: &str) {
        lock(&self.changed).insert(worker_id.to_string());
    }

    /// Every heartbeat, most recently seen first (as [`heartbeats::list`]), with
    /// `derive` run only for the rows read again.
    pub fn list(
        &self,
        conn: &Connection,
        derive: impl Fn(&Heartbeat) -> T,
    ) -> Result<Arc<Vec<Arc<Cached<T>>>>> {
        let mut rows = lock(&self.rows);
        // Taken before reading (each statement reads the database as its
        // last commit left it): what is marked after this is read next time.
        let changed = std::mem::take(&mut *lock(&self.changed));
        let cached = |hb: Heartbeat| {
            Arc::new(Cached {
                derived: Arc::new(derive(&hb)),
                hb,
            })
        };
        let read = (|| -> Result<()> {
            if !rows.loaded {
                rows.by_id = heartbeats::list(conn)?
                    .into_iter()
                    .map(|hb| (hb.worker_id.clone(), cached(hb)))
                    .collect();
                rows.loaded = true;
                rows.sorted = None;
                return Ok(());
            }
            for id in &changed {
                match heartbeats::get(conn, id)? {
                    Some(hb) => rows.by_id.insert(id.clone(), cached(hb)),
                    None => rows.by_id.remove(id),
                };
                rows.sorted = None;
            }
            Ok(())
        })();
        if let Err(e) = read {
            // Some marks are spent: read the whole table next time.
            rows.loaded = false;
            return Err(e);
        }
        let Rows { by_id, sorted, .. } = &mut *rows;
        let sorted = sorted.get_or_insert_with(|| {
            let mut v: Vec<_> = by_id.values().cloned().collect();
            v.sort_by(|a, b| {
                (b.hb.last_seen_at, &a.hb.worker_id).cmp(&(a.hb.last_seen_at, &b.hb.worker_id))
            });
            Arc::new(v)
        });
        Ok(sorted.clone())
    }
}

/// A lock poisoned only by a panic in `derive` while it was held: what the
/// map holds is still consistent.
fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The settings as the writer's connection last read them, so that a claim
/// does not read and parse every row of `ops_settings`.
///
/// It is right whoever wrote: this process's settings writes (all in
/// `app::settings`) call [`SettingsCache::forget`], and a commit by any other
/// connection — `ops-center admin` in another process, a test writing
/// behind the server — moves the connection's `PRAGMA data_version`, which
/// is checked on every use. Migrations run before the cache exists.
/// Only the writer's connection may use it: `data_version` is per
/// connection.
#[derive(Default)]
pub struct SettingsCache(Mutex<Option<(i64, Arc<Settings>)>>);

impl SettingsCache {
    pub fn load(&self, conn: &Connection) -> Result<Arc<Settings>> {
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, s)) = &*slot {
            if *v == version {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(settings::load(conn)?);
        *slot = Some((version, s.clone()));
        Ok(s)
    }

    /// The next [`SettingsCache::load`] reads the table again.
    pub fn forget(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
