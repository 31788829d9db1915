//! `task_cancels`: the withdrawn claim of a cancelled run, until its
//! launcher confirms how the agent ended (migration `008_task_cancels.sql`).

use crate::error::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// A cancelled claim.
#[derive(Clone, Debug, PartialEq)]
pub struct Cancel {
    pub task_id: i64,
    pub worker_id: String,
    pub claim_token: String,
    pub cancelled_at: i64,
    pub confirmed_at: Option<i64>,
}

/// Records the claim withdrawn from `task_id`, replacing an earlier one.
pub fn put(conn: &Connection, task_id: i64, worker_id: &str, token: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO task_cancels(task_id, worker_id, claim_token, cancelled_at, confirmed_at)
         VALUES (?1, ?2, ?3, ?4, NULL)",
    )?
    .execute(params![task_id, worker_id, token, now])?;
    Ok(())
}

pub fn get(conn: &Connection, task_id: i64) -> Result<Option<Cancel>> {
    Ok(conn
        .prepare_cached(
            "SELECT task_id, worker_id, claim_token, cancelled_at, confirmed_at
             FROM task_cancels WHERE task_id = ?1",
        )?
        .query_row([task_id], |r| {
            Ok(Cancel {
                task_id: r.get(0)?,
                worker_id: r.get(1)?,
                claim_token: r.get(2)?,
                cancelled_at: r.get(3)?,
                confirmed_at: r.get(4)?,
            })
        })
        .optional()?)
}

pub fn confirm(conn: &Connection, task_id: i64, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE task_cancels SET confirmed_at = ?2 WHERE task_id = ?1")?
        .execute(params![task_id, now])?;
    Ok(())
}

/// The tasks of `worker_id` cancelled and not yet confirmed.
pub fn pending_of_worker(conn: &Connection, worker_id: &str) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT task_id FROM task_cancels
         WHERE worker_id = ?1 AND confirmed_at IS NULL ORDER BY task_id",
    )?;
    let rows = stmt.query_map([worker_id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
