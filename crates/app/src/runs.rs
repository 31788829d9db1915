//! Agent runs: a run starts with its `started` report, takes the events of
//! its `output` reports (the transcript, the CLI's session, tokens and
//! money), and ends with its final report. Follow-ups resume a run's
//! session; the runs' cost is what a workspace's budget counts.

use rusqlite::Connection;

use super::views;
use ops_base::error::{Error, Result};
use ops_base::time::{rfc3339, Month};
use ops_domain::access::Principal;
use ops_domain::prices;
use ops_domain::settings::Settings;
use ops_protocol::runs::{RunEvent, TaskRuns, Transcript, TranscriptEntry, WorkspaceUsage};
use ops_store::db::Db;
use ops_store::runs::{self, NewRun, Run};
use ops_store::tasks::{self, Task};
use ops_store::{agents, workspaces};

/// A stored message or tool text is at most this long: the head, then a
/// mark (a transcript is read by people; the whole is in the raw log).
const TEXT_LIMIT: usize = 64 * 1024;
/// A transcript page holds at most this many events.
pub const TRANSCRIPT_PAGE: i64 = 500;

/// Starts the run of `t`'s current claim (its `started` report): the
/// task's waiting follow-up, if any, is this run's, and so are the review
/// comments it sent. Earlier runs of the
/// task still marked running lost their claim. Idempotent per claim.
pub(crate) fn start(conn: &Connection, t: &mut Task, worker_id: &str, now: i64) -> Result<()> {
    let Some(token) = t.claim_token.clone() else {
        return Ok(());
    };
    if runs::by_claim(conn, &token)?.is_some() {
        return Ok(());
    }
    runs::end_lost(conn, t.id, now)?;
    let agent = match t.agent_id {
        Some(a) => Some(agents::require(conn, a)?),
        None => None,
    };
    let model = t
        .model
        .clone()
        .filter(|m| !m.trim().is_empty())
        .or_else(|| agent.as_ref().and_then(|a| a.model.clone()));
    let run = runs::start(
        conn,
        &NewRun {
            task_id: t.id,
            workspace_id: t.workspace_id,
            claim_token: &token,
            worker_id,
            agent_slug: agent.as_ref().map_or("", |a| a.slug.as_str()),
            model: model.as_deref(),
            follow_up: t.follow_up.as_deref(),
            resumed_session: t.follow_up_session.as_deref(),
        },
        now,
    )?;
    if t.follow_up.is_some() {
        // The review comments that follow-up sent are this run's to take.
        ops_store::review_comments::taken_by_run(conn, t.id, run.number)?;
    }
    t.follow_up = None;
    t.follow_up_session = None;
    Ok(())
}

/// Ends the run of a claim (`finished`, `failed`, `cancelled`,
/// `rate_limited`); one already ended keeps how it ended.
pub(crate) fn end(
    conn: &Connection,
    token: &str,
    outcome: &str,
    exit_code: Option<i64>,
    signal: Option<&str>,
    now: i64,
) -> Result<()> {
    if let Some(run) = runs::by_claim(conn, token)? {
        runs::end(conn, run.id, outcome, exit_code, signal, now)?;
    }
    Ok(())
}

/// Takes the events of an accepted `output` chunk into the run of its
/// claim: each one into the transcript, the session id onto the run, and
/// the tokens and money onto it, priced by `model_prices` where the CLI
/// gave no figure. Then the workspace's budget is looked at.
pub(crate) fn take_events(
    conn: &Connection,
    token: &str,
    events: Vec<RunEvent>,
    settings: &Settings,
    now: i64,
) -> Result<()> {
    let Some(run) = runs::by_claim(conn, token)? else {
        // Output before `started` (a launcher that skipped it): nothing to
        // hang the events on.
        return Ok(());
    };
    let mut spent = false;
    let mut session = run.session_id.clone();
    for e in events {
        let e = bounded(e);
        runs::add_event(conn, &run, &e, now)?;
        match e {
            RunEvent::Session { id } => {
                runs::set_session(conn, run.id, &id)?;
                session = Some(id);
            }
            RunEvent::Usage {
                mut tokens_in,
                mut tokens_out,
                cost_usd,
                session_total,
            } => {
                if session_total {
                    // What the session's runs have counted already, this
                    // one's so far included.
                    let (had_in, had_out) = match &session {
                        Some(s) => runs::session_tokens(conn, run.task_id, s)?,
                        None => runs::tokens_of(conn, run.id)?,
                    };
                    tokens_in = (tokens_in - had_in).max(0);
                    tokens_out = (tokens_out - had_out).max(0);
                }
                let cost = match cost_usd {
                    Some(usd) => Some((usd, "cli")),
                    None => run
                        .model
                        .as_deref()
                        .and_then(|m| prices::of(&settings.model_prices, m))
                        .map(|p| (prices::cost(p, tokens_in, tokens_out), "model_prices")),
                };
                runs::add_usage(conn, run.id, tokens_in, tokens_out, cost)?;
                spent |= cost.is_some();
            }
            _ => {}
        }
    }
    if spent {
        super::budget::after_spend(conn, run.workspace_id, settings, now)?;
    }
    Ok(())
}

