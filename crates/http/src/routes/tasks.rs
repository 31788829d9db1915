use ops_protocol::Deleted;

use ops_app::tasks::{
    self, AgentRef, NewTaskInput, Search, TaskEdit, TaskFilter, POSTABLE_COMMENT_KINDS,
};
use ops_domain::repo;

use crate::auth::authenticate;
use crate::fields::Fields;
use crate::request::Req;
use crate::response::Resp;
use crate::App;
use ops_base::error::{Error, Result};
use ops_domain::task::{Execution, Status};

const TITLE_MAX: usize = 500;
const PROMPT_MAX: usize = 256 * 1024;
const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -1000..=1000;

pub fn list(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let workspace_id = req
        .query_i64("workspace_id")?
        .or(req.query_i64("workspace")?);
    if let Some(ws) = workspace_id {
        who.can_read(ws)?;
    }
    let status = req
        .query_str("status")
        .map(|s| {
            Status::parse(s).ok_or_else(|| Error::BadRequest {
                code: "invalid_query",
                message: format!("unknown status {s:?}; statuses: next, queued, dispatching, doing, review, done, waiting"),
            })
        })
        .transpose()?;
    let filter = TaskFilter {
        workspace_id,
        visible: who.visible_workspaces(),
        status,
        agent_slug: req.query_str("agent").map(str::to_string),
        blocked: req.query_bool("blocked")?,
        archived: req.query_bool("archived")?.unwrap_or(false),
        priority: req
            .query_i64("priority")?
            .map(|p| {
                if PRIORITY_RANGE.contains(&p) {
                    Ok(p)
                } else {
                    Err(Error::BadRequest {
                        code: "invalid_query",
                        message: format!(
                            "query parameter `priority` must be from {} to {}, got {p}",
                            PRIORITY_RANGE.start(),
                            PRIORITY_RANGE.end()
                        ),
                    })
                }
            })
            .transpose()?,
        search: search(req)?,
    };
    Ok(Resp::ok(tasks::list(&app.db, &filter, req.page()?)?))
}

/// `?q=`: at most [`TITLE_MAX`] bytes (a longer text matches no title).
fn search(req: &Req) -> Result<Option<Search>> {
    let Some(q) = req.query_str("q") else {
        return Ok(None);
    };
    if q.len() > TITLE_MAX {
        return Err(Error::BadRequest {
            code: "invalid_query",
            message: format!("query parameter `q` is longer than {TITLE_MAX} bytes"),
        });
    }
    if q.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(Search::parse(q)))
}

pub fn get(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    Ok(Resp::ok(tasks::get_with_comments(&app.db, &who, id)?))
}

fn execution(f: &Fields) -> Result<Option<Execution>> {
    f.str("execution")?
        .map(|e| {
            Execution::parse(&e)
                .ok_or_else(|| Error::invalid_field("execution", "must be manual or interactive"))
        })
        .transpose()
}

/// `agent` (a slug) or `agent_id`; `null` clears it.
fn agent(f: &Fields) -> Result<Option<Option<AgentRef>>> {
    if f.has("agent") && f.has("agent_id") {
        return Err(Error::invalid_field(
            "agent",
            "give `agent` (a slug) or `agent_id`, not both",
        ));
    }
    if f.has("agent_id") {
        return Ok(match f.raw("agent_id") {
            Some(serde_json::Value::Null) => Some(None),
            _ => Some(f.i64("agent_id")?.map(AgentRef::Id)),
        });
    }
    Ok(f.nullable_str("agent")?.map(|s| s.map(AgentRef::Slug)))
}

/// The prompt (`description`), at most [`PROMPT_MAX`] bytes.
fn prompt(f: &Fields) -> Result<Option<String>> {
    match f.str("description")? {
        Some(d) if d.len() > PROMPT_MAX => Err(Error::invalid_field(
            "description",
            format!("is larger than {PROMPT_MAX} bytes"),
        )),
        d => Ok(d),
    }
}

fn status(f: &Fields) -> Result<Option<Status>> {
    f.str("status")?
        .map(|s| {
            Status::parse(&s).ok_or_else(|| {
                Error::invalid_field(
                    "status",
                    "must be one of next, queued, dispatching, doing, review, done, waiting",
                )
            })
        })
        .transpose()
}

/// A field that may be absent (leave it), null (clear it) or a value.
type Edit<T> = Option<Option<T>>;

/// `repo_path` and `base_ref`, validated; `null` or `""` clears one.
pub fn repo_fields(f: &Fields) -> Result<(Edit<String>, Edit<String>)> {
    let one = |key: &str, check: fn(&str, &str) -> Result<()>| -> Result<Edit<String>> {
        // Before a blank value is taken as "clear": U+2028 alone is blank
        // to `trim` but is refused, not read as nothing.
        if let Some(serde_json::Value::String(s)) = f.raw(key) {
            repo::check_visible(key, s)?;
        }
        match f.nullable_str(key)? {
            Some(Some(v)) if v.is_empty() => Ok(Some(None)),
            Some(Some(v)) => check(key, &v).map(|()| Some(Some(v))),
            other => Ok(other),
        }
    };
    Ok((
        one("repo_path", repo::check_repo_path)?,
        one("base_ref", repo::check_base_ref)?,
    ))
}

