use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use super::ts;
use crate::error::{Error, Result};

fn row_json(r: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    Ok(
        json!({"id": r.get::<_, i64>(0)?, "name": r.get::<_, String>(1)?, "created_at": ts(Some(r.get(2)?)),
               "repo_path": r.get::<_, Option<String>>(3)?, "base_ref": r.get::<_, Option<String>>(4)?}),
    )
}

/// `None`: all; `Some(ids)`: only these.
pub fn list(conn: &Connection, only: Option<&[i64]>) -> Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, created_at, repo_path, base_ref FROM workspaces ORDER BY id",
    )?;
    let rows = stmt.query_map([], row_json)?;
    let all: Vec<Value> = rows.collect::<rusqlite::Result<_>>()?;
    Ok(match only {
        None => all,
        Some(ids) => all
            .into_iter()
            .filter(|w| ids.iter().any(|id| w["id"] == *id))
            .collect(),
    })
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Value>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, name, created_at, repo_path, base_ref FROM workspaces WHERE id = ?1",
        )?
        .query_row([id], row_json)
        .optional()?)
}

pub fn require(conn: &Connection, id: i64) -> Result<Value> {
    get(conn, id)?.ok_or_else(|| Error::not_found(format!("workspace {id} not found")))
}

pub fn by_name(conn: &Connection, name: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM workspaces WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?)
}

pub fn insert(conn: &Connection, name: &str, now: i64) -> Result<i64> {
    conn.prepare_cached("INSERT INTO workspaces(name, created_at) VALUES (?1, ?2)")?
        .execute(params![name, now])?;
    Ok(conn.last_insert_rowid())
}

/// The repository of a workspace: `(repo_path, base_ref)`.
pub fn repo(conn: &Connection, id: i64) -> Result<(Option<String>, Option<String>)> {
    Ok(conn
        .prepare_cached("SELECT repo_path, base_ref FROM workspaces WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((None, None)))
}

pub fn set_repo(
    conn: &Connection,
    id: i64,
    repo_path: Option<&str>,
    base_ref: Option<&str>,
) -> Result<()> {
    conn.prepare_cached("UPDATE workspaces SET repo_path = ?2, base_ref = ?3 WHERE id = ?1")?
        .execute(params![id, repo_path, base_ref])?;
    Ok(())
}
