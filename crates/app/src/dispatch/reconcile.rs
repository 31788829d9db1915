//! Claims and runs taken back: a claim lost on its way to its worker or
//! that could not be delivered (back to `queued`), a running task its
//! worker no longer lists or runs, and tasks stale in `dispatching`
//! (`waiting`, blocked, with an alert).

use rusqlite::Connection;
use serde_json::json;

use crate::views;
use crate::{event, transition};
use ops_base::error::Result;
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_domain::settings::Settings;
use ops_domain::task::Status;
use ops_protocol::dispatch::{Reconciled, StaleTasks};
use ops_store::alerts::{self, Raise, Raised};
use ops_store::comments;
use ops_store::db::Db;
use ops_store::heartbeats::{self, Heartbeat};
use ops_store::tasks::{self, Task};

/// A claim whose answer never reached the worker (the server died after
/// the commit, the connection dropped) leaves the task `dispatching` with
/// nobody on it. The worker's heartbeat lists every task it holds, so a
/// task it claimed more than `dispatch_claim_grace_seconds` ago and does
/// not list never started: it goes back to `queued` (not blocked), its
/// claim cleared, with the event `dispatch.claim_lost`. Returns the ids.
pub(super) fn requeue_lost_claims(
    conn: &Connection,
    hb: &Heartbeat,
    grace: i64,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for mut t in tasks::dispatching_by_worker(conn, &hb.worker_id, now - grace * 1000)? {
        if hb.running_task_ids.contains(&t.id) {
            continue;
        }
        let held_seconds = (now - t.claimed_at.unwrap_or(now)) / 1000;
        t.clear_claim();
        let payload = json!({"worker_id": hb.worker_id, "held_seconds": held_seconds,
                             "grace_seconds": grace, "attempt": t.dispatch_attempts});
        let kind = "dispatch.claim_lost";
        transition(conn, &mut t, Status::Queued, kind, actor, payload, now)?;
        tasks::save(conn, &t, now)?;
        ids.push(t.id);
    }
    Ok(ids)
}

/// A running task is its worker's: each heartbeat lists what the launcher
/// runs. One that a heartbeat of its worker leaves out is noted
/// (`claim_unlisted_at`, written when that changes, not on every
/// heartbeat); one that its worker's heartbeats have left out for
/// `dispatch_claim_grace_seconds` is no longer run by anybody and is taken
/// back in this heartbeat's transaction (see [`release_run`]). Returns the
/// ids taken back.
pub(super) fn release_unlisted_runs(
    conn: &Connection,
    hb: &Heartbeat,
    grace: i64,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for t in tasks::doing_by_worker(conn, &hb.worker_id)? {
        let listed = hb.running_task_ids.contains(&t.id);
        match (listed, t.claim_unlisted_at) {
            (true, None) => {}
            (true, Some(_)) => tasks::set_claim_unlisted(conn, t.id, None)?,
            (false, None) => tasks::set_claim_unlisted(conn, t.id, Some(now))?,
            (false, Some(since)) if now - since >= grace * 1000 => {
                let lang = ops_store::settings::load(conn)?.ui_language;
                let stale = StaleRun::Unlisted {
                    since,
                    last_seen: now,
                    grace,
                };
                ids.push(t.id);
                release_run(conn, t, &stale, lang, actor, now)?;
            }
            (false, Some(_)) => {}
        }
    }
    Ok(ids)
}

/// A claim whose answer could not be delivered to its worker (the
/// connection closed before it was written): the task goes back to
/// `queued` at once (claim cleared, not blocked) with the event
/// `dispatch.claim_undelivered`, unless the claim is no longer the task's
/// current one. Returns the task's workspace and agent when it was
/// requeued, to wake the workers that may take it.
pub fn withdraw_undelivered(
    db: &Db,
    task_id: i64,
    worker_id: String,
    claim_token: String,
) -> Result<Option<(i64, Option<String>)>> {
    db.write(move |conn| {
        let now = now_ms();
        let Some(mut t) = tasks::get(conn, task_id)? else {
            return Ok(None);
        };
        let current = t.status == Status::Dispatching
            && t.claim_token.as_deref() == Some(claim_token.as_str())
            && t.claimed_by.as_deref() == Some(worker_id.as_str());
        if !current {
            return Ok(None);
        }
        t.clear_claim();
        let payload = json!({"worker_id": worker_id, "attempt": t.dispatch_attempts});
        transition(
            conn,
            &mut t,
            Status::Queued,
            "dispatch.claim_undelivered",
            "system",
            payload,
            now,
        )?;
        tasks::save(conn, &t, now)?;
        let agent = match t.agent_id {
            Some(id) => ops_store::agents::get(conn, id)?.map(|a| a.slug),
            None => None,
        };
        Ok(Some((t.workspace_id, agent)))
    })
}

