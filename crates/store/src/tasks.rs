use rusqlite::{params, Connection, OptionalExtension, Row, ToSql};

use super::Page;
use ops_base::error::{Error, Result};
use ops_domain::model_filter::Rule;
use ops_domain::task::{Execution, Status, DISPATCH_AUTHOR};

/// A row of `tasks`, with the slug of its agent and its workspace's
/// repository.
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
    /// The task's own repository (overriding its workspace's).
    pub repo_path: Option<String>,
    pub base_ref: Option<String>,
    /// Its workspace's repository, as read with the row (not saved by
    /// [`save`]).
    pub workspace_repo_path: Option<String>,
    pub workspace_base_ref: Option<String>,
    /// When a heartbeat of the claiming worker first left this running
    /// task out of what it runs (migration 12); `None`: listed.
    pub claim_unlisted_at: Option<i64>,
    /// When it last became `queued` (migration 12).
    pub queued_at: Option<i64>,
    /// The signal that ended its last run, with `exit_code` (migration 13).
    pub exit_signal: Option<String>,
    /// A run of it with a repository must change its branch to reach
    /// review (migration 13).
    pub expects_changes: bool,
    /// A queued task no claim takes before this (ms): the provider's rate
    /// limit ended its last run (migration 15).
    pub not_before: Option<i64>,
    /// Its runs in a row that a rate limit ended (migration 15).
    pub rate_limited_runs: i64,
    /// A follow-up waiting for its run: the message and the session it
    /// resumes (migration 15).
    pub follow_up: Option<String>,
    pub follow_up_session: Option<String>,
}

const SELECT: &str = "SELECT t.id, t.workspace_id, t.title, t.description, t.status, t.execution,
    t.agent_id, a.slug, t.model, t.priority, t.sensitive, t.gate_approved_by, t.gate_approved_at,
    t.blocked, t.blocked_reason, t.dispatch_output, t.dispatch_attempts, t.claimed_by,
    t.claim_token, t.claimed_at, t.dispatch_started_at, t.dispatch_finished_at, t.exit_code,
    t.log_path, t.err_log_path, t.created_at, t.updated_at, t.archived_at,
    t.repo_path, t.base_ref, w.repo_path, w.base_ref, t.claim_unlisted_at, t.queued_at,
    t.exit_signal, t.expects_changes, t.not_before, t.rate_limited_runs, t.follow_up,
    t.follow_up_session
    FROM tasks t LEFT JOIN agents a ON a.id = t.agent_id
    LEFT JOIN workspaces w ON w.id = t.workspace_id";

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
        repo_path: r.get(28)?,
        base_ref: r.get(29)?,
        workspace_repo_path: r.get(30)?,
        workspace_base_ref: r.get(31)?,
        claim_unlisted_at: r.get(32)?,
        queued_at: r.get(33)?,
        exit_signal: r.get(34)?,
        expects_changes: r.get(35)?,
        not_before: r.get(36)?,
        rate_limited_runs: r.get(37)?,
        follow_up: r.get(38)?,
        follow_up_session: r.get(39)?,
    })
}

impl Task {
    /// Clears the worker's claim (the token stops being valid).
    pub fn clear_claim(&mut self) {
        self.claimed_by = None;
        self.claim_token = None;
        self.claimed_at = None;
        self.claim_unlisted_at = None;
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
    pub repo_path: Option<String>,
    pub base_ref: Option<String>,
    pub expects_changes: bool,
}

/// Inserts a new task under an id no task has ever had: past the high-water
/// mark of every id given (so a deleted task's id, whose events and alerts
/// stay, is never handed out again) and past any row inserted without it.
/// Only the writer thread inserts, inside its transaction, so the mark and
/// the row move together.
pub fn insert(conn: &Connection, t: &NewTask, now: i64) -> Result<i64> {
    let id: i64 = conn
        .prepare_cached(
            "UPDATE task_id_high_water
                SET last_id = max(last_id, coalesce((SELECT max(id) FROM tasks), 0)) + 1
              RETURNING last_id",
        )?
        .query_row([], |r| r.get(0))?;
    conn.prepare_cached(
        "INSERT INTO tasks(id, workspace_id, title, description, status, execution, agent_id,
                           model, priority, sensitive, created_at, updated_at, repo_path, base_ref,
                           expects_changes)
         VALUES (?12, ?1, ?2, ?3, 'next', ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?13)",
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
        now,
        t.repo_path,
        t.base_ref,
        id,
        t.expects_changes
    ])?;
    Ok(id)
}

/// The highest task id ever given: the high-water mark, or a row past it.
pub fn id_high_water(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT max((SELECT last_id FROM task_id_high_water),
                        coalesce((SELECT max(id) FROM tasks), 0))",
        )?
        .query_row([], |r| r.get(0))?)
}

