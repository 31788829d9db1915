//! Tasks and their comments.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A task as every route shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskView {
    pub id: i64,
    pub workspace_id: i64,
    pub title: String,
    pub description: String,
    pub status: String,
    pub execution: String,
    pub agent_id: Option<i64>,
    /// The agent's slug.
    pub agent: Option<String>,
    pub model: Option<String>,
    pub priority: i64,
    pub sensitive: bool,
    pub gate_approved_by: Option<String>,
    pub gate_approved_at: Option<String>,
    pub blocked: bool,
    pub blocked_reason: Option<String>,
    pub dispatch_output: Option<String>,
    pub dispatch_attempts: i64,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<String>,
    pub dispatch_started_at: Option<String>,
    pub dispatch_finished_at: Option<String>,
    /// The exit code of its last run (finished or failed), when known.
    pub exit_code: Option<i64>,
    /// The signal that ended its last run, when one did.
    pub exit_signal: Option<String>,
    pub log_path: Option<String>,
    pub err_log_path: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub archived_at: Option<String>,
    /// The repository the task runs in, if it names its own (else its
    /// workspace's, if any). Set on create and edit, it must be the
    /// workspace's `repo_path` or lie under one of its `repo_roots`.
    pub repo_path: Option<String>,
    pub base_ref: Option<String>,
    /// Where its agent works: the task's own `repo_path`, else its
    /// workspace's; null: no repository (the launcher's directory).
    pub effective_repo_path: Option<String>,
    /// The ref its branch starts from: the task's own `base_ref`, else
    /// (on the workspace's repository) the workspace's; null: the
    /// checkout's current branch.
    pub effective_base_ref: Option<String>,
    /// A run of it in a repository must change its branch to reach
    /// `review`; one that ends well without a change is blocked ("sin
    /// cambios"). False for a task that expects no change (a question, a
    /// report). Default true, also when a server from before this field
    /// does not send it (a newer launcher reads an older server's tasks).
    #[serde(default = "yes")]
    pub expects_changes: bool,
    /// A queued task a rate limit sent back: no claim takes it before
    /// this time.
    #[serde(default)]
    pub not_before: Option<String>,
    /// A follow-up message waiting for its run (cleared when it starts).
    #[serde(default)]
    pub follow_up: Option<String>,
}

fn yes() -> bool {
    true
}

/// `POST /api/tasks/:id/dispatch` and `/retry`: the queued task, and
/// whether a worker may take it now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DispatchAnswer {
    #[serde(flatten)]
    pub task: TaskView,
    /// The `dispatch_enabled` setting when the task was queued.
    pub dispatch_enabled: bool,
    /// `dispatch_disabled` when `dispatch_enabled` is false (the task waits
    /// in `queued` until it is true); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub warning: Option<String>,
}

/// `GET /api/tasks/:id`: the task and its comments, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: TaskView,
    pub comments: Vec<Comment>,
    /// What its last run changed in its worktree; null: nothing reported.
    pub changes: Option<TaskChange>,
}

/// A run's change as reported by its launcher and stored on the task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskChange {
    pub branch: String,
    pub head: Option<String>,
    pub base: Option<String>,
    pub status: String,
    pub diff_stat: String,
    pub patch: String,
    pub patch_truncated: bool,
    pub reported_at: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Comment {
    pub id: i64,
    pub task_id: i64,
    pub author: String,
    /// `note`, `blocker`, `log` (agent output) or `system`.
    pub kind: String,
    pub body: String,
    pub created_at: String,
}

/// `GET /api/tasks`: one page, and how many match in all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
    pub total: i64,
}

/// `POST /api/tasks`. Absent values take their defaults (workspace 1,
/// `manual`, priority 0, not sensitive) and are left out when sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewTask {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub workspace_id: Option<i64>,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub description: Option<String>,
    /// `manual` or `interactive`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub execution: Option<String>,
    /// The agent's slug (or `agent_id`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub priority: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sensitive: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repo_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub base_ref: Option<String>,
    /// Default true: see `TaskView::expects_changes`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expects_changes: Option<bool>,
}

/// `PATCH /api/tasks/:id`: the fields to change (absent: unchanged; `null`
/// clears the nullable ones).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskEdit {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub execution: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent_id: Option<Option<i64>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub priority: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sensitive: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub blocked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub blocked_reason: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repo_path: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub base_ref: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expects_changes: Option<bool>,
}

/// `PATCH /api/tasks/:id/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusChange {
    pub status: String,
}

/// `POST /api/tasks/:id/comments`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewComment {
    pub body: String,
    /// `note` (the default) or `blocker`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<String>,
}
