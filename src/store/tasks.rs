use rusqlite::{params, Connection, OptionalExtension, Row, ToSql};
use serde_json::{json, Value};

use super::{ts, Page};
use crate::domain::task::{Execution, Status, DISPATCH_AUTHOR};
use crate::error::{Error, Result};

/// A row of `tasks`, with the slug of its agent.
#[derive(Clone, Debug)]
pub struct Task {
    pub id: i64,
    pub workspace_id: i64,
    pub title: String,
    pub description: String,
    pub status: Status,
    pub execution: Execution,
    pub agent_id: Option<i64>,
    pub agent_slug: Option<String>,
    pub model: Option<String>,
    pub priority: i64,
    pub sensitive: bool,
    pub gate_approved_by: Option<String>,
    pub gate_approved_at: Option<i64>,
    pub blocked: bool,
    pub blocked_reason: Option<String>,
    pub dispatch_output: Option<String>,
    pub dispatch_attempts: i64,
    pub claimed_by: Option<String>,
    pub claim_token: Option<String>,
    pub claimed_at: Option<i64>,
    pub dispatch_started_at: Option<i64>,
    pub dispatch_finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub log_path: Option<String>,
    pub err_log_path: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub archived_at: Option<i64>,
}

const SELECT: &str = "SELECT t.id, t.workspace_id, t.title, t.description, t.status, t.execution,
    t.agent_id, a.slug, t.model, t.priority, t.sensitive, t.gate_approved_by, t.gate_approved_at,
    t.blocked, t.blocked_reason, t.dispatch_output, t.dispatch_attempts, t.claimed_by,
    t.claim_token, t.claimed_at, t.dispatch_started_at, t.dispatch_finished_at, t.exit_code,
    t.log_path, t.err_log_path, t.created_at, t.updated_at, t.archived_at
    FROM tasks t LEFT JOIN agents a ON a.id = t.agent_id";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    let status: String = r.get(4)?;
    let execution: String = r.get(5)?;
    Ok(Task {
        id: r.get(0)?,
        workspace_id: r.get(1)?,
        title: r.get(2)?,
        description: r.get(3)?,
        // The CHECK constraints of the schema keep these parseable.
        status: Status::parse(&status).unwrap_or(Status::Waiting),
        execution: Execution::parse(&execution).unwrap_or(Execution::Manual),
        agent_id: r.get(6)?,
        agent_slug: r.get(7)?,
        model: r.get(8)?,
        priority: r.get(9)?,
        sensitive: r.get(10)?,
        gate_approved_by: r.get(11)?,
        gate_approved_at: r.get(12)?,
        blocked: r.get(13)?,
        blocked_reason: r.get(14)?,
        dispatch_output: r.get(15)?,
        dispatch_attempts: r.get(16)?,
        claimed_by: r.get(17)?,
        claim_token: r.get(18)?,
        claimed_at: r.get(19)?,
        dispatch_started_at: r.get(20)?,
        dispatch_finished_at: r.get(21)?,
        exit_code: r.get(22)?,
        log_path: r.get(23)?,
        err_log_path: r.get(24)?,
        created_at: r.get(25)?,
        updated_at: r.get(26)?,
        archived_at: r.get(27)?,
    })
}

impl Task {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "workspace_id": self.workspace_id,
            "title": self.title,
            "description": self.description,
            "status": self.status.as_str(),
            "execution": self.execution.as_str(),
            "agent_id": self.agent_id,
            "agent": self.agent_slug,
            "model": self.model,
            "priority": self.priority,
            "sensitive": self.sensitive,
            "gate_approved_by": self.gate_approved_by,
            "gate_approved_at": ts(self.gate_approved_at),
            "blocked": self.blocked,
            "blocked_reason": self.blocked_reason,
            "dispatch_output": self.dispatch_output,
            "dispatch_attempts": self.dispatch_attempts,
            "claimed_by": self.claimed_by,
            "claimed_at": ts(self.claimed_at),
            "dispatch_started_at": ts(self.dispatch_started_at),
            "dispatch_finished_at": ts(self.dispatch_finished_at),
            "exit_code": self.exit_code,
            "log_path": self.log_path,
            "err_log_path": self.err_log_path,
            "created_at": ts(Some(self.created_at)),
            "updated_at": ts(Some(self.updated_at)),
            "archived_at": ts(self.archived_at),
        })
    }

    /// Clears the worker's claim (the token stops being valid).
    pub fn clear_claim(&mut self) {
        self.claimed_by = None;
        self.claim_token = None;
        self.claimed_at = None;
    }
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Task>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE t.id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

