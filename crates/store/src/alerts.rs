use rusqlite::{params, Connection, OptionalExtension, Row};

use super::Page;
use ops_base::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Alert {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub task_id: Option<i64>,
    pub followup_task_id: Option<i64>,
    pub status: String,
    pub title: String,
    pub detail: String,
    pub occurrences: i64,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
    pub resolved_at: Option<i64>,
}

const SELECT: &str = "SELECT id, kind, subject, task_id, followup_task_id, status, title, detail,
    occurrences, first_seen_at, last_seen_at, resolved_at FROM alerts";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Alert> {
    Ok(Alert {
        id: r.get(0)?,
        kind: r.get(1)?,
        subject: r.get(2)?,
        task_id: r.get(3)?,
        followup_task_id: r.get(4)?,
        status: r.get(5)?,
        title: r.get(6)?,
        detail: r.get(7)?,
        occurrences: r.get(8)?,
        first_seen_at: r.get(9)?,
        last_seen_at: r.get(10)?,
        resolved_at: r.get(11)?,
    })
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Alert>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn require(conn: &Connection, id: i64) -> Result<Alert> {
    get(conn, id)?.ok_or_else(|| Error::not_found(format!("alert {id} not found")))
}

/// The condition "the alert is about a task of `workspaces`" (`None`:
/// every alert, those about no task included).
fn visible_clause(workspaces: Option<&[i64]>) -> String {
    match workspaces {
        None => "1".to_string(),
        Some(ws) => format!(
            "task_id IN (SELECT id FROM tasks WHERE {})",
            super::in_workspaces("workspace_id", Some(ws))
        ),
    }
}

/// Newest activity first; `status` filters on `open`/`resolved`; only the
/// alerts about tasks of `workspaces` (`None`: all).
pub fn list(
    conn: &Connection,
    status: Option<&str>,
    workspaces: Option<&[i64]>,
    page: Page,
) -> Result<(Vec<Alert>, i64)> {
    let where_ = format!(
        "WHERE (status = ?1 OR ?1 IS NULL) AND {}",
        visible_clause(workspaces)
    );
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM alerts {where_}"),
        [status],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} {where_} ORDER BY last_seen_at DESC, id DESC {} OFFSET ?2",
        super::limit(page.limit)
    ))?;
    let rows = stmt.query_map(params![status, page.offset], from_row)?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// Open alerts about tasks of `workspaces` (`None`: all).
pub fn open_count(conn: &Connection, workspaces: Option<&[i64]>) -> Result<i64> {
    Ok(conn.query_row(
        &format!(
            "SELECT COUNT(*) FROM alerts WHERE status = 'open' AND {}",
            visible_clause(workspaces)
        ),
        [],
        |r| r.get(0),
    )?)
}

pub fn resolve(conn: &Connection, id: i64, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE alerts SET status = 'resolved', resolved_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

/// What a new occurrence of a condition says.
pub struct Raise<'a> {
    pub kind: &'a str,
    pub subject: &'a str,
    pub task_id: Option<i64>,
    pub title: &'a str,
    pub detail: &'a str,
}

/// How raising an alert changed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Raised {
    Opened,
    Reopened,
    /// Was open; one more occurrence counted.
    Counted,
    /// Was open; only `last_seen_at` refreshed (a condition that persists).
    StillOpen,
}

/// Opens the alert of (`kind`, `subject`), reopens it if resolved, or —
/// when it is open — counts one more occurrence if `count_if_open`.
pub fn raise(
    conn: &Connection,
    r: &Raise<'_>,
    count_if_open: bool,
    now: i64,
) -> Result<(Alert, Raised)> {
    let existing: Option<(i64, String)> = conn
        .prepare_cached("SELECT id, status FROM alerts WHERE kind = ?1 AND subject = ?2")?
        .query_row(params![r.kind, r.subject], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let (id, how) = match existing {
        None => {
            conn.prepare_cached(
                "INSERT INTO alerts(kind, subject, task_id, status, title, detail, occurrences,
                                    first_seen_at, last_seen_at)
                 VALUES (?1, ?2, ?3, 'open', ?4, ?5, 1, ?6, ?6)",
            )?
            .execute(params![
                r.kind, r.subject, r.task_id, r.title, r.detail, now
            ])?;
            (conn.last_insert_rowid(), Raised::Opened)
        }
        Some((id, status)) => {
            let how = match (status.as_str(), count_if_open) {
                ("resolved", _) => Raised::Reopened,
                (_, true) => Raised::Counted,
                (_, false) => Raised::StillOpen,
            };
            let bump = i64::from(how != Raised::StillOpen);
            conn.prepare_cached(
                "UPDATE alerts SET status = 'open', resolved_at = NULL, title = ?2, detail = ?3,
                     occurrences = occurrences + ?4, last_seen_at = ?5 WHERE id = ?1",
            )?
            .execute(params![id, r.title, r.detail, bump, now])?;
            (id, how)
        }
    };
    Ok((require(conn, id)?, how))
}

pub fn set_followup(conn: &Connection, id: i64, task_id: i64) -> Result<()> {
    conn.execute(
        "UPDATE alerts SET followup_task_id = ?2 WHERE id = ?1",
        params![id, task_id],
    )?;
    Ok(())
}

pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM alerts WHERE id = ?1", [id])?;
    Ok(())
}

/// The open alerts of `kind` (through the `(kind, subject)` index).
pub fn open_of_kind(conn: &Connection, kind: &str) -> Result<Vec<Alert>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE kind = ?1 AND status = 'open' ORDER BY id"
    ))?;
    let rows = stmt.query_map([kind], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn find(conn: &Connection, kind: &str, subject: &str) -> Result<Option<Alert>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE kind = ?1 AND subject = ?2"))?
        .query_row(params![kind, subject], from_row)
        .optional()?)
}
