use ops_base::error::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension};

/// A row of `workspaces`.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    /// The repository its tasks run in, unless a task names its own.
    pub repo_path: Option<String>,
    pub base_ref: Option<String>,
    /// Where its tasks may name their own repository (`workspace_repo_roots`),
    /// sorted.
    pub repo_roots: Vec<String>,
    /// Its monthly budget in USD (migration 15); `None`: none.
    pub budget_usd_month: Option<f64>,
    /// The month (`2026-12`) whose 80 % warning, and whose stop at 100 %,
    /// were done.
    pub budget_warned: Option<String>,
    pub budget_exhausted: Option<String>,
}

const COLUMNS: &str =
    "id, name, created_at, repo_path, base_ref, budget_usd_month, budget_warned, budget_exhausted";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Workspace> {
    Ok(Workspace {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: r.get(2)?,
        repo_path: r.get(3)?,
        base_ref: r.get(4)?,
        repo_roots: Vec::new(),
        budget_usd_month: r.get(5)?,
        budget_warned: r.get(6)?,
        budget_exhausted: r.get(7)?,
    })
}

/// `None`: all; `Some(ids)`: only these.
pub fn list(conn: &Connection, only: Option<&[i64]>) -> Result<Vec<Workspace>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM workspaces ORDER BY id"))?;
    let rows = stmt.query_map([], from_row)?;
    let all: Vec<Workspace> = rows.collect::<rusqlite::Result<_>>()?;
    let mut list: Vec<Workspace> = match only {
        None => all,
        Some(ids) => all.into_iter().filter(|w| ids.contains(&w.id)).collect(),
    };
    let mut stmt = conn.prepare_cached(
        "SELECT workspace_id, root FROM workspace_repo_roots ORDER BY workspace_id, root",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (ws, root) = row?;
        if let Some(w) = list.iter_mut().find(|w| w.id == ws) {
            w.repo_roots.push(root);
        }
    }
    Ok(list)
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Workspace>> {
    let found = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM workspaces WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?;
    let Some(mut w) = found else {
        return Ok(None);
    };
    w.repo_roots = repo_roots(conn, id)?;
    Ok(Some(w))
}

pub fn require(conn: &Connection, id: i64) -> Result<Workspace> {
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

/// The roots under which a task of workspace `id` may name its own
/// repository, sorted.
pub fn repo_roots(conn: &Connection, id: i64) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT root FROM workspace_repo_roots WHERE workspace_id = ?1 ORDER BY root",
    )?;
    let rows = stmt.query_map([id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Replaces the roots of workspace `id` with `roots` (without duplicates).
pub fn set_repo_roots(conn: &Connection, id: i64, roots: &[String]) -> Result<()> {
    conn.prepare_cached("DELETE FROM workspace_repo_roots WHERE workspace_id = ?1")?
        .execute([id])?;
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO workspace_repo_roots(workspace_id, root) VALUES (?1, ?2)",
    )?;
    for root in roots {
        insert.execute(params![id, root])?;
    }
    Ok(())
}

/// Sets (or clears) the monthly budget; the month's warning and stop are
/// due again against the new figure.
pub fn set_budget(conn: &Connection, id: i64, usd: Option<f64>) -> Result<()> {
    conn.prepare_cached(
        "UPDATE workspaces SET budget_usd_month = ?2, budget_warned = NULL, budget_exhausted = NULL
         WHERE id = ?1",
    )?
    .execute(params![id, usd])?;
    Ok(())
}

/// Which budget mark to set.
#[derive(Clone, Copy, Debug)]
pub enum BudgetMark {
    Warned,
    Exhausted,
}

/// Records that the month's warning (or stop) was done.
pub fn mark_budget(conn: &Connection, id: i64, mark: BudgetMark, month: &str) -> Result<()> {
    let sql = match mark {
        BudgetMark::Warned => "UPDATE workspaces SET budget_warned = ?2 WHERE id = ?1",
        BudgetMark::Exhausted => "UPDATE workspaces SET budget_exhausted = ?2 WHERE id = ?1",
    };
    conn.prepare_cached(sql)?.execute(params![id, month])?;
    Ok(())
}
