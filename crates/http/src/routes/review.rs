//! Reviewing a task's change: its files and hunks, comments on lines, and
//! sending the comments to the agent as a follow-up.

use crate::auth::authenticate;
use crate::request::Req;
use crate::response::Resp;
use crate::routes::dispatch::FOLLOW_UP_MAX;
use crate::waiting::Wake;
use crate::App;
use ops_app::review::{self, NewComment};
use ops_base::error::{Error, Result};
use ops_domain::diff::Side;

/// The longest review comment, in characters.
const BODY_MAX: usize = 10_000;

/// `?run=N`: a run number, 1 or more.
fn run(req: &Req) -> Result<Option<i64>> {
    match req.query_i64("run")? {
        Some(n) if n < 1 => Err(Error::BadRequest {
            code: "invalid_query",
            message: format!("query parameter `run` must be a run number, 1 or more, got {n}"),
        }),
        n => Ok(n),
    }
}

/// `GET /api/tasks/:id/review[?run=N]`.
pub fn get(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    Ok(Resp::ok(review::review(&app.db, &who, id, run(req)?)?))
}

/// `GET /api/tasks/:id/review/files/:index[?run=N]`.
pub fn file(app: &App, req: &Req, id: i64, index: &str) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let index = index
        .parse::<i64>()
        .ok()
        .filter(|i| *i >= 0)
        .ok_or_else(|| Error::BadRequest {
            code: "invalid_id",
            message: format!("file index must be a whole number, 0 or more, got {index:?}"),
        })?;
    Ok(Resp::ok(review::file(&app.db, &who, id, index, run(req)?)?))
}

/// `POST /api/tasks/:id/review/comments`.
pub fn comment(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["run", "file", "line", "end_line", "side", "body"])?;
    let positive = |key: &str| -> Result<Option<i64>> {
        match f.i64(key)? {
            Some(n) if n < 1 => Err(Error::invalid_field(
                key,
                format!("must be 1 or more, got {n}"),
            )),
            n => Ok(n),
        }
    };
    let run = match f.raw("run") {
        Some(serde_json::Value::Null) => None,
        _ => positive("run")?,
    };
    let file = f.required_str("file")?;
    if file.trim().is_empty() {
        return Err(Error::invalid_field("file", "must not be empty"));
    }
    let line = positive("line")?.ok_or_else(|| Error::invalid_field("line", "is required"))?;
    let end_line = match f.raw("end_line") {
        Some(serde_json::Value::Null) => None,
        _ => positive("end_line")?,
    };
    let side = f
        .nullable_str("side")?
        .flatten()
        .map(|s| Side::parse(&s).ok_or_else(|| Error::invalid_field("side", "must be new or old")))
        .transpose()?;
    let body = f
        .text("body", BODY_MAX)?
        .ok_or_else(|| Error::invalid_field("body", "is required"))?;
    let c = NewComment {
        run,
        file,
        line,
        end_line,
        side,
        body,
    };
    Ok(Resp::created(review::add_comment(&app.db, &who, id, c)?))
}

/// `DELETE /api/tasks/:id/review/comments/:cid`.
pub fn delete_comment(app: &App, req: &Req, id: i64, cid: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    Ok(Resp::ok(review::delete_comment(&app.db, &who, id, cid)?))
}

/// `POST /api/tasks/:id/review/send`: `{"message"?}`; a blank or null
/// message is none.
pub fn send(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["message"])?;
    let message = f.nullable_str("message")?.flatten();
    if message
        .as_ref()
        .is_some_and(|m| m.chars().count() > FOLLOW_UP_MAX)
    {
        return Err(Error::invalid_field(
            "message",
            format!("is longer than {FOLLOW_UP_MAX} characters"),
        ));
    }
    let answer = review::send(&app.db, &who, id, message)?;
    app.waiting.wake(Wake::Queued {
        workspace_id: answer.task.workspace_id,
        agent: answer.task.agent.clone(),
    });
    Ok(Resp::ok(answer))
}
