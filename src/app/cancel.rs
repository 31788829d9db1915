//! Cancelling a run: `POST /api/tasks/:id/cancel` withdraws the claim
//! (remembering its token in `task_cancels`), the worker learns it from its
//! heartbeat's `cancel` list or the `claim_cancelled` refusal of a report,
//! ends the agent and reports how it ended with the cancelled claim's proof.

use rusqlite::Connection;
use serde_json::json;

use super::{event, transition, views};
use crate::db::Db;
use crate::domain::access::Principal;
use crate::domain::task::{check_may_cancel, CANCELLED_TO};
use crate::error::{Error, Result};
use crate::protocol::dispatch::{CancelEnded, ClaimProof};
use crate::protocol::tasks::TaskView;
use crate::secrets;
use crate::store::{cancels, comments, tasks};
use crate::time::now_ms;

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
        let worker = t.claimed_by.clone();
        if let (Some(w), Some(token)) = (&worker, &t.claim_token) {
            cancels::put(conn, id, w, token, now)?;
            t.dispatch_finished_at = Some(now);
        }
        let body = match &worker {
            Some(w) => format!(
                "cancelled by {actor} while {} on worker {w}; the launcher ends the agent and reports how it ended",
                t.status.as_str()
            ),
            None => format!("cancelled by {actor} while queued, before any worker took it"),
        };
        comments::add(conn, id, "system", "note", &body, now)?;
        t.clear_claim();
        let payload = json!({"worker_id": worker, "attempt": t.dispatch_attempts});
        transition(conn, &mut t, CANCELLED_TO, "task.cancelled", &actor, payload, now)?;
        tasks::save(conn, &t, now)?;
        tasks::require(conn, id)
    })
    .map(|t| views::task(&t))
}

/// Whether `claim` is the cancelled claim of task `id`: the refusal of
/// its reports says `claim_cancelled` rather than `stale_claim`.
pub(crate) fn is_cancelled_claim(conn: &Connection, id: i64, claim: &ClaimProof) -> Result<bool> {
    Ok(cancelled_claim(conn, id, claim)?.is_some())
}

/// The cancelled claim of task `id`, if `claim` proves it.
fn cancelled_claim(
    conn: &Connection,
    id: i64,
    claim: &ClaimProof,
) -> Result<Option<cancels::Cancel>> {
    Ok(cancels::get(conn, id)?.filter(|c| {
        c.worker_id == claim.worker_id
            && secrets::constant_time_eq(&c.claim_token, &claim.claim_token)
    }))
}

/// The tasks of a heartbeat's `running_task_ids` whose claims were
/// cancelled and not yet confirmed.
pub(crate) fn to_cancel(conn: &Connection, worker_id: &str, running: &[i64]) -> Result<Vec<i64>> {
    let mut ids = cancels::pending_of_worker(conn, worker_id)?;
    ids.retain(|id| running.contains(id));
    Ok(ids)
}

/// `POST /api/dispatch/tasks/:id/cancelled`: the launcher's word on how
/// the cancelled agent ended, recorded on the task (a comment and the
/// event `dispatch.cancel_confirmed`) whatever the task does since. Fenced
/// by the cancelled claim: any other proof is `409 stale_claim`. A repeated
/// confirmation answers the task unchanged.
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
        cancels::confirm(conn, id, now)?;
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
                   "ended": how, "elapsed_ms": ended.elapsed_ms, "elapsed_seconds": elapsed_seconds}))?;
        tasks::require(conn, id)
    })
    .map(|t| views::task(&t))
}
