//! Online copies of the database file.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// Writes a consistent snapshot of `conn`'s database into the file `to`
/// (which must not exist or be empty), in one read transaction: writers
/// elsewhere keep going meanwhile.
pub fn vacuum_into(conn: &Connection, to: &str) -> Result<()> {
    conn.execute("VACUUM INTO ?1", [to])?;
    Ok(())
}

/// What a copy holds, checked: (schema version, page count), or the
/// integrity problem found.
pub fn check_copy(conn: &Connection) -> Result<(i64, i64)> {
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(Error::Internal(format!("integrity check failed: {check}")));
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    Ok((version, pages))
}