/// The task, or a 404 naming it.
pub fn require(conn: &Connection, id: i64) -> Result<Task> {
    get(conn, id)?.ok_or_else(|| Error::not_found(format!("task {id} not found")))
}

pub struct NewTask {
    pub workspace_id: i64,
    pub title: String,
    pub description: String,
    pub execution: Execution,
    pub agent_id: Option<i64>,
    pub model: Option<String>,
    pub priority: i64,
    pub sensitive: bool,
}

pub fn insert(conn: &Connection, t: &NewTask, now: i64) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO tasks(workspace_id, title, description, status, execution, agent_id, model,
                           priority, sensitive, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'next', ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute(params![
        t.workspace_id,
        t.title,
        t.description,
        t.execution.as_str(),
        t.agent_id,
        t.model,
        t.priority,
        t.sensitive,
        now
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Writes every mutable column of `t` back (the caller has loaded it in
/// the same write transaction and applied the rules) and stamps
/// `updated_at`.
pub fn save(conn: &Connection, t: &Task, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE tasks SET title=?2, description=?3, status=?4, execution=?5, agent_id=?6, model=?7,
            priority=?8, sensitive=?9, gate_approved_by=?10, gate_approved_at=?11, blocked=?12,
            blocked_reason=?13, dispatch_output=?14, dispatch_attempts=?15, claimed_by=?16,
            claim_token=?17, claimed_at=?18, dispatch_started_at=?19, dispatch_finished_at=?20,
            exit_code=?21, log_path=?22, err_log_path=?23, archived_at=?24, updated_at=?25
         WHERE id=?1",
    )?
    .execute(params![
        t.id,
        t.title,
        t.description,
        t.status.as_str(),
        t.execution.as_str(),
        t.agent_id,
        t.model,
        t.priority,
        t.sensitive,
        t.gate_approved_by,
        t.gate_approved_at,
        t.blocked,
        t.blocked_reason,
        t.dispatch_output,
        t.dispatch_attempts,
        t.claimed_by,
        t.claim_token,
        t.claimed_at,
        t.dispatch_started_at,
        t.dispatch_finished_at,
        t.exit_code,
        t.log_path,
        t.err_log_path,
        t.archived_at,
        now
    ])?;
    Ok(())
}

pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM tasks WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Visible output evidence for the done guard: a non-empty
/// `dispatch_output` or at least one ai-dispatch log comment.
pub fn has_output_evidence(conn: &Connection, t: &Task) -> Result<bool> {
    if t.dispatch_output
        .as_deref()
        .is_some_and(|o| !o.trim().is_empty())
    {
        return Ok(true);
    }
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM task_comments
                            WHERE task_id = ?1 AND author = ?2 AND kind = 'log')",
        )?
        .query_row(params![t.id, DISPATCH_AUTHOR], |r| r.get(0))?)
}

#[derive(Default, Clone)]
pub struct TaskFilter {
    /// `None`: all workspaces the caller may see (`visible`).
    pub workspace_id: Option<i64>,
    /// `None`: every workspace (admin, service).
    pub visible: Option<Vec<i64>>,
    pub status: Option<Status>,
    pub agent_slug: Option<String>,
    pub blocked: Option<bool>,
    /// `false`: hide archived (the default); `true`: only archived.
    pub archived: bool,
}

