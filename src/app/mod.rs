//! The use cases: each public function is one read, or one write
//! transaction run through the writer thread, built from `store/` calls and
//! `domain/` rules. Every write appends its event in the same transaction.

pub mod accounts;
pub mod agents;
pub mod alerts;
pub mod settings;
pub mod tasks;

use rusqlite::Connection;
use serde_json::Value;

use crate::error::Result;
use crate::store::events::{self, NewEvent};

/// Appends one audit event (the same transaction as the change it records).
pub(crate) fn event(
    conn: &Connection,
    now: i64,
    workspace_id: Option<i64>,
    task_id: Option<i64>,
    kind: &str,
    actor: &str,
    payload: Value,
) -> Result<()> {
    events::append(
        conn,
        NewEvent {
            workspace_id,
            task_id,
            kind,
            actor,
            payload,
        },
        now,
    )
}
