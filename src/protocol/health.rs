//! `GET /api/dispatch/health`.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::admin::SettingsView;
use super::dispatch::AgentCapability;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// False while the database cannot be written.
    pub ok: bool,
    pub storage_ok: bool,
    pub storage: StorageSize,
    pub dispatch_enabled: bool,
    pub worker_summary: WorkerSummary,
    pub queue: Queue,
    /// What the fresh, not draining workers can run.
    pub agent_slugs: Vec<String>,
    /// Every known worker, most recently seen first; empty for callers who
    /// are not operators and when asked without them (`?workers=false`).
    /// Shared with the server's cache of parsed heartbeats, not copied.
    pub workers: Vec<Arc<WorkerView>>,
    pub settings: SettingsView,
    /// What needs an operator, each with its fix.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StorageSize {
    pub db_bytes: u64,
    pub wal_bytes: u64,
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
