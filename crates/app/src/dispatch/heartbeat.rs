//! Worker heartbeats: what a worker says it can run and runs, forgetting
//! a worker, and the view of a worker a parked claim is matched against.

use serde_json::json;

use super::reconcile::{release_unlisted_runs, requeue_lost_claims};
use crate::event;
use ops_base::error::{Error, Result};
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_protocol::dispatch::{HeartbeatAnswer, HeartbeatReport};
use ops_store::db::Db;
use ops_store::heartbeats::{self, Heartbeat};

/// `POST /api/dispatch/heartbeat`. Returns what the server now knows of the
/// worker. The heartbeat row is bookkeeping; an event is written only when
/// a worker appears or what it can run (or its draining) changes.
pub fn heartbeat(db: &Db, who: &Principal, report: HeartbeatReport) -> Result<HeartbeatAnswer> {
    who.require_service("worker heartbeats")?;
    let cache = db.settings.clone();
    let worker_id = report.worker_id.clone();
    let answer = db.write(move |conn| {
        let now = now_ms();
        let hb = Heartbeat {
            worker_id: report.worker_id,
            host: report.host,
            pid: report.pid,
            version: report.version,
            agents: report.agents,
            models: report.models,
            slots_total: report.slots_total,
            slots_busy: report.slots_busy,
            running_task_ids: report.running_task_ids,
            draining: report.draining,
            workspace_id: report.workspace_id,
            last_seen_at: now,
        };
        let before = heartbeats::get(conn, &hb.worker_id)?;
        heartbeats::upsert(conn, &hb)?;
        let changed = match &before {
            None => Some("worker.registered"),
            Some(b) if b.usable_slugs() != hb.usable_slugs() || b.draining != hb.draining => {
                Some("worker.capabilities_changed")
            }
            Some(_) => None,
        };
        let actor = format!("worker:{}", hb.worker_id);
        if let Some(kind) = changed {
            event(conn, now, None, None, kind, &actor,
                json!({"host": hb.host, "usable_agents": hb.usable_slugs(), "draining": hb.draining}))?;
        }
        // A launcher that just started lists every task it holds (it
        // adopted them from its state files first): a claim of this worker
        // it does not list never reached it, and nothing will run it, so
        // no grace is needed.
        let grace = if report.starting {
            0
        } else {
            cache.load(conn)?.dispatch_claim_grace_seconds
        };
        let requeued = requeue_lost_claims(conn, &hb, grace, &actor, now)?;
        let released = release_unlisted_runs(conn, &hb, grace, &actor, now)?;
        let (cancel, cancel_claims) =
            crate::cancel::to_cancel(conn, &hb.worker_id, &hb.running_task_ids)?;
        Ok(HeartbeatAnswer {
            cancel,
            cancel_claims,
            ok: true,
            usable_agents: hb.usable_slugs(),
            worker_id: hb.worker_id,
            last_seen_at: ops_base::time::rfc3339(now),
            requeued,
            released,
        })
    });
    db.workers.changed(&worker_id);
    answer
}

/// `DELETE /api/dispatch/workers/:id`: forget a worker's heartbeat.
pub fn forget_worker(db: &Db, who: &Principal, worker_id: String) -> Result<()> {
    who.require_operator("forgetting a worker")?;
    let actor = who.actor();
    let id = worker_id.clone();
    let done = db.write(move |conn| {
        if !heartbeats::delete(conn, &worker_id)? {
            return Err(Error::not_found(format!("worker {worker_id:?} not found")));
        }
        event(
            conn,
            now_ms(),
            None,
            None,
            "worker.forgotten",
            &actor,
            json!({"worker_id": worker_id}),
        )
    });
    db.workers.changed(&id);
    done
}

/// What a worker can run, as its last heartbeat says: what a parked
/// long-poll claim is matched against before its claim is tried.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerView {
    pub usable_slugs: Vec<String>,
    pub workspace_id: Option<i64>,
    /// With the two below: all a heartbeat says that a claim depends on,
    /// so a heartbeat that leaves the view as it was changes no claim.
    pub models: Vec<String>,
    pub draining: bool,
}

pub fn worker_view(db: &Db, worker_id: &str) -> Result<Option<WorkerView>> {
    Ok(
        heartbeats::get(&*db.read()?, worker_id)?.map(|hb| WorkerView {
            usable_slugs: hb.usable_slugs(),
            workspace_id: hb.workspace_id,
            models: hb.models,
            draining: hb.draining,
        }),
    )
}
