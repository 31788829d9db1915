//! All SQL lives here, one file per table family. Functions take a
//! `&Connection` (a pooled reader or the writer's transaction) and typed
//! values; they know nothing of HTTP. `db/` opens the file: pragmas,
//! migrations, the reader pool and the one writer thread.

pub mod agents;
pub mod alerts;
pub mod backup;
pub mod cancels;
pub mod changes;
pub mod comments;
pub mod db;
pub mod events;
pub mod heartbeats;
pub mod review_comments;
pub mod runs;
pub mod serve_marker;
pub mod sessions;
pub mod settings;
pub mod tasks;
pub mod users;
pub mod workspaces;

/// A page of a list: `limit` rows from `offset`.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

/// `LIMIT n`, with `n` written into the SQL rather than bound. SQLite lets
/// the value of a bound LIMIT shape the query plan, so binding it marks the
/// statement to be compiled again: a cached statement with `LIMIT ?` is
/// parsed and planned anew on every use (its `SQLITE_STMTSTATUS_REPREPARE`
/// counts each one). A bound OFFSET has no such effect and stays bound.
/// Limits come from a small set (page sizes, fixed batch sizes), so the
/// statement cache holds one statement per size in use.
pub(crate) fn limit(n: i64) -> String {
    format!("LIMIT {n}")
}

/// The SQL condition "`column` is one of `workspaces`" (`None`: every
/// workspace). The ids are integers, so they are written inline.
pub(crate) fn in_workspaces(column: &str, workspaces: Option<&[i64]>) -> String {
    match workspaces {
        None => "1".to_string(),
        Some([]) => "0".to_string(),
        Some(ids) => {
            let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
            format!("{column} IN ({})", ids.join(","))
        }
    }
}
