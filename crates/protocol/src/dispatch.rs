//! The dispatch protocol between the server and its workers: heartbeat,
//! claim, the four reports, and the operator's stale/reconcile views.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::tasks::TaskView;

/// What a worker says it can run, per agent slug.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct AgentCapability {
    pub slug: String,
    /// The CLI as configured (first word of its command).
    pub cli: String,
    /// The CLI resolves on the host.
    pub available: bool,
    /// The CLI is logged in.
    pub authenticated: bool,
    /// Why it is not usable (not installed, not logged in, held back).
    pub reason: Option<String>,
}

impl AgentCapability {
    /// Usable: the CLI resolves on the host and is logged in.
    pub fn usable(&self) -> bool {
        self.available && self.authenticated
    }
}

/// `POST /api/dispatch/heartbeat`. In requests an absent value is left
/// out rather than sent as null: the server refuses null where it expects
/// a number or a string.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeartbeatReport {
    pub worker_id: String,
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pid: Option<i64>,
    pub version: String,
    pub agents: Vec<AgentCapability>,
    /// Model families it may run (empty: any).
    pub models: Vec<String>,
    pub slots_total: i64,
    pub slots_busy: i64,
    /// Every task it holds: a `dispatching` task it does not list, past
    /// the grace, is requeued.
    pub running_task_ids: Vec<i64>,
    pub draining: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub workspace_id: Option<i64>,
    /// The first heartbeat of a launcher that just started: its claims
    /// that `running_task_ids` does not list are requeued at once.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub starting: bool,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeartbeatAnswer {
    pub ok: bool,
    pub worker_id: String,
    pub usable_agents: Vec<String>,
    pub last_seen_at: String,
    /// Tasks this heartbeat put back in the queue (lost claims).
    pub requeued: Vec<i64>,
    /// Running tasks its heartbeats have left out for the grace, taken
    /// back by this heartbeat (`waiting`, blocked: nobody runs them).
    #[serde(default)]
    pub released: Vec<i64>,
    /// For launchers that know only task ids: tasks it lists as running
    /// whose claim was withdrawn and on which it holds no newer claim: end
    /// their agents and report `cancelled`. A task it was given again is
    /// left out (ending every run of it would end the new one); its old
    /// run learns of the cancellation from the `claim_cancelled` refusal of
    /// its next report, or from `cancel_claims`.
    #[serde(default)]
    pub cancel: Vec<i64>,
    /// The withdrawn claims of the tasks it lists as running, each by its
    /// token: end exactly those runs and report `cancelled` for each, with
    /// its token. A newer claim of the same task is not among them.
    #[serde(default)]
    pub cancel_claims: Vec<CancelledClaim>,
}

/// A withdrawn claim a worker still runs: its task and its token.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct CancelledClaim {
    pub task_id: i64,
    pub claim_token: String,
}

/// `POST /api/dispatch/next` (`GET` takes the same as query parameters).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimRequest {
    pub worker_id: String,
    /// Only these slugs (of those the worker can run).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent_slugs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub workspace_id: Option<i64>,
}

/// The answer to a claim: a task with its agent and claim token, or
/// `task: null` and the reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimAnswer {
    pub task: Option<TaskView>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent: Option<ClaimedAgent>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub claim_token: Option<String>,
    /// Without a task: `dispatch_disabled`, `worker_not_fresh`,
    /// `worker_draining`, `no_usable_agents` or `no_task`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Stale claims this claim reconciled first.
    pub reconciled: usize,
    /// Where the task's code lives (the task's own repository, else its
    /// workspace's); absent or null: none, run in the launcher's directory.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repo: Option<ClaimRepo>,
    /// A follow-up: resume this session with this message instead of
    /// starting afresh from the task's description.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub follow_up: Option<super::runs::FollowUp>,
}

/// The repository a claimed task runs in: a git checkout on the launcher
/// host, and the ref its branch starts from (`None`: the checkout's
/// current branch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimRepo {
    pub path: String,
    pub base_ref: Option<String>,
}

/// What to run for a claimed task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimedAgent {
    pub slug: String,
    pub launch_command: Option<String>,
    /// The task's model, else the agent's.
    pub model: Option<String>,
}

/// A worker's proof that it holds a task's current claim; part of every
/// report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimProof {
    pub worker_id: String,
    pub claim_token: String,
}

/// `POST /api/dispatch/tasks/:id/started`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Started {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub log_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub err_log_path: Option<String>,
}

/// `POST /api/dispatch/tasks/:id/output`: one chunk of the agent's stdout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Output {
    pub chunk: String,
    /// Where the chunk's first byte is in the agent's stdout; a chunk
    /// starting at or below the last one taken is ignored. Optional for
    /// launchers that do not send it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub offset: Option<i64>,
    /// What the agent did in this chunk, read from its CLI's stream
    /// (empty for plain-text output). Taken or ignored with the chunk.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub events: Vec<super::runs::RunEvent>,
}