/// Moves the high-water mark to `to` (never back): the next task gets an
/// id past it.
pub fn raise_id_high_water(conn: &Connection, to: i64) -> Result<()> {
    conn.prepare_cached("UPDATE task_id_high_water SET last_id = max(last_id, ?1)")?
        .execute([to])?;
    Ok(())
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
            exit_code=?21, log_path=?22, err_log_path=?23, archived_at=?24, updated_at=?25,
            repo_path=?26, base_ref=?27, claim_unlisted_at=?28, queued_at=?29,
            exit_signal=?30, expects_changes=?31, not_before=?32, rate_limited_runs=?33,
            follow_up=?34, follow_up_session=?35
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
        now,
        t.repo_path,
        t.base_ref,
        t.claim_unlisted_at,
        t.queued_at,
        t.exit_signal,
        t.expects_changes,
        t.not_before,
        t.rate_limited_runs,
        t.follow_up,
        t.follow_up_session
    ])?;
    Ok(())
}

/// Writes what a claim changes — status, the claim, the attempt count and
/// the cleared results of the previous run — and stamps `updated_at`. The
/// other columns (and the indexes on them) are left alone: this runs on
/// every claim.
pub fn save_claim(conn: &Connection, t: &Task, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE tasks SET status=?2, claimed_by=?3, claim_token=?4, claimed_at=?5,
            dispatch_attempts=?6, dispatch_started_at=?7, dispatch_finished_at=?8, exit_code=?9,
            dispatch_output=?10, log_path=?11, err_log_path=?12, updated_at=?13,
            output_offset=NULL, claim_unlisted_at=NULL, exit_signal=?14
         WHERE id=?1",
    )?
    .execute(params![
        t.id,
        t.status.as_str(),
        t.claimed_by,
        t.claim_token,
        t.claimed_at,
        t.dispatch_attempts,
        t.dispatch_started_at,
        t.dispatch_finished_at,
        t.exit_code,
        t.dispatch_output,
        t.log_path,
        t.err_log_path,
        now,
        t.exit_signal
    ])?;
    Ok(())
}

/// Where the last output chunk accepted for the task's current claim
/// started in the agent's stdout (see migration 3).
pub fn output_offset(conn: &Connection, id: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT output_offset FROM tasks WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .flatten())
}

pub fn set_output_offset(conn: &Connection, id: i64, offset: i64) -> Result<()> {
    conn.prepare_cached("UPDATE tasks SET output_offset = ?2 WHERE id = ?1")?
        .execute(params![id, offset])?;
    Ok(())
}

pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM tasks WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

/// Visible output evidence for the done guard: a non-empty
/// `dispatch_output`, at least one ai-dispatch log comment, or a reported
/// change with a non-empty diff.
pub fn has_output_evidence(conn: &Connection, t: &Task) -> Result<bool> {
    if t.dispatch_output
        .as_deref()
        .is_some_and(|o| !o.trim().is_empty())
    {
        return Ok(true);
    }
    if super::changes::has_diff(conn, t.id)? {
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
    pub priority: Option<i64>,
    pub search: Option<Search>,
}

/// `?q=`: what the text searches for. A number (`42`, `#42`) names a task;
/// any text is looked for in titles.
#[derive(Clone, Debug, PartialEq)]
pub struct Search {
    /// `42` or `#42`: the task with that id.
    pub id: Option<i64>,
    /// A case-insensitive substring of the title; `None` for `#42`, which
    /// asks for the number only.
    pub title: Option<String>,
}

impl Search {
    pub fn parse(q: &str) -> Search {
        let q = q.trim();
        if let Some(n) = q.strip_prefix('#') {
            if let Ok(id) = n.trim().parse::<i64>() {
                return Search {
                    id: Some(id),
                    title: None,
                };
            }
        }
        Search {
            id: q.parse::<i64>().ok(),
            title: Some(q.to_string()),
        }
    }
}

/// `text` as a LIKE pattern matching it anywhere, its wildcards (`%`, `_`)
/// and the escape character taken literally (`ESCAPE '\'`).
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Titles containing `text`, case-insensitively for ASCII, wildcards
/// taken literally: `LIKE` decides. From three characters on, the trigram
/// index `tasks_title_fts` (schema version 7) first narrows the rows to
/// those whose titles hold every trigram of `text` in sequence, so the
/// LIKE reads only those instead of every title; shorter text has no
/// trigram and is matched by LIKE alone. The index folds case beyond
/// ASCII too, so it finds a superset of the LIKE matches, never fewer.
fn title_clause(text: &str, args: &mut Vec<Box<dyn ToSql>>) -> &'static str {
    let like = Box::new(contains_pattern(text));
    if text.chars().count() < 3 {
        args.push(like);
        return "t.title LIKE ? ESCAPE '\\'";
    }
    args.push(Box::new(fts_phrase(text)));
    args.push(like);
    "(t.id IN (SELECT rowid FROM tasks_title_fts WHERE tasks_title_fts MATCH ?) \
     AND t.title LIKE ? ESCAPE '\\')"
}

