//! Agent runs: what an agent did in one dispatch of a task, normalized from
//! its CLI's machine-readable stream, and what the run cost.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One thing an agent did, as the launcher read it in its CLI's stream
/// (Claude's `stream-json`, codex's `exec --json`, opencode's `--format
/// json`). Sent with the `output` report whose chunk held it; a custom
/// command's plain text has none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunEvent {
    /// Text the agent wrote for the person (not its hidden reasoning).
    Message { text: String },
    /// The agent called a tool: its name and a one-line summary (the file,
    /// the command), with the input in `detail` (cut to a few KiB).
    ToolCall {
        name: String,
        summary: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// What a tool answered (cut to a few KiB); `error` when it failed.
    ToolResult {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        name: String,
        text: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        error: bool,
    },
    /// An error the CLI or the provider reported, in its own words.
    Error { text: String },
    /// Tokens spent since the last `usage` event of the run (they add up),
    /// and the money, when the CLI says what it cost.
    Usage {
        tokens_in: i64,
        tokens_out: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
        /// The counts are the whole session's so far, earlier runs of a
        /// resumed session included (codex counts so): what is new is
        /// what they add to the session's runs.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        session_total: bool,
    },
    /// The CLI's session id: what a follow-up resumes.
    Session { id: String },
}

impl RunEvent {
    /// The event's `kind` on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            RunEvent::Message { .. } => "message",
            RunEvent::ToolCall { .. } => "tool_call",
            RunEvent::ToolResult { .. } => "tool_result",
            RunEvent::Error { .. } => "error",
            RunEvent::Usage { .. } => "usage",
            RunEvent::Session { .. } => "session",
        }
    }
}

/// A follow-up a claim hands out: run the agent's resume command on
/// `session_id` with `message` as the prompt, in the task's clone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FollowUp {
    pub session_id: String,
    pub message: String,
}

/// One run of a task (one dispatch that reached its agent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunView {
    pub task_id: i64,
    /// 1 for the task's first run, then 2, 3, …
    pub number: i64,
    pub worker_id: String,
    pub agent: String,
    pub model: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// `running`, `finished`, `failed`, `cancelled`, `rate_limited` or
    /// `lost` (its claim was taken back).
    pub outcome: String,
    pub exit_code: Option<i64>,
    pub signal: Option<String>,
    /// The CLI's session id, once its stream named it.
    pub session_id: Option<String>,
    /// The follow-up message this run answered (`None`: a fresh run).
    pub follow_up: Option<String>,
    /// The session it resumed.
    pub resumed_session: Option<String>,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// What it cost: the CLI's own figure where it gives one, else the
    /// `model_prices` setting's price of its model (null: no price known).
    pub cost_usd: Option<f64>,
    /// `cli` (the CLI said) or `model_prices`.
    pub cost_source: Option<String>,
}

/// `GET /api/tasks/:id/runs`: the task's runs, oldest first, and their sums.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskRuns {
    pub runs: Vec<RunView>,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_usd: f64,
    /// Whether a follow-up can resume the last run's session: its agent's
    /// CLI resumes sessions and the run named one.
    pub can_resume: bool,
}

/// One event of a run's transcript, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TranscriptEntry {
    /// Increasing per task: `?after=` takes what came since.
    pub seq: i64,
    /// The run's number.
    pub run: i64,
    pub at: String,
    #[serde(flatten)]
    pub event: RunEvent,
}

/// `GET /api/tasks/:id/transcript`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Transcript {
    pub events: Vec<TranscriptEntry>,
    /// More events follow the last one given (`?after=` its `seq`).
    pub more: bool,
}

/// `POST /api/tasks/:id/follow-up`: `{"message"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FollowUpRequest {
    pub message: String,
}

/// `GET /api/workspaces/:id/usage`: a month's spend of a workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceUsage {
    pub workspace_id: i64,
    /// `2026-12`: the calendar month (UTC).
    pub month: String,
    pub runs: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_usd: f64,
    /// The workspace's monthly budget (null: none).
    pub budget_usd_month: Option<f64>,
    /// Share of the budget spent, 0–100+ (null without a budget).
    pub budget_used_percent: Option<f64>,
}