/// Newest first, with the total count of matching rows.
pub fn list(conn: &Connection, f: &TaskFilter, page: Page) -> Result<(Vec<Task>, i64)> {
    let mut clauses = vec![if f.archived {
        "t.archived_at IS NOT NULL"
    } else {
        "t.archived_at IS NULL"
    }
    .to_string()];
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    if let Some(ws) = f.workspace_id {
        clauses.push("t.workspace_id = ?".into());
        args.push(Box::new(ws));
    }
    if let Some(visible) = &f.visible {
        let ids: Vec<String> = visible.iter().map(i64::to_string).collect();
        clauses.push(format!("t.workspace_id IN ({})", ids.join(",")));
    }
    if let Some(s) = f.status {
        clauses.push("t.status = ?".into());
        args.push(Box::new(s.as_str()));
    }
    if let Some(slug) = &f.agent_slug {
        clauses.push("t.agent_id = (SELECT id FROM agents WHERE slug = ?)".into());
        args.push(Box::new(slug.clone()));
    }
    if let Some(b) = f.blocked {
        clauses.push("t.blocked = ?".into());
        args.push(Box::new(b));
    }
    let where_ = clauses.join(" AND ");
    let params: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM tasks t WHERE {where_}"))?
        .query_row(params.as_slice(), |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE {where_} ORDER BY t.id DESC LIMIT {} OFFSET {}",
        page.limit, page.offset
    ))?;
    let rows = stmt.query_map(params.as_slice(), from_row)?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// Number of tasks per status (archived ones excluded), and of blocked ones.
pub fn count_by_status(conn: &Connection) -> Result<(Vec<(Status, i64)>, i64)> {
    let mut stmt = conn.prepare_cached(
        "SELECT status, COUNT(*) FROM tasks WHERE archived_at IS NULL GROUP BY status",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut counts = Vec::new();
    for row in rows {
        let (s, n) = row?;
        if let Some(s) = Status::parse(&s) {
            counts.push((s, n));
        }
    }
    let blocked: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM tasks WHERE archived_at IS NULL AND blocked = 1")?
        .query_row([], |r| r.get(0))?;
    Ok((counts, blocked))
}

/// The claim query: the highest-priority, oldest `queued` task that is not
/// blocked or archived, passes the Human Gate, belongs to an active agent
/// among `slugs` (and to `workspace_id` if given), and whose model — the
/// task's, else the agent's — passes `model_ok`.
pub fn next_claimable(
    conn: &Connection,
    slugs: &[String],
    workspace_id: Option<i64>,
    model_ok: impl Fn(Option<&str>) -> bool,
) -> Result<Option<Task>> {
    if slugs.is_empty() {
        return Ok(None);
    }
    let placeholders = vec!["?"; slugs.len()].join(",");
    let ws_clause = if workspace_id.is_some() {
        "AND t.workspace_id = ?"
    } else {
        ""
    };
    let sql = format!(
        "{SELECT} WHERE t.status = 'queued' AND t.archived_at IS NULL AND t.blocked = 0
           AND (t.sensitive = 0 OR t.gate_approved_at IS NOT NULL)
           AND a.active = 1 AND a.slug IN ({placeholders}) {ws_clause}
         ORDER BY t.priority DESC, t.id"
    );
    let mut args: Vec<&dyn ToSql> = slugs.iter().map(|s| s as &dyn ToSql).collect();
    if let Some(ws) = &workspace_id {
        args.push(ws);
    }
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(args.as_slice())?;
    while let Some(row) = rows.next()? {
        let task = from_row(row)?;
        let agent_model: Option<String> = conn
            .prepare_cached("SELECT model FROM agents WHERE id = ?1")?
            .query_row([task.agent_id], |r| r.get(0))?;
        if model_ok(task.model.as_deref().or(agent_model.as_deref())) {
            return Ok(Some(task));
        }
    }
    Ok(None)
}

/// Tasks in `dispatching` claimed at or before `cutoff` (ms).
pub fn dispatching_since(conn: &Connection, cutoff: i64) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE t.status = 'dispatching' AND t.claimed_at <= ?1 ORDER BY t.claimed_at, t.id"
    ))?;
    let rows = stmt.query_map([cutoff], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Tasks in `status`, not archived.
pub fn in_status(conn: &Connection, status: Status) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE t.status = ?1 AND t.archived_at IS NULL ORDER BY t.id"
    ))?;
    let rows = stmt.query_map([status.as_str()], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
