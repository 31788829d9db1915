//! Task ids across a lossy restore. The file says whether a server serves
//! it (`serve_marker`): set by every start, cleared by the last write of a
//! clean stop. A start that finds it set — the last server crashed, or the
//! file is a copy of a served one (a Litestream restore, a backup taken
//! while a server ran) — may be missing acknowledged writes, among them
//! tasks whose ids clients already hold; so it first moves the task-id
//! high-water mark forward by [`ID_MARGIN`] (event `task_ids.raised`).
//! `ops-center admin restore` does the same with the margin it is given,
//! past the mark of the file it replaces too.

use serde_json::json;

use super::event;
use ops_base::error::Result;
use ops_base::time::now_ms;
use ops_store::db::Db;
use ops_store::{serve_marker, tasks};

/// Ids skipped after a start on a file not stopped cleanly: more tasks
/// than can be created in the seconds of writes a replica or a crash can
/// lose.
pub const ID_MARGIN: i64 = 1000;

/// How the high-water mark moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raised {
    /// The highest id the file knew of.
    pub from: i64,
    /// The mark now: the next task's id is past it.
    pub to: i64,
}

/// Moves the mark to `max(mark, at_least) + margin`, with its event.
fn raise(
    conn: &rusqlite::Connection,
    margin: i64,
    at_least: i64,
    reason: &str,
    actor: &str,
    now: i64,
) -> Result<Raised> {
    let from = tasks::id_high_water(conn)?;
    let to = from.max(at_least) + margin;
    tasks::raise_id_high_water(conn, to)?;
    event(
        conn,
        now,
        None,
        None,
        "task_ids.raised",
        actor,
        json!({"from": from, "to": to, "margin": margin, "at_least": at_least, "reason": reason}),
    )?;
    Ok(Raised { from, to })
}

/// The server's first write: marks the file served and, when the last
/// server did not stop cleanly, raises the mark first.
pub fn start_serving(db: &Db) -> Result<Option<Raised>> {
    db.write(|conn| {
        let now = now_ms();
        let raised = if serve_marker::serving(conn)? {
            Some(raise(conn, ID_MARGIN, 0, "unclean_stop", "server", now)?)
        } else {
            None
        };
        serve_marker::set(conn, true, now)?;
        Ok(raised)
    })
}

/// The server's last write on a clean stop.
pub fn stop_serving(db: &Db) -> Result<()> {
    db.write(|conn| serve_marker::set(conn, false, now_ms()))
}

/// After `admin restore`: past the restored file's mark and `at_least`
/// (the replaced file's), by `margin`; the file is then as a clean stop
/// leaves it, so the next start does not raise the mark again.
pub fn after_restore(db: &Db, margin: i64, at_least: i64) -> Result<Raised> {
    db.write(move |conn| {
        let now = now_ms();
        let raised = raise(conn, margin, at_least, "restore", "cli:admin", now)?;
        serve_marker::set(conn, false, now)?;
        Ok(raised)
    })
}
