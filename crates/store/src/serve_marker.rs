//! `serve_marker`: whether a server is serving the file, as the file
//! itself says (migration `014_serve_marker.sql`).

use ops_base::error::Result;
use rusqlite::{params, Connection};

/// Whether the file says a server serves it: set at every start, cleared
/// by the last write of a clean stop. Set when a server starts means the
/// last one did not stop cleanly, or the file is a copy of a served one.
pub fn serving(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT serving FROM serve_marker WHERE only = 1")?
        .query_row([], |r| r.get(0))?)
}

pub fn set(conn: &Connection, serving: bool, now: i64) -> Result<()> {
    conn.prepare_cached("UPDATE serve_marker SET serving = ?1, changed_at = ?2 WHERE only = 1")?
        .execute(params![serving, now])?;
    Ok(())
}
