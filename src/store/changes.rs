//! `task_changes`: what the last run of a task changed in its worktree
//! (schema version 4).

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use super::ts;
use crate::error::Result;

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

/// The task's change as the task view shows it, or null.
pub fn json_of(conn: &Connection, task_id: i64) -> Result<Value> {
    Ok(conn
        .prepare_cached(
            "SELECT branch, head, base, status, diff_stat, patch, truncated, reported_at
             FROM task_changes WHERE task_id = ?1",
        )?
        .query_row([task_id], |r| {
            Ok(json!({
                "branch": r.get::<_, String>(0)?,
                "head": r.get::<_, Option<String>>(1)?,
                "base": r.get::<_, Option<String>>(2)?,
                "status": r.get::<_, String>(3)?,
                "diff_stat": r.get::<_, String>(4)?,
                "patch": r.get::<_, String>(5)?,
                "patch_truncated": r.get::<_, bool>(6)?,
                "reported_at": ts(Some(r.get(7)?)),
            }))
        })
        .optional()?
        .unwrap_or(Value::Null))
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
