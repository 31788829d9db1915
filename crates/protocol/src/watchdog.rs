//! The watchdog's pass.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::events::AlertView;

/// `POST /api/watchdog/run`: what one pass did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WatchdogReport {
    pub ran_at: String,
    pub stale_minutes: i64,
    /// How many stale dispatches it reconciled (`task_ids`).
    pub reconciled: usize,
    pub task_ids: Vec<i64>,
    pub alerts: Vec<RaisedAlert>,
    /// Alerts of a condition that has ended, resolved by this pass.
    pub resolved_alerts: Vec<AlertView>,
    pub followup_task_ids: Vec<i64>,
}

/// An alert the pass raised, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RaisedAlert {
    #[serde(flatten)]
    pub alert: AlertView,
    /// `opened`, `reopened`, `counted` or `stillopen`.
    pub change: String,
}
