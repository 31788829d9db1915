//! The Human Gate's approvals: an approval covers exactly what would run
//! (the prompt, the agent and its command, the model, the repository), so
//! any change to one of those withdraws it here, with an event.

use rusqlite::Connection;
use serde_json::json;

use super::event;
use ops_base::error::Result;
use ops_domain::repo::Allowed;
use ops_store::tasks::{self, Task};

/// Clears `t`'s approval (the caller saves `t`) and records why. Does
/// nothing for a task without one.
pub fn withdraw(conn: &Connection, t: &mut Task, why: &str, actor: &str, now: i64) -> Result<bool> {
    if t.gate_approved_at.is_none() {
        return Ok(false);
    }
    let by = t.gate_approved_by.take();
    t.gate_approved_at = None;
    event(
        conn,
        now,
        Some(t.workspace_id),
        Some(t.id),
        "gate.approval_withdrawn",
        actor,
        json!({"reason": why, "approved_by": by}),
    )?;
    Ok(true)
}

/// Withdraws the approval of every task of agent `agent_id` (whatever its
/// status: a task that runs again later runs the new command), saving each.
/// Returns their ids.
pub fn withdraw_for_agent(
    conn: &Connection,
    agent_id: i64,
    why: &str,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let approved = tasks::approved_of_agent(conn, agent_id)?;
    withdraw_all(conn, approved, why, actor, now)
}

/// Withdraws the approval of each of `approved` and saves it. Returns
/// their ids.
fn withdraw_all(
    conn: &Connection,
    approved: Vec<Task>,
    why: &str,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for mut t in approved {
        withdraw(conn, &mut t, why, actor, now)?;
        tasks::save(conn, &t, now)?;
        ids.push(t.id);
    }
    Ok(ids)
}

/// Withdraws the approval of every task that runs in its workspace's
/// repository, after that repository changed. Returns their ids.
pub fn withdraw_for_workspace_repo(
    conn: &Connection,
    workspace_id: i64,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let approved = tasks::approved_on_workspace_repo(conn, workspace_id)?;
    let why = "workspace repository changed after approval";
    withdraw_all(conn, approved, why, actor, now)
}

/// Withdraws the approval of every task of the workspace whose own
/// repository the workspace no longer allows (its roots narrowed, or its
/// `repo_path` moved away from the one the task names): such a task will
/// not run there, and one allowed again later is approved again, for the
/// repository the approver then sees. Returns their ids.
pub fn withdraw_for_disallowed_repos(
    conn: &Connection,
    allowed: &Allowed<'_>,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let disallowed: Vec<Task> = tasks::approved_with_own_repo(conn, allowed.workspace_id)?
        .into_iter()
        .filter(|t| t.repo_path.as_deref().is_some_and(|p| !allowed.permits(p)))
        .collect();
    let why = "the workspace no longer allows the task's repository";
    withdraw_all(conn, disallowed, why, actor, now)
}
