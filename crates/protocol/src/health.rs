//! `GET /api/dispatch/health`.

use std::borrow::Cow;
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::admin::SettingsView;
use super::dispatch::AgentCapability;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// False while the database cannot be written, or while its replica is
    /// further behind than `replication_max_lag_seconds`.
    pub ok: bool,
    pub storage_ok: bool,
    pub storage: StorageSize,
    pub replication: Replication,
    pub dispatch_enabled: bool,
    pub worker_summary: WorkerSummary,
    pub queue: Queue,
    /// What the fresh, not draining workers can run.
    pub agent_slugs: Vec<String>,
    /// Every known worker, most recently seen first; empty for callers who
    /// are not operators and when asked without them (`?workers=false`).
    /// Shared with the server's cache of heartbeats, not copied.
    pub workers: Vec<Arc<ListedWorker>>,
    pub settings: SettingsView,
    /// What needs an operator, each with its fix.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StorageSize {
    pub db_bytes: u64,
    pub wal_bytes: u64,
}

/// The continuous replica (Litestream), as the server last learnt it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Replication {
    /// Whether a replica is kept (`OPS_REPLICA=litestream`, or the shipped
    /// unit's Litestream environment); the other fields are null when not.
    pub configured: bool,
    /// Seconds since the replica was last known to hold every write the
    /// server had committed (about 1 while Litestream keeps up); counted
    /// from the server's start when Litestream never answered.
    pub lag_seconds: Option<f64>,
    /// When that was last the case (RFC 3339), null before the first time.
    pub last_ok_at: Option<String>,
    /// Why the last attempt failed, while it does.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkerSummary {
    pub total: usize,
    pub fresh: usize,
    pub stale: usize,
    pub slots_total: i64,
    pub slots_busy: i64,
}

/// Task counts of the caller's workspaces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Queue {
    pub next: i64,
    pub queued: i64,
    pub dispatching: i64,
    pub doing: i64,
    pub review: i64,
    pub waiting: i64,
    pub blocked: i64,
    pub stale_dispatching: usize,
    /// Tasks in `doing` whose worker no longer runs them (its heartbeat
    /// older than `dispatch_worker_stale_seconds`, or left out of its
    /// heartbeats for `dispatch_claim_grace_seconds`), not yet taken back.
    #[serde(default)]
    pub stale_running: usize,
    /// Queued tasks (not blocked) no worker has taken for more than
    /// `dispatch_stale_minutes`.
    #[serde(default)]
    pub stale_queued: usize,
}

/// A worker as its last heartbeat described it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkerView {
    pub worker_id: String,
    pub host: String,
    pub pid: Option<i64>,
    pub version: String,
    pub agents: Vec<AgentCapability>,
    pub usable_agents: Vec<String>,
    pub models: Vec<String>,
    pub slots_total: i64,
    pub slots_busy: i64,
    pub running_task_ids: Vec<i64>,
    pub draining: bool,
    pub workspace_id: Option<i64>,
    pub last_seen_at: String,
    pub fresh: bool,
}

/// A worker's entry in health's list: a [`WorkerView`] as JSON, written out
/// as it is. The server serializes each worker's view once per heartbeat:
/// with a thousand workers, serializing every view again on each call was
/// most of the full answer's time. [`ListedWorker::view`] reads it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ListedWorker(Box<RawValue>);

impl ListedWorker {
    pub fn of(view: &WorkerView) -> ListedWorker {
        ListedWorker(serde_json::value::to_raw_value(view).expect("protocol types serialize"))
    }

    pub fn view(&self) -> serde_json::Result<WorkerView> {
        serde_json::from_str(self.0.get())
    }
}

impl PartialEq for ListedWorker {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Described as the view it holds.
impl JsonSchema for ListedWorker {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "ListedWorker".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<WorkerView>()
    }
}

/// A worker's entry both ways, serialized once per heartbeat: whether a
/// worker is fresh changes with the clock, not with its row.
pub struct WorkerListing {
    pub fresh: Arc<ListedWorker>,
    pub stale: Arc<ListedWorker>,
}

impl WorkerListing {
    pub fn of(mut view: WorkerView) -> WorkerListing {
        view.fresh = true;
        let fresh = Arc::new(ListedWorker::of(&view));
        view.fresh = false;
        WorkerListing {
            fresh,
            stale: Arc::new(ListedWorker::of(&view)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_worker_is_its_view_as_json_both_ways() {
        let view = WorkerView {
            worker_id: "w1".into(),
            host: "h".into(),
            pid: Some(7),
            version: "1".into(),
            agents: Vec::new(),
            usable_agents: vec!["opencode".into()],
            models: Vec::new(),
            slots_total: 2,
            slots_busy: 1,
            running_task_ids: vec![3],
            draining: false,
            workspace_id: None,
            last_seen_at: "2026-01-01T00:00:00Z".into(),
            fresh: true,
        };
        let listing = WorkerListing::of(view.clone());
        assert_eq!(listing.fresh.view().unwrap(), view);
        let stale = listing.stale.view().unwrap();
        assert!(!stale.fresh);
        assert_eq!(
            WorkerView {
                fresh: true,
                ..stale
            },
            view
        );
        // What a client reads back, from text and from a parsed value.
        let text = serde_json::to_string(&*listing.fresh).unwrap();
        assert_eq!(serde_json::from_str::<WorkerView>(&text).unwrap(), view);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let back: ListedWorker = serde_json::from_value(value).unwrap();
        assert_eq!(back.view().unwrap(), view);
    }
}
