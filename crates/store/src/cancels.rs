//! `claim_cancels`: each claim withdrawn from its worker while its agent
//! may still run (a person's cancellation, a reconciled running task), by
//! its token, until its launcher confirms how the agent ended (migration
//! `011_claim_cancels.sql`).

use ops_base::error::Result;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// Why a claim was withdrawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// `POST /api/tasks/:id/cancel`.
    Cancelled,
    /// The task was running on a worker that stopped running it.
    StaleRunning,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Cancelled => "cancelled",
            Why::StaleRunning => "stale_running",
        }
    }
}

/// A withdrawn claim.
#[derive(Clone, Debug, PartialEq)]
pub struct Cancel {
    pub claim_token: String,
    pub task_id: i64,
    pub worker_id: String,
    pub reason: String,
    pub cancelled_at: i64,
    pub confirmed_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub signal: Option<String>,
}

const COLUMNS: &str =
    "claim_token, task_id, worker_id, reason, cancelled_at, confirmed_at, exit_code, signal";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Cancel> {
    Ok(Cancel {
        claim_token: r.get(0)?,
        task_id: r.get(1)?,
        worker_id: r.get(2)?,
        reason: r.get(3)?,
        cancelled_at: r.get(4)?,
        confirmed_at: r.get(5)?,
        exit_code: r.get(6)?,
        signal: r.get(7)?,
    })
}

/// Records the claim `token` of `worker_id` on `task_id` as withdrawn. A
/// token names one claim, so it is recorded once.
pub fn put(
    conn: &Connection,
    task_id: i64,
    worker_id: &str,
    token: &str,
    why: Why,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO claim_cancels(claim_token, task_id, worker_id, reason, cancelled_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![token, task_id, worker_id, why.as_str(), now])?;
    Ok(())
}

/// Every withdrawn claim of `task_id`, oldest first.
pub fn of_task(conn: &Connection, task_id: i64) -> Result<Vec<Cancel>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM claim_cancels WHERE task_id = ?1 ORDER BY cancelled_at, claim_token"
    ))?;
    let rows = stmt.query_map([task_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, token: &str) -> Result<Option<Cancel>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM claim_cancels WHERE claim_token = ?1"
        ))?
        .query_row([token], from_row)
        .optional()?)
}

/// The launcher's word on how the agent of the withdrawn claim `token`
/// ended.
pub fn confirm(
    conn: &Connection,
    token: &str,
    exit_code: Option<i64>,
    signal: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE claim_cancels SET confirmed_at = ?2, exit_code = ?3, signal = ?4
         WHERE claim_token = ?1",
    )?
    .execute(params![token, now, exit_code, signal])?;
    Ok(())
}

/// A withdrawn claim of a worker not yet confirmed, with whether that
/// worker holds the task's current claim (a newer one).
pub struct Pending {
    pub task_id: i64,
    pub claim_token: String,
    pub holds_current: bool,
}

/// The claims of `worker_id` withdrawn and not yet confirmed.
pub fn pending_of_worker(conn: &Connection, worker_id: &str) -> Result<Vec<Pending>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.task_id, c.claim_token, coalesce(t.claimed_by = c.worker_id, 0)
         FROM claim_cancels c JOIN tasks t ON t.id = c.task_id
         WHERE c.worker_id = ?1 AND c.confirmed_at IS NULL ORDER BY c.task_id, c.cancelled_at",
    )?;
    let rows = stmt.query_map([worker_id], |r| {
        Ok(Pending {
            task_id: r.get(0)?,
            claim_token: r.get(1)?,
            holds_current: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