/// Reconciles every task in `dispatching` for more than `minutes` (0: all
/// of them): waiting + blocked, claim cleared, a blocker comment, the
/// task's `dispatch.stale` alert opened or counted, an event. Returns the
/// task ids.
pub fn reconcile_stale(conn: &Connection, minutes: i64, actor: &str, now: i64) -> Result<Vec<i64>> {
    reconcile_stale_among(conn, minutes, None, actor, now)
}

/// Claims made at or before this moment are stale (`minutes` 0: all).
pub(super) fn stale_cutoff(minutes: i64, now: i64) -> i64 {
    if minutes == 0 {
        now
    } else {
        now - minutes * 60_000
    }
}

/// [`reconcile_stale`], limited to the tasks of `only` when given.
fn reconcile_stale_among(
    conn: &Connection,
    minutes: i64,
    only: Option<&[i64]>,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let mut stale = tasks::dispatching_since(conn, stale_cutoff(minutes, now))?;
    if let Some(only) = only {
        stale.retain(|t| only.contains(&t.id));
    }
    let mut ids = Vec::with_capacity(stale.len());
    // Read only when there is a stale task: this runs before every claim.
    let lang = if stale.is_empty() {
        Default::default()
    } else {
        ops_store::settings::load(conn)?.ui_language
    };
    for mut t in stale {
        let worker = t.claimed_by.clone().unwrap_or_else(|| "unknown".into());
        let held_min = (now - t.claimed_at.unwrap_or(now)) / 60_000;
        let reason = format!(
            "stale dispatch: worker {worker} held the task in dispatching for {held_min} min without starting it"
        );
        t.blocked = true;
        t.blocked_reason = Some(reason.clone());
        t.clear_claim();
        comments::add(conn, t.id, "system", "blocker",
            &format!("{reason} (limit: {minutes} min, attempt {}). Check the launcher on that worker, then unblock and dispatch again.", t.dispatch_attempts),
            now)?;
        let subject = format!("task:{}", t.id);
        let (alert, how) = alerts::raise(
            conn,
            &Raise {
                kind: "dispatch.stale",
                subject: &subject,
                task_id: Some(t.id),
                title: &crate::watchdog::titles::stale(lang, t.id),
                detail: &reason,
            },
            true,
            now,
        )?;
        alert_event(conn, &alert, how, actor, now)?;
        let payload = json!({"worker_id": worker, "held_minutes": held_min, "stale_minutes": minutes,
                             "alert_id": alert.id, "agent": t.agent_slug});
        transition(
            conn,
            &mut t,
            Status::Waiting,
            "dispatch.reconciled_stale",
            actor,
            payload,
            now,
        )?;
        tasks::save(conn, &t, now)?;
        ids.push(t.id);
    }
    Ok(ids)
}

/// When this server started serving (`now_ms()` then; 0 in other
/// processes): no worker is judged stale before it has had
/// `dispatch_worker_stale_seconds` to send a heartbeat to this process,
/// so a server that was down does not take every running task back.
static SERVING_SINCE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Called once by `serve` when it starts answering.
pub fn serving_since(now: i64) {
    SERVING_SINCE.store(now, std::sync::atomic::Ordering::Relaxed);
}

/// The cutoffs of a stale run at `now`: a worker last seen at or before
/// the first is stale (`None` while the server has not been up for the
/// stale window), a task left out of its worker's heartbeats at or before
/// the second is no longer run.
fn stale_running_cutoffs(s: &Settings, now: i64) -> (Option<i64>, i64) {
    let cutoff = now - s.dispatch_worker_stale_seconds * 1000;
    let since = SERVING_SINCE.load(std::sync::atomic::Ordering::Relaxed);
    (
        (since <= cutoff).then_some(cutoff),
        now - s.dispatch_claim_grace_seconds * 1000,
    )
}