/// `text` as one FTS5 phrase (a quoted string, its quotes doubled): with
/// the trigram tokenizer, the titles holding `text` as a substring.
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// Newest first, with the total count of matching rows. The total is a
/// SUM over `task_counts` (kept by triggers, schema version 2) with the same
/// filters, so it costs the same at a million tasks as at ten.
pub fn list(conn: &Connection, f: &TaskFilter, page: Page) -> Result<(Vec<Task>, i64)> {
    // Each filter as a clause on tasks and the same clause on task_counts.
    let mut rows_where = vec![if f.archived {
        "t.archived_at IS NOT NULL"
    } else {
        "t.archived_at IS NULL"
    }
    .to_string()];
    let mut counts_where = vec![format!("c.archived = {}", i64::from(f.archived))];
    let mut args: Vec<Box<dyn ToSql>> = Vec::new();
    let mut both = |task: String, count: String| {
        rows_where.push(task);
        counts_where.push(count);
    };
    if let Some(ws) = f.workspace_id {
        both("t.workspace_id = ?".into(), "c.workspace_id = ?".into());
        args.push(Box::new(ws));
    }
    if f.visible.is_some() {
        both(
            super::in_workspaces("t.workspace_id", f.visible.as_deref()),
            super::in_workspaces("c.workspace_id", f.visible.as_deref()),
        );
    }
    if let Some(s) = f.status {
        both("t.status = ?".into(), "c.status = ?".into());
        args.push(Box::new(s.as_str()));
    }
    if let Some(slug) = &f.agent_slug {
        both(
            "t.agent_id = (SELECT id FROM agents WHERE slug = ?)".into(),
            "c.agent_id = (SELECT id FROM agents WHERE slug = ?)".into(),
        );
        args.push(Box::new(slug.clone()));
    }
    if let Some(b) = f.blocked {
        both("t.blocked = ?".into(), "c.blocked = ?".into());
        args.push(Box::new(b));
    }
    // Priority and text are not columns of task_counts: with either, the
    // total is a count of the matching rows themselves.
    let mut counted = true;
    if let Some(p) = f.priority {
        rows_where.push("t.priority = ?".into());
        args.push(Box::new(p));
        counted = false;
    }
    if let Some(search) = &f.search {
        let clause = match (search.id, &search.title) {
            (Some(id), Some(title)) => {
                args.push(Box::new(id));
                format!("(t.id = ? OR {})", title_clause(title, &mut args))
            }
            (Some(id), None) => {
                args.push(Box::new(id));
                "t.id = ?".into()
            }
            (None, Some(title)) => title_clause(title, &mut args).into(),
            (None, None) => "1".into(),
        };
        rows_where.push(clause);
        counted = false;
    }
    let params: Vec<&dyn ToSql> = args.iter().map(|b| b.as_ref()).collect();
    let total: i64 = if counted {
        conn.prepare_cached(&format!(
            "SELECT COALESCE(SUM(c.n), 0) FROM task_counts c WHERE {}",
            counts_where.join(" AND ")
        ))?
        .query_row(params.as_slice(), |r| r.get(0))?
    } else {
        conn.prepare_cached(&format!(
            "SELECT COUNT(*) FROM tasks t WHERE {}",
            rows_where.join(" AND ")
        ))?
        .query_row(params.as_slice(), |r| r.get(0))?
    };
    // The offset is bound, not written into the SQL: the statement's text
    // depends only on which filters are set and the page size, so the
    // statement cache holds a few statements instead of one per page ever
    // read. The limit is written in (see `store::limit`).
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE {} ORDER BY t.id DESC {} OFFSET ?",
        rows_where.join(" AND "),
        super::limit(page.limit)
    ))?;
    let mut row_params = params;
    row_params.push(&page.offset);
    let rows = stmt.query_map(row_params.as_slice(), from_row)?;
    Ok((rows.collect::<rusqlite::Result<_>>()?, total))
}

/// Number of tasks per status (archived ones excluded), and of blocked ones,
/// from `task_counts`, in `workspaces` (`None`: all).
pub fn count_by_status(
    conn: &Connection,
    workspaces: Option<&[i64]>,
) -> Result<(Vec<(Status, i64)>, i64)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT status, SUM(n), SUM(CASE WHEN blocked = 1 THEN n ELSE 0 END)
         FROM task_counts WHERE archived = 0 AND {} GROUP BY status",
        super::in_workspaces("workspace_id", workspaces)
    ))?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut counts = Vec::new();
    let mut blocked = 0;
    for row in rows {
        let (s, n, b) = row?;
        blocked += b;
        if let Some(s) = Status::parse(&s) {
            counts.push((s, n));
        }
    }
    Ok((counts, blocked))
}

/// The claim query: the highest-priority, oldest `queued` task that is not
/// blocked or archived, passes the Human Gate, belongs to an active agent
/// among `slugs` (and to `workspace_id` if given), and whose model — the
/// task's, else the agent's — passes the worker's model `rules` (none: any
/// model). All of it is one indexed walk of `tasks_queued` that stops at the
/// first match: tasks this worker cannot run cost an index step each.
pub fn next_claimable(
    conn: &Connection,
    slugs: &[String],
    workspace_id: Option<i64>,
    rules: &[Rule],
    now: i64,
) -> Result<Option<Task>> {
    if slugs.is_empty() {
        return Ok(None);
    }
    let (sql, args) = claim_query(slugs, workspace_id, rules, now);
    let args: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref()).collect();
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(args.as_slice(), from_row)
        .optional()?)
}

