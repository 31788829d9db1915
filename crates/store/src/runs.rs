//! `runs` and `run_events` (migration 15): each dispatch of a task that
//! reached its agent, its transcript, and what it spent.

use rusqlite::{params, Connection, OptionalExtension, Row};

use ops_base::error::Result;
use ops_protocol::runs::RunEvent;

/// A row of `runs`.
#[derive(Clone, Debug)]
pub struct Run {
    pub id: i64,
    pub task_id: i64,
    pub workspace_id: i64,
    pub number: i64,
    pub claim_token: String,
    pub worker_id: String,
    pub agent_slug: String,
    pub model: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub outcome: String,
    pub exit_code: Option<i64>,
    pub signal: Option<String>,
    pub session_id: Option<String>,
    pub follow_up: Option<String>,
    pub resumed_session: Option<String>,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_usd: Option<f64>,
    pub cost_source: Option<String>,
}

const COLUMNS: &str =
    "id, task_id, workspace_id, number, claim_token, worker_id, agent_slug, model,
    started_at, ended_at, outcome, exit_code, signal, session_id, follow_up, resumed_session,
    tokens_in, tokens_out, cost_usd, cost_source";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: r.get(0)?,
        task_id: r.get(1)?,
        workspace_id: r.get(2)?,
        number: r.get(3)?,
        claim_token: r.get(4)?,
        worker_id: r.get(5)?,
        agent_slug: r.get(6)?,
        model: r.get(7)?,
        started_at: r.get(8)?,
        ended_at: r.get(9)?,
        outcome: r.get(10)?,
        exit_code: r.get(11)?,
        signal: r.get(12)?,
        session_id: r.get(13)?,
        follow_up: r.get(14)?,
        resumed_session: r.get(15)?,
        tokens_in: r.get(16)?,
        tokens_out: r.get(17)?,
        cost_usd: r.get(18)?,
        cost_source: r.get(19)?,
    })
}

/// What a new run is started with.
pub struct NewRun<'a> {
    pub task_id: i64,
    pub workspace_id: i64,
    pub claim_token: &'a str,
    pub worker_id: &'a str,
    pub agent_slug: &'a str,
    pub model: Option<&'a str>,
    pub follow_up: Option<&'a str>,
    pub resumed_session: Option<&'a str>,
}

/// Starts the task's next run (numbered after its last one).
pub fn start(conn: &Connection, r: &NewRun<'_>, now: i64) -> Result<Run> {
    conn.prepare_cached(
        "INSERT INTO runs(task_id, workspace_id, number, claim_token, worker_id, agent_slug, model,
                          started_at, follow_up, resumed_session)
         VALUES (?1, ?2, (SELECT coalesce(max(number), 0) + 1 FROM runs WHERE task_id = ?1),
                 ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        r.task_id,
        r.workspace_id,
        r.claim_token,
        r.worker_id,
        r.agent_slug,
        r.model,
        now,
        r.follow_up,
        r.resumed_session
    ])?;
    let id = conn.last_insert_rowid();
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM runs WHERE id = ?1"))?
        .query_row([id], from_row)?)
}

/// The run of a claim.
pub fn by_claim(conn: &Connection, claim_token: &str) -> Result<Option<Run>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM runs WHERE claim_token = ?1"
        ))?
        .query_row([claim_token], from_row)
        .optional()?)
}

/// A task's runs, oldest first.
pub fn of_task(conn: &Connection, task_id: i64) -> Result<Vec<Run>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM runs WHERE task_id = ?1 ORDER BY number"
    ))?;
    let rows = stmt.query_map([task_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Ends a running run; one that has ended already keeps how it ended.
pub fn end(
    conn: &Connection,
    id: i64,
    outcome: &str,
    exit_code: Option<i64>,
    signal: Option<&str>,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE runs SET outcome = ?2, exit_code = ?3, signal = ?4, ended_at = ?5
         WHERE id = ?1 AND outcome = 'running'",
    )?
    .execute(params![id, outcome, exit_code, signal, now])?;
    Ok(())
}

/// Ends the task's runs still marked running: a new run starts, so their
/// claims were lost (taken back, reconciled).
pub fn end_lost(conn: &Connection, task_id: i64, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE runs SET outcome = 'lost', ended_at = ?2 WHERE task_id = ?1 AND outcome = 'running'",
    )?
    .execute(params![task_id, now])?;
    Ok(())
}

pub fn set_session(conn: &Connection, id: i64, session_id: &str) -> Result<()> {
    conn.prepare_cached("UPDATE runs SET session_id = ?2 WHERE id = ?1")?
        .execute(params![id, session_id])?;
    Ok(())
}

