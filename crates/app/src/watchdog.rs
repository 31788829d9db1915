//! The watchdog: reconciles stale dispatches and raises alerts (each with
//! one follow-up task) for conditions an operator must act on. Runs on its
//! own thread every `watchdog_interval_seconds`, and on demand.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::json;

use super::dispatch::{
    alert_event, reconcile_stale, reconcile_stale_running, replication_lagging, replication_warning,
};
use super::event;
use ops_base::error::Result;
use ops_base::time::{now_ms, rfc3339};
use ops_domain::access::Principal;
use ops_domain::task::Execution;
use ops_protocol::health::Replication;
use ops_protocol::watchdog::{RaisedAlert, WatchdogReport};
use ops_store::alerts::{self, Raise, Raised};
use ops_store::db::Db;
use ops_store::{events, heartbeats, settings, tasks};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The alerts that describe a condition the watchdog sees on every pass:
/// each pass resolves those it no longer sees (event `alert.resolved`,
/// `automatic: true`). The others record incidents that stay open until a
/// person resolves them: `dispatch.stale` and `dispatch.stale_running` (a
/// task was taken back from its worker; the launcher there needs a look)
/// and `dispatch.recurring_failure` (resolving it restarts the count,
/// which is a person's decision). `dispatch.worker_stale` is no longer
/// raised (a running task on a stale worker is taken back instead); one
/// left open by an older version resolves on the next pass.
const CONDITION_KINDS: [&str; 4] = [
    "dispatch.no_fresh_worker",
    "dispatch.queued_unclaimed",
    "dispatch.worker_stale",
    "replication.lag",
];

/// Queued tasks named in the `dispatch.queued_unclaimed` alert's detail
/// (the count says how many there are in all).
const QUEUED_NAMED: i64 = 10;

/// `POST /api/watchdog/run`.
pub fn run_now(db: &Db, who: &Principal) -> Result<WatchdogReport> {
    who.require_ops_admin("running the watchdog")?;
    let actor = who.actor();
    let visible = who.visible_workspaces();
    let replication = db.replica.status();
    db.write(move |conn| {
        let mut report = run(conn, &actor, now_ms(), &replication)?;
        if let Some(ws) = &visible {
            scope_report(conn, &mut report, ws)?;
        }
        Ok(report)
    })
}

/// Keeps in a pass's report only what concerns tasks of `workspaces`: the
/// pass covers every workspace, a workspace admin sees their own part.
fn scope_report(conn: &Connection, report: &mut WatchdogReport, workspaces: &[i64]) -> Result<()> {
    let visible = |id: Option<i64>| -> Result<bool> {
        Ok(match id {
            Some(id) => tasks::get(conn, id)?.is_some_and(|t| workspaces.contains(&t.workspace_id)),
            None => false,
        })
    };
    let keep_ids = |ids: &mut Vec<i64>| -> Result<()> {
        let mut kept = Vec::new();
        for id in ids.drain(..) {
            if visible(Some(id))? {
                kept.push(id);
            }
        }
        *ids = kept;
        Ok(())
    };
    keep_ids(&mut report.task_ids)?;
    keep_ids(&mut report.followup_task_ids)?;
    let mut kept = Vec::new();
    for a in report.alerts.drain(..) {
        if visible(a.alert.task_id)? {
            kept.push(a);
        }
    }
    report.alerts = kept;
    let mut kept = Vec::new();
    for a in report.resolved_alerts.drain(..) {
        if visible(a.task_id)? {
            kept.push(a);
        }
    }
    report.resolved_alerts = kept;
    report.reconciled = report.task_ids.len();
    Ok(())
}

