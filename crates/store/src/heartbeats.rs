use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ops_base::error::Result;
pub use ops_protocol::dispatch::AgentCapability;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// A row of `worker_heartbeats`: a worker's latest heartbeat.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    pub worker_id: String,
    pub host: String,
    pub pid: Option<i64>,
    pub version: String,
    pub agents: Vec<AgentCapability>,
    pub models: Vec<String>,
    pub slots_total: i64,
    pub slots_busy: i64,
    pub running_task_ids: Vec<i64>,
    pub draining: bool,
    pub workspace_id: Option<i64>,
    pub last_seen_at: i64,
}

impl Heartbeat {
    /// Slugs the worker can really run.
    pub fn usable_slugs(&self) -> Vec<String> {
        self.usable().map(str::to_string).collect()
    }

    /// The same, borrowed: health walks every fresh worker's on each call.
    pub fn usable(&self) -> impl Iterator<Item = &str> {
        self.agents
            .iter()
            .filter(|a| a.usable())
            .map(|a| a.slug.as_str())
    }

    pub fn is_fresh(&self, now: i64, stale_seconds: i64) -> bool {
        now - self.last_seen_at < stale_seconds * 1000
    }
}

const SELECT: &str =
    "SELECT worker_id, host, pid, version, agents, models, slots_total, slots_busy,
    running_task_ids, draining, workspace_id, last_seen_at FROM worker_heartbeats";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Heartbeat> {
    let agents: String = r.get(4)?;
    let models: String = r.get(5)?;
    let running: String = r.get(8)?;
    // Written by `upsert`; an unreadable value is an empty list.
    let agents: Vec<AgentCapability> = serde_json::from_str(&agents).unwrap_or_default();
    Ok(Heartbeat {
        worker_id: r.get(0)?,
        host: r.get(1)?,
        pid: r.get(2)?,
        version: r.get(3)?,
        agents,
        models: serde_json::from_str(&models).unwrap_or_default(),
        slots_total: r.get(6)?,
        slots_busy: r.get(7)?,
        running_task_ids: serde_json::from_str(&running).unwrap_or_default(),
        draining: r.get(9)?,
        workspace_id: r.get(10)?,
        last_seen_at: r.get(11)?,
    })
}

pub fn upsert(conn: &Connection, h: &Heartbeat) -> Result<()> {
    let agents = serde_json::to_string(&h.agents)?;
    conn.prepare_cached(
        "INSERT INTO worker_heartbeats(worker_id, host, pid, version, agents, models, slots_total,
             slots_busy, running_task_ids, draining, workspace_id, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT(worker_id) DO UPDATE SET host=excluded.host, pid=excluded.pid,
             version=excluded.version, agents=excluded.agents, models=excluded.models,
             slots_total=excluded.slots_total, slots_busy=excluded.slots_busy,
             running_task_ids=excluded.running_task_ids, draining=excluded.draining,
             workspace_id=excluded.workspace_id, last_seen_at=excluded.last_seen_at",
    )?
    .execute(params![
        h.worker_id,
        h.host,
        h.pid,
        h.version,
        agents,
        serde_json::to_string(&h.models)?,
        h.slots_total,
        h.slots_busy,
        serde_json::to_string(&h.running_task_ids)?,
        h.draining,
        h.workspace_id,
        h.last_seen_at
    ])?;
    Ok(())
}

pub fn get(conn: &Connection, worker_id: &str) -> Result<Option<Heartbeat>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE worker_id = ?1"))?
        .query_row([worker_id], from_row)
        .optional()?)
}

/// Most recently seen first.
pub fn list(conn: &Connection) -> Result<Vec<Heartbeat>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY last_seen_at DESC"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether a row was removed.
pub fn delete(conn: &Connection, worker_id: &str) -> Result<bool> {
    Ok(conn.execute(
        "DELETE FROM worker_heartbeats WHERE worker_id = ?1",
        [worker_id],
    )? > 0)
}

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
/// worker) call [`Cache::changed`] once their commit returns, and the next
/// [`Cache::list`] reads those rows again (a row gone leaves the cache). The
/// marks are taken before those rows are read, so a read can only see a
/// later commit, never miss one, and a commit after it is marked for the
/// next call. Every write of `worker_heartbeats` goes through this
/// process's writer and one of those two functions.
pub struct Cache<T> {
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

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Cache {
            rows: Mutex::new(Rows {
                loaded: false,
                by_id: HashMap::new(),
                sorted: None,
            }),
            changed: Mutex::default(),
        }
    }
}

impl<T> Cache<T> {
    /// Marks `worker_id`'s row as changed by a commit that has returned
    /// (or that failed: reading a row again is always right).
    pub fn changed(&self, worker_id: &str) {
        lock(&self.changed).insert(worker_id.to_string());
    }

    /// Every heartbeat, most recently seen first (as [`list`]), with
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
                rows.by_id = list(conn)?
                    .into_iter()
                    .map(|hb| (hb.worker_id.clone(), cached(hb)))
                    .collect();
                rows.loaded = true;
                rows.sorted = None;
                return Ok(());
            }
            for id in &changed {
                match get(conn, id)? {
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
