//! Listing, resolving and deleting alerts (they are raised by the
//! watchdog and reconciliation).

use serde_json::{json, Value};

use super::{event, views};
use ops_base::error::Result;
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_protocol::events::{AlertList, AlertView};
use ops_store::alerts::{self, Alert};
use ops_store::db::Db;
use ops_store::{tasks, Page};

pub fn resolve(db: &Db, who: &Principal, id: i64) -> Result<AlertView> {
    who.require_ops_admin("resolving alerts")?;
    let actor = who.actor();
    let who = who.clone();
    db.write(move |conn| {
        let now = now_ms();
        let a = alerts::require(conn, id)?;
        who.can_resolve_alert(task_workspace(conn, &a)?)?;
        if a.status != "resolved" {
            mark_resolved(conn, &a, &actor, json!({}), now)?;
        }
        alerts::require(conn, id)
    })
    .map(|a| views::alert(&a))
}

/// Resolves the open alert `a` with its event `alert.resolved`, whose
/// payload names the alert and adds `extra`'s fields.
pub(crate) fn mark_resolved(
    conn: &rusqlite::Connection,
    a: &Alert,
    actor: &str,
    mut extra: Value,
    now: i64,
) -> Result<()> {
    alerts::resolve(conn, a.id, now)?;
    if !extra.is_object() {
        extra = json!({});
    }
    extra["alert_id"] = json!(a.id);
    extra["kind"] = json!(a.kind);
    event(conn, now, None, a.task_id, "alert.resolved", actor, extra)
}

/// The alerts `who` may see, newest activity first.
pub fn list(db: &Db, who: &Principal, status: Option<&str>, page: Page) -> Result<AlertList> {
    let (list, total) = alerts::list(
        &*db.read()?,
        status,
        who.visible_workspaces().as_deref(),
        page,
    )?;
    Ok(AlertList {
        alerts: list.iter().map(views::alert).collect(),
        total,
    })
}

/// The workspace of the task an alert is about (`None`: no task, or the
/// task is gone).
fn task_workspace(conn: &rusqlite::Connection, a: &Alert) -> Result<Option<i64>> {
    Ok(match a.task_id {
        Some(t) => tasks::get(conn, t)?.map(|t| t.workspace_id),
        None => None,
    })
}

/// Removes an alert (smokes clean up after themselves).
pub fn delete(db: &Db, who: &Principal, id: i64) -> Result<()> {
    who.require_operator("deleting alerts")?;
    let actor = who.actor();
    db.write(move |conn| {
        let a = alerts::require(conn, id)?;
        alerts::delete(conn, id)?;
        event(
            conn,
            now_ms(),
            None,
            a.task_id,
            "alert.deleted",
            &actor,
            json!({"alert_id": id, "kind": a.kind}),
        )
    })
}
