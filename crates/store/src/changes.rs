//! `task_changes`: what the last run of a task changed in its worktree
//! (schema version 4).

use ops_base::error::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// A change as a launcher reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Change {
    pub branch: String,
    pub head: Option<String>,
    pub base: Option<String>,
    pub status: String,
    pub diff_stat: String,
    pub patch: String,
    /// The patch was cut to its first bytes.
    pub truncated: bool,
}

pub fn put(conn: &Connection, task_id: i64, c: &Change, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO task_changes(task_id, branch, head, base, status, diff_stat, patch,
                                             truncated, reported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        task_id,
        c.branch,
        c.head,
        c.base,
        c.status,
        c.diff_stat,
        c.patch,
        c.truncated,
        now
    ])?;
    Ok(())
}

/// A change as stored, and when it was reported.
#[derive(Clone, Debug)]
pub struct StoredChange {
    pub change: Change,
    pub reported_at: i64,
}

/// The task's last reported change, if any.
pub fn get(conn: &Connection, task_id: i64) -> Result<Option<StoredChange>> {
    Ok(conn
        .prepare_cached(
            "SELECT branch, head, base, status, diff_stat, patch, truncated, reported_at
             FROM task_changes WHERE task_id = ?1",
        )?
        .query_row([task_id], |r| {
            Ok(StoredChange {
                change: Change {
                    branch: r.get(0)?,
                    head: r.get(1)?,
                    base: r.get(2)?,
                    status: r.get(3)?,
                    diff_stat: r.get(4)?,
                    patch: r.get(5)?,
                    truncated: r.get(6)?,
                },
                reported_at: r.get(7)?,
            })
        })
        .optional()?)
}

/// The task's last run changed files: output evidence for the done guard.
pub fn has_diff(conn: &Connection, task_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM task_changes
                            WHERE task_id = ?1 AND trim(patch) <> '')",
        )?
        .query_row([task_id], |r| r.get(0))?)
}