pub fn create(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&[
        "workspace_id",
        "title",
        "description",
        "execution",
        "agent",
        "agent_id",
        "model",
        "priority",
        "sensitive",
        "repo_path",
        "base_ref",
        "expects_changes",
    ])?;
    let (repo_path, base_ref) = repo_fields(&f)?;
    let input = NewTaskInput {
        workspace_id: f.i64("workspace_id")?.unwrap_or(1),
        title: f
            .text("title", TITLE_MAX)?
            .ok_or_else(|| Error::invalid_field("title", "is required"))?,
        description: prompt(&f)?.unwrap_or_default(),
        execution: execution(&f)?.unwrap_or(Execution::Manual),
        agent: agent(&f)?.flatten(),
        model: f.nullable_str("model")?.flatten(),
        priority: f.i64_in("priority", PRIORITY_RANGE)?.unwrap_or(0),
        sensitive: f.bool("sensitive")?.unwrap_or(false),
        repo_path: repo_path.flatten(),
        base_ref: base_ref.flatten(),
        expects_changes: f.bool("expects_changes")?.unwrap_or(true),
    };
    let task = tasks::create(&app.db, &who, input)?;
    Ok(Resp::created(task))
}

pub fn edit(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&[
        "title",
        "description",
        "execution",
        "agent",
        "agent_id",
        "model",
        "priority",
        "sensitive",
        "blocked",
        "blocked_reason",
        "status",
        "repo_path",
        "base_ref",
        "expects_changes",
    ])?;
    let (repo_path, base_ref) = repo_fields(&f)?;
    let edit = TaskEdit {
        title: f.text("title", TITLE_MAX)?,
        description: prompt(&f)?,
        execution: execution(&f)?,
        agent: agent(&f)?,
        model: f.nullable_str("model")?,
        priority: f.i64_in("priority", PRIORITY_RANGE)?,
        sensitive: f.bool("sensitive")?,
        blocked: f.bool("blocked")?,
        blocked_reason: f.nullable_str("blocked_reason")?,
        status: status(&f)?,
        repo_path,
        base_ref,
        expects_changes: f.bool("expects_changes")?,
    };
    let task = tasks::edit(&app.db, &who, id, edit, req.force()?)?;
    Ok(Resp::ok(task))
}

pub fn set_status(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["status"])?;
    let to = status(&f)?.ok_or_else(|| Error::invalid_field("status", "is required"))?;
    let edit = TaskEdit {
        status: Some(to),
        ..TaskEdit::default()
    };
    let task = tasks::edit(&app.db, &who, id, edit, req.force()?)?;
    Ok(Resp::ok(task))
}

pub fn comment(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["body", "kind"])?;
    let body = f
        .text("body", PROMPT_MAX)?
        .ok_or_else(|| Error::invalid_field("body", "is required"))?;
    let kind = f.str("kind")?.unwrap_or_else(|| "note".into());
    if !POSTABLE_COMMENT_KINDS.contains(&kind.as_str()) {
        return Err(Error::invalid_field(
            "kind",
            format!("must be one of {}", POSTABLE_COMMENT_KINDS.join(", ")),
        ));
    }
    Ok(Resp::created(tasks::add_comment(
        &app.db, &who, id, kind, body,
    )?))
}

pub fn archive(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    req.fields(&[])?;
    Ok(Resp::ok(tasks::archive(&app.db, &who, id)?))
}

pub fn unarchive(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    req.fields(&[])?;
    Ok(Resp::ok(tasks::unarchive(&app.db, &who, id)?))
}

/// `POST /api/tasks/:id/cancel`.
pub fn cancel(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    req.fields(&[])?;
    Ok(Resp::ok(ops_app::cancel::cancel(&app.db, &who, id)?))
}

pub fn delete(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    tasks::delete(&app.db, &who, id)?;
    Ok(Resp::ok(Deleted { deleted: id }))
}

/// `GET /api/tasks/:id/runs`: the task's runs and what they spent.
pub fn runs(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    Ok(Resp::ok(ops_app::runs::of_task(&app.db, &who, id)?))
}

/// `GET /api/tasks/:id/transcript?after=`: the runs' events, oldest first.
pub fn transcript(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let after = match req.query_i64("after")? {
        Some(a) if a < 0 => {
            return Err(Error::BadRequest {
                code: "invalid_query",
                message: format!("query parameter `after` must be 0 or more, got {a}"),
            })
        }
        a => a.unwrap_or(0),
    };
    Ok(Resp::ok(ops_app::runs::transcript(
        &app.db, &who, id, after,
    )?))
}
