//! Creating, editing, commenting, archiving and deleting tasks.

use serde_json::json;

use super::dispatch::is_gate_block;
use super::{event, gate, transition, views};
use ops_base::error::{Error, Result};
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_domain::repo;
use ops_domain::task::{
    check_done_guard, check_manual_status, check_may_block, is_ai_task, Execution, Status,
};
use ops_protocol::tasks::{Comment, TaskDetail, TaskList, TaskView};
use ops_store::db::Db;
use ops_store::tasks::Task;
pub use ops_store::tasks::{Search, TaskFilter};
use ops_store::workspaces::{self, Workspace};
use ops_store::{agents, changes, comments, tasks, Page};

/// An agent named by id or by slug.
#[derive(Clone, Debug)]
pub enum AgentRef {
    Id(i64),
    Slug(String),
}

pub struct NewTaskInput {
    pub workspace_id: i64,
    pub title: String,
    pub description: String,
    pub execution: Execution,
    pub agent: Option<AgentRef>,
    pub model: Option<String>,
    pub priority: i64,
    pub sensitive: bool,
    pub repo_path: Option<String>,
    pub base_ref: Option<String>,
    pub expects_changes: bool,
}

/// The fields of `PATCH /api/tasks/:id`; `None` leaves a field as it is.
#[derive(Default)]
pub struct TaskEdit {
    pub title: Option<String>,
    pub description: Option<String>,
    pub execution: Option<Execution>,
    pub agent: Option<Option<AgentRef>>,
    pub model: Option<Option<String>>,
    pub priority: Option<i64>,
    pub sensitive: Option<bool>,
    pub blocked: Option<bool>,
    pub blocked_reason: Option<Option<String>>,
    pub status: Option<Status>,
    pub repo_path: Option<Option<String>>,
    pub base_ref: Option<Option<String>>,
    pub expects_changes: Option<bool>,
}

fn resolve_agent(conn: &rusqlite::Connection, r: &AgentRef) -> Result<i64> {
    let found = match r {
        AgentRef::Id(id) => agents::get(conn, *id)?,
        AgentRef::Slug(slug) => agents::by_slug(conn, slug)?,
    };
    found.map(|a| a.id).ok_or_else(|| {
        let name = match r {
            AgentRef::Id(id) => format!("id {id}"),
            AgentRef::Slug(s) => format!("slug {s:?}"),
        };
        Error::invalid_field("agent", format!("no agent with {name}"))
    })
}

/// What workspace `ws` lets its tasks name as their own repository.
fn allowed_by(ws: &Workspace) -> repo::Allowed<'_> {
    repo::Allowed {
        workspace_id: ws.id,
        repo_path: ws.repo_path.as_deref(),
        roots: &ws.repo_roots,
    }
}

/// Refuses (400, naming `repo_path`) a repository of a task's own that
/// workspace `workspace_id` does not allow, whoever asks: the workspace's
/// admins decide where its agents work.
fn check_task_repo(conn: &rusqlite::Connection, workspace_id: i64, path: &str) -> Result<()> {
    let ws = workspaces::require(conn, workspace_id)?;
    allowed_by(&ws).check("repo_path", path)
}

/// Why task `t` may not run in its own repository now (its workspace's
/// roots narrowed, or its `repo_path` moved, since the task named it);
/// `None` when it may, or names none.
pub(super) fn repo_refusal(conn: &rusqlite::Connection, t: &Task) -> Result<Option<String>> {
    let Some(path) = t.repo_path.as_deref() else {
        return Ok(None);
    };
    let ws = workspaces::require(conn, t.workspace_id)?;
    Ok(allowed_by(&ws).refusal(path))
}

pub fn create(db: &Db, who: &Principal, input: NewTaskInput) -> Result<TaskView> {
    who.can_edit_tasks(input.workspace_id)?;
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        let ws = workspaces::require(conn, input.workspace_id).map_err(|_| {
            Error::invalid_field(
                "workspace_id",
                format!("no workspace {}", input.workspace_id),
            )
        })?;
        if let Some(path) = &input.repo_path {
            allowed_by(&ws).check("repo_path", path)?;
        }
        let agent_id = input
            .agent
            .as_ref()
            .map(|r| resolve_agent(conn, r))
            .transpose()?;
        let id = tasks::insert(
            conn,
            &tasks::NewTask {
                workspace_id: input.workspace_id,
                title: input.title,
                description: input.description,
                execution: input.execution,
                agent_id,
                model: input.model,
                priority: input.priority,
                sensitive: input.sensitive,
                repo_path: input.repo_path,
                base_ref: input.base_ref,
                expects_changes: input.expects_changes,
            },
            now,
        )?;
        let task = tasks::require(conn, id)?;
        event(
            conn,
            now,
            Some(task.workspace_id),
            Some(id),
            "task.created",
            &actor,
            json!({"title": task.title}),
        )?;
        Ok(task)
    })
    .map(|t| views::task(&t))
}

