//! Versioned migrations, tracked in `PRAGMA user_version`.

use rusqlite::Connection;

use ops_base::error::{Error, Result};

/// Migration N (1-based) brings the schema from version N-1 to N. Entries
/// are only ever appended.
const MIGRATIONS: &[&str] = &[
    include_str!("../../schema.sql"),
    include_str!("../../migrations/002_task_counts.sql"),
    include_str!("../../migrations/003_output_offset.sql"),
    include_str!("../../migrations/004_worktrees.sql"),
    include_str!("../../migrations/005_task_search.sql"),
    include_str!("../../migrations/006_claim_queue.sql"),
    include_str!("../../migrations/007_task_title_fts.sql"),
    include_str!("../../migrations/008_task_cancels.sql"),
    include_str!("../../migrations/009_task_id_high_water.sql"),
    include_str!("../../migrations/010_workspace_repo_roots.sql"),
    include_str!("../../migrations/011_claim_cancels.sql"),
    include_str!("../../migrations/012_deadlines.sql"),
    include_str!("../../migrations/013_run_outcome.sql"),
    include_str!("../../migrations/014_serve_marker.sql"),
    include_str!("../../migrations/015_agent_runs.sql"),
    include_str!("../../migrations/016_review.sql"),
];

/// The schema version this binary brings a database to.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

pub fn run(conn: &mut Connection) -> Result<()> {
    run_to(conn, MIGRATIONS.len())
}

/// Applies the migrations up to schema version `target`.
pub(crate) fn run_to(conn: &mut Connection, target: usize) -> Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = MIGRATIONS.len() as i64;
    if current > latest {
        return Err(Error::Internal(format!(
            "database schema version {current} is newer than this binary knows ({latest}); \
             upgrade ops-center"
        )));
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target)
        .skip(current as usize)
    {
        let version = i as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| Error::Internal(format!("migration {version} failed: {e}")))?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        log::info!("database migrated to schema version {version}");
    }
    Ok(())
}
