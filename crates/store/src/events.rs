use rusqlite::{params, Connection, ToSql};
use serde_json::Value;

use super::Page;
use ops_base::error::Result;

/// One audit-log entry.
pub struct NewEvent<'a> {
    pub workspace_id: Option<i64>,
    pub task_id: Option<i64>,
    pub kind: &'a str,
    pub actor: &'a str,
    pub payload: Value,
}

pub fn append(conn: &Connection, e: NewEvent<'_>, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO events(at, workspace_id, task_id, kind, actor, payload)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        now,
        e.workspace_id,
        e.task_id,
        e.kind,
        e.actor,
        e.payload.to_string()
    ])?;
    Ok(())
}

#[derive(Default)]
pub struct EventFilter {
    pub task_id: Option<i64>,
    pub kind: Option<String>,
    /// `None`: every event (admin, service); `Some(ids)`: only the events
    /// of these workspaces (events of no workspace — settings, users,
    /// workers — are for admins and the service).
    pub workspaces: Option<Vec<i64>>,
}

/// A row of `events`; `payload` as stored (JSON text).
#[derive(Clone, Debug)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    pub workspace_id: Option<i64>,
    pub task_id: Option<i64>,
    pub kind: String,
    pub actor: String,
    pub payload: String,
}

/// Newest first.
pub fn list(conn: &Connection, f: &EventFilter, page: Page) -> Result<(Vec<Event>, i64)> {
    let mut clauses = Vec::new();
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    if let Some(t) = f.task_id {
        clauses.push("task_id = ?".to_string());
        args.push(Box::new(t));
    }
    if let Some(k) = &f.kind {
        clauses.push("kind = ?".to_string());
        args.push(Box::new(k.clone()));
    }
    if f.workspaces.is_some() {
        clauses.push(super::in_workspaces(
            "workspace_id",
            f.workspaces.as_deref(),
        ));
    }
    let where_ = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let params: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM events {where_}"),
        params.as_slice(),
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT id, at, workspace_id, task_id, kind, actor, payload FROM events {where_}
         ORDER BY id DESC {} OFFSET {}",
        super::limit(page.limit),
        page.offset
    ))?;
    let rows = stmt.query_map(params.as_slice(), from_row)?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// An event from a row starting with `id, at, workspace_id, task_id, kind,
/// actor, payload`.
fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(0)?,
        at: r.get(1)?,
        workspace_id: r.get(2)?,
        task_id: r.get(3)?,
        kind: r.get(4)?,
        actor: r.get(5)?,
        payload: r.get(6)?,
    })
}

/// A committed event as the event stream carries it: the row, and for a
/// `dispatch.output` event the chunk itself.
#[derive(Clone, Debug)]
pub struct Committed {
    pub event: Event,
    pub output: Option<String>,
}

/// The id of the newest event (0 when there is none).
pub fn last_id(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM events")?
        .query_row([], |r| r.get(0))?)
}