/// Whether a running task is due to be taken back (the claim path's
/// question, on a reader).
pub(crate) fn any_stale_running(conn: &Connection, s: &Settings, now: i64) -> Result<bool> {
    let (workers, unlisted) = stale_running_cutoffs(s, now);
    tasks::any_stale_running(conn, workers, unlisted)
}

/// Running tasks whose worker no longer runs them, in `workspaces`.
pub(crate) fn stale_running_in(
    conn: &Connection,
    s: &Settings,
    now: i64,
    workspaces: Option<&[i64]>,
) -> Result<Vec<Task>> {
    let (workers, unlisted) = stale_running_cutoffs(s, now);
    tasks::stale_running_in(conn, workers, unlisted, workspaces)
}

/// Why a running task is taken back from its worker.
enum StaleRun {
    /// The worker's last heartbeat (`None`: none on record) is older than
    /// `stale_seconds`.
    WorkerStale {
        last_seen: Option<i64>,
        stale_seconds: i64,
    },
    /// The worker's heartbeats have left the task out since `since`; the
    /// last one came at `last_seen`.
    Unlisted {
        since: i64,
        last_seen: i64,
        grace: i64,
    },
}

/// Takes back every running task whose worker no longer runs it: its
/// worker's heartbeat is older than `dispatch_worker_stale_seconds` (or
/// the worker is unknown), or its fresh heartbeats have left the task out
/// for `dispatch_claim_grace_seconds` (the heartbeat itself takes those
/// back; this catches them when no heartbeat comes). Run by the watchdog
/// and by the claim path (at most once a second). Returns the task ids.
pub fn reconcile_stale_running(
    conn: &Connection,
    s: &Settings,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let stale = stale_running_in(conn, s, now, None)?;
    let mut ids = Vec::with_capacity(stale.len());
    for t in stale {
        let worker = t.claimed_by.clone().unwrap_or_default();
        let hb = heartbeats::get(conn, &worker)?;
        let last_seen = hb.as_ref().map(|h| h.last_seen_at);
        let fresh = hb
            .as_ref()
            .is_some_and(|h| h.is_fresh(now, s.dispatch_worker_stale_seconds));
        let why = match (t.claim_unlisted_at, last_seen) {
            (Some(since), Some(seen)) if fresh => StaleRun::Unlisted {
                since,
                last_seen: seen,
                grace: s.dispatch_claim_grace_seconds,
            },
            _ => StaleRun::WorkerStale {
                last_seen,
                stale_seconds: s.dispatch_worker_stale_seconds,
            },
        };
        ids.push(t.id);
        release_run(conn, t, &why, s.ui_language, actor, now)?;
    }
    Ok(ids)
}