/// One pass, inside the caller's transaction, with the replica's state as
/// the server last learnt it. Returns the report.
pub fn run(
    conn: &Connection,
    actor: &str,
    now: i64,
    replication: &Replication,
) -> Result<WatchdogReport> {
    let s = settings::load(conn)?;
    let mut reconciled = reconcile_stale(conn, s.dispatch_stale_minutes, actor, now)?;
    reconciled.extend(reconcile_stale_running(conn, &s, actor, now)?);
    let mut raised: Vec<(alerts::Alert, Raised)> = Vec::new();

    // Recurring failures, per task and per agent, counted since the alert
    // was last resolved (at most 24 h back), so resolving it sticks until
    // the failures recur.
    let failures = events::dispatch_failures_since(conn, now - DAY_MS)?;
    let mut per_subject: BTreeMap<String, (Option<i64>, Vec<i64>)> = BTreeMap::new();
    for (task_id, agent, at) in failures {
        if let Some(t) = task_id {
            per_subject
                .entry(format!("task:{t}"))
                .or_insert((Some(t), Vec::new()))
                .1
                .push(at);
        }
        if let Some(a) = agent {
            per_subject
                .entry(format!("agent:{a}"))
                .or_insert((None, Vec::new()))
                .1
                .push(at);
        }
    }
    for (subject, (task_id, times)) in per_subject {
        let kind = "dispatch.recurring_failure";
        let since = match alerts::find(conn, kind, &subject)? {
            Some(a) if a.status == "resolved" => a.resolved_at.unwrap_or(0),
            _ => 0,
        };
        let n = times.iter().filter(|at| **at > since).count() as i64;
        if n >= s.watchdog_failure_threshold {
            let title = titles::recurring_failure(s.ui_language, &subject);
            let detail = format!(
                "{n} failed dispatches of {subject} in the last 24 h (threshold {}): see its blocker comments",
                s.watchdog_failure_threshold
            );
            let r = Raise {
                kind,
                subject: &subject,
                task_id,
                title: &title,
                detail: &detail,
            };
            raised.push(alerts::raise(conn, &r, false, now)?);
        }
    }

    let fresh: Vec<String> = heartbeats::list(conn)?
        .into_iter()
        .filter(|w| w.is_fresh(now, s.dispatch_worker_stale_seconds))
        .map(|w| w.worker_id)
        .collect();
    if s.dispatch_enabled && fresh.is_empty() {
        let r = Raise {
            kind: "dispatch.no_fresh_worker",
            subject: "dispatch",
            task_id: None,
            title: titles::no_fresh_worker(s.ui_language),
            detail: &format!(
                "no launcher heartbeat in the last {} s while dispatch_enabled=true: check \
                 ops-dispatch-launcher.service on the worker hosts, or disable dispatch",
                s.dispatch_worker_stale_seconds
            ),
        };
        raised.push(alerts::raise(conn, &r, false, now)?);
    }

    // Queued tasks no worker has taken for the stale window, while
    // dispatch is on: one alert for the queue, naming the longest waiting.
    if s.dispatch_enabled {
        let cutoff = now - s.dispatch_stale_minutes * 60_000;
        let waiting = tasks::queued_since_in(conn, cutoff, None, QUEUED_NAMED)?;
        if !waiting.is_empty() {
            let total = tasks::count_queued_since_in(conn, cutoff, None)?;
            let detail = format!(
                "{total} queued task(s) no worker has taken for more than {} min: {}{}: the fleet is busy, or no \
                 fresh worker serves their agent, model or workspace (see health's workers)",
                s.dispatch_stale_minutes,
                waiting
                    .iter()
                    .map(|t| super::dispatch::queued_label(t, now))
                    .collect::<Vec<_>>()
                    .join(", "),
                if total > waiting.len() { ", …" } else { "" }
            );
            let r = Raise {
                kind: "dispatch.queued_unclaimed",
                subject: "queue",
                task_id: None,
                title: titles::queued_unclaimed(s.ui_language),
                detail: &detail,
            };
            raised.push(alerts::raise(conn, &r, false, now)?);
        }
    }

    // A task running on a stale worker was taken back above
    // (`dispatch.stale_running`, an incident): `dispatch.worker_stale`, the
    // condition alert older versions raised for it, is only resolved.
    if let Some(lag) = replication_lagging(replication, s.replication_max_lag_seconds) {
        let detail = replication_warning(
            lag,
            s.replication_max_lag_seconds,
            replication.error.as_deref(),
        );
        let r = Raise {
            kind: "replication.lag",
            subject: "replication",
            task_id: None,
            title: titles::replication_lag(s.ui_language),
            detail: &detail,
        };
        raised.push(alerts::raise(conn, &r, false, now)?);
    }

    // Conditions that ended since the last pass.
    let mut resolved = Vec::new();
    for kind in CONDITION_KINDS {
        for a in alerts::open_of_kind(conn, kind)? {
            if raised.iter().any(|(r, _)| r.id == a.id) {
                continue;
            }
            let reason = match kind {
                "dispatch.no_fresh_worker" | "dispatch.queued_unclaimed" if !s.dispatch_enabled => {
                    "dispatch is disabled"
                }
                "dispatch.no_fresh_worker" => "a worker is fresh",
                "dispatch.queued_unclaimed" => "no queued task waits past the limit",
                "replication.lag" => "the replica caught up",
                _ => "the task no longer runs on a stale worker",
            };
            let extra = json!({"subject": a.subject, "automatic": true, "reason": reason});
            super::alerts::mark_resolved(conn, &a, actor, extra, now)?;
            resolved.push(super::views::alert(&alerts::require(conn, a.id)?));
        }
    }

    let mut report_alerts = Vec::new();
    let mut followups = Vec::new();
    for (alert, how) in &raised {
        alert_event(conn, alert, *how, actor, now)?;
        if alert.followup_task_id.is_none() {
            followups.push(create_followup(conn, alert, actor, now)?);
        }
        report_alerts.push(RaisedAlert {
            alert: super::views::alert(&alerts::require(conn, alert.id)?),
            change: format!("{how:?}").to_lowercase(),
        });
    }
    Ok(WatchdogReport {
        ran_at: rfc3339(now),
        stale_minutes: s.dispatch_stale_minutes,
        reconciled: reconciled.len(),
        task_ids: reconciled,
        alerts: report_alerts,
        resolved_alerts: resolved,
        followup_task_ids: followups,
    })
}

