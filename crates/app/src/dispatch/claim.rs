//! The transactional claim: a worker is handed the best matching queued
//! task (or told why none), exactly once.

use rusqlite::Connection;
use serde_json::json;

use super::reconcile::{any_stale_running, reconcile_stale, reconcile_stale_running, stale_cutoff};
use crate::views;
use crate::{secrets, transition};
use ops_base::error::Result;
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_domain::model_filter;
use ops_domain::repo;
use ops_domain::settings::Settings;
use ops_domain::task::Status;
use ops_protocol::dispatch::{ClaimAnswer, ClaimRepo, ClaimedAgent};
use ops_protocol::runs::FollowUp;
use ops_store::agents;
use ops_store::db::Db;
use ops_store::heartbeats::{self, Heartbeat};
use ops_store::tasks::{self, Task};

/// The start of `blocked_reason` of a task a claim refused because its
/// workspace does not allow its repository.
pub const REPO_NOT_ALLOWED_REASON: &str = "repository not allowed";

pub use ops_protocol::dispatch::ClaimRequest;

/// What a claim hands out. Built inside the claim's transaction, turned
/// into JSON by the HTTP layer outside it: the writer thread only decides.
pub enum ClaimOutcome {
    Claimed {
        task: Box<Task>,
        agent_slug: String,
        launch_command: Option<String>,
        /// The task's model, else the agent's.
        model: Option<String>,
        claim_token: String,
        reconciled: usize,
        /// The repository the task runs in (its own, else its
        /// workspace's) and the ref its branch starts from.
        repo: Option<(String, Option<String>)>,
    },
    /// No task; `reason` is one of the documented codes.
    Nothing {
        reason: &'static str,
        reconciled: usize,
    },
}

impl ClaimOutcome {
    /// The claim's answer on the wire.
    pub fn answer(&self) -> ClaimAnswer {
        match self {
            ClaimOutcome::Claimed {
                task,
                agent_slug,
                launch_command,
                model,
                claim_token,
                reconciled,
                repo,
            } => ClaimAnswer {
                task: Some(views::task(task)),
                agent: Some(ClaimedAgent {
                    slug: agent_slug.clone(),
                    launch_command: launch_command.clone(),
                    model: model.clone(),
                }),
                claim_token: Some(claim_token.clone()),
                reason: None,
                reconciled: *reconciled,
                repo: repo.as_ref().map(|(path, base_ref)| ClaimRepo {
                    path: path.clone(),
                    base_ref: base_ref.clone(),
                }),
                follow_up: match (&task.follow_up, &task.follow_up_session) {
                    (Some(message), Some(session_id)) => Some(FollowUp {
                        session_id: session_id.clone(),
                        message: message.clone(),
                    }),
                    _ => None,
                },
            },
            ClaimOutcome::Nothing { reason, reconciled } => ClaimAnswer {
                task: None,
                agent: None,
                claim_token: None,
                reason: Some(reason.to_string()),
                reconciled: *reconciled,
                repo: None,
                follow_up: None,
            },
        }
    }
}

/// `POST|GET /api/dispatch/next`: one write transaction that reconciles
/// stale claims (at most once a second, `Db::stale_scan`), then hands the
/// best matching task to this worker.
///
/// Most claims of an idle fleet find nothing, so the claim is first asked
/// on a reader: one that can get nothing, with no stale claim due to be
/// reconciled, is answered from there and costs the writer nothing. Any
/// other goes to the writer's transaction, which decides again from the
/// start — what the reader saw may have changed since — so exactly-once
/// rests on the transaction alone.
pub fn claim(db: &Db, who: &Principal, req: ClaimRequest) -> Result<ClaimOutcome> {
    who.require_service("claiming tasks")?;
    if let Some(nothing) = nothing_to_claim(db, &req)? {
        return Ok(nothing);
    }
    let (cache, stale_scan) = (db.settings.clone(), db.stale_scan.clone());
    db.write(move |conn| {
        let now = now_ms();
        let settings = cache.load(conn)?;
        let reconciled = if stale_scan.due(now) {
            stale_scan.done(now);
            reconcile_stale(conn, settings.dispatch_stale_minutes, "dispatcher", now)?.len()
                + reconcile_stale_running(conn, &settings, "dispatcher", now)?.len()
        } else {
            0
        };
        // A task whose own repository its workspace no longer allows is
        // never handed out: it is blocked with the reason, and the next
        // one is taken.
        let (mut t, hb) = loop {
            let (t, hb) = match candidate(conn, &settings, &req, now)? {
                Ok(found) => found,
                Err(reason) => return Ok(ClaimOutcome::Nothing { reason, reconciled }),
            };
            match crate::tasks::repo_refusal(conn, &t)? {
                None => break (t, hb),
                Some(why) => refuse_repo(conn, t, &why, now)?,
            }
        };
        let agent = agents::require(conn, t.agent_id.expect("claimable tasks have an agent"))?;
        let token = secrets::random_hex(16);
        t.claimed_by = Some(hb.worker_id);
        t.claim_token = Some(token.clone());
        t.claimed_at = Some(now);
        t.dispatch_attempts += 1;
        t.dispatch_started_at = None;
        t.dispatch_finished_at = None;
        t.exit_code = None;
        t.dispatch_output = None;
        t.log_path = None;
        t.err_log_path = None;
        let actor = format!("worker:{}", req.worker_id);
        let payload = json!({"worker_id": req.worker_id, "attempt": t.dispatch_attempts, "agent": agent.slug});
        transition(conn, &mut t, Status::Dispatching, "dispatch.claimed", &actor, payload, now)?;
        tasks::save_claim(conn, &t, now)?;
        t.updated_at = now;
        ops_base::metrics::METRICS.claim();
        let model = t.model.clone().or(agent.model);
        let repo = repo::effective(
            (t.repo_path.as_deref(), t.base_ref.as_deref()),
            (t.workspace_repo_path.as_deref(), t.workspace_base_ref.as_deref()),
        )
        .map(|(p, r)| (p.to_string(), r.map(str::to_string)));
        Ok(ClaimOutcome::Claimed {
            repo,
            task: Box::new(t),
            agent_slug: agent.slug,
            launch_command: agent.launch_command,
            model,
            claim_token: token,
            reconciled,
        })
    })
}

