//! A workspace's monthly budget (`budget_usd_month`): at 80 % of it an
//! alert, once a month; at 100 % its dispatches and follow-ups are refused
//! (`409 budget_exhausted`) and its running agents are stopped like a
//! cancel, with the figures on each task.

use rusqlite::Connection;
use serde_json::json;

use super::{event, transition};
use ops_base::error::{Error, Result};
use ops_base::time::Month;
use ops_domain::settings::{Language, Settings};
use ops_domain::task::Status;
use ops_store::alerts::{self, Raise};
use ops_store::runs;
use ops_store::tasks;
use ops_store::workspaces::{self, BudgetMark, Workspace};

/// The start of `blocked_reason` of a queued task parked by a spent
/// budget.
pub const EXHAUSTED_REASON: &str = "presupuesto agotado";
/// Queued tasks parked at once when a budget is spent, at most.
const PARK_BATCH: i64 = 1000;

/// The share of the budget at which the warning is raised.
const WARN_AT: f64 = 0.8;

/// What workspace `ws` has spent this month, and its budget when it has
/// one.
fn spent(conn: &Connection, ws: &Workspace, now: i64) -> Result<(Month, f64)> {
    let month = Month::of(now);
    let (from, to) = month.bounds();
    Ok((
        month,
        runs::workspace_spend(conn, ws.id, from, to)?.cost_usd,
    ))
}

/// `409 budget_exhausted` when workspace `workspace_id` has spent its
/// budget this month: no dispatch, retry or follow-up of its tasks.
pub(crate) fn refuse_if_exhausted(conn: &Connection, workspace_id: i64, now: i64) -> Result<()> {
    let ws = workspaces::require(conn, workspace_id)?;
    let Some(budget) = ws.budget_usd_month else {
        return Ok(());
    };
    let (month, spent) = spent(conn, &ws, now)?;
    if spent >= budget {
        return Err(Error::conflict(
            "budget_exhausted",
            format!(
                "workspace {} has spent {spent:.2} USD of its {budget:.2} USD budget for {month}; \
                 raise budget_usd_month (PATCH /api/workspaces/{}) or wait for next month",
                ws.id, ws.id
            ),
        ));
    }
    Ok(())
}

/// After a run of workspace `workspace_id` spent money: the month's
/// warning at 80 %, and at 100 % the stop of its running agents, each
/// done once a month (and again after the budget is changed).
pub(crate) fn after_spend(
    conn: &Connection,
    workspace_id: i64,
    settings: &Settings,
    now: i64,
) -> Result<()> {
    let ws = workspaces::require(conn, workspace_id)?;
    let Some(budget) = ws.budget_usd_month else {
        return Ok(());
    };
    let (month, spent) = spent(conn, &ws, now)?;
    let this_month = month.to_string();
    let figures = json!({"month": this_month, "spent_usd": spent, "budget_usd_month": budget});
    if spent >= budget * WARN_AT && ws.budget_warned.as_deref() != Some(this_month.as_str()) {
        workspaces::mark_budget(conn, ws.id, BudgetMark::Warned, &this_month)?;
        let title = match settings.ui_language {
            Language::Es => format!("Presupuesto de «{}» al 80 % ({this_month})", ws.name),
            Language::En => format!("Budget of \"{}\" at 80 % ({this_month})", ws.name),
        };
        let detail = format!(
            "workspace {} has spent {spent:.2} USD of its {budget:.2} USD budget for {this_month}; \
             at 100 % its dispatches are refused and its running agents stopped",
            ws.id
        );
        let what = Announced {
            kind: "budget.warning",
            title: &title,
            detail: &detail,
        };
        announce(conn, &ws, &this_month, &what, figures.clone(), now)?;
    }
    if spent >= budget && ws.budget_exhausted.as_deref() != Some(this_month.as_str()) {
        workspaces::mark_budget(conn, ws.id, BudgetMark::Exhausted, &this_month)?;
        let stopped = stop_running(conn, &ws, spent, budget, now)?;
        let title = match settings.ui_language {
            Language::Es => format!("Presupuesto de «{}» agotado ({this_month})", ws.name),
            Language::En => format!("Budget of \"{}\" spent ({this_month})", ws.name),
        };
        let detail = format!(
            "workspace {} has spent {spent:.2} USD of its {budget:.2} USD budget for {this_month}: \
             its dispatches are refused (409 budget_exhausted) and {} running agent(s) were stopped",
            ws.id,
            stopped.len()
        );
        let mut payload = figures;
        payload["stopped_task_ids"] = json!(stopped);
        let what = Announced {
            kind: "budget.exhausted",
            title: &title,
            detail: &detail,
        };
        announce(conn, &ws, &this_month, &what, payload, now)?;
    }
    Ok(())
}

/// A budget step to announce: the kind of its alert and event, and the
/// alert's words.
struct Announced<'a> {
    kind: &'a str,
    title: &'a str,
    detail: &'a str,
}

/// Opens the month's alert of `what` for the workspace and records its
/// event with `payload`.
fn announce(
    conn: &Connection,
    ws: &Workspace,
    month: &str,
    what: &Announced<'_>,
    payload: serde_json::Value,
    now: i64,
) -> Result<()> {
    let subject = format!("workspace:{}:{month}", ws.id);
    let alert = Raise {
        kind: what.kind,
        subject: &subject,
        task_id: None,
        title: what.title,
        detail: what.detail,
    };
    alerts::raise(conn, &alert, false, now)?;
    event(conn, now, Some(ws.id), None, what.kind, "budget", payload)
}

/// Stops the running agents of the workspace like a cancel, and parks its
/// queued tasks; each task says why with the figures. Returns the tasks
/// stopped or parked.
fn stop_running(
    conn: &Connection,
    ws: &Workspace,
    spent: f64,
    budget: f64,
    now: i64,
) -> Result<Vec<i64>> {
    let mut stopped = Vec::new();
    for run in runs::running_in_workspace(conn, ws.id)? {
        let mut t = tasks::require(conn, run.task_id)?;
        if t.claim_token.as_deref() != Some(run.claim_token.as_str()) || !t.status.is_claimed() {
            continue;
        }
        let note = format!(
            "presupuesto agotado: el espacio de trabajo {} gastó {spent:.2} USD de {budget:.2} USD este mes; \
             el agente se detiene como en una cancelación (budget_exhausted)",
            ws.id
        );
        super::cancel::withdraw(conn, &mut t, "budget", &note, now)?;
        tasks::save(conn, &t, now)?;
        stopped.push(t.id);
    }
    // What waits in the queue would be claimed next: it waits blocked
    // instead, until the budget allows it and it is retried.
    for mut t in tasks::queued_since_in(conn, i64::MAX, Some(&[ws.id]), PARK_BATCH)? {
        t.blocked = true;
        t.blocked_reason = Some(format!(
            "{EXHAUSTED_REASON}: {spent:.2} USD de {budget:.2} USD este mes"
        ));
        let payload = json!({"spent_usd": spent, "budget_usd_month": budget});
        transition(
            conn,
            &mut t,
            Status::Waiting,
            "budget.parked",
            "budget",
            payload,
            now,
        )?;
        tasks::save(conn, &t, now)?;
        stopped.push(t.id);
    }
    Ok(stopped)
}
