//! OPS Center: a task board and dispatcher for AI coding agents, in one
//! binary and one SQLite file. See ARCHITECTURE.md for the map.
//!
//! This crate is the binary's: the operator commands, `serve`'s
//! configuration and start-up. The layers are crates of their own
//! (`crates/`); they are re-exported here so that the integration tests
//! and the benchmark reach every layer through one name.

pub mod commands;
pub mod config;
#[cfg(test)]
mod layering;
pub mod server;

pub use ops_app as app;
pub use ops_base::{error, metrics, os_user, time};
pub use ops_domain as domain;
pub use ops_http as http;
pub use ops_launcher as launcher;
pub use ops_protocol as protocol;
pub use ops_store as store;
pub use ops_store::db;
