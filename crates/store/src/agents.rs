use rusqlite::{params, Connection, OptionalExtension, Row};

use ops_base::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Agent {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub active: bool,
    pub launch_command: Option<String>,
    pub model: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const SELECT: &str =
    "SELECT id, slug, name, active, launch_command, model, created_at, updated_at FROM agents";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: r.get(0)?,
        slug: r.get(1)?,
        name: r.get(2)?,
        active: r.get(3)?,
        launch_command: r.get(4)?,
        model: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
    })
}

pub fn list(conn: &Connection) -> Result<Vec<Agent>> {
    let mut stmt = conn.prepare_cached(&format!("{SELECT} ORDER BY id"))?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Agent>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

pub fn by_slug(conn: &Connection, slug: &str) -> Result<Option<Agent>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE slug = ?1"))?
        .query_row([slug], from_row)
        .optional()?)
}

pub fn require(conn: &Connection, id: i64) -> Result<Agent> {
    get(conn, id)?.ok_or_else(|| Error::not_found(format!("agent {id} not found")))
}

pub fn insert(conn: &Connection, a: &Agent, now: i64) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO agents(slug, name, active, launch_command, model, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )?
    .execute(params![
        a.slug,
        a.name,
        a.active,
        a.launch_command,
        a.model,
        now
    ])?;
    Ok(conn.last_insert_rowid())
}

pub fn save(conn: &Connection, a: &Agent, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE agents SET slug=?2, name=?3, active=?4, launch_command=?5, model=?6, updated_at=?7
         WHERE id=?1",
    )?
    .execute(params![
        a.id,
        a.slug,
        a.name,
        a.active,
        a.launch_command,
        a.model,
        now
    ])?;
    Ok(())
}

/// Number of tasks that name the agent (a referenced agent is deactivated,
/// not deleted).
pub fn task_count(conn: &Connection, id: i64) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM tasks WHERE agent_id = ?1",
        [id],
        |r| r.get(0),
    )?)
}

pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM agents WHERE id = ?1", [id])?;
    Ok(())
}
