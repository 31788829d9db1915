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
