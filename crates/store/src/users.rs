use rusqlite::{params, Connection, OptionalExtension, Row};

use ops_base::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: i64,
}

const SELECT: &str = "SELECT id, username, password_hash, is_admin, created_at FROM users";

fn from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        password_hash: r.get(2)?,
        is_admin: r.get(3)?,
        created_at: r.get(4)?,
    })
}

pub fn list(conn: &Connection) -> Result<Vec<User>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY id"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<User>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn require(conn: &Connection, id: i64) -> Result<User> {
    get(conn, id)?.ok_or_else(|| Error::not_found(format!("user {id} not found")))
}

pub fn by_username(conn: &Connection, username: &str) -> Result<Option<User>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE username = ?1"))?
        .query_row([username], from_row)
        .optional()?)
}

pub fn insert(
    conn: &Connection,
    username: &str,
    hash: &str,
    is_admin: bool,
    now: i64,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO users(username, password_hash, is_admin, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)",
    )?
    .execute(params![username, hash, is_admin, now])?;
    Ok(conn.last_insert_rowid())
}

pub fn save(conn: &Connection, u: &User, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE users SET username=?2, password_hash=?3, is_admin=?4, updated_at=?5 WHERE id=?1",
    )?
    .execute(params![u.id, u.username, u.password_hash, u.is_admin, now])?;
    Ok(())
}

pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM users WHERE id = ?1", [id])?;
    Ok(())
}

pub fn admin_count(conn: &Connection) -> Result<i64> {
    Ok(
        conn.query_row("SELECT COUNT(*) FROM users WHERE is_admin = 1", [], |r| {
            r.get(0)
        })?,
    )
}

/// (workspace_id, role) for each workspace the user belongs to.
pub fn memberships(conn: &Connection, user_id: i64) -> Result<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT workspace_id, role FROM workspace_members WHERE user_id = ?1 ORDER BY workspace_id",
    )?;
    let rows = stmt.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn set_membership(
    conn: &Connection,
    workspace_id: i64,
    user_id: i64,
    role: &str,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO workspace_members(workspace_id, user_id, role) VALUES (?1, ?2, ?3)
         ON CONFLICT(workspace_id, user_id) DO UPDATE SET role = excluded.role",
    )?
    .execute(params![workspace_id, user_id, role])?;
    Ok(())
}

/// Whether a membership was removed.
pub fn remove_membership(conn: &Connection, workspace_id: i64, user_id: i64) -> Result<bool> {
    Ok(conn.execute(
        "DELETE FROM workspace_members WHERE workspace_id = ?1 AND user_id = ?2",
        params![workspace_id, user_id],
    )? > 0)
}
