//! Online copies of the database file.

use rusqlite::Connection;

use ops_base::error::{Error, Result};

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

/// The rows of `tasks`, counted one by one (not from `task_counts`, which
/// is what a check compares them with).
pub fn task_rows(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))?)
}

/// The (workspace, agent, status, blocked, archived) groups where
/// `task_counts` disagrees with the rows of `tasks`, as
/// (group, counted, rows).
pub fn task_count_mismatches(conn: &Connection) -> Result<Vec<(String, i64, i64)>> {
    let mut stmt = conn.prepare(
        "WITH actual AS (
             SELECT workspace_id w, COALESCE(agent_id, 0) a, status s, blocked != 0 b,
                    archived_at IS NOT NULL ar, COUNT(*) n
             FROM tasks GROUP BY 1, 2, 3, 4, 5),
         keys AS (
             SELECT w, a, s, b, ar FROM actual
             UNION SELECT workspace_id, agent_id, status, blocked, archived FROM task_counts)
         SELECT k.w, k.a, k.s, k.b, k.ar, COALESCE(tc.n, 0), COALESCE(act.n, 0)
         FROM keys k
         LEFT JOIN task_counts tc ON tc.workspace_id = k.w AND tc.agent_id = k.a
              AND tc.status = k.s AND tc.blocked = k.b AND tc.archived = k.ar
         LEFT JOIN actual act ON act.w = k.w AND act.a = k.a AND act.s = k.s
              AND act.b = k.b AND act.ar = k.ar
         WHERE COALESCE(tc.n, 0) != COALESCE(act.n, 0)",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            format!(
                "workspace {} agent {} status {} blocked {} archived {}",
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?
            ),
            r.get(5)?,
            r.get(6)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether the database has a table (or index, view) of this name.
pub fn has_object(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )? > 0)
}
