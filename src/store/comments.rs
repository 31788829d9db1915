use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{json, Value};

use super::ts;
use crate::error::Result;

const SELECT: &str = "SELECT id, task_id, author, kind, body, created_at FROM task_comments";

fn to_json(r: &Row<'_>) -> rusqlite::Result<Value> {
    Ok(json!({
        "id": r.get::<_, i64>(0)?,
        "task_id": r.get::<_, i64>(1)?,
        "author": r.get::<_, String>(2)?,
        "kind": r.get::<_, String>(3)?,
        "body": r.get::<_, String>(4)?,
        "created_at": ts(Some(r.get(5)?)),
    }))
}

pub fn add(
    conn: &Connection,
    task_id: i64,
    author: &str,
    kind: &str,
    body: &str,
    now: i64,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO task_comments(task_id, author, kind, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![task_id, author, kind, body, now])?;
    Ok(conn.last_insert_rowid())
}

/// Oldest first.
pub fn for_task(conn: &Connection, task_id: i64) -> Result<Vec<Value>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE task_id = ?1 ORDER BY id"))?;
    let rows = stmt.query_map([task_id], to_json)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Value>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], to_json)
        .optional()?)
}