/// `GET /api/tasks`: one page of the tasks `filter` selects (the caller's
/// workspaces only: the route sets `filter.visible`).
pub fn list(db: &Db, filter: &TaskFilter, page: Page) -> Result<TaskList> {
    let (list, total) = tasks::list(&*db.read()?, filter, page)?;
    Ok(TaskList {
        tasks: views::tasks(&list),
        total,
    })
}

/// A task and its comments, for a caller who may read it.
pub fn get_with_comments(db: &Db, who: &Principal, id: i64) -> Result<TaskDetail> {
    let conn = db.read()?;
    let task = tasks::require(&conn, id)?;
    who.can_read(task.workspace_id)?;
    Ok(TaskDetail {
        task: views::task(&task),
        comments: comments::for_task(&conn, id)?
            .iter()
            .map(views::comment)
            .collect(),
        changes: changes::get(&conn, id)?.as_ref().map(views::change),
    })
}

/// Applies an edit. `force` is `?force=true`: allowed to operators only,
/// it lets an AI task become `done` without output evidence.
pub fn edit(db: &Db, who: &Principal, id: i64, edit: TaskEdit, force: bool) -> Result<TaskView> {
    if force {
        who.require_operator("?force=true")?;
    }
    let who = who.clone();
    db.write(move |conn| {
        let now = now_ms();
        let actor = who.actor();
        let mut t = tasks::require(conn, id)?;
        who.can_edit_tasks(t.workspace_id)?;
        refuse_archived(&t)?;
        // Whoever edits, the repository must be one the workspace allows
        // (an edit never moves a task to another workspace).
        if let Some(Some(path)) = &edit.repo_path {
            check_task_repo(conn, t.workspace_id, path)?;
        }
        // Human Gate: only a human admin may lift `sensitive` (setting it
        // only tightens, so anyone who may edit the task may).
        let clears_sensitive = t.sensitive && edit.sensitive == Some(false);
        if clears_sensitive {
            who.require_gate_approver(t.workspace_id, "clearing `sensitive`")?;
        }
        let mut changed: Vec<&'static str> = Vec::new();
        let agent_id = edit
            .agent
            .map(|a| a.as_ref().map(|r| resolve_agent(conn, r)).transpose())
            .transpose()?;
        set(&mut t.title, edit.title, "title", &mut changed);
        set(
            &mut t.description,
            edit.description,
            "description",
            &mut changed,
        );
        set(&mut t.execution, edit.execution, "execution", &mut changed);
        set(&mut t.agent_id, agent_id, "agent_id", &mut changed);
        set(&mut t.model, edit.model, "model", &mut changed);
        set(&mut t.priority, edit.priority, "priority", &mut changed);
        set(&mut t.sensitive, edit.sensitive, "sensitive", &mut changed);
        set(&mut t.repo_path, edit.repo_path, "repo_path", &mut changed);
        set(&mut t.base_ref, edit.base_ref, "base_ref", &mut changed);
        set(
            &mut t.expects_changes,
            edit.expects_changes,
            "expects_changes",
            &mut changed,
        );
        if set(&mut t.blocked, edit.blocked, "blocked", &mut changed) && !t.blocked {
            t.blocked_reason = None;
        }
        set(
            &mut t.blocked_reason,
            edit.blocked_reason,
            "blocked_reason",
            &mut changed,
        );
        if clears_sensitive {
            if t.blocked && is_gate_block(&t) {
                t.blocked = false;
                t.blocked_reason = None;
                changed.push("blocked");
            }
            event(
                conn,
                now,
                Some(t.workspace_id),
                Some(id),
                "gate.sensitive_cleared",
                &actor,
                json!({}),
            )?;
        }
        // An approval covers one prompt (the title stands in for an empty
        // description), one agent and one model, for one `sensitive` flag,
        // in one repository.
        let altered: Vec<&str> = changed
            .iter()
            .copied()
            .filter(|f| {
                [
                    "title",
                    "description",
                    "agent_id",
                    "model",
                    "sensitive",
                    "repo_path",
                    "base_ref",
                ]
                .contains(f)
            })
            .collect();
        if !altered.is_empty()
            && gate::withdraw(
                conn,
                &mut t,
                &format!("{} changed after approval", altered.join(", ")),
                &actor,
                now,
            )?
        {
            changed.push("gate_approved_at");
        }
        if edit.blocked == Some(true) {
            check_may_block(id, edit.status.unwrap_or(t.status))?;
        }
        if let Some(to) = edit.status {
            let was_blocked = t.blocked;
            change_status(conn, &mut t, to, force, &actor, now)?;
            changed.push("status");
            if was_blocked && !t.blocked && !changed.contains(&"blocked") {
                changed.push("blocked");
            }
        }
        if changed.is_empty() {
            return Ok(t);
        }
        tasks::save(conn, &t, now)?;
        event(
            conn,
            now,
            Some(t.workspace_id),
            Some(id),
            "task.updated",
            &actor,
            json!({"changed": changed}),
        )?;
        tasks::require(conn, id)
    })
    .map(|t| views::task(&t))
}