/// Takes a running task back from a worker that no longer runs it, as a
/// stale dispatch is: `waiting`, blocked with a reason naming the worker
/// and when it was last seen, the claim cleared — and remembered as
/// withdrawn (`claim_cancels`), so that if that launcher comes back with
/// the agent still running it ends it and reports how —, a blocker
/// comment, the task's `dispatch.stale_running` alert opened (or counted),
/// and the event `dispatch.reconciled_stale_running`.
fn release_run(
    conn: &Connection,
    mut t: Task,
    why: &StaleRun,
    lang: ops_domain::settings::Language,
    actor: &str,
    now: i64,
) -> Result<()> {
    let worker = t.claimed_by.clone().unwrap_or_else(|| "unknown".into());
    let at = |ms: i64| ops_base::time::rfc3339(ms);
    let ago = |ms: i64| (now - ms).max(0) / 1000;
    let (reason, payload) = match why {
        StaleRun::WorkerStale {
            last_seen: Some(seen),
            stale_seconds,
        } => (
            format!(
                "stale run: worker {worker} was last seen at {} ({} s ago; a worker is stale after {stale_seconds} s): its launcher or its host is gone",
                at(*seen),
                ago(*seen)
            ),
            json!({"why": "worker_stale", "last_seen_at": at(*seen), "stale_seconds": stale_seconds}),
        ),
        StaleRun::WorkerStale {
            last_seen: None,
            stale_seconds,
        } => (
            format!("stale run: worker {worker} has no heartbeat on record (forgotten, or never seen by this server)"),
            json!({"why": "worker_stale", "last_seen_at": null, "stale_seconds": stale_seconds}),
        ),
        StaleRun::Unlisted {
            since,
            last_seen,
            grace,
        } => (
            format!(
                "stale run: worker {worker} stopped listing the task among the tasks it runs at {} ({} s ago; grace {grace} s); it was last seen at {}: its launcher no longer runs it",
                at(*since),
                ago(*since),
                at(*last_seen)
            ),
            json!({"why": "unlisted", "unlisted_since": at(*since), "last_seen_at": at(*last_seen),
                   "grace_seconds": grace}),
        ),
    };
    if let Some(token) = &t.claim_token {
        ops_store::cancels::put(
            conn,
            t.id,
            &worker,
            token,
            ops_store::cancels::Why::StaleRunning,
            now,
        )?;
    }
    t.blocked = true;
    t.blocked_reason = Some(reason.clone());
    t.dispatch_finished_at = Some(now);
    t.clear_claim();
    comments::add(
        conn,
        t.id,
        "system",
        "blocker",
        &format!(
            "{reason} (attempt {}). Check the launcher on that worker: if the agent still runs there, the launcher ends it when it comes back. Then unblock and dispatch again.",
            t.dispatch_attempts
        ),
        now,
    )?;
    let subject = format!("task:{}", t.id);
    let (alert, how) = alerts::raise(
        conn,
        &Raise {
            kind: "dispatch.stale_running",
            subject: &subject,
            task_id: Some(t.id),
            title: &crate::watchdog::titles::stale_running(lang, t.id),
            detail: &reason,
        },
        true,
        now,
    )?;
    alert_event(conn, &alert, how, actor, now)?;
    let mut payload = payload;
    payload["worker_id"] = json!(worker);
    payload["alert_id"] = json!(alert.id);
    payload["agent"] = json!(t.agent_slug);
    transition(
        conn,
        &mut t,
        Status::Waiting,
        "dispatch.reconciled_stale_running",
        actor,
        payload,
        now,
    )?;
    tasks::save(conn, &t, now)
}

/// The event of an alert that opened, reopened or counted an occurrence.
pub(crate) fn alert_event(
    conn: &Connection,
    a: &alerts::Alert,
    how: Raised,
    actor: &str,
    now: i64,
) -> Result<()> {
    let kind = match how {
        Raised::Opened => "alert.opened",
        Raised::Reopened => "alert.reopened",
        Raised::Counted => "alert.occurred",
        Raised::StillOpen => return Ok(()),
    };
    event(
        conn,
        now,
        None,
        a.task_id,
        kind,
        actor,
        json!({"alert_id": a.id, "kind": a.kind, "subject": a.subject, "occurrences": a.occurrences}),
    )
}

/// `POST /api/dispatch/reconcile-stale`; `only` limits it to some tasks.
pub fn reconcile_now(
    db: &Db,
    who: &Principal,
    minutes: Option<i64>,
    only: Option<Vec<i64>>,
) -> Result<Reconciled> {
    who.require_operator("manual reconciliation")?;
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        let minutes = match minutes {
            Some(m) => m,
            None => ops_store::settings::load(conn)?.dispatch_stale_minutes,
        };
        let ids = reconcile_stale_among(conn, minutes, only.as_deref(), &actor, now)?;
        Ok(Reconciled {
            stale_minutes: minutes,
            reconciled: ids.len(),
            task_ids: ids,
        })
    })
}

/// `GET /api/dispatch/stale`: tasks in `dispatching` for longer than the
/// setting.
pub fn stale_tasks(db: &Db, who: &Principal) -> Result<StaleTasks> {
    who.require_ops_admin("inspecting stale tasks")?;
    let conn = db.read()?;
    let s = ops_store::settings::load(&conn)?;
    let visible = who.visible_workspaces();
    let cutoff = now_ms() - s.dispatch_stale_minutes * 60_000;
    let list = tasks::dispatching_since_in(&conn, cutoff, visible.as_deref())?;
    Ok(StaleTasks {
        stale_minutes: s.dispatch_stale_minutes,
        total: list.len(),
        tasks: views::tasks(&list),
    })
}
