//! `task_changes`: what the last run of a task changed in its worktree
//! (schema version 4); `run_changes`: what each run changed (version 16).

use ops_base::error::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// A change as a launcher reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Change {
    pub branch: String,
    pub head: Option<String>,
    pub base: Option<String>,
    pub status: String,
    pub diff_stat: String,
    pub patch: String,
    /// The patch was cut to its first bytes.
    pub truncated: bool,
}

pub fn put(conn: &Connection, task_id: i64, c: &Change, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO task_changes(task_id, branch, head, base, status, diff_stat, patch,
                                             truncated, reported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        task_id,
        c.branch,
        c.head,
        c.base,
        c.status,
        c.diff_stat,
        c.patch,
        c.truncated,
        now
    ])?;
    Ok(())
}

/// A change as stored, and when it was reported.
#[derive(Clone, Debug)]
pub struct StoredChange {
    pub change: Change,
    pub reported_at: i64,
}

/// The task's last reported change, if any.
pub fn get(conn: &Connection, task_id: i64) -> Result<Option<StoredChange>> {
    Ok(conn
        .prepare_cached(
            "SELECT branch, head, base, status, diff_stat, patch, truncated, reported_at
             FROM task_changes WHERE task_id = ?1",
        )?
        .query_row([task_id], stored)
        .optional()?)
}

/// Keeps `c` as what run `run_id` (of task `task_id`) changed.
pub fn put_for_run(
    conn: &Connection,
    run_id: i64,
    task_id: i64,
    c: &Change,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO run_changes(run_id, task_id, branch, head, base, status, diff_stat,
                                            patch, truncated, reported_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        run_id,
        task_id,
        c.branch,
        c.head,
        c.base,
        c.status,
        c.diff_stat,
        c.patch,
        c.truncated,
        now
    ])?;
    Ok(())
}

/// What the task's run number `number` changed, if it reported a change.
pub fn of_run(conn: &Connection, task_id: i64, number: i64) -> Result<Option<StoredChange>> {
    Ok(conn
        .prepare_cached(
            "SELECT c.branch, c.head, c.base, c.status, c.diff_stat, c.patch, c.truncated,
                    c.reported_at
             FROM run_changes c JOIN runs r ON r.id = c.run_id
             WHERE r.task_id = ?1 AND r.number = ?2",
        )?
        .query_row(params![task_id, number], stored)
        .optional()?)
}

/// The number of the task's last run that reported a change.
pub fn last_changed_run(conn: &Connection, task_id: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT max(r.number) FROM run_changes c JOIN runs r ON r.id = c.run_id
             WHERE c.task_id = ?1",
        )?
        .query_row([task_id], |r| r.get(0))?)
}

fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredChange> {
    Ok(StoredChange {
        change: Change {
            branch: r.get(0)?,
            head: r.get(1)?,
            base: r.get(2)?,
            status: r.get(3)?,
            diff_stat: r.get(4)?,
            patch: r.get(5)?,
            truncated: r.get(6)?,
        },
        reported_at: r.get(7)?,
    })
}

/// The task's last run changed files: output evidence for the done guard.
pub fn has_diff(conn: &Connection, task_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM task_changes
                            WHERE task_id = ?1 AND trim(patch) <> '')",
        )?
        .query_row([task_id], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::migrate;

    fn run(conn: &Connection, task: i64, number: i64, outcome: &str) -> i64 {
        conn.execute(
            "INSERT INTO runs(task_id, workspace_id, number, claim_token, worker_id, agent_slug,
                              started_at, outcome)
             VALUES (?1, 1, ?2, ?3, 'w', 'codex', 0, ?4)",
            params![task, number, format!("tok-{task}-{number}"), outcome],
        )
        .unwrap();
        conn.last_insert_rowid()
    }

    fn change(patch: &str) -> Change {
        Change {
            branch: "ops/task-1".into(),
            patch: patch.into(),
            ..Change::default()
        }
    }

    #[test]
    fn each_runs_change_is_kept_and_earlier_ones_go_with_their_ended_run() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate::run_to(&mut conn, 15).unwrap();
        for id in 1..=3 {
            conn.execute(
                "INSERT INTO tasks(id, workspace_id, title, execution, created_at, updated_at)
                 VALUES (?1, 1, 't', 'interactive', 0, 0)",
                [id],
            )
            .unwrap();
        }
        // Task 1's last run ended: its change is that run's. Task 2's is
        // still running: it has not reported. Task 3 has no run.
        run(&conn, 1, 1, "finished");
        run(&conn, 1, 2, "finished");
        run(&conn, 2, 1, "running");
        for id in 1..=3 {
            put(&conn, id, &change(&format!("patch {id}")), 5).unwrap();
        }
        migrate::run(&mut conn).unwrap();
        assert_eq!(last_changed_run(&conn, 1).unwrap(), Some(2));
        assert_eq!(
            of_run(&conn, 1, 2).unwrap().unwrap().change.patch,
            "patch 1"
        );
        assert!(of_run(&conn, 1, 1).unwrap().is_none());
        assert_eq!(last_changed_run(&conn, 2).unwrap(), None);
        assert_eq!(last_changed_run(&conn, 3).unwrap(), None);

        // From now on each run keeps its own; the task's row is the last.
        let r3 = run(&conn, 1, 3, "running");
        put(&conn, 1, &change("patch 1, run 3"), 9).unwrap();
        put_for_run(&conn, r3, 1, &change("patch 1, run 3"), 9).unwrap();
        assert_eq!(last_changed_run(&conn, 1).unwrap(), Some(3));
        assert_eq!(
            of_run(&conn, 1, 2).unwrap().unwrap().change.patch,
            "patch 1"
        );
        assert_eq!(of_run(&conn, 1, 3).unwrap().unwrap().reported_at, 9);
        assert_eq!(
            get(&conn, 1).unwrap().unwrap().change.patch,
            "patch 1, run 3"
        );
        // Deleting the task takes its runs' changes with it.
        conn.execute("PRAGMA foreign_keys=ON", []).unwrap();
        conn.execute("DELETE FROM tasks WHERE id = 1", []).unwrap();
        let left: i64 = conn
            .query_row("SELECT count(*) FROM run_changes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }
}
