//! Handlers, one file per route group: each parses the request into typed
//! values, calls `app::`, and shapes the JSON answer.

pub mod accounts;
pub mod admin;
pub mod alerts;
pub mod dispatch;
pub mod events;
pub mod review;
pub mod stream;
pub mod tasks;
pub mod ui;
