//! The use cases: each public function is one read, or one write
//! transaction run through the writer thread, built from `store/` calls and
//! `domain/` rules. Every write appends its event in the same transaction.

pub mod accounts;
pub mod agents;
pub mod alerts;
pub mod audit;
pub mod budget;
pub mod cancel;
pub mod dispatch;
pub mod gate;
pub mod metrics;
pub mod retention;
pub mod review;
pub mod runs;
pub mod secrets;
pub mod serving;
pub mod settings;
pub mod tasks;
pub mod views;
pub mod watchdog;

use rusqlite::Connection;
use serde_json::Value;

use ops_base::error::Result;
use ops_domain::task::Status;
use ops_store::events::{self, NewEvent};
use ops_store::tasks::Task;
/// A page of a list, as routes ask for it.
pub use ops_store::Page;

/// Appends one audit event (the same transaction as the change it records).
pub(crate) fn event(
    conn: &Connection,
    now: i64,
    workspace_id: Option<i64>,
    task_id: Option<i64>,
    kind: &str,
    actor: &str,
    payload: Value,
) -> Result<()> {
    events::append(
        conn,
        NewEvent {
            workspace_id,
            task_id,
            kind,
            actor,
            payload,
        },
        now,
    )
}

/// Moves `t` to `to` and records the event `kind` with `from` and `to` in
/// its payload (merged into `extra`). Every status change goes through
/// here, so a task's latest `to` is always its status. A status in which a
/// task may not be blocked (`done`) lifts its block, with the event
/// `task.unblocked` naming the reason it had. The caller saves `t`.
pub(crate) fn transition(
    conn: &Connection,
    t: &mut Task,
    to: Status,
    kind: &str,
    actor: &str,
    mut extra: Value,
    now: i64,
) -> Result<()> {
    let from = t.status;
    t.status = to;
    if to == Status::Queued {
        t.queued_at = Some(now);
    }
    if !extra.is_object() {
        extra = Value::Object(Default::default());
    }
    extra["from"] = Value::from(from.as_str());
    extra["to"] = Value::from(to.as_str());
    event(
        conn,
        now,
        Some(t.workspace_id),
        Some(t.id),
        kind,
        actor,
        extra,
    )?;
    if t.blocked && !to.may_be_blocked() {
        t.blocked = false;
        let reason = t.blocked_reason.take();
        event(
            conn,
            now,
            Some(t.workspace_id),
            Some(t.id),
            "task.unblocked",
            actor,
            serde_json::json!({"reason": reason, "because": to.as_str()}),
        )?;
    }
    Ok(())
}
