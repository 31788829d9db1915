//! The API's wire contract, defined once: a plain struct or enum for every
//! request and response body. The server (`http/` serializes them, `app/`
//! builds them), the launcher, the smokes, the benchmark and the tests all
//! use these types, so a change of shape is a compile error everywhere it
//! matters. The types hold data only: no I/O, no rules. Timestamps are
//! RFC 3339 strings, as on the wire.
//!
//! Requests are still read field by field (`http/fields.rs`), so that a
//! mistake is a 400 naming the field; those parsers construct these types.
//! Serde attributes are kept to the few the shapes need.

pub mod accounts;
pub mod admin;
pub mod dispatch;
pub mod errors;
pub mod events;
pub mod health;
pub mod review;
pub mod runs;
pub mod tasks;
pub mod watchdog;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `{"deleted": id}`: what a `DELETE` of a numbered thing answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Deleted {
    pub deleted: i64,
}