/// The SQL of [`next_claimable`] and its arguments.
fn claim_query(
    slugs: &[String],
    workspace_id: Option<i64>,
    rules: &[Rule],
    now: i64,
) -> (String, Vec<Box<dyn ToSql>>) {
    let mut args: Vec<Box<dyn ToSql>> = slugs
        .iter()
        .map(|s| Box::new(s.clone()) as Box<dyn ToSql>)
        .collect();
    let placeholders = vec!["?"; slugs.len()].join(",");
    let mut filters = String::new();
    if let Some(ws) = workspace_id {
        filters.push_str(" AND t.workspace_id = ?");
        args.push(Box::new(ws));
    }
    if !rules.is_empty() {
        // As `model_matches`: no model (or a blank one) passes any filter.
        const MODEL: &str = "trim(coalesce(t.model, a.model), ' ' || char(9, 10, 13))";
        let mut any = vec![format!("{MODEL} IS NULL"), format!("{MODEL} = ''")];
        for rule in rules {
            match rule {
                Rule::Family(stem) => {
                    let stem = like_escape(stem);
                    any.push(format!("lower({MODEL}) LIKE ? ESCAPE '\\'"));
                    args.push(Box::new(format!("{stem}%")));
                    any.push(format!("lower({MODEL}) LIKE ? ESCAPE '\\'"));
                    args.push(Box::new(format!("local-{stem}%")));
                }
                Rule::Exact(label) => {
                    any.push(format!("{MODEL} = ?"));
                    args.push(Box::new(label.clone()));
                }
            }
        }
        filters.push_str(&format!(" AND ({})", any.join(" OR ")));
    }
    // A task a rate limit sent back waits for its time.
    filters.push_str(" AND (t.not_before IS NULL OR t.not_before <= ?)");
    args.push(Box::new(now));
    // The first three conditions are those of the partial index
    // `tasks_queued`, written as it is so that the planner uses it.
    let sql = format!(
        "{SELECT} WHERE t.status = 'queued' AND t.archived_at IS NULL AND t.blocked = 0
           AND (t.sensitive = 0 OR t.gate_approved_at IS NOT NULL)
           AND a.active = 1 AND a.slug IN ({placeholders}){filters}
         ORDER BY t.priority DESC, t.id LIMIT 1"
    );
    (sql, args)
}

/// `s` as the literal part of a LIKE pattern with `ESCAPE '\'`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether a task in `dispatching` was claimed at or before `cutoff` (ms):
/// one step of `tasks_dispatching`.
pub fn any_dispatching_since(conn: &Connection, cutoff: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE status = 'dispatching' AND claimed_at <= ?1)",
        )?
        .query_row([cutoff], |r| r.get(0))?)
}

/// Tasks in `dispatching` claimed at or before `cutoff` (ms).
pub fn dispatching_since(conn: &Connection, cutoff: i64) -> Result<Vec<Task>> {
    dispatching_since_in(conn, cutoff, None)
}

/// [`dispatching_since`], in `workspaces` (`None`: all).
pub fn dispatching_since_in(
    conn: &Connection,
    cutoff: i64,
    workspaces: Option<&[i64]>,
) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE t.status = 'dispatching' AND t.claimed_at <= ?1 AND {}
         ORDER BY t.claimed_at, t.id",
        super::in_workspaces("t.workspace_id", workspaces)
    ))?;
    let rows = stmt.query_map([cutoff], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Those of the tasks `ids` that are running (`doing`) in `workspaces`
/// (`None`: all) and whose agent has shown nothing since `cutoff` (ms): no
/// ai-dispatch log comment, nor a start, after it. With the moment of the
/// last sign of life.
pub fn silent_among(
    conn: &Connection,
    ids: &[i64],
    cutoff: i64,
    workspaces: Option<&[i64]>,
) -> Result<Vec<(i64, Option<String>, i64)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT t.id, a.slug, max(coalesce(t.dispatch_started_at, t.updated_at),
                    coalesce((SELECT max(c.created_at) FROM task_comments c
                              WHERE c.task_id = t.id AND c.kind = 'log' AND c.author = ?2), 0))
         FROM tasks t LEFT JOIN agents a ON a.id = t.agent_id
         WHERE t.id = ?1 AND t.status = 'doing' AND {}",
        super::in_workspaces("t.workspace_id", workspaces)
    ))?;
    let mut silent = Vec::new();
    for id in ids {
        let row: Option<(i64, Option<String>, i64)> = stmt
            .query_row(params![id, DISPATCH_AUTHOR], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        if let Some(row) = row.filter(|(_, _, seen)| *seen <= cutoff) {
            silent.push(row);
        }
    }
    Ok(silent)
}