/// An event with its texts cut to [`TEXT_LIMIT`] and its figures made
/// sane (negative tokens and money are none).
fn bounded(e: RunEvent) -> RunEvent {
    let cut = |s: String| {
        if s.len() <= TEXT_LIMIT {
            return s;
        }
        let mut end = TEXT_LIMIT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}\n[…]", &s[..end])
    };
    match e {
        RunEvent::Message { text } => RunEvent::Message { text: cut(text) },
        RunEvent::ToolCall {
            name,
            summary,
            detail,
        } => RunEvent::ToolCall {
            name: cut(name),
            summary: cut(summary),
            detail: cut(detail),
        },
        RunEvent::ToolResult { name, text, error } => RunEvent::ToolResult {
            name: cut(name),
            text: cut(text),
            error,
        },
        RunEvent::Error { text } => RunEvent::Error { text: cut(text) },
        RunEvent::Usage {
            tokens_in,
            tokens_out,
            cost_usd,
            session_total,
        } => RunEvent::Usage {
            tokens_in: tokens_in.max(0),
            tokens_out: tokens_out.max(0),
            cost_usd: cost_usd.filter(|c| c.is_finite() && *c >= 0.0),
            session_total,
        },
        RunEvent::Session { id } => RunEvent::Session { id: cut(id) },
    }
}

/// The follow-up the run of a claim answered (its message and the session
/// it resumed), if it was one.
pub(crate) fn follow_up_of(
    conn: &Connection,
    token: &str,
) -> Result<Option<(String, Option<String>)>> {
    Ok(runs::by_claim(conn, token)?.and_then(|r| r.follow_up.map(|m| (m, r.resumed_session))))
}

/// The session a follow-up of `t` resumes: its last run's, when that run
/// named one.
pub(crate) fn resumable_session(conn: &Connection, task_id: i64) -> Result<Option<String>> {
    Ok(runs::of_task(conn, task_id)?
        .pop()
        .and_then(|r| r.session_id))
}

/// `GET /api/tasks/:id/runs`.
pub fn of_task(db: &Db, who: &Principal, id: i64) -> Result<TaskRuns> {
    let conn = db.read()?;
    let t = tasks::require(&conn, id)?;
    who.can_read(t.workspace_id)?;
    let list = runs::of_task(&conn, id)?;
    let can_resume = list.last().is_some_and(|r| r.session_id.is_some());
    Ok(TaskRuns {
        tokens_in: list.iter().map(|r| r.tokens_in).sum(),
        tokens_out: list.iter().map(|r| r.tokens_out).sum(),
        cost_usd: list.iter().filter_map(|r| r.cost_usd).sum(),
        runs: list.iter().map(|r| views::run(r, &t)).collect(),
        can_resume,
    })
}

/// `GET /api/tasks/:id/transcript?after=`.
pub fn transcript(db: &Db, who: &Principal, id: i64, after: i64) -> Result<Transcript> {
    let conn = db.read()?;
    let t = tasks::require(&conn, id)?;
    who.can_read(t.workspace_id)?;
    let mut page = runs::events(&conn, id, after, TRANSCRIPT_PAGE + 1)?;
    let more = page.len() as i64 > TRANSCRIPT_PAGE;
    page.truncate(TRANSCRIPT_PAGE as usize);
    Ok(Transcript {
        events: page
            .into_iter()
            .map(|e| TranscriptEntry {
                seq: e.seq,
                run: e.run,
                at: rfc3339(e.at),
                event: e.event,
            })
            .collect(),
        more,
    })
}

/// `GET /api/workspaces/:id/usage?month=2026-12` (default: this month).
pub fn workspace_usage(
    db: &Db,
    who: &Principal,
    workspace_id: i64,
    month: Option<&str>,
) -> Result<WorkspaceUsage> {
    who.can_read(workspace_id)?;
    let month = match month {
        None => Month::of(ops_base::time::now_ms()),
        Some(m) => Month::parse(m).ok_or_else(|| Error::BadRequest {
            code: "invalid_query",
            message: format!("query parameter `month` must be a month such as 2026-12, got {m:?}"),
        })?,
    };
    let conn = db.read()?;
    let ws = workspaces::require(&conn, workspace_id)?;
    let (from, to) = month.bounds();
    let spend = runs::workspace_spend(&conn, workspace_id, from, to)?;
    Ok(WorkspaceUsage {
        workspace_id,
        month: month.to_string(),
        runs: spend.runs,
        tokens_in: spend.tokens_in,
        tokens_out: spend.tokens_out,
        cost_usd: spend.cost_usd,
        budget_usd_month: ws.budget_usd_month,
        budget_used_percent: ws
            .budget_usd_month
            .filter(|b| *b > 0.0)
            .map(|b| spend.cost_usd / b * 100.0),
    })
}

/// A run as the API shows it: a run still marked running whose claim is
/// no longer the task's lost it.
pub(crate) fn outcome_of(r: &Run, t: &Task) -> String {
    if r.outcome == "running" && t.claim_token.as_deref() != Some(r.claim_token.as_str()) {
        return "lost".into();
    }
    r.outcome.clone()
}
