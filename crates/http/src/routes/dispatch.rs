//! The dispatch protocol's routes: queueing, the Human Gate, heartbeats,
//! claims, worker reports, reconciliation, health and the watchdog.

use serde_json::Value;

use std::time::{Duration, Instant};

use crate::auth::authenticate;
use crate::fields::Fields;
use crate::request::Req;
use crate::response::Resp;
use crate::waiting::{Wake, MAX_WAIT_SECONDS};
use crate::App;
use ops_app::dispatch::{self, ClaimOutcome, CHUNK_LIMIT, PATCH_LIMIT, STAT_LIMIT};
use ops_app::watchdog;
use ops_base::error::{Error, Result};
use ops_protocol::dispatch::{
    AgentCapability, CancelEnded, ClaimProof, ClaimRequest, Failed, Finished, HeartbeatReport,
    Output, RateLimited, Report, RunChange, Started, WorkerForgotten,
};
use ops_protocol::runs::RunEvent;

pub fn dispatch(app: &App, req: &Req, id: i64) -> Result<Resp> {
    queue(app, req, id, false)
}

/// `POST /api/tasks/:id/retry`: unblock and dispatch, in one transaction.
pub fn retry(app: &App, req: &Req, id: i64) -> Result<Resp> {
    queue(app, req, id, true)
}

/// `POST /api/tasks/:id/follow-up`: `{"message"}` for the agent, whose
/// next run resumes the last run's session.
pub fn follow_up(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["message"])?;
    let message = f
        .text("message", FOLLOW_UP_MAX)?
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| {
            Error::invalid_field("message", "is required: what the agent should do next")
        })?;
    let answer = dispatch::follow_up(&app.db, &who, id, message)?;
    app.waiting.wake(Wake::Queued {
        workspace_id: answer.task.workspace_id,
        agent: answer.task.agent.clone(),
    });
    Ok(Resp::ok(answer))
}

/// The longest follow-up message, in characters.
pub(crate) const FOLLOW_UP_MAX: usize = 20_000;
/// An `output` report carries at most this many run events.
const EVENTS_MAX: usize = 1_000;

fn queue(app: &App, req: &Req, id: i64, retry: bool) -> Result<Resp> {
    let who = authenticate(app, req)?;
    req.fields(&[])?;
    let answer = dispatch::dispatch(&app.db, &who, id, retry)?;
    app.waiting.wake(Wake::Queued {
        workspace_id: answer.task.workspace_id,
        agent: answer.task.agent.clone(),
    });
    Ok(Resp::ok(answer))
}

pub fn approve(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    req.fields(&[])?;
    Ok(Resp::ok(dispatch::approve(&app.db, &who, id)?))
}

fn worker_id(f: &Fields) -> Result<String> {
    let id = f.required_str("worker_id")?;
    if id.trim().is_empty() || id.len() > 200 {
        return Err(Error::invalid_field(
            "worker_id",
            "must be 1 to 200 characters",
        ));
    }
    Ok(id)
}

fn non_negative(f: &Fields, key: &str) -> Result<i64> {
    Ok(f.i64_in(key, 0..=100_000)?.unwrap_or(0))
}

pub fn heartbeat(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&[
        "worker_id",
        "host",
        "pid",
        "version",
        "agents",
        "models",
        "slots_total",
        "slots_busy",
        "running_task_ids",
        "draining",
        "workspace_id",
        "starting",
    ])?;
    let agents = match f.raw("agents") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                capability(v).map_err(|m| Error::invalid_field("agents", format!("item {i}: {m}")))
            })
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(Error::invalid_field(
                "agents",
                "must be a list of {slug, cli, available, authenticated, reason}",
            ))
        }
    };
    let running = f.i64_list("running_task_ids")?.unwrap_or_default();
    let hb = HeartbeatReport {
        worker_id: worker_id(&f)?,
        host: f.str("host")?.unwrap_or_default(),
        pid: f.i64("pid")?,
        version: f.str("version")?.unwrap_or_default(),
        agents,
        models: f.str_list("models")?.unwrap_or_default(),
        slots_total: non_negative(&f, "slots_total")?,
        slots_busy: non_negative(&f, "slots_busy")?,
        running_task_ids: running,
        draining: f.bool("draining")?.unwrap_or(false),
        workspace_id: f.i64("workspace_id")?,
        starting: f.bool("starting")?.unwrap_or(false),
    };
    let worker = hb.worker_id.clone();
    let answer = dispatch::heartbeat(&app.db, &who, hb)?;
    // What it can run may have changed, and lost claims were requeued.
    app.waiting.wake(Wake::Worker(worker));
    if !answer.requeued.is_empty() {
        app.waiting.wake(Wake::All);
    }
    Ok(Resp::ok(answer))
}