/// Tasks in `dispatching` held by `worker_id` since `cutoff` (ms) or before.
pub fn dispatching_by_worker(conn: &Connection, worker_id: &str, cutoff: i64) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE t.status = 'dispatching' AND t.claimed_by = ?1 AND t.claimed_at <= ?2
         ORDER BY t.id"
    ))?;
    let rows = stmt.query_map(params![worker_id, cutoff], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Tasks in `doing` claimed by `worker_id`: one step of `tasks_doing`.
pub fn doing_by_worker(conn: &Connection, worker_id: &str) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE t.status = 'doing' AND t.claimed_by = ?1 ORDER BY t.id"
    ))?;
    let rows = stmt.query_map([worker_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records when the claiming worker's heartbeats first left running task
/// `id` out (`None`: they list it again).
pub fn set_claim_unlisted(conn: &Connection, id: i64, since: Option<i64>) -> Result<()> {
    conn.prepare_cached("UPDATE tasks SET claim_unlisted_at = ?2 WHERE id = ?1")?
        .execute(params![id, since])?;
    Ok(())
}

/// The condition of a stale run, in SQL over `t` (a task) and `h` (its
/// worker's heartbeat, LEFT JOINed): a claimed task in `doing` whose
/// worker was last seen at or before `?1` (or has no heartbeat on record),
/// or whose worker's heartbeats have left it out since `?2` or before.
/// `?1` is NULL while no worker can be judged stale yet.
const STALE_RUNNING: &str = "t.status = 'doing' AND t.claimed_by IS NOT NULL
    AND ((?1 IS NOT NULL AND coalesce(h.last_seen_at, 0) <= ?1) OR t.claim_unlisted_at <= ?2)";

/// Running tasks whose worker no longer runs them (see [`STALE_RUNNING`]),
/// in `workspaces` (`None`: all), oldest claim first.
pub fn stale_running_in(
    conn: &Connection,
    worker_cutoff: Option<i64>,
    unlisted_cutoff: i64,
    workspaces: Option<&[i64]>,
) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} LEFT JOIN worker_heartbeats h ON h.worker_id = t.claimed_by
         WHERE {STALE_RUNNING} AND {} ORDER BY t.claimed_at, t.id",
        super::in_workspaces("t.workspace_id", workspaces)
    ))?;
    let rows = stmt.query_map(params![worker_cutoff, unlisted_cutoff], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether any running task is stale (see [`stale_running_in`]).
pub fn any_stale_running(
    conn: &Connection,
    worker_cutoff: Option<i64>,
    unlisted_cutoff: i64,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM tasks t
                 LEFT JOIN worker_heartbeats h ON h.worker_id = t.claimed_by
                 WHERE {STALE_RUNNING})"
        ))?
        .query_row(params![worker_cutoff, unlisted_cutoff], |r| r.get(0))?)
}

/// Queued tasks a claim could take (not blocked, not archived) that have
/// waited since `cutoff` (ms) or before, in `workspaces` (`None`: all),
/// longest waiting first; at most `limit`. Reads only those (the index
/// `tasks_queued_at`).
pub fn queued_since_in(
    conn: &Connection,
    cutoff: i64,
    workspaces: Option<&[i64]>,
    limit: i64,
) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE t.status = 'queued' AND t.queued_at <= ?1 AND t.blocked = 0
           AND t.archived_at IS NULL AND {} ORDER BY t.queued_at, t.id {}",
        super::in_workspaces("t.workspace_id", workspaces),
        super::limit(limit)
    ))?;
    let rows = stmt.query_map([cutoff], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many of [`queued_since_in`]'s tasks there are.
pub fn count_queued_since_in(
    conn: &Connection,
    cutoff: i64,
    workspaces: Option<&[i64]>,
) -> Result<usize> {
    let n: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM tasks t WHERE t.status = 'queued' AND t.queued_at <= ?1
               AND t.blocked = 0 AND t.archived_at IS NULL AND {}",
            super::in_workspaces("t.workspace_id", workspaces)
        ))?
        .query_row([cutoff], |r| r.get(0))?;
    Ok(n as usize)
}

