//! Agents and settings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentView {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub active: bool,
    pub launch_command: Option<String>,
    pub model: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentList {
    pub agents: Vec<AgentView>,
    pub total: i64,
}

/// `GET /api/settings` (and `settings` in health): typed values; the
/// service token is `"[redacted]"`, or null when none is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SettingsView {
    pub dispatch_enabled: bool,
    pub dispatch_stale_minutes: i64,
    pub dispatch_worker_stale_seconds: i64,
    pub dispatch_claim_grace_seconds: i64,
    pub service_api_token: Option<String>,
    pub watchdog_interval_seconds: i64,
    pub watchdog_failure_threshold: i64,
    pub events_retention_days: i64,
    /// `es` (the default) or `en`: the language of the watchdog's alert
    /// and follow-up task titles.
    pub ui_language: String,
    /// Health is not ok, and an alert opens, while the replica is further
    /// behind than this many seconds.
    pub replication_max_lag_seconds: i64,
    /// USD per million input and output tokens per model family, for the
    /// CLIs that do not say what a run cost: a JSON object such as
    /// `{"gpt-5": {"input": 1.25, "output": 10}}` (default `{}`).
    pub model_prices: String,
}

/// One setting's typed value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SettingValue {
    Flag(bool),
    Number(i64),
    Text(String),
}

/// `GET`/`PUT /api/settings/:key`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Setting {
    pub key: String,
    pub value: Option<SettingValue>,
}

/// `POST /api/agents` and `PATCH /api/agents/:id`; what is absent is kept
/// (or defaults).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentChange {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub slug: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub launch_command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model: Option<String>,
}

/// `PUT /api/settings/:key`: the value as text (a JSON boolean or number
/// is taken as its text).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SettingChange {
    pub value: String,
}

/// `POST /api/test/clock` (a server started with `OPS_TEST_CLOCK=1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClockAdvance {
    pub advance_seconds: i64,
}

/// `POST /api/test/hold-park` (test servers only): hold the next
/// long-poll claim of `worker_id` between finding nothing and parking
/// (`arm`), wait until one is held there (`wait`), let it go on
/// (`release`). A test can then act in the window on purpose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestHold {
    pub worker_id: String,
    /// `arm`, `wait` or `release`.
    pub action: String,
}

/// Whether a claim is held at the hook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestHoldState {
    pub held: bool,
}

/// The server's time after the move.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Clock {
    pub now: String,
}
