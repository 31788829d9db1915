//! `task_changes`: what the last run of a task changed in its worktree
//! (schema version 4); `run_changes`: what each run changed (version 16).

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
        .query_row([task_id], stored)
        .optional()?)
}

/// Keeps `c` as what run `run_id` (of task `task_id`) changed.
pub fn put_for_run(
    conn: &Connection,
    run_id: i64,
    task_id: i64,
    c: &Change,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO run_changes(run_id, task_id, branch, head, base, status, diff_stat,
                                            patch, truncated, reported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        run_id,
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

/// What the task's run number `number` changed, if it reported a change.
pub fn of_run(conn: &Connection, task_id: i64, number: i64) -> Result<Option<StoredChange>> {
    Ok(conn
        .prepare_cached(
            "SELECT c.branch, c.head, c.base, c.status, c.diff_stat, c.patch, c.truncated,
                    c.reported_at
             FROM run_changes c JOIN runs r ON r.id = c.run_id
             WHERE r.task_id = ?1 AND r.number = ?2",
        )?
        .query_row(params![task_id, number], stored)
        .optional()?)
}

/// The number of the task's last run that reported a change.
pub fn last_changed_run(conn: &Connection, task_id: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT max(r.number) FROM run_changes c JOIN runs r ON r.id = c.run_id
             WHERE c.task_id = ?1",
        )?
        .query_row([task_id], |r| r.get(0))?)
}

fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredChange> {
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
