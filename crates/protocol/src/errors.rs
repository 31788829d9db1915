//! The one error body: every refusal is `{"error": code, "message": text}`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// A stable code (`invalid_field`, `stale_claim`, `human_gate`, …).
    pub error: String,
    /// What went wrong and what to do, for a person.
    pub message: String,
}
