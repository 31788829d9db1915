//! The dispatch protocol: queueing a task, the Human Gate, heartbeats, the
//! transactional claim, worker reports, stale reconciliation and health.
//!
//! One module per part: `queue` (dispatch, retry, the Human Gate),
//! `heartbeat`, `claim`, `report`, `reconcile` (lost, withdrawn and stale
//! claims and runs taken back) and `health`. Their public items are
//! re-exported here: callers name `dispatch::claim`, not the module it
//! lives in.

mod claim;
mod health;
mod heartbeat;
mod queue;
mod reconcile;
mod report;

pub use claim::{claim, ClaimOutcome, ClaimRequest, REPO_NOT_ALLOWED_REASON};
pub use health::{health, Workers};
pub(crate) use health::{queued_label, replication_lagging, replication_warning};
pub use heartbeat::{forget_worker, heartbeat, worker_view, WorkerView};
pub(crate) use queue::{answer as follow_up_answer, follow_up_in, Outcome as FollowUpOutcome};
pub use queue::{
    approve, dispatch, follow_up, is_gate_block, DISPATCH_DISABLED, FOLLOW_UP_NOTE, GATE_REASON,
};
pub(crate) use reconcile::{alert_event, stale_running_in};
pub use reconcile::{
    reconcile_now, reconcile_stale, reconcile_stale_running, serving_since, stale_tasks,
    withdraw_undelivered,
};
pub use report::{
    report, CHUNK_LIMIT, NO_CHANGE_REASON, NO_EVIDENCE_REASON, OUTPUT_LIMIT, PATCH_LIMIT,
    RATE_LIMITED_REASON, RATE_LIMIT_BLOCK_AFTER, STAT_LIMIT,
};
