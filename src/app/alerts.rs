//! Resolving alerts (they are raised by the watchdog and reconciliation).

use serde_json::json;

use super::event;
use crate::db::Db;
use crate::domain::access::Principal;
use crate::error::Result;
use crate::store::alerts::{self, Alert};
use crate::time::now_ms;

pub fn resolve(db: &Db, who: &Principal, id: i64) -> Result<Alert> {
    who.require_ops_admin("resolving alerts")?;
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        let a = alerts::require(conn, id)?;
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