/// Up to `limit` events after id `after`, oldest first, of `workspaces`
/// (as in [`EventFilter`]).
pub fn after(
    conn: &Connection,
    after: i64,
    workspaces: Option<&[i64]>,
    limit: i64,
) -> Result<Vec<Committed>> {
    let mut stmt = conn.prepare_cached(&after_sql(workspaces, limit))?;
    let rows = stmt.query_map([after], |r| {
        Ok(Committed {
            event: from_row(r)?,
            output: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn after_sql(workspaces: Option<&[i64]>, limit: i64) -> String {
    format!(
        "SELECT e.id, e.at, e.workspace_id, e.task_id, e.kind, e.actor, e.payload,
                CASE WHEN e.kind = 'dispatch.output' THEN
                    (SELECT c.body FROM task_comments c
                     WHERE c.id = json_extract(e.payload, '$.comment_id')) END
         FROM events e WHERE e.id > ?1 AND {} ORDER BY e.id {}",
        super::in_workspaces("e.workspace_id", workspaces),
        super::limit(limit)
    )
}

/// One failed dispatch: the task, its agent's slug, when.
pub type Failure = (Option<i64>, Option<String>, i64);

/// Failed dispatches (`dispatch.failed`, `dispatch.reconciled_stale`) at or
/// after `since`.
pub fn dispatch_failures_since(conn: &Connection, since: i64) -> Result<Vec<Failure>> {
    let mut stmt = conn.prepare_cached(
        // A deleted task or agent no longer counts: its alert, once
        // deleted too, must not be raised again from the audit log.
        "SELECT CASE WHEN task_id IN (SELECT id FROM tasks) THEN task_id END,
                CASE WHEN json_extract(payload, '$.agent') IN (SELECT slug FROM agents)
                     THEN json_extract(payload, '$.agent') END,
                at FROM events
         WHERE kind IN ('dispatch.failed', 'dispatch.reconciled_stale') AND at >= ?1",
    )?;
    let rows = stmt.query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What one retention batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Events deleted.
    pub deleted: usize,
    /// The last event examined: the next batch starts after it.
    pub last_id: i64,
    /// No event older than the cutoff is left after `last_id` (the batch
    /// reached recent events, or the end of the log).
    pub done: bool,
}

/// One retention batch: examines up to `examine` events after `after_id`,
/// oldest first, and deletes those older than `cutoff` (ms), except the
/// events of unfinished tasks (not done, not archived) and of tasks with an
/// open alert: what an operator may still need to look back at. Events are
/// appended in time order, so the first event at or after the cutoff ends
/// the backlog; the kept ones are passed over once per run, not examined
/// again by every batch.
pub fn prune_batch(conn: &Connection, cutoff: i64, after_id: i64, examine: i64) -> Result<Pruned> {
    let rows: Vec<(i64, i64, bool)> = conn
        .prepare_cached(&format!(
            "SELECT e.id, e.at,
                    (e.task_id IS NULL OR NOT EXISTS (
                        SELECT 1 FROM tasks t WHERE t.id = e.task_id
                          AND t.status != 'done' AND t.archived_at IS NULL))
                    AND (e.task_id IS NULL OR NOT EXISTS (
                        SELECT 1 FROM alerts a WHERE a.task_id = e.task_id AND a.status = 'open'))
             FROM events e WHERE e.id > ?1 ORDER BY e.id {}",
            super::limit(examine)
        ))?
        .query_map(params![after_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Pruned {
        last_id: after_id,
        done: (rows.len() as i64) < examine,
        ..Pruned::default()
    };
    let mut delete = conn.prepare_cached("DELETE FROM events WHERE id = ?1")?;
    for (id, at, deletable) in rows {
        if at >= cutoff {
            out.done = true;
            break;
        }
        out.last_id = id;
        if deletable {
            out.deleted += delete.execute([id])?;
        }
    }
    Ok(out)
}

/// Gives up to `pages` free pages back to the file system (the database
/// is in `auto_vacuum=INCREMENTAL` mode), so the file shrinks after a prune.
pub fn release_free_pages(conn: &Connection, pages: i64) -> Result<()> {
    let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::migrate;
    use rusqlite::StatementStatus;

    /// The writer reads the events of every commit back with `after`: its
    /// cached statement must run as compiled, not be compiled again on each
    /// use, and still honour the limit.
    #[test]
    fn after_runs_its_cached_statement_without_recompiling() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::run(&mut conn).unwrap();
        for i in 0..5 {
            conn.execute(
                "INSERT INTO events(at, workspace_id, task_id, kind, actor, payload)
                 VALUES (?1, 1, NULL, 'test', 'me', '{}')",
                [i],
            )
            .unwrap();
        }
        for from in 0..5 {
            let got = after(&conn, from, None, 1000).unwrap();
            assert_eq!(got.len(), 5 - from as usize);
        }
        assert_eq!(after(&conn, 0, None, 2).unwrap().len(), 2);
        let stmt = conn.prepare_cached(&after_sql(None, 1000)).unwrap();
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
    }
}
