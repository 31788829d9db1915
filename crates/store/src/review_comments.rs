//! `review_comments` (migration 16): a reviewer's comments on lines of a
//! run's change, and when a review sent them to the agent.

use rusqlite::{params, Connection, OptionalExtension, Row};

use ops_base::error::Result;

/// A row of `review_comments`.
#[derive(Clone, Debug)]
pub struct ReviewComment {
    pub id: i64,
    pub task_id: i64,
    /// The number of the run whose change it is on.
    pub run: i64,
    pub file: String,
    pub line: i64,
    pub end_line: i64,
    /// `new` or `old`.
    pub side: String,
    pub body: String,
    /// The hunk's header and the lines around the range.
    pub hunk: String,
    pub author: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub sent_in_run: Option<i64>,
}

/// A comment to add.
pub struct NewReviewComment<'a> {
    pub task_id: i64,
    pub run: i64,
    pub file: &'a str,
    pub line: i64,
    pub end_line: i64,
    pub side: &'a str,
    pub body: &'a str,
    pub hunk: &'a str,
    pub author: &'a str,
}

const SELECT: &str = "SELECT id, task_id, run, file, line, end_line, side, body, hunk, author,
    created_at, sent_at, sent_in_run FROM review_comments";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ReviewComment> {
    Ok(ReviewComment {
        id: r.get(0)?,
        task_id: r.get(1)?,
        run: r.get(2)?,
        file: r.get(3)?,
        line: r.get(4)?,
        end_line: r.get(5)?,
        side: r.get(6)?,
        body: r.get(7)?,
        hunk: r.get(8)?,
        author: r.get(9)?,
        created_at: r.get(10)?,
        sent_at: r.get(11)?,
        sent_in_run: r.get(12)?,
    })
}

pub fn add(conn: &Connection, c: &NewReviewComment<'_>, now: i64) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO review_comments(task_id, run, file, line, end_line, side, body, hunk, author,
                                     created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        c.task_id, c.run, c.file, c.line, c.end_line, c.side, c.body, c.hunk, c.author, now
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The task's comments, oldest first.
pub fn of_task(conn: &Connection, task_id: i64) -> Result<Vec<ReviewComment>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE task_id = ?1 ORDER BY id"))?;
    let rows = stmt.query_map([task_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The task's comments not sent yet, oldest first.
pub fn unsent(conn: &Connection, task_id: i64) -> Result<Vec<ReviewComment>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE task_id = ?1 AND sent_at IS NULL ORDER BY id"
    ))?;
    let rows = stmt.query_map([task_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Comment `id` of task `task_id`.
pub fn get(conn: &Connection, task_id: i64, id: i64) -> Result<Option<ReviewComment>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE id = ?1 AND task_id = ?2"))?
        .query_row(params![id, task_id], from_row)
        .optional()?)
}

pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM review_comments WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Marks the task's unsent comments sent at `now`; how many.
pub fn mark_sent(conn: &Connection, task_id: i64, now: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached(
            "UPDATE review_comments SET sent_at = ?2 WHERE task_id = ?1 AND sent_at IS NULL",
        )?
        .execute(params![task_id, now])?)
}

/// The run numbered `run` took the follow-up that sent the task's comments
/// still waiting for a run.
pub fn taken_by_run(conn: &Connection, task_id: i64, run: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE review_comments SET sent_in_run = ?2
         WHERE task_id = ?1 AND sent_at IS NOT NULL AND sent_in_run IS NULL",
    )?
    .execute(params![task_id, run])?;
    Ok(())
}
