//! Queueing a task for a worker (`dispatch`, `retry`) and the Human Gate
//! that holds a sensitive task until a human approves it.

use serde_json::json;

use crate::views;
use crate::{event, transition};
use ops_base::error::{Error, Result};
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_domain::task::{Execution, Status};
use ops_protocol::tasks::{DispatchAnswer, TaskView};
use ops_store::db::Db;
use ops_store::tasks::{self, Task};
use ops_store::{agents, comments};

/// The start of `blocked_reason` when the Human Gate holds a task.
pub const GATE_REASON: &str = "Human Gate: sensitive task waiting for a human approval";
/// The first line of the note that keeps a follow-up's message on the task.
pub const FOLLOW_UP_NOTE: &str = "Enviado al agente (seguimiento):";
/// The `warning` of a dispatch answered while `dispatch_enabled` is false:
/// the task is queued, but no worker is handed a task until it is true.
pub const DISPATCH_DISABLED: &str = "dispatch_disabled";

/// `POST /api/tasks/:id/dispatch`: `next`/`waiting`/`review` → `queued`.
/// A sensitive task without approval is blocked at the gate (and that is
/// committed) before the 409 is returned. `retry` (`POST
/// /api/tasks/:id/retry`) first lifts a block other than the gate's, in the
/// same transaction: a refused dispatch leaves the task blocked.
pub fn dispatch(db: &Db, who: &Principal, id: i64, retry: bool) -> Result<DispatchAnswer> {
    queue(db, who, id, if retry { How::Retry } else { How::Dispatch })
}

/// `POST /api/tasks/:id/follow-up`: a task in `review` or `waiting` is
/// queued again with `message` for its agent, whose next run resumes the
/// last run's session in the same clone. The same rules as a dispatch
/// apply (Human Gate, budget, then the done guard on its end); a block
/// other than the gate's is lifted, as by a retry. A last run that named
/// no session cannot be resumed: `409 no_session` (retry it afresh).
pub fn follow_up(db: &Db, who: &Principal, id: i64, message: String) -> Result<DispatchAnswer> {
    queue(db, who, id, How::FollowUp(message))
}

/// How a task is queued.
enum How {
    Dispatch,
    /// A block other than the gate's is lifted first.
    Retry,
    /// With a message that resumes the last run's session.
    FollowUp(String),
}

/// What queueing a task came to, inside its transaction.
pub(crate) enum Outcome {
    /// Queued: the task, and the `dispatch_enabled` setting.
    Queued(Box<Task>, bool),
    /// Parked at the Human Gate (committed, then answered `409
    /// human_gate`).
    Gated,
}

fn queue(db: &Db, who: &Principal, id: i64, how: How) -> Result<DispatchAnswer> {
    let who = who.clone();
    let outcome = db.write(move |conn| queue_in(conn, &who, id, how))?;
    answer(id, outcome)
}

/// [`follow_up`] inside the caller's write transaction: `Ok(Gated)` is
/// a refusal to commit (the gate's block), then to answer with [`answer`].
pub(crate) fn follow_up_in(
    conn: &rusqlite::Connection,
    who: &Principal,
    id: i64,
    message: String,
) -> Result<Outcome> {
    queue_in(conn, who, id, How::FollowUp(message))
}