/// Tasks of agent `agent_id` that hold a Human Gate approval.
pub fn approved_of_agent(conn: &Connection, agent_id: i64) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE t.agent_id = ?1 AND t.gate_approved_at IS NOT NULL ORDER BY t.id"
    ))?;
    let rows = stmt.query_map([agent_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Approved tasks of a workspace that take its repository (they name no
/// repository of their own).
pub fn approved_on_workspace_repo(conn: &Connection, workspace_id: i64) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE t.workspace_id = ?1 AND t.repo_path IS NULL
                    AND t.gate_approved_at IS NOT NULL ORDER BY t.id"
    ))?;
    let rows = stmt.query_map([workspace_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Approved tasks of a workspace that name a repository of their own.
pub fn approved_with_own_repo(conn: &Connection, workspace_id: i64) -> Result<Vec<Task>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{SELECT} WHERE t.workspace_id = ?1 AND t.repo_path IS NOT NULL
                    AND t.gate_approved_at IS NOT NULL ORDER BY t.id"
    ))?;
    let rows = stmt.query_map([workspace_id], from_row)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::migrate;

    fn task(ws: i64, agent: Option<i64>) -> NewTask {
        NewTask {
            workspace_id: ws,
            title: "t".into(),
            description: String::new(),
            execution: Execution::Interactive,
            agent_id: agent,
            model: None,
            priority: 0,
            sensitive: false,
            repo_path: None,
            base_ref: None,
            expects_changes: true,
        }
    }

    /// Every combination of the list's filters: the total from
    /// `task_counts` equals the number of rows the same filter selects, and
    /// health's counts equal a count over the rows.
    fn check_totals(conn: &Connection) {
        let all = Page {
            limit: 1_000_000,
            offset: 0,
        };
        for workspace_id in [None, Some(1), Some(2)] {
            for visible in [None, Some(vec![1]), Some(vec![1, 2])] {
                for status in std::iter::once(None).chain(Status::ALL.map(Some)) {
                    for agent_slug in [None, Some("codex"), Some("unknown")] {
                        for blocked in [None, Some(true), Some(false)] {
                            for archived in [false, true] {
                                let f = TaskFilter {
                                    workspace_id,
                                    visible: visible.clone(),
                                    status,
                                    agent_slug: agent_slug.map(str::to_string),
                                    blocked,
                                    archived,
                                    ..TaskFilter::default()
                                };
                                let (rows, total) = list(conn, &f, all).unwrap();
                                assert_eq!(rows.len() as i64, total, "filter {workspace_id:?} {visible:?} {status:?} {agent_slug:?} {blocked:?} {archived}");
                            }
                        }
                    }
                }
            }
        }
        let (counts, blocked) = count_by_status(conn, None).unwrap();
        for s in Status::ALL {
            let f = TaskFilter {
                status: Some(s),
                ..TaskFilter::default()
            };
            let n = list(conn, &f, all).unwrap().0.len() as i64;
            let got = counts.iter().find(|(c, _)| *c == s).map_or(0, |(_, n)| *n);
            assert_eq!(got, n, "{s:?}");
        }
        let f = TaskFilter {
            blocked: Some(true),
            ..TaskFilter::default()
        };
        assert_eq!(blocked, list(conn, &f, all).unwrap().0.len() as i64);
    }

    #[test]
    fn ids_deleted_before_the_high_water_mark_are_not_reused() {
        // The schema before the mark (migration 9) reused the newest
        // deleted id; the migration seeds the mark from every id the file
        // still names.
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::run_to(&mut conn, 8).unwrap();
        for _ in 0..4 {
            conn.execute(
                "INSERT INTO tasks(workspace_id, title, created_at, updated_at)
                 VALUES (1, 't', 0, 0)",
                [],
            )
            .unwrap();
        }
        // Task 4 deleted with its event kept; a deleted task 6 named only
        // by an alert's follow-up.
        conn.execute_batch(
            "DELETE FROM tasks WHERE id IN (3, 4);
             INSERT INTO events(at, task_id, kind, actor, payload)
                 VALUES (0, 4, 'task.deleted', 'x', '{}');
             INSERT INTO alerts(kind, subject, task_id, followup_task_id, title,
                                first_seen_at, last_seen_at)
                 VALUES ('k', 'task:2', 2, 6, 't', 0, 0);",
        )
        .unwrap();
        migrate::run(&mut conn).unwrap();
        assert_eq!(insert(&conn, &task(1, None), 0).unwrap(), 7);
        // A row written past the mark (not through insert) is not reused
        // either, and a deleted newest id stays retired.
        conn.execute(
            "INSERT INTO tasks(id, workspace_id, title, created_at, updated_at)
             VALUES (9, 1, 't', 0, 0)",
            [],
        )
        .unwrap();
        assert_eq!(insert(&conn, &task(1, None), 0).unwrap(), 10);
        delete(&conn, 10).unwrap();
        assert_eq!(insert(&conn, &task(1, None), 0).unwrap(), 11);
    }

    #[test]
    fn task_counts_are_backfilled_and_kept_by_the_triggers() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::run_to(&mut conn, 1).unwrap();
        conn.execute(
            "INSERT INTO workspaces(id, name, created_at) VALUES (2, 'two', 0)",
            [],
        )
        .unwrap();
        let codex: i64 = conn
            .query_row("SELECT id FROM agents WHERE slug = 'codex'", [], |r| {
                r.get(0)
            })
            .unwrap();
        // Rows from before the migration are counted by its backfill.
        let mut ids = Vec::new();
        // In SQL of schema version 1: today's functions know later columns.
        for i in 0..30 {
            let ws = 1 + i % 2;
            let agent = [None, Some(codex), Some(1)][i as usize % 3];
            conn.execute(
                "INSERT INTO tasks(workspace_id, title, execution, agent_id, created_at, updated_at)
                 VALUES (?1, 't', 'interactive', ?2, ?3, ?3)",
                params![ws, agent, i],
            )
            .unwrap();
            ids.push(conn.last_insert_rowid());
        }
        for (k, &id) in ids.iter().enumerate().take(12) {
            conn.execute(
                "UPDATE tasks SET status = ?2, blocked = ?3, archived_at = ?4 WHERE id = ?1",
                params![
                    id,
                    Status::ALL[k % 7].as_str(),
                    k % 4 == 0,
                    (k % 5 == 0).then_some(1)
                ],
            )
            .unwrap();
        }
        migrate::run(&mut conn).unwrap();
        check_totals(&conn);

        // Changes after it are counted by the triggers: new rows, every
        // counted column changing (alone and together), saves that change
        // none of them, deletes.
        for i in 0..10 {
            ids.push(insert(&conn, &task(2 - i % 2, Some(codex)), 2).unwrap());
        }
        for (k, &id) in ids.iter().enumerate() {
            let mut t = require(&conn, id).unwrap();
            match k % 6 {
                0 => t.status = Status::ALL[(k / 6) % 7],
                1 => t.blocked = !t.blocked,
                2 => t.archived_at = t.archived_at.xor(Some(3)),
                3 => {
                    t.agent_id = if t.agent_id.is_some() {
                        None
                    } else {
                        Some(codex)
                    }
                }
                4 => t.workspace_id = 3 - t.workspace_id,
                _ => t.title = "renamed".into(),
            }
            if k % 7 == 0 {
                t.status = Status::Done;
                t.blocked = true;
            }
            save(&conn, &t, 3).unwrap();
            check_totals(&conn);
        }
        for &id in ids.iter().step_by(3) {
            delete(&conn, id).unwrap();
        }
        check_totals(&conn);
    }

    /// Every search in `queries` finds exactly the rows whose titles
    /// contain it ignoring ASCII case (what LIKE means), with the right
    /// total, and the trigram index agrees with `tasks`.
    fn check_searches(conn: &Connection, queries: &[&str]) {
        conn.execute(
            "INSERT INTO tasks_title_fts(tasks_title_fts, rank) VALUES ('integrity-check', 1)",
            [],
        )
        .unwrap();
        let all = Page {
            limit: 1_000_000,
            offset: 0,
        };
        let titles: Vec<(i64, String)> = conn
            .prepare("SELECT id, title FROM tasks WHERE archived_at IS NULL ORDER BY id DESC")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for q in queries {
            let want: Vec<i64> = titles
                .iter()
                .filter(|(_, t)| t.to_ascii_lowercase().contains(&q.to_ascii_lowercase()))
                .map(|(id, _)| *id)
                .collect();
            let f = TaskFilter {
                search: Some(Search {
                    id: None,
                    title: Some(q.to_string()),
                }),
                ..TaskFilter::default()
            };
            let (rows, total) = list(conn, &f, all).unwrap();
            let got: Vec<i64> = rows.iter().map(|t| t.id).collect();
            assert_eq!(got, want, "{q:?}");
            assert_eq!(total, want.len() as i64, "{q:?}");
        }
    }

    #[test]
    fn the_title_index_is_backfilled_kept_by_title_changes_only_and_matches_like() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::run_to(&mut conn, 5).unwrap();
        let titles = [
            "Fix the LOGIN page",
            "50% off_sale",
            r"path\to\file",
            "Ünïcode Straße",
            // The index folds É to é, LIKE does not: only LIKE's answer
            // may come back.
            "ÉCOLE",
            "une école",
            r#"say "hi" twice"#,
            "bench task 500000",
            "ab",
        ];
        for (i, title) in titles.iter().enumerate() {
            conn.execute(
                "INSERT INTO tasks(workspace_id, title, execution, created_at, updated_at)
                 VALUES (1, ?1, 'interactive', ?2, ?2)",
                params![title, i as i64],
            )
            .unwrap();
        }
        migrate::run(&mut conn).unwrap();
        let queries = [
            "login",
            "LOGIN PAGE",
            "0% o",
            "%",
            "_",
            "f_s",
            r"\to",
            "straße",
            "STRASSE",
            "école",
            "ÉCOLE",
            "Écol",
            r#""hi""#,
            r#"y "h"#,
            "500000",
            "ab",
            "a",
            "zzz",
            "renamed",
        ];
        check_searches(&conn, &queries);

        let mut fresh = task(1, None);
        fresh.title = "A fresh LOGIN form".into();
        let fresh = insert(&conn, &fresh, 9).unwrap();
        check_searches(&conn, &queries);

        // A change of any other column leaves the index untouched: its
        // segments table does not move (a 'delete' plus an insert of the
        // same title would write a segment).
        let segments = |conn: &Connection| -> (i64, i64) {
            conn.query_row(
                "SELECT count(*), COALESCE(max(rowid), 0) FROM tasks_title_fts_data",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        let before = segments(&conn);
        let mut t = require(&conn, fresh).unwrap();
        t.status = Status::Dispatching;
        t.claimed_by = Some("w1".into());
        t.claim_token = Some("tok".into());
        t.claimed_at = Some(10);
        save_claim(&conn, &t, 10).unwrap();
        t.priority = 3;
        t.blocked = true;
        save(&conn, &t, 11).unwrap();
        assert_eq!(segments(&conn), before, "a save with the same title");
        t.title = "renamed task".into();
        save(&conn, &t, 12).unwrap();
        assert_ne!(segments(&conn), before, "a rename");
        check_searches(&conn, &queries);

        delete(&conn, fresh).unwrap();
        let first: i64 = conn
            .query_row("SELECT min(id) FROM tasks", [], |r| r.get(0))
            .unwrap();
        delete(&conn, first).unwrap();
        check_searches(&conn, &queries);
    }

    #[test]
    fn the_list_by_status_and_the_stale_scan_use_their_indexes() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::run(&mut conn).unwrap();
        let plan = |sql: &str| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        let by_status = plan(&format!(
            "{SELECT} WHERE t.archived_at IS NULL AND t.status = 'next' ORDER BY t.id DESC LIMIT 50"
        ));
        assert!(by_status.contains("INDEX tasks_status"), "{by_status}");
        assert!(!by_status.contains("TEMP B-TREE"), "{by_status}");
        let stale = plan(&format!(
            "{SELECT} WHERE t.status = 'dispatching' AND t.claimed_at <= 5 ORDER BY t.claimed_at, t.id"
        ));
        assert!(stale.contains("INDEX tasks_dispatching"), "{stale}");
        let exists = plan(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE status = 'dispatching' AND claimed_at <= 5)",
        );
        assert!(exists.contains("INDEX tasks_dispatching"), "{exists}");
        // The claim: the partial queue in its order, no sort, whatever the
        // filters (they are checked on each entry walked).
        let slugs = ["codex".to_string(), "claude".to_string()];
        let rules = ops_domain::model_filter::rules(&["gpt-5".to_string()]);
        for (ws, rules) in [(None, &[][..]), (Some(1), &rules[..])] {
            let (sql, args) = claim_query(&slugs, ws, rules, 0);
            let args: Vec<&dyn ToSql> = args.iter().map(|a| a.as_ref()).collect();
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt
                .query_map(args.as_slice(), |r| r.get::<_, String>(3))
                .unwrap();
            let claim = rows.map(Result::unwrap).collect::<Vec<_>>().join("; ");
            assert!(claim.contains("INDEX tasks_queued"), "{claim}");
            assert!(!claim.contains("TEMP B-TREE"), "{claim}");
        }
        let by_priority = plan(&format!(
            "{SELECT} WHERE t.archived_at IS NULL AND t.priority = 5 ORDER BY t.id DESC LIMIT 50"
        ));
        assert!(
            by_priority.contains("INDEX tasks_priority"),
            "{by_priority}"
        );
        assert!(!by_priority.contains("TEMP B-TREE"), "{by_priority}");
        // A title search of three or more characters reads the trigram
        // index, then only the rows it names (by rowid), never the table.
        for (id, title) in [(None, "zzz"), (Some(500), "500")] {
            let mut args = Vec::new();
            let clause = title_clause(title, &mut args);
            let clause = match id {
                Some(id) => format!("(t.id = {id} OR {clause})"),
                None => clause.to_string(),
            };
            let sql = format!(
                "{SELECT} WHERE t.archived_at IS NULL AND {clause} ORDER BY t.id DESC LIMIT 50"
            )
            .replacen('?', &format!("'{}'", fts_phrase(title)), 1)
            .replacen('?', &format!("'{}'", contains_pattern(title)), 1);
            let by_title = plan(&sql);
            assert!(
                by_title.contains("tasks_title_fts VIRTUAL TABLE"),
                "{by_title}"
            );
            assert!(
                by_title.contains("SEARCH t USING INTEGER PRIMARY KEY"),
                "{by_title}"
            );
            assert!(
                !by_title
                    .split("; ")
                    .any(|step| step == "SCAN t" || step.starts_with("SCAN t ")),
                "{by_title}"
            );
        }
    }

    #[test]
    fn a_search_names_a_number_and_escapes_like_wildcards() {
        assert_eq!(
            Search::parse(" #42 "),
            Search {
                id: Some(42),
                title: None
            }
        );
        assert_eq!(
            Search::parse("42"),
            Search {
                id: Some(42),
                title: Some("42".into())
            }
        );
        assert_eq!(
            Search::parse("#tag"),
            Search {
                id: None,
                title: Some("#tag".into())
            }
        );
        assert_eq!(contains_pattern(r"a%b_c\d"), r"%a\%b\_c\\d%");
    }

    /// The claim query's model filter, in SQL, agrees with
    /// `model_matches` on every pair of filter and task/agent model.
    #[test]
    fn the_claim_filters_models_as_model_matches_does() {
        use ops_domain::model_filter::{model_matches, parse_list, rules};
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::run(&mut conn).unwrap();
        let codex: i64 = conn
            .query_row("SELECT id FROM agents WHERE slug = 'codex'", [], |r| {
                r.get(0)
            })
            .unwrap();
        let models = [
            None,
            Some(""),
            Some(" "),
            Some("minimax-m2"),
            Some("MiniMax-M2"),
            Some("local-minimax-m2"),
            Some("qwen3.6"),
            Some("local-qwen3.6-coder"),
            Some("gemma4"),
            Some("Gemma4"),
            Some("local-gemma4"),
            Some("gpt-5"),
            Some("gpt5"),
            Some("mini"),
            Some("a%b_c"),
            Some("axbyc"),
            Some(" qwen3 "),
        ];
        let filters = [
            "",
            "minimax*",
            "qwen*",
            "gemma*",
            "gpt-*",
            "gemma4",
            "qwen*,gemma*",
            "local-*",
            "a%b_*",
            "a%b_c",
            "QWEN*",
        ];
        let slugs = ["codex".to_string()];
        for agent_model in [None, Some("qwen3.6"), Some("gpt-5")] {
            conn.execute(
                "UPDATE agents SET model = ?1 WHERE id = ?2",
                params![agent_model, codex],
            )
            .unwrap();
            for model in models {
                conn.execute("DELETE FROM tasks", []).unwrap();
                let mut t = task(1, Some(codex));
                t.model = model.map(str::to_string);
                let id = insert(&conn, &t, 0).unwrap();
                conn.execute("UPDATE tasks SET status = 'queued' WHERE id = ?1", [id])
                    .unwrap();
                for filter in filters {
                    let filter = parse_list(filter);
                    let want = model_matches(&filter, model.or(agent_model));
                    let got = next_claimable(&conn, &slugs, None, &rules(&filter), 0)
                        .unwrap()
                        .is_some();
                    assert_eq!(
                        got, want,
                        "filter {filter:?}, task model {model:?}, agent model {agent_model:?}"
                    );
                }
            }
        }
    }
}