fn capability(v: &Value) -> std::result::Result<AgentCapability, String> {
    let obj = v.as_object().ok_or("must be an object")?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["slug", "cli", "available", "authenticated", "reason"].contains(&k.as_str()))
    {
        return Err(format!("unknown key `{k}`"));
    }
    let slug = obj
        .get("slug")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("`slug` is required")?;
    let flag = |k: &str| match obj.get(k) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("`{k}` must be true or false")),
    };
    let text = |k: &str| match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{k}` must be a string")),
    };
    Ok(AgentCapability {
        slug: slug.to_string(),
        cli: text("cli")?.unwrap_or_default(),
        available: flag("available")?,
        authenticated: flag("authenticated")?,
        reason: text("reason")?,
    })
}

/// `?workers=false` leaves the worker list out (the summary still counts
/// them): what a probe polling a large fleet needs.
pub fn health(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let list_workers = req.query_bool("workers")?.unwrap_or(true);
    Ok(Resp::ok(dispatch::health(&app.db, &who, list_workers)?))
}

/// `POST` with `{"worker_id","agent_slugs"?,"workspace_id"?}`, or `GET`
/// with the same as query parameters (`agent_slugs` comma-separated).
pub fn next(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let claim = if req.method == "GET" {
        let worker_id = req
            .query_str("worker_id")
            .ok_or_else(|| Error::BadRequest {
                code: "invalid_query",
                message: "query parameter `worker_id` is required".into(),
            })?
            .to_string();
        ClaimRequest {
            worker_id,
            agent_slugs: req
                .query_str("agent_slugs")
                .map(ops_domain::model_filter::parse_list),
            workspace_id: req.query_i64("workspace_id")?,
        }
    } else {
        let f = req.fields(&["worker_id", "agent_slugs", "workspace_id"])?;
        ClaimRequest {
            worker_id: worker_id(&f)?,
            agent_slugs: f.str_list("agent_slugs")?,
            workspace_id: f.i64("workspace_id")?,
        }
    };
    let wait = req.query_i64("wait")?.unwrap_or(0);
    if !(0..=MAX_WAIT_SECONDS).contains(&wait) {
        return Err(Error::BadRequest {
            code: "invalid_query",
            message: format!("`wait` must be from 0 to {MAX_WAIT_SECONDS} seconds, got {wait}"),
        });
    }
    // Read before the search: a wake after it makes the park look again.
    let generation = app.waiting.generation();
    let outcome = dispatch::claim(&app.db, &who, claim.clone())?;
    if wait > 0
        && matches!(
            outcome,
            ClaimOutcome::Nothing {
                reason: "no_task",
                ..
            }
        )
    {
        let until = Instant::now() + Duration::from_secs(wait as u64);
        // A little longer for the edge's own deadline: the waiting room
        // answers at `until`.
        if let Some(responder) = req.defer(until + Duration::from_secs(5)) {
            if app.test_clock {
                app.waiting.hold_point(&claim.worker_id);
            }
            app.waiting
                .park(&app.db, who, claim, responder, until, generation);
            // Ignored: the waiting room answers.
            return Ok(Resp::ok(()));
        }
    }
    let resp = Resp::ok(outcome.answer());
    Ok(app
        .waiting
        .withdraw_if_undelivered(resp, &outcome, &claim.worker_id))
}

/// The fields of a run's change (`RunChange`), `branch` first, which
/// `finished` and `failed` take beside their own.
const CHANGE_FIELDS: [&str; 8] = [
    "branch",
    "head",
    "base",
    "start",
    "git_status",
    "diff_stat",
    "patch",
    "patch_truncated",
];

/// What a run changed in its worktree, in `finished` or `failed`: present
/// when `branch` is given. `head` and `base` are commit ids.
fn change(f: &Fields) -> Result<Option<RunChange>> {
    let Some(branch) = f.text("branch", 255)? else {
        for k in &CHANGE_FIELDS[1..] {
            if f.has(k) {
                return Err(Error::invalid_field(
                    k,
                    "needs `branch`: a change is reported with its branch",
                ));
            }
        }
        return Ok(None);
    };
    let commit = |k: &str| -> Result<Option<String>> {
        match f.nullable_str(k)?.flatten() {
            Some(c)
                if !(4..=64).contains(&c.len()) || !c.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Err(Error::invalid_field(
                    k,
                    "must be a commit id (4 to 64 hexadecimal digits)",
                ))
            }
            c => Ok(c),
        }
    };
    let bounded = |k: &str, max: usize| -> Result<String> {
        match f.str(k)? {
            Some(s) if s.len() > max => Err(Error::invalid_field(
                k,
                format!("is larger than {max} bytes"),
            )),
            s => Ok(s.unwrap_or_default()),
        }
    };
    Ok(Some(RunChange {
        branch,
        head: commit("head")?,
        base: commit("base")?,
        start: commit("start")?,
        git_status: bounded("git_status", STAT_LIMIT)?,
        diff_stat: bounded("diff_stat", STAT_LIMIT)?,
        patch: bounded("patch", PATCH_LIMIT)?,
        patch_truncated: f.bool("patch_truncated")?.unwrap_or(false),
    }))
}

/// `POST /api/dispatch/tasks/:id/<kind>`.
pub fn report(app: &App, req: &Req, id: i64, kind: &str) -> Result<Resp> {
    let who = authenticate(app, req)?;
    type Parse = fn(&Fields) -> Result<Report>;
    let (allowed, make): (Vec<&str>, Parse) = match kind {
        "started" => (
            vec![
                "worker_id",
                "claim_token",
                "pid",
                "log_path",
                "err_log_path",
            ],
            |f| {
                Ok(Report::Started(Started {
                    pid: f.i64("pid")?,
                    log_path: f.str("log_path")?,
                    err_log_path: f.str("err_log_path")?,
                }))
            },
        ),
        "output" => (
            vec!["worker_id", "claim_token", "chunk", "offset", "events"],
            |f| {
                let chunk = f.required_str("chunk")?;
                if chunk.is_empty() || chunk.len() > CHUNK_LIMIT {
                    return Err(Error::invalid_field(
                        "chunk",
                        format!("must be 1 to {CHUNK_LIMIT} bytes"),
                    ));
                }
                let offset = f.i64_in("offset", 0..=i64::MAX)?;
                let events = match f.raw("events") {
                    None => Vec::new(),
                    Some(v) => {
                        let events: Vec<RunEvent> =
                            serde_json::from_value(v.clone()).map_err(|e| {
                                Error::invalid_field(
                                    "events",
                                    format!("must be a list of run events: {e}"),
                                )
                            })?;
                        if events.len() > EVENTS_MAX {
                            return Err(Error::invalid_field(
                                "events",
                                format!("holds at most {EVENTS_MAX} events"),
                            ));
                        }
                        events
                    }
                };
                Ok(Report::Output(Output {
                    chunk,
                    offset,
                    events,
                }))
            },
        ),
        "finished" => (
            [
                &["worker_id", "claim_token", "exit_code", "signal", "output"][..],
                &CHANGE_FIELDS,
            ]
            .concat(),
            |f| {
                Ok(Report::Finished(Finished {
                    exit_code: f.nullable_i64("exit_code")?,
                    signal: signal(f)?,
                    output: f.str("output")?.unwrap_or_default(),
                    change: change(f)?,
                }))
            },
        ),
        "failed" => (
            [
                &[
                    "worker_id",
                    "claim_token",
                    "signature",
                    "reason",
                    "evidence",
                    "exit_code",
                    "signal",
                    "rate_limited",
                ][..],
                &CHANGE_FIELDS,
            ]
            .concat(),
            |f| {
                Ok(Report::Failed(Failed {
                    signature: f
                        .text("signature", 1000)?
                        .ok_or_else(|| Error::invalid_field("signature", "is required"))?,
                    reason: f.str("reason")?.unwrap_or_default(),
                    evidence: f.str("evidence")?.unwrap_or_default(),
                    exit_code: f.nullable_i64("exit_code")?,
                    signal: signal(f)?,
                    rate_limited: match f.raw("rate_limited") {
                        None | Some(serde_json::Value::Null) => None,
                        Some(v) => Some(serde_json::from_value::<RateLimited>(v.clone()).map_err(
                            |e| {
                                Error::invalid_field(
                                    "rate_limited",
                                    format!("must be {{\"retry_after_seconds\"?: integer}}: {e}"),
                                )
                            },
                        )?),
                    },
                    change: change(f)?,
                }))
            },
        ),
        _ => return Err(Error::not_found(format!("no route {}", req.path))),
    };
    let f = req.fields(&allowed)?;
    let claim = ClaimProof {
        worker_id: worker_id(&f)?,
        claim_token: f.required_str("claim_token")?,
    };
    let report = make(&f)?;
    Ok(Resp::ok(dispatch::report(
        &app.db, &who, id, claim, report,
    )?))
}

/// A signal by name or number (`finished`, `failed`, `cancelled`).
fn signal(f: &Fields) -> Result<Option<String>> {
    match f.raw("signal") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(Error::invalid_field(
            "signal",
            "must be a signal name or number",
        )),
    }
}

/// `POST /api/dispatch/tasks/:id/cancelled`: how a cancelled run ended.
pub fn cancelled(app: &App, req: &Req, id: i64) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&[
        "worker_id",
        "claim_token",
        "exit_code",
        "signal",
        "elapsed_ms",
    ])?;
    let claim = ClaimProof {
        worker_id: worker_id(&f)?,
        claim_token: f.required_str("claim_token")?,
    };
    let ended = CancelEnded {
        exit_code: f.nullable_i64("exit_code")?,
        signal: signal(&f)?,
        elapsed_ms: f.i64_in("elapsed_ms", 0..=i64::MAX)?.unwrap_or(0),
    };
    Ok(Resp::ok(ops_app::cancel::confirm(
        &app.db, &who, id, claim, ended,
    )?))
}

pub fn reconcile(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    let f = req.fields(&["minutes", "task_ids"])?;
    let minutes = f.i64_in("minutes", 0..=10_080)?;
    let only = f.i64_list("task_ids")?;
    Ok(Resp::ok(dispatch::reconcile_now(
        &app.db, &who, minutes, only,
    )?))
}

pub fn stale(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    Ok(Resp::ok(dispatch::stale_tasks(&app.db, &who)?))
}

pub fn forget_worker(app: &App, req: &Req, worker_id: &str) -> Result<Resp> {
    let who = authenticate(app, req)?;
    dispatch::forget_worker(&app.db, &who, worker_id.to_string())?;
    Ok(Resp::ok(WorkerForgotten {
        deleted: worker_id.to_string(),
    }))
}

pub fn watchdog_run(app: &App, req: &Req) -> Result<Resp> {
    let who = authenticate(app, req)?;
    req.fields(&[])?;
    Ok(Resp::ok(watchdog::run_now(&app.db, &who)?))
}
