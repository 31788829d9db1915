//! Integration tests: one crate, driving the real `ops-center` binary over
//! real HTTP against a real SQLite file in a temp dir.

mod util;

mod access;
mod auth;
mod durability;
mod launcher;
mod operator;
mod tasks;
mod validation;
