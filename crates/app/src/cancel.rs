//! Cancelling a run: `POST /api/tasks/:id/cancel` withdraws the claim
//! (remembering its token in `claim_cancels`), the worker learns it from its
//! heartbeat's `cancel_claims` (or, for an older launcher, `cancel`) or the
//! `claim_cancelled` refusal of a report, ends the agent and reports how it
//! ended with the cancelled claim's proof. Everything is keyed by the
//! claim's token: a newer claim of the same task, even on the same worker,
//! is never touched by an older cancellation.

use rusqlite::Connection;
use serde_json::json;

use super::{event, transition, views};
use crate::secrets;
use ops_base::error::{Error, Result};
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_domain::task::{check_may_cancel, CANCELLED_TO};
use ops_protocol::dispatch::{CancelEnded, CancelledClaim, ClaimProof};
use ops_protocol::tasks::TaskView;
use ops_store::db::Db;
use ops_store::{cancels, comments, tasks};

/// Takes a `queued`, `dispatching` or `doing` task off the queue and off
/// its worker: it lands in `waiting`, not blocked, so that dispatch or
/// retry runs it again. Rights: those of moving its status by hand.
pub fn cancel(db: &Db, who: &Principal, id: i64) -> Result<TaskView> {
    let who = who.clone();
    db.write(move |conn| {
        let now = now_ms();
        let actor = who.actor();
        let mut t = tasks::require(conn, id)?;
        who.can_edit_tasks(t.workspace_id)?;
        super::tasks::refuse_archived(&t)?;
        check_may_cancel(id, t.status)?;
        let body = match &t.claimed_by {
            Some(w) => format!(
                "cancelled by {actor} while {} on worker {w}; the launcher ends the agent and reports how it ended",
                t.status.as_str()
            ),
            None => format!("cancelled by {actor} while queued, before any worker took it"),
        };
        withdraw(conn, &mut t, &actor, &body, now)?;
        tasks::save(conn, &t, now)?;
        tasks::require(conn, id)
    })
    .map(|t| views::task(&t))
}

/// Takes `t` off its worker and the queue (the caller saves it): the
/// claim is remembered as cancelled, so that its worker ends the agent;
/// its run ends `cancelled`; `note` says why, on the task; the task lands
/// in `waiting`, not blocked.
pub(crate) fn withdraw(
    conn: &Connection,
    t: &mut ops_store::tasks::Task,
    actor: &str,
    note: &str,
    now: i64,
) -> Result<()> {
    let worker = t.claimed_by.clone();
    if let (Some(w), Some(token)) = (&worker, &t.claim_token) {
        cancels::put(conn, t.id, w, token, cancels::Why::Cancelled, now)?;
        super::runs::end(conn, token, "cancelled", None, None, now)?;
        t.dispatch_finished_at = Some(now);
    }
    comments::add(conn, t.id, "system", "note", note, now)?;
    t.clear_claim();
    let payload = json!({"worker_id": worker, "attempt": t.dispatch_attempts});
    transition(conn, t, CANCELLED_TO, "task.cancelled", actor, payload, now)
}

/// Whether `claim` is the cancelled claim of task `id`: the refusal of
/// its reports says `claim_cancelled` rather than `stale_claim`.
pub(crate) fn is_cancelled_claim(conn: &Connection, id: i64, claim: &ClaimProof) -> Result<bool> {
    Ok(cancelled_claim(conn, id, claim)?.is_some())
}

/// The withdrawn claim of task `id` that `claim` proves (worker and token,
/// the token compared in constant time).
fn cancelled_claim(
    conn: &Connection,
    id: i64,
    claim: &ClaimProof,
) -> Result<Option<cancels::Cancel>> {
    Ok(cancels::of_task(conn, id)?.into_iter().find(|c| {
        c.worker_id == claim.worker_id
            && secrets::constant_time_eq(&c.claim_token, &claim.claim_token)
    }))
}

/// What a heartbeat's answer says to end: the withdrawn, unconfirmed
/// claims of `worker_id` on tasks its `running` lists, as (task, token)
/// pairs (`cancel_claims`); and, for launchers that know only task ids
/// (`cancel`), those tasks of them on which this worker holds no newer
/// claim: such a launcher ends every run of a task it is told, and must
/// not end the new one.
pub(crate) fn to_cancel(
    conn: &Connection,
    worker_id: &str,
    running: &[i64],
) -> Result<(Vec<i64>, Vec<CancelledClaim>)> {
    let mut ids = Vec::new();
    let mut claims = Vec::new();
    for p in cancels::pending_of_worker(conn, worker_id)? {
        if !running.contains(&p.task_id) {
            continue;
        }
        if !p.holds_current && !ids.contains(&p.task_id) {
            ids.push(p.task_id);
        }
        claims.push(CancelledClaim {
            task_id: p.task_id,
            claim_token: p.claim_token,
        });
    }
    Ok((ids, claims))
}

/// `POST /api/dispatch/tasks/:id/cancelled`: the launcher's word on how
/// the cancelled agent ended, stored on the withdrawn claim (exit code and
/// signal) and noted on the task (a comment and the event
/// `dispatch.cancel_confirmed`); the task itself — its status, its current
/// claim, a newer run — is left as it is. Fenced by the withdrawn claim:
/// any other proof is `409 stale_claim`. A repeated confirmation answers
/// the task unchanged.
pub fn confirm(
    db: &Db,
    who: &Principal,
    id: i64,
    claim: ClaimProof,
    ended: CancelEnded,
) -> Result<TaskView> {
    who.require_service("worker reports")?;
    db.write(move |conn| {
        let now = now_ms();
        let t = tasks::require(conn, id)?;
        let Some(c) = cancelled_claim(conn, id, &claim)? else {
            return Err(Error::conflict(
                "stale_claim",
                format!("worker {:?} does not hold a cancelled claim on task {id}", claim.worker_id),
            ));
        };
        if c.confirmed_at.is_some() {
            return Ok(t);
        }
        cancels::confirm(conn, &c.claim_token, ended.exit_code, ended.signal.as_deref(), now)?;
        let how = match (&ended.signal, ended.exit_code) {
            (Some(sig), _) => format!("signal {sig}"),
            (None, Some(code)) => format!("exit code {code}"),
            (None, None) => "an unknown end".to_string(),
        };
        let elapsed_seconds = ended.elapsed_ms as f64 / 1000.0;
        comments::add(conn, id, "system", "note",
            &format!("the cancelled agent ended on worker {} with {how}, {elapsed_seconds:.1} s after the launcher learned of the cancellation", claim.worker_id), now)?;
        let actor = format!("worker:{}", claim.worker_id);
        event(conn, now, Some(t.workspace_id), Some(id), "dispatch.cancel_confirmed", &actor,
            json!({"worker_id": claim.worker_id, "exit_code": ended.exit_code, "signal": ended.signal,
                   "ended": how, "elapsed_ms": ended.elapsed_ms, "elapsed_seconds": elapsed_seconds,
                   "reason": c.reason}))?;
        tasks::require(conn, id)
    })
    .map(|t| views::task(&t))
}