/// Takes a queued task whose own repository its workspace does not allow
/// (any more) out of the queue: `waiting`, blocked with
/// [`REPO_NOT_ALLOWED_REASON`] and why, with the event
/// `dispatch.repo_refused`. Once the repository is allowed (or the task
/// names another), retrying it queues it again.
fn refuse_repo(conn: &Connection, mut t: Task, why: &str, now: i64) -> Result<()> {
    t.blocked = true;
    t.blocked_reason = Some(format!("{REPO_NOT_ALLOWED_REASON}: {why}"));
    let payload = json!({"repo_path": t.repo_path, "reason": why});
    transition(
        conn,
        &mut t,
        Status::Waiting,
        "dispatch.repo_refused",
        "dispatcher",
        payload,
        now,
    )?;
    tasks::save(conn, &t, now)
}

/// The claim's answer when, as a reader sees it now, it can only be
/// "nothing" and no stale claim is due to be reconciled; `None` when the
/// writer must decide.
fn nothing_to_claim(db: &Db, req: &ClaimRequest) -> Result<Option<ClaimOutcome>> {
    let conn = db.read()?;
    let now = now_ms();
    let settings = ops_store::settings::load(&conn)?;
    if db.stale_scan.due(now) {
        if tasks::any_dispatching_since(&conn, stale_cutoff(settings.dispatch_stale_minutes, now))?
            || any_stale_running(&conn, &settings, now)?
        {
            return Ok(None);
        }
        // Scanned, nothing stale: the next scan is a second away, however
        // many empty claims come meanwhile (the walk of the running tasks
        // is not free with a large fleet).
        db.stale_scan.done(now);
    }
    Ok(match candidate(&conn, &settings, req, now)? {
        Ok(_) => None,
        Err(reason) => Some(ClaimOutcome::Nothing {
            reason,
            reconciled: 0,
        }),
    })
}

/// The task this worker would get now, with its heartbeat, or the
/// documented reason why none.
fn candidate(
    conn: &Connection,
    settings: &Settings,
    req: &ClaimRequest,
    now: i64,
) -> Result<std::result::Result<(Task, Heartbeat), &'static str>> {
    if !settings.dispatch_enabled {
        return Ok(Err("dispatch_disabled"));
    }
    let hb = match heartbeats::get(conn, &req.worker_id)? {
        Some(hb) if hb.is_fresh(now, settings.dispatch_worker_stale_seconds) => hb,
        _ => return Ok(Err("worker_not_fresh")),
    };
    if hb.draining {
        return Ok(Err("worker_draining"));
    }
    let mut slugs = hb.usable_slugs();
    if let Some(asked) = &req.agent_slugs {
        slugs.retain(|s| asked.contains(s));
    }
    if slugs.is_empty() {
        return Ok(Err("no_usable_agents"));
    }
    let workspace = req.workspace_id.or(hb.workspace_id);
    Ok(
        match tasks::next_claimable(
            conn,
            &slugs,
            workspace,
            &model_filter::rules(&hb.models),
            now,
        )? {
            Some(t) => Ok((t, hb)),
            None => Err("no_task"),
        },
    )
}
