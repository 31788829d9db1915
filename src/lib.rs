//! OPS Center: a task board and dispatcher for AI coding agents, in one
//! binary and one SQLite file. See ARCHITECTURE.md for the map.

pub mod app;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod launcher;
#[cfg(test)]
mod layering;
pub mod metrics;
pub mod ops;
pub mod protocol;
pub mod secrets;
pub mod server;
pub mod store;
pub mod time;
pub mod user;
