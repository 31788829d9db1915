//! The audit log and the alerts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One audit-log entry. `payload` is the event's own record (its keys
/// depend on `kind`), kept as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    pub id: i64,
    pub at: String,
    pub workspace_id: Option<i64>,
    pub task_id: Option<i64>,
    pub kind: String,
    pub actor: String,
    pub payload: serde_json::Value,
    /// On the event stream only: a `dispatch.output` event's chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// `GET /api/events`: newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventList {
    pub events: Vec<Event>,
    pub total: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertView {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub task_id: Option<i64>,
    pub followup_task_id: Option<i64>,
    /// `open` or `resolved`.
    pub status: String,
    pub title: String,
    pub detail: String,
    pub occurrences: i64,
    pub first_seen_at: String,
    pub last_seen_at: String,
    pub resolved_at: Option<String>,
}

/// `GET /api/alerts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
    pub total: i64,
}