/// `POST /api/dispatch/tasks/:id/finished`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finished {
    pub exit_code: Option<i64>,
    /// The signal that ended the agent, by name or number.
    pub signal: Option<String>,
    /// The tail of its output.
    pub output: String,
    /// What the run changed in its worktree, if it had one.
    #[serde(flatten, default)]
    pub change: Option<RunChange>,
}

/// `POST /api/dispatch/tasks/:id/failed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Failed {
    /// A short, stable description of the failure.
    pub signature: String,
    pub reason: String,
    pub evidence: String,
    /// How the agent ended, when it ran and its end was seen: its exit
    /// code, or the signal that ended it. Absent (older launchers, or no
    /// agent ran): the server reads them from a signature of the form
    /// `… (code=N, signal=S)` when it can.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signal: Option<String>,
    /// The provider refused for its rate limit or quota: the task goes
    /// back to the queue (not before the reset) rather than being blocked.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rate_limited: Option<RateLimited>,
    #[serde(flatten, default)]
    pub change: Option<RunChange>,
}

/// A run the provider's rate limit or quota ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RateLimited {
    /// Seconds until the provider said the limit resets, when it did.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retry_after_seconds: Option<i64>,
}

/// `POST /api/dispatch/tasks/:id/cancelled`: how the agent of a cancelled
/// run ended, sent with the cancelled claim's proof.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CancelEnded {
    pub exit_code: Option<i64>,
    /// The signal that ended it, by name or number.
    pub signal: Option<String>,
    /// From the cancellation reaching the launcher to the agent's end.
    pub elapsed_ms: i64,
}

/// What a run changed in its worktree, sent in `finished` or `failed`
/// beside the report's own fields: present when `branch` is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunChange {
    pub branch: String,
    /// The commit on `branch` holding the change.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub head: Option<String>,
    /// The commit the diff is against.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub base: Option<String>,
    /// The commit `branch` was at when this run started: `head` equal to
    /// it means the run changed nothing (a task run again continues on its
    /// branch, so `base..head` may hold earlier runs' work). Absent from
    /// older launchers: then an empty patch means no change.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub start: Option<String>,
    /// `git status --porcelain` before the launcher committed.
    #[serde(default)]
    pub git_status: String,
    #[serde(default)]
    pub diff_stat: String,
    /// The patch's head, at most `PATCH_LIMIT` bytes.
    #[serde(default)]
    pub patch: String,
    #[serde(default)]
    pub patch_truncated: bool,
}

/// What a worker reports about a task it holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    Started(Started),
    Output(Output),
    Finished(Finished),
    Failed(Failed),
}

impl Report {
    /// The last segment of the report's path.
    pub fn kind(&self) -> &'static str {
        match self {
            Report::Started(_) => "started",
            Report::Output(_) => "output",
            Report::Finished(_) => "finished",
            Report::Failed(_) => "failed",
        }
    }
}

/// A report as sent: the claim proof and the report's own fields in one
/// object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReportBody<T> {
    #[serde(flatten)]
    pub claim: ClaimProof,
    #[serde(flatten)]
    pub report: T,
}

/// `GET /api/dispatch/stale`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StaleTasks {
    pub stale_minutes: i64,
    pub total: usize,
    pub tasks: Vec<TaskView>,
}

/// `POST /api/dispatch/reconcile-stale`: `{"minutes"?, "task_ids"?}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReconcileRequest {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub minutes: Option<i64>,
    pub task_ids: Option<Vec<i64>>,
}

/// What a reconciliation did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reconciled {
    pub stale_minutes: i64,
    pub reconciled: usize,
    pub task_ids: Vec<i64>,
}

/// `DELETE /api/dispatch/workers/:id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkerForgotten {
    pub deleted: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim answer's two shapes on the wire: a task with its agent
    /// and token and no `reason`, or `task: null` with the reason only.
    #[test]
    fn claim_answers_keep_their_two_shapes() {
        let nothing = ClaimAnswer {
            task: None,
            agent: None,
            claim_token: None,
            reason: Some("no_task".into()),
            reconciled: 0,
            repo: None,
            follow_up: None,
        };
        assert_eq!(
            serde_json::to_value(&nothing).unwrap(),
            serde_json::json!({"task": null, "reason": "no_task", "reconciled": 0})
        );
        let read: ClaimAnswer =
            serde_json::from_str(r#"{"task":null,"reason":"worker_draining","reconciled":2}"#)
                .unwrap();
        assert_eq!(read.reason.as_deref(), Some("worker_draining"));
        assert_eq!((read.agent, read.claim_token), (None, None));
    }

    /// A report is the claim proof and its own fields in one object, and
    /// an absent value is left out rather than sent as null.
    #[test]
    fn reports_are_flat_and_leave_out_what_is_absent() {
        let body = ReportBody {
            claim: ClaimProof {
                worker_id: "w".into(),
                claim_token: "t".into(),
            },
            report: Output {
                chunk: "x".into(),
                offset: None,
                events: Vec::new(),
            },
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"worker_id": "w", "claim_token": "t", "chunk": "x"})
        );
    }
}