/// Adds tokens and, when known, money to a run.
pub fn add_usage(
    conn: &Connection,
    id: i64,
    tokens_in: i64,
    tokens_out: i64,
    cost: Option<(f64, &str)>,
) -> Result<()> {
    let (usd, source) = match cost {
        Some((usd, source)) => (Some(usd), Some(source)),
        None => (None, None),
    };
    conn.prepare_cached(
        "UPDATE runs SET tokens_in = tokens_in + ?2, tokens_out = tokens_out + ?3,
             cost_usd = CASE WHEN ?4 IS NULL THEN cost_usd ELSE coalesce(cost_usd, 0) + ?4 END,
             cost_source = coalesce(?5, cost_source)
         WHERE id = ?1",
    )?
    .execute(params![id, tokens_in, tokens_out, usd, source])?;
    Ok(())
}

/// Tokens in and out the task's runs of session `session_id` have counted.
pub fn session_tokens(conn: &Connection, task_id: i64, session_id: &str) -> Result<(i64, i64)> {
    Ok(conn
        .prepare_cached(
            "SELECT coalesce(sum(tokens_in), 0), coalesce(sum(tokens_out), 0) FROM runs
             WHERE task_id = ?1 AND session_id = ?2",
        )?
        .query_row(params![task_id, session_id], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Tokens in and out run `id` has counted.
pub fn tokens_of(conn: &Connection, id: i64) -> Result<(i64, i64)> {
    Ok(conn
        .prepare_cached("SELECT tokens_in, tokens_out FROM runs WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?)
}

/// Appends one event to a run's transcript.
pub fn add_event(conn: &Connection, run: &Run, e: &RunEvent, now: i64) -> Result<i64> {
    let body = serde_json::to_string(e)
        .map_err(|e| ops_base::error::Error::Internal(format!("cannot store a run event: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO run_events(run_id, task_id, at, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![run.id, run.task_id, now, e.kind(), body])?;
    Ok(conn.last_insert_rowid())
}

/// One stored event: its sequence number, its run's number, when, and the
/// event (an unreadable body is left out of the page).
pub struct StoredEvent {
    pub seq: i64,
    pub run: i64,
    pub at: i64,
    pub event: RunEvent,
}

/// A task's events after `after`, oldest first, at most `max`.
pub fn events(conn: &Connection, task_id: i64, after: i64, max: i64) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT e.id, r.number, e.at, e.body FROM run_events e JOIN runs r ON r.id = e.run_id
         WHERE e.task_id = ?1 AND e.id > ?2 ORDER BY e.id {}",
        super::limit(max)
    ))?;
    let rows = stmt.query_map(params![task_id, after], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, run, at, body) = row?;
        if let Ok(event) = serde_json::from_str(&body) {
            out.push(StoredEvent {
                seq,
                run,
                at,
                event,
            });
        }
    }
    Ok(out)
}

/// Runs, tokens and money (USD) of the runs started in `[from, to)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spend {
    pub runs: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_usd: f64,
}

/// A workspace's spend over the runs started in `[from, to)` (ms).
pub fn workspace_spend(conn: &Connection, workspace_id: i64, from: i64, to: i64) -> Result<Spend> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(tokens_in), 0), coalesce(sum(tokens_out), 0),
                    coalesce(sum(cost_usd), 0.0)
             FROM runs WHERE workspace_id = ?1 AND started_at >= ?2 AND started_at < ?3",
        )?
        .query_row(params![workspace_id, from, to], |r| {
            Ok(Spend {
                runs: r.get(0)?,
                tokens_in: r.get(1)?,
                tokens_out: r.get(2)?,
                cost_usd: r.get(3)?,
            })
        })?)
}

/// Tokens in, tokens out and money per agent over every run kept: the
/// counters of `/metrics`.
pub fn totals_by_agent(conn: &Connection) -> Result<Vec<(String, Spend)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT agent_slug, count(*), sum(tokens_in), sum(tokens_out), coalesce(sum(cost_usd), 0.0)
         FROM runs GROUP BY agent_slug ORDER BY agent_slug",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Spend {
                runs: r.get(1)?,
                tokens_in: r.get(2)?,
                tokens_out: r.get(3)?,
                cost_usd: r.get(4)?,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The running runs of a workspace's tasks (to stop them when its budget
/// is spent).
pub fn running_in_workspace(conn: &Connection, workspace_id: i64) -> Result<Vec<Run>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM runs WHERE workspace_id = ?1 AND outcome = 'running'"
    ))?;
    let rows = stmt.query_map([workspace_id], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
