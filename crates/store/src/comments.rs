use ops_base::error::Result;
use rusqlite::{params, Connection, OptionalExtension, Row};

const SELECT: &str = "SELECT id, task_id, author, kind, body, created_at FROM task_comments";

/// A row of `task_comments`.
#[derive(Clone, Debug)]
pub struct Comment {
    pub id: i64,
    pub task_id: i64,
    pub author: String,
    pub kind: String,
    pub body: String,
    pub created_at: i64,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment {
        id: r.get(0)?,
        task_id: r.get(1)?,
        author: r.get(2)?,
        kind: r.get(3)?,
        body: r.get(4)?,
        created_at: r.get(5)?,
    })
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
pub fn for_task(conn: &Connection, task_id: i64) -> Result<Vec<Comment>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} WHERE task_id = ?1 ORDER BY id"))?;
    let rows = stmt.query_map([task_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Comment>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}
