//! The audit log, and resolving alerts (they are raised by the watchdog
//! and reconciliation).

use serde_json::json;

use super::{event, views};
use crate::db::Db;
use crate::domain::access::Principal;
use crate::error::Result;
use crate::protocol::events::{AlertList, AlertView, EventList};
use crate::store::alerts::{self, Alert};
use crate::store::events;
pub use crate::store::events::EventFilter;
use crate::store::{tasks, Page};
use crate::time::now_ms;

/// `GET /api/events`, newest first; `filter.workspaces` is the caller's.
pub fn events(db: &Db, filter: &EventFilter, page: Page) -> Result<EventList> {
    let (list, total) = events::list(&*db.read()?, filter, page)?;
    Ok(EventList {
        events: list.iter().map(views::event).collect(),
        total,
    })
}

pub fn resolve(db: &Db, who: &Principal, id: i64) -> Result<AlertView> {
    who.require_ops_admin("resolving alerts")?;
    let actor = who.actor();
    let who = who.clone();
    db.write(move |conn| {
        let now = now_ms();
        let a = alerts::require(conn, id)?;
        who.can_resolve_alert(task_workspace(conn, &a)?)?;
        if a.status != "resolved" {
            alerts::resolve(conn, id, now)?;
            event(
                conn,
                now,
                None,
                a.task_id,
                "alert.resolved",
                &actor,
                json!({"alert_id": id, "kind": a.kind}),
            )?;
        }
        alerts::require(conn, id)
    })
    .map(|a| views::alert(&a))
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
