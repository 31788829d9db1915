use rusqlite::{params, Connection, OptionalExtension};

use ops_base::error::Result;

pub fn insert(
    conn: &Connection,
    token_hash: &str,
    user_id: i64,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions(token_hash, user_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![token_hash, user_id, now, expires_at])?;
    // Expired sessions are swept whenever a new one starts.
    conn.prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")?
        .execute([now])?;
    Ok(())
}

/// The user of a live session.
pub fn user_of(conn: &Connection, token_hash: &str, now: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT user_id FROM sessions WHERE token_hash = ?1 AND expires_at > ?2")?
        .query_row(params![token_hash, now], |r| r.get(0))
        .optional()?)
}

/// Ends one session; the user it belonged to, if it existed.
pub fn delete(conn: &Connection, token_hash: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("DELETE FROM sessions WHERE token_hash = ?1 RETURNING user_id")?
        .query_row([token_hash], |r| r.get(0))
        .optional()?)
}

/// Ends every session of a user (password change, deletion).
pub fn delete_for_user(conn: &Connection, user_id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
        .execute([user_id])?;
    Ok(())
}