/// The one follow-up task of an alert: a manual task in the linked task's
/// workspace (or workspace 1), linked from the alert.
fn create_followup(conn: &Connection, a: &alerts::Alert, actor: &str, now: i64) -> Result<i64> {
    // The tag is the same in every language, so that it can be searched
    // for; the alert's title is in the `ui_language` of its pass.
    let title = format!("[watchdog] {}", a.title);
    let workspace_id = match a.task_id {
        Some(t) => tasks::get(conn, t)?.map_or(1, |t| t.workspace_id),
        None => 1,
    };
    let id = tasks::insert(
        conn,
        &tasks::NewTask {
            workspace_id,
            title: title.clone(),
            description: format!(
                "{}\n\nAlert {} ({}). Resolve the alert (POST /api/alerts/{}/resolve) once this is fixed.",
                a.detail, a.id, a.kind, a.id
            ),
            execution: Execution::Manual,
            agent_id: None,
            model: None,
            priority: 10,
            sensitive: false,
            repo_path: None,
            base_ref: None,
            expects_changes: true,
        },
        now,
    )?;
    alerts::set_followup(conn, a.id, id)?;
    event(
        conn,
        now,
        Some(workspace_id),
        Some(id),
        "task.created",
        actor,
        json!({"title": title, "alert_id": a.id}),
    )?;
    Ok(id)
}

/// The watchdog thread: one pass every `watchdog_interval_seconds` until
/// `stop` is set. The setting is read again every second, so a change
/// takes effect without a restart. Event retention has a thread of its
/// own (`retention.rs`), so a long backlog never delays a pass.
pub fn spawn(db: Arc<Db>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let mut last_run = Instant::now();
            let mut period = interval(&db);
            let mut last_read = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                if last_read.elapsed() >= Duration::from_secs(1) {
                    period = interval(&db);
                    last_read = Instant::now();
                }
                if last_run.elapsed() < period {
                    continue;
                }
                last_run = Instant::now();
                let replication = db.replica.status();
                match db.write(move |conn| run(conn, "watchdog", now_ms(), &replication)) {
                    Ok(report) => {
                        let n = report.reconciled;
                        let a = report.alerts.len();
                        if n > 0 || a > 0 {
                            log::warn!("watchdog: reconciled {n} stale task(s), {a} alert(s) raised or open");
                        }
                        let r = report.resolved_alerts.len();
                        if r > 0 {
                            log::info!("watchdog: {r} alert(s) resolved, their condition ended");
                        }
                    }
                    Err(e) => log::error!("watchdog pass failed: {e}"),
                }
            }
        })
        .expect("spawn watchdog thread")
}

pub(crate) fn interval(db: &Db) -> Duration {
    let secs = db
        .read()
        .and_then(|c| settings::load(&c))
        .map(|s| s.watchdog_interval_seconds)
        .unwrap_or(60);
    Duration::from_secs(secs.max(1) as u64)
}

/// The titles the watchdog writes, in the `ui_language` setting's language.
/// Kinds, subjects and codes are the same in every language; details stay
/// in English, the language of the commands and settings they quote.
pub(crate) mod titles {
    use ops_domain::settings::Language;

    pub fn recurring_failure(lang: Language, subject: &str) -> String {
        match lang {
            Language::Es => format!("Fallos de dispatch repetidos en {subject}"),
            Language::En => format!("Recurring dispatch failures on {subject}"),
        }
    }

    pub fn no_fresh_worker(lang: Language) -> &'static str {
        match lang {
            Language::Es => "Dispatch activado sin ningún worker fresco",
            Language::En => "Dispatch is enabled but no worker is fresh",
        }
    }

    pub fn queued_unclaimed(lang: Language) -> &'static str {
        match lang {
            Language::Es => "Tareas en cola que ningún worker toma",
            Language::En => "Queued tasks no worker takes",
        }
    }

    pub fn stale(lang: Language, task: i64) -> String {
        match lang {
            Language::Es => format!("Tarea {task} atascada en dispatching"),
            Language::En => format!("Task {task} stuck in dispatching"),
        }
    }

    pub fn replication_lag(lang: Language) -> &'static str {
        match lang {
            Language::Es => "La réplica de la base de datos va con retraso",
            Language::En => "The database replica is behind",
        }
    }

    pub fn stale_running(lang: Language, task: i64) -> String {
        match lang {
            Language::Es => format!("Tarea {task} en curso sin su worker"),
            Language::En => format!("Task {task} running without its worker"),
        }
    }
}
