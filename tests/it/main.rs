//! Integration tests: one crate, driving the real `ops-center` binary over
//! real HTTP against a real SQLite file in a temp dir.

mod client;
#[path = "../support/harness.rs"]
mod harness;
mod util;

mod access;
mod admin;
mod agent_streams;
mod auth;
mod boundary;
mod concurrency;
mod conformance;
mod connections;
mod deadlines;
mod disk_full;
mod dispatch;
mod durability;
mod gate;
mod invariants;
mod launcher;
mod longpoll;
mod metrics;
mod openapi;
mod operator;
mod replication;
mod repo_roots;
mod retention;
mod review;
mod runs;
mod spec_doc;
mod startup;
mod storage;
mod stream;
mod tasks;
mod ui;
mod validation;
mod watchdog;
mod worktrees;