/// Sets `field` to `new` when given and different, noting `name` in
/// `changed`. Returns whether it changed.
fn set<T: PartialEq>(
    field: &mut T,
    new: Option<T>,
    name: &'static str,
    changed: &mut Vec<&'static str>,
) -> bool {
    match new {
        Some(v) if v != *field => {
            *field = v;
            changed.push(name);
            true
        }
        _ => false,
    }
}

/// A manual status change, with the done guard.
fn change_status(
    conn: &rusqlite::Connection,
    t: &mut Task,
    to: Status,
    force: bool,
    actor: &str,
    now: i64,
) -> Result<()> {
    let from = t.status;
    if to == from {
        return Ok(());
    }
    check_manual_status(to)?;
    if to == Status::Done {
        let ai = is_ai_task(t.execution, t.agent_id);
        let evidence = ai && tasks::has_output_evidence(conn, t)?;
        check_done_guard(ai, evidence, force)?;
        if ai && !evidence {
            event(
                conn,
                now,
                Some(t.workspace_id),
                Some(t.id),
                "task.done_forced",
                actor,
                json!({"from": from.as_str(), "reason": "no visible output evidence"}),
            )?;
        }
    }
    // A status set by hand takes the task from any worker: its claim ends
    // and its later reports are refused as stale.
    t.clear_claim();
    transition(
        conn,
        t,
        to,
        "task.status_changed",
        actor,
        json!({"forced": force}),
        now,
    )
}

/// Kinds of comment a caller may post; `log` and `system` are written by
/// the dispatcher itself.
pub const POSTABLE_COMMENT_KINDS: &[&str] = &["note", "blocker"];

pub fn add_comment(
    db: &Db,
    who: &Principal,
    task_id: i64,
    kind: String,
    body: String,
) -> Result<Comment> {
    let who = who.clone();
    db.write(move |conn| {
        let now = now_ms();
        let t = tasks::require(conn, task_id)?;
        who.can_edit_tasks(t.workspace_id)?;
        let actor = who.actor();
        let id = comments::add(conn, task_id, &actor, &kind, &body, now)?;
        event(
            conn,
            now,
            Some(t.workspace_id),
            Some(task_id),
            "task.commented",
            &actor,
            json!({"comment_id": id, "kind": kind}),
        )?;
        comments::get(conn, id)?
            .map(|c| views::comment(&c))
            .ok_or_else(|| Error::Internal("comment vanished".into()))
    })
}

/// Archived tasks are read-only: the one refusal of a change to one.
pub(super) fn refuse_archived(t: &Task) -> Result<()> {
    match t.archived_at {
        Some(_) => Err(Error::conflict(
            "task_archived",
            format!("task {} is archived; archived tasks are read-only", t.id),
        )),
        None => Ok(()),
    }
}

pub fn archive(db: &Db, who: &Principal, id: i64) -> Result<TaskView> {
    set_archived(db, who, id, true)
}

/// Brings an archived task back to the lists, in the status it kept.
pub fn unarchive(db: &Db, who: &Principal, id: i64) -> Result<TaskView> {
    set_archived(db, who, id, false)
}

/// Archives or unarchives a task; one already so is answered unchanged.
/// A task that a worker holds cannot be archived.
fn set_archived(db: &Db, who: &Principal, id: i64, archived: bool) -> Result<TaskView> {
    let who = who.clone();
    db.write(move |conn| {
        let now = now_ms();
        let mut t = tasks::require(conn, id)?;
        who.can_edit_tasks(t.workspace_id)?;
        if t.archived_at.is_some() == archived {
            return Ok(t);
        }
        if archived && t.status.is_claimed() {
            return Err(Error::conflict(
                "task_active",
                format!(
                    "task {id} is {} on worker {}; move it out of {} before archiving",
                    t.status.as_str(),
                    t.claimed_by.as_deref().unwrap_or("?"),
                    t.status.as_str()
                ),
            ));
        }
        t.archived_at = archived.then_some(now);
        tasks::save(conn, &t, now)?;
        let kind = if archived {
            "task.archived"
        } else {
            "task.unarchived"
        };
        event(
            conn,
            now,
            Some(t.workspace_id),
            Some(id),
            kind,
            &who.actor(),
            json!({}),
        )?;
        tasks::require(conn, id)
    })
    .map(|t| views::task(&t))
}

pub fn delete(db: &Db, who: &Principal, id: i64) -> Result<()> {
    let who = who.clone();
    db.write(move |conn| {
        let now = now_ms();
        let t = tasks::require(conn, id)?;
        who.can_edit_tasks(t.workspace_id)?;
        tasks::delete(conn, id)?;
        event(
            conn,
            now,
            Some(t.workspace_id),
            Some(id),
            "task.deleted",
            &who.actor(),
            json!({"title": t.title, "status": t.status.as_str()}),
        )?;
        Ok(())
    })
}