fn queue_in(conn: &rusqlite::Connection, who: &Principal, id: i64, how: How) -> Result<Outcome> {
    let now = now_ms();
    let actor = who.actor();
    let mut t = tasks::require(conn, id)?;
    who.can_edit_tasks(t.workspace_id)?;
    if t.archived_at.is_some() {
        return Err(Error::conflict(
            "task_archived",
            format!("task {id} is archived"),
        ));
    }
    if t.execution != Execution::Interactive {
        return Err(Error::conflict(
            "not_interactive",
            format!("task {id} has execution=manual; set execution=interactive to dispatch it to an agent"),
        ));
    }
    let agent = match t.agent_id {
        Some(a) => agents::require(conn, a)?,
        None => {
            return Err(Error::conflict(
                "no_agent",
                format!("task {id} has no agent; assign one first"),
            ))
        }
    };
    if !agent.active {
        return Err(Error::conflict(
            "agent_inactive",
            format!(
                "agent {:?} is inactive; activate it or choose another agent",
                agent.slug
            ),
        ));
    }
    if let Some(why) = crate::tasks::repo_refusal(conn, &t)? {
        return Err(Error::conflict(
            "repo_not_allowed",
            format!("task {id} cannot be dispatched: its repository {why}"),
        ));
    }
    let session = match &how {
        How::FollowUp(_) => {
            if !matches!(t.status, Status::Review | Status::Waiting) {
                return Err(Error::conflict(
                    "invalid_transition",
                    format!(
                        "task {id} is {}; only a task in review or waiting takes a follow-up",
                        t.status.as_str()
                    ),
                ));
            }
            Some(crate::runs::resumable_session(conn, id)?.ok_or_else(|| Error::conflict(
                "no_session",
                format!("task {id}'s last run named no session to resume (its CLI does not resume sessions, \
                         or the run ended before naming one): retry it for a fresh run"),
            ))?)
        }
        _ => None,
    };
    crate::budget::refuse_if_exhausted(conn, t.workspace_id, now)?;
    if t.sensitive && t.gate_approved_at.is_none() {
        // The first refusal parks the task at the gate; later ones (or
        // one of a task blocked for another reason, or done) change
        // nothing.
        if !t.blocked && t.status.may_be_blocked() {
            t.blocked = true;
            t.blocked_reason = Some(format!("{GATE_REASON} (POST /api/tasks/{id}/approve)"));
            tasks::save(conn, &t, now)?;
            event(
                conn,
                now,
                Some(t.workspace_id),
                Some(id),
                "dispatch.human_gate_blocked",
                &actor,
                json!({}),
            )?;
        }
        return Ok(Outcome::Gated);
    }
    if !matches!(how, How::Dispatch) && t.blocked {
        let reason = t.blocked_reason.take();
        t.blocked = false;
        let because = if session.is_some() {
            "follow_up"
        } else {
            "retry"
        };
        event(
            conn,
            now,
            Some(t.workspace_id),
            Some(id),
            "task.unblocked",
            &actor,
            json!({"reason": reason, "because": because}),
        )?;
    }
    if t.blocked {
        return Err(Error::conflict(
            "task_blocked",
            format!(
                "task {id} is blocked: {}; unblock it first",
                t.blocked_reason.as_deref().unwrap_or("no reason given")
            ),
        ));
    }
    if !matches!(t.status, Status::Next | Status::Waiting | Status::Review) {
        return Err(Error::conflict(
            "invalid_transition",
            format!(
                "task {id} is {}; only next, waiting or review tasks can be dispatched",
                t.status.as_str()
            ),
        ));
    }
    // A person queued it: now, and (unless this is one) without an
    // earlier follow-up still waiting.
    t.not_before = None;
    t.rate_limited_runs = 0;
    t.follow_up = None;
    t.follow_up_session = None;
    let mut payload = json!({"agent": agent.slug});
    if let (How::FollowUp(message), Some(session)) = (&how, session) {
        comments::add(
            conn,
            id,
            &actor,
            "note",
            &format!("{FOLLOW_UP_NOTE}\n{message}"),
            now,
        )?;
        payload["follow_up"] = json!({"session_id": session, "chars": message.chars().count()});
        t.follow_up = Some(message.clone());
        t.follow_up_session = Some(session);
    }
    transition(
        conn,
        &mut t,
        Status::Queued,
        "task.dispatched",
        &actor,
        payload,
        now,
    )?;
    tasks::save(conn, &t, now)?;
    let enabled = ops_store::settings::load(conn)?.dispatch_enabled;
    Ok(Outcome::Queued(
        Box::new(tasks::require(conn, id)?),
        enabled,
    ))
}

/// The answer to a queueing, once its transaction committed.
pub(crate) fn answer(id: i64, outcome: Outcome) -> Result<DispatchAnswer> {
    match outcome {
        Outcome::Queued(t, dispatch_enabled) => Ok(DispatchAnswer {
            task: views::task(&t),
            dispatch_enabled,
            warning: (!dispatch_enabled).then(|| DISPATCH_DISABLED.to_string()),
        }),
        Outcome::Gated => Err(Error::conflict(
            "human_gate",
            format!("task {id} is sensitive: a human admin must approve it (POST /api/tasks/{id}/approve) before it is dispatched"),
        )),
    }
}

/// Whether `t`'s block is the Human Gate's.
pub fn is_gate_block(t: &Task) -> bool {
    t.blocked_reason
        .as_deref()
        .is_some_and(|r| r.starts_with(GATE_REASON))
}

/// `POST /api/tasks/:id/approve`: a human admin approves a sensitive task;
/// a block set by the gate is lifted.
pub fn approve(db: &Db, who: &Principal, id: i64) -> Result<TaskView> {
    let who = who.clone();
    let t = db.write(move |conn| {
        let now = now_ms();
        let mut t = tasks::require(conn, id)?;
        who.require_gate_approver(t.workspace_id, "approving the Human Gate")?;
        if !t.sensitive {
            return Err(Error::conflict(
                "not_sensitive",
                format!("task {id} is not sensitive; it needs no approval"),
            ));
        }
        let Principal::Human(h) = &who else {
            unreachable!("gate approvers are human")
        };
        t.gate_approved_by = Some(h.username.clone());
        t.gate_approved_at = Some(now);
        if t.blocked && is_gate_block(&t) {
            t.blocked = false;
            t.blocked_reason = None;
        }
        tasks::save(conn, &t, now)?;
        event(
            conn,
            now,
            Some(t.workspace_id),
            Some(id),
            "gate.approved",
            &who.actor(),
            json!({}),
        )?;
        tasks::require(conn, id)
    })?;
    Ok(views::task(&t))
}
