//! The dispatch protocol: queueing a task, the Human Gate, heartbeats, the
//! transactional claim, worker reports, stale reconciliation and health.

use std::collections::BTreeSet;
use std::sync::Arc;

use rusqlite::Connection;
use serde_json::json;

use super::views;
use super::{event, transition};
use crate::secrets;
use ops_base::error::{Error, Result};
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_domain::model_filter;
use ops_domain::repo;
use ops_domain::settings::{validate_token, Settings};
use ops_domain::task::{Execution, Status, DISPATCH_AUTHOR};
use ops_protocol::admin::SettingsView;
use ops_protocol::dispatch::{
    ClaimAnswer, ClaimProof, ClaimRepo, ClaimedAgent, Failed, Finished, HeartbeatAnswer,
    HeartbeatReport, Output, Reconciled, Report, RunChange, StaleTasks, Started,
};
use ops_protocol::health::{self, Health, Queue, StorageSize, WorkerSummary};
use ops_protocol::tasks::{DispatchAnswer, TaskView};
use ops_store::alerts::{self, Raise, Raised};
use ops_store::changes::{self, Change};
use ops_store::db::cache::Cached;
use ops_store::db::Db;
use ops_store::heartbeats::{self, Heartbeat};
use ops_store::tasks::{self, Task};
use ops_store::{agents, comments};

/// The start of `blocked_reason` when the Human Gate holds a task.
pub const GATE_REASON: &str = "Human Gate: sensitive task waiting for a human approval";
/// The `warning` of a dispatch answered while `dispatch_enabled` is false:
/// the task is queued, but no worker is handed a task until it is true.
pub const DISPATCH_DISABLED: &str = "dispatch_disabled";
/// The start of `blocked_reason` of a task a claim refused because its
/// workspace does not allow its repository.
pub const REPO_NOT_ALLOWED_REASON: &str = "repository not allowed";
/// `blocked_reason` of a run that ended without output.
pub const NO_EVIDENCE_REASON: &str = "finished without deliverable evidence";
/// `blocked_reason` of a run in a repository that finished without
/// changing its branch, for a task that expects a change.
pub const NO_CHANGE_REASON: &str = "sin cambios: el agente terminó sin modificar el repositorio";
/// `dispatch_output` keeps at most this many bytes: the tail of the output.
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// A reported patch is at most this large (the launcher sends its head
/// and says it was cut).
pub const PATCH_LIMIT: usize = 256 * 1024;
/// A reported `git status` or `diff --stat` is at most this large.
pub const STAT_LIMIT: usize = 64 * 1024;
/// A streamed output chunk is at most this large.
pub const CHUNK_LIMIT: usize = 256 * 1024;

/// `POST /api/tasks/:id/dispatch`: `next`/`waiting`/`review` → `queued`.
/// A sensitive task without approval is blocked at the gate (and that is
/// committed) before the 409 is returned. `retry` (`POST
/// /api/tasks/:id/retry`) first lifts a block other than the gate's, in the
/// same transaction: a refused dispatch leaves the task blocked.
pub fn dispatch(db: &Db, who: &Principal, id: i64, retry: bool) -> Result<DispatchAnswer> {
    enum Outcome {
        Queued(Box<Task>, bool),
        Gated,
    }
    let who = who.clone();
    let outcome = db.write(move |conn| {
        let now = now_ms();
        let actor = who.actor();
        let mut t = tasks::require(conn, id)?;
        who.can_edit_tasks(t.workspace_id)?;
        if t.archived_at.is_some() {
            return Err(Error::conflict("task_archived", format!("task {id} is archived")));
        }
        if t.execution != Execution::Interactive {
            return Err(Error::conflict(
                "not_interactive",
                format!("task {id} has execution=manual; set execution=interactive to dispatch it to an agent"),
            ));
        }
        let agent = match t.agent_id {
            Some(a) => agents::require(conn, a)?,
            None => return Err(Error::conflict("no_agent", format!("task {id} has no agent; assign one first"))),
        };
        if !agent.active {
            return Err(Error::conflict(
                "agent_inactive",
                format!("agent {:?} is inactive; activate it or choose another agent", agent.slug),
            ));
        }
        if let Some(why) = super::tasks::repo_refusal(conn, &t)? {
            return Err(Error::conflict(
                "repo_not_allowed",
                format!("task {id} cannot be dispatched: its repository {why}"),
            ));
        }
        if t.sensitive && t.gate_approved_at.is_none() {
            // The first refusal parks the task at the gate; later ones (or
            // one of a task blocked for another reason, or done) change
            // nothing.
            if !t.blocked && t.status.may_be_blocked() {
                t.blocked = true;
                t.blocked_reason = Some(format!("{GATE_REASON} (POST /api/tasks/{id}/approve)"));
                tasks::save(conn, &t, now)?;
                event(conn, now, Some(t.workspace_id), Some(id), "dispatch.human_gate_blocked", &actor, json!({}))?;
            }
            return Ok(Outcome::Gated);
        }
        if retry && t.blocked {
            let reason = t.blocked_reason.take();
            t.blocked = false;
            event(conn, now, Some(t.workspace_id), Some(id), "task.unblocked", &actor, json!({"reason": reason, "because": "retry"}))?;
        }
        if t.blocked {
            return Err(Error::conflict(
                "task_blocked",
                format!("task {id} is blocked: {}; unblock it first", t.blocked_reason.as_deref().unwrap_or("no reason given")),
            ));
        }
        if !matches!(t.status, Status::Next | Status::Waiting | Status::Review) {
            return Err(Error::conflict(
                "invalid_transition",
                format!("task {id} is {}; only next, waiting or review tasks can be dispatched", t.status.as_str()),
            ));
        }
        transition(conn, &mut t, Status::Queued, "task.dispatched", &actor, json!({"agent": agent.slug}), now)?;
        tasks::save(conn, &t, now)?;
        let enabled = ops_store::settings::load(conn)?.dispatch_enabled;
        Ok(Outcome::Queued(Box::new(tasks::require(conn, id)?), enabled))
    })?;
    match outcome {
        Outcome::Queued(t, dispatch_enabled) => Ok(DispatchAnswer {
            task: views::task(&t),
            dispatch_enabled,
            warning: (!dispatch_enabled).then(|| DISPATCH_DISABLED.to_string()),
        }),
        Outcome::Gated => Err(Error::conflict(
            "human_gate",
            format!("task {id} is sensitive: a human admin must approve it (POST /api/tasks/{id}/approve) before it is dispatched"),
        )),
    }
}

/// Whether `t`'s block is the Human Gate's.
pub fn is_gate_block(t: &Task) -> bool {
    t.blocked_reason
        .as_deref()
        .is_some_and(|r| r.starts_with(GATE_REASON))
}

/// `POST /api/tasks/:id/approve`: a human admin approves a sensitive task;
/// a block set by the gate is lifted.
pub fn approve(db: &Db, who: &Principal, id: i64) -> Result<TaskView> {
    let who = who.clone();
    let t = db.write(move |conn| {
        let now = now_ms();
        let mut t = tasks::require(conn, id)?;
        who.require_gate_approver(t.workspace_id, "approving the Human Gate")?;
        if !t.sensitive {
            return Err(Error::conflict(
                "not_sensitive",
                format!("task {id} is not sensitive; it needs no approval"),
            ));
        }
        let Principal::Human(h) = &who else {
            unreachable!("gate approvers are human")
        };
        t.gate_approved_by = Some(h.username.clone());
        t.gate_approved_at = Some(now);
        if t.blocked && is_gate_block(&t) {
            t.blocked = false;
            t.blocked_reason = None;
        }
        tasks::save(conn, &t, now)?;
        event(
            conn,
            now,
            Some(t.workspace_id),
            Some(id),
            "gate.approved",
            &who.actor(),
            json!({}),
        )?;
        tasks::require(conn, id)
    })?;
    Ok(views::task(&t))
}

/// `POST /api/dispatch/heartbeat`. Returns what the server now knows of the
/// worker. The heartbeat row is bookkeeping; an event is written only when
/// a worker appears or what it can run (or its draining) changes.
pub fn heartbeat(db: &Db, who: &Principal, report: HeartbeatReport) -> Result<HeartbeatAnswer> {
    who.require_service("worker heartbeats")?;
    let cache = db.settings.clone();
    let worker_id = report.worker_id.clone();
    let answer = db.write(move |conn| {
        let now = now_ms();
        let hb = Heartbeat {
            worker_id: report.worker_id,
            host: report.host,
            pid: report.pid,
            version: report.version,
            agents: report.agents,
            models: report.models,
            slots_total: report.slots_total,
            slots_busy: report.slots_busy,
            running_task_ids: report.running_task_ids,
            draining: report.draining,
            workspace_id: report.workspace_id,
            last_seen_at: now,
        };
        let before = heartbeats::get(conn, &hb.worker_id)?;
        heartbeats::upsert(conn, &hb)?;
        let changed = match &before {
            None => Some("worker.registered"),
            Some(b) if b.usable_slugs() != hb.usable_slugs() || b.draining != hb.draining => {
                Some("worker.capabilities_changed")
            }
            Some(_) => None,
        };
        let actor = format!("worker:{}", hb.worker_id);
        if let Some(kind) = changed {
            event(conn, now, None, None, kind, &actor,
                json!({"host": hb.host, "usable_agents": hb.usable_slugs(), "draining": hb.draining}))?;
        }
        // A launcher that just started lists every task it holds (it
        // adopted them from its state files first): a claim of this worker
        // it does not list never reached it, and nothing will run it, so
        // no grace is needed.
        let grace = if report.starting {
            0
        } else {
            cache.load(conn)?.dispatch_claim_grace_seconds
        };
        let requeued = requeue_lost_claims(conn, &hb, grace, &actor, now)?;
        let released = release_unlisted_runs(conn, &hb, grace, &actor, now)?;
        let (cancel, cancel_claims) =
            super::cancel::to_cancel(conn, &hb.worker_id, &hb.running_task_ids)?;
        Ok(HeartbeatAnswer {
            cancel,
            cancel_claims,
            ok: true,
            usable_agents: hb.usable_slugs(),
            worker_id: hb.worker_id,
            last_seen_at: ops_base::time::rfc3339(now),
            requeued,
            released,
        })
    });
    db.workers.changed(&worker_id);
    answer
}

/// A claim whose answer never reached the worker (the server died after
/// the commit, the connection dropped) leaves the task `dispatching` with
/// nobody on it. The worker's heartbeat lists every task it holds, so a
/// task it claimed more than `dispatch_claim_grace_seconds` ago and does
/// not list never started: it goes back to `queued` (not blocked), its
/// claim cleared, with the event `dispatch.claim_lost`. Returns the ids.
fn requeue_lost_claims(
    conn: &Connection,
    hb: &Heartbeat,
    grace: i64,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for mut t in tasks::dispatching_by_worker(conn, &hb.worker_id, now - grace * 1000)? {
        if hb.running_task_ids.contains(&t.id) {
            continue;
        }
        let held_seconds = (now - t.claimed_at.unwrap_or(now)) / 1000;
        t.clear_claim();
        let payload = json!({"worker_id": hb.worker_id, "held_seconds": held_seconds,
                             "grace_seconds": grace, "attempt": t.dispatch_attempts});
        let kind = "dispatch.claim_lost";
        transition(conn, &mut t, Status::Queued, kind, actor, payload, now)?;
        tasks::save(conn, &t, now)?;
        ids.push(t.id);
    }
    Ok(ids)
}

/// A running task is its worker's: each heartbeat lists what the launcher
/// runs. One that a heartbeat of its worker leaves out is noted
/// (`claim_unlisted_at`, written when that changes, not on every
/// heartbeat); one that its worker's heartbeats have left out for
/// `dispatch_claim_grace_seconds` is no longer run by anybody and is taken
/// back in this heartbeat's transaction (see [`release_run`]). Returns the
/// ids taken back.
fn release_unlisted_runs(
    conn: &Connection,
    hb: &Heartbeat,
    grace: i64,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for t in tasks::doing_by_worker(conn, &hb.worker_id)? {
        let listed = hb.running_task_ids.contains(&t.id);
        match (listed, t.claim_unlisted_at) {
            (true, None) => {}
            (true, Some(_)) => tasks::set_claim_unlisted(conn, t.id, None)?,
            (false, None) => tasks::set_claim_unlisted(conn, t.id, Some(now))?,
            (false, Some(since)) if now - since >= grace * 1000 => {
                let lang = ops_store::settings::load(conn)?.ui_language;
                let stale = StaleRun::Unlisted {
                    since,
                    last_seen: now,
                    grace,
                };
                ids.push(t.id);
                release_run(conn, t, &stale, lang, actor, now)?;
            }
            (false, Some(_)) => {}
        }
    }
    Ok(ids)
}

/// A claim whose answer could not be delivered to its worker (the
/// connection closed before it was written): the task goes back to
/// `queued` at once (claim cleared, not blocked) with the event
/// `dispatch.claim_undelivered`, unless the claim is no longer the task's
/// current one. Returns the task's workspace and agent when it was
/// requeued, to wake the workers that may take it.
pub fn withdraw_undelivered(
    db: &Db,
    task_id: i64,
    worker_id: String,
    claim_token: String,
) -> Result<Option<(i64, Option<String>)>> {
    db.write(move |conn| {
        let now = now_ms();
        let Some(mut t) = tasks::get(conn, task_id)? else {
            return Ok(None);
        };
        let current = t.status == Status::Dispatching
            && t.claim_token.as_deref() == Some(claim_token.as_str())
            && t.claimed_by.as_deref() == Some(worker_id.as_str());
        if !current {
            return Ok(None);
        }
        t.clear_claim();
        let payload = json!({"worker_id": worker_id, "attempt": t.dispatch_attempts});
        transition(
            conn,
            &mut t,
            Status::Queued,
            "dispatch.claim_undelivered",
            "system",
            payload,
            now,
        )?;
        tasks::save(conn, &t, now)?;
        let agent = match t.agent_id {
            Some(id) => ops_store::agents::get(conn, id)?.map(|a| a.slug),
            None => None,
        };
        Ok(Some((t.workspace_id, agent)))
    })
}

/// `DELETE /api/dispatch/workers/:id`: forget a worker's heartbeat.
pub fn forget_worker(db: &Db, who: &Principal, worker_id: String) -> Result<()> {
    who.require_operator("forgetting a worker")?;
    let actor = who.actor();
    let id = worker_id.clone();
    let done = db.write(move |conn| {
        if !heartbeats::delete(conn, &worker_id)? {
            return Err(Error::not_found(format!("worker {worker_id:?} not found")));
        }
        event(
            conn,
            now_ms(),
            None,
            None,
            "worker.forgotten",
            &actor,
            json!({"worker_id": worker_id}),
        )
    });
    db.workers.changed(&id);
    done
}

/// What a worker can run, as its last heartbeat says: what a parked
/// long-poll claim is matched against before its claim is tried.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerView {
    pub usable_slugs: Vec<String>,
    pub workspace_id: Option<i64>,
    /// With the two below: all a heartbeat says that a claim depends on,
    /// so a heartbeat that leaves the view as it was changes no claim.
    pub models: Vec<String>,
    pub draining: bool,
}

pub fn worker_view(db: &Db, worker_id: &str) -> Result<Option<WorkerView>> {
    Ok(
        heartbeats::get(&*db.read()?, worker_id)?.map(|hb| WorkerView {
            usable_slugs: hb.usable_slugs(),
            workspace_id: hb.workspace_id,
            models: hb.models,
            draining: hb.draining,
        }),
    )
}

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
            },
            ClaimOutcome::Nothing { reason, reconciled } => ClaimAnswer {
                task: None,
                agent: None,
                claim_token: None,
                reason: Some(reason.to_string()),
                reconciled: *reconciled,
                repo: None,
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
            match super::tasks::repo_refusal(conn, &t)? {
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
        match tasks::next_claimable(conn, &slugs, workspace, &model_filter::rules(&hb.models))? {
            Some(t) => Ok((t, hb)),
            None => Err("no_task"),
        },
    )
}

/// Applies a worker report. A claim that is not the task's current one is
/// `409 stale_claim` and changes nothing. Reports are idempotent: a retried
/// `started`, `finished` or `failed` whose effect is already recorded
/// answers 200 without changing anything again.
pub fn report(
    db: &Db,
    who: &Principal,
    id: i64,
    claim: ClaimProof,
    report: Report,
) -> Result<TaskView> {
    who.require_service("worker reports")?;
    let t = db.write(move |conn| {
        let now = now_ms();
        let mut t = tasks::require(conn, id)?;
        let holds = t.claimed_by.as_deref() == Some(claim.worker_id.as_str())
            && t.claim_token.as_deref().is_some_and(|tok| secrets::constant_time_eq(tok, &claim.claim_token));
        if !holds && super::cancel::is_cancelled_claim(conn, id, &claim)? {
            return Err(Error::conflict(
                "claim_cancelled",
                format!("the claim of worker {:?} on task {id} was cancelled: end the agent and report `cancelled`", claim.worker_id),
            ));
        }
        if !holds {
            return Err(Error::conflict(
                "stale_claim",
                format!("worker {:?} does not hold the current claim on task {id}", claim.worker_id),
            ));
        }
        let actor = format!("worker:{}", claim.worker_id);
        let ws = Some(t.workspace_id);
        let ended = t.dispatch_finished_at.is_some();
        match report {
            Report::Started(Started { pid, log_path, err_log_path }) => {
                if t.status != Status::Dispatching {
                    return already(t, Status::Doing, "started");
                }
                t.dispatch_started_at = Some(now);
                t.log_path = log_path;
                t.err_log_path = err_log_path;
                transition(conn, &mut t, Status::Doing, "dispatch.started", &actor, json!({"pid": pid}), now)?;
            }
            Report::Output(Output { chunk, offset }) => {
                if ended || !t.status.is_claimed() {
                    return Err(Error::conflict("task_not_running", format!("task {id} is {}; its run has ended", t.status.as_str())));
                }
                if let Some(offset) = offset {
                    // A chunk that starts at or before the last one taken
                    // was sent again: it is already logged.
                    if tasks::output_offset(conn, id)?.is_some_and(|last| offset <= last) {
                        return Ok(t);
                    }
                    tasks::set_output_offset(conn, id, offset)?;
                }
                let cid = comments::add(conn, id, DISPATCH_AUTHOR, "log", &chunk, now)?;
                event(conn, now, ws, Some(id), "dispatch.output", &actor, json!({"comment_id": cid, "bytes": chunk.len()}))?;
                return tasks::require(conn, id);
            }
            Report::Finished(Finished { exit_code, signal, output, change }) => {
                if ended {
                    return already(t, Status::Review, "finished");
                }
                put_change(conn, &t, change.as_ref(), &actor, now)?;
                t.dispatch_output = Some(tail(&output, OUTPUT_LIMIT)).filter(|o| !o.is_empty());
                t.exit_code = exit_code;
                t.exit_signal = signal.clone();
                t.dispatch_finished_at = Some(now);
                let evidence = tasks::has_output_evidence(conn, &t)?;
                // A run in a clone reports its change: one that left the
                // branch as it was delivered nothing to review.
                let unchanged = change.as_ref().is_some_and(left_branch_as_it_was);
                let payload = json!({"exit_code": exit_code, "signal": signal, "evidence": evidence,
                                     "changed": change.as_ref().map(|c| !left_branch_as_it_was(c)),
                                     "expects_changes": t.expects_changes});
                if unchanged && t.expects_changes {
                    let c = change.as_ref().expect("unchanged implies a change report");
                    t.blocked = true;
                    t.blocked_reason = Some(NO_CHANGE_REASON.to_string());
                    comments::add(conn, id, DISPATCH_AUTHOR, "blocker",
                        &format!("{NO_CHANGE_REASON}: branch {} is at {}, where it was when the run started (exit_code={}, \
                                  signal={}); the agent's output is kept in dispatch_output. A task that expects no change \
                                  in its repository says so with expects_changes=false; then dispatch it again.",
                            c.branch, c.head.as_deref().unwrap_or("its start"),
                            exit_code.map_or("none".into(), |c| c.to_string()), signal.as_deref().unwrap_or("none")), now)?;
                    transition(conn, &mut t, Status::Waiting, "dispatch.finished", &actor, payload, now)?;
                } else if evidence {
                    transition(conn, &mut t, Status::Review, "dispatch.finished", &actor, payload, now)?;
                } else {
                    t.blocked = true;
                    t.blocked_reason = Some(NO_EVIDENCE_REASON.to_string());
                    comments::add(conn, id, DISPATCH_AUTHOR, "blocker",
                        &format!("{NO_EVIDENCE_REASON} (exit_code={}, signal={}): the agent printed nothing and changed no file",
                            exit_code.map_or("none".into(), |c| c.to_string()), signal.as_deref().unwrap_or("none")), now)?;
                    transition(conn, &mut t, Status::Waiting, "dispatch.finished", &actor, payload, now)?;
                }
            }
            Report::Failed(Failed { signature, reason, evidence, change, exit_code, signal }) => {
                if ended {
                    return already(t, Status::Waiting, "failed");
                }
                put_change(conn, &t, change.as_ref(), &actor, now)?;
                // An older launcher says how the agent ended only in the
                // signature: `… (code=1, signal=null)`.
                let (code_in, signal_in) = exit_in_signature(&signature);
                t.exit_code = exit_code.or(code_in);
                t.exit_signal = signal.or(signal_in);
                t.blocked = true;
                t.blocked_reason = Some(if reason.trim().is_empty() { signature.clone() } else { reason.clone() });
                t.dispatch_finished_at = Some(now);
                let body = format!("dispatch failed on worker {}: {signature}\nreason: {reason}\nevidence:\n{evidence}", claim.worker_id);
                comments::add(conn, id, DISPATCH_AUTHOR, "blocker", &body, now)?;
                let payload = json!({"signature": signature, "reason": reason,
                                     "worker_id": claim.worker_id, "agent": t.agent_slug,
                                     "exit_code": t.exit_code, "signal": t.exit_signal});
                transition(conn, &mut t, Status::Waiting, "dispatch.failed", &actor, payload, now)?;
                ops_base::metrics::METRICS.failure(&signature);
            }
        }
        tasks::save(conn, &t, now)?;
        tasks::require(conn, id)
    })?;
    Ok(views::task(&t))
}

/// Whether a run's reported change left its branch where the run found
/// it: `head` is `start` (the launcher says where the run started), or,
/// from a launcher that does not, the patch and its summary are empty.
fn left_branch_as_it_was(c: &RunChange) -> bool {
    match (&c.start, &c.head) {
        (Some(start), Some(head)) => start.eq_ignore_ascii_case(head),
        _ => c.patch.trim().is_empty() && c.diff_stat.trim().is_empty(),
    }
}

/// The exit code and signal an older launcher wrote only into a failure
/// signature (`launcher process exited early (code=1, signal=null)`):
/// `null`, `none` and `unknown` are no value.
fn exit_in_signature(signature: &str) -> (Option<i64>, Option<String>) {
    let value = |key: &str| -> Option<&str> {
        let start = signature.find(key)? + key.len();
        let rest = &signature[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(rest.len());
        Some(&rest[..end]).filter(|v| !v.is_empty() && !["null", "none", "unknown"].contains(v))
    };
    (
        value("code=").and_then(|c| c.parse().ok()),
        value("signal=").map(str::to_string),
    )
}

/// Stores what a run changed, with an event saying so.
fn put_change(
    conn: &rusqlite::Connection,
    t: &Task,
    change: Option<&RunChange>,
    actor: &str,
    now: i64,
) -> Result<()> {
    let Some(c) = change else {
        return Ok(());
    };
    let c = Change {
        branch: c.branch.clone(),
        head: c.head.clone(),
        base: c.base.clone(),
        status: c.git_status.clone(),
        diff_stat: c.diff_stat.clone(),
        patch: c.patch.clone(),
        truncated: c.patch_truncated,
    };
    changes::put(conn, t.id, &c, now)?;
    let files = c.diff_stat.lines().filter(|l| l.contains('|')).count();
    event(
        conn,
        now,
        Some(t.workspace_id),
        Some(t.id),
        "dispatch.change",
        actor,
        json!({"branch": c.branch, "head": c.head, "files": files, "patch_bytes": c.patch.len(), "truncated": c.truncated}),
    )?;
    Ok(())
}

/// A retried report whose effect is already recorded: answer with the task
/// as it is; anything else is out of order.
fn already(t: Task, expected: Status, what: &str) -> Result<Task> {
    if t.status == expected
        || (what == "finished" && t.status == Status::Waiting && t.dispatch_finished_at.is_some())
    {
        return Ok(t);
    }
    Err(Error::conflict(
        "invalid_transition",
        format!(
            "task {} is {}; a `{what}` report does not apply",
            t.id,
            t.status.as_str()
        ),
    ))
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// Reconciles every task in `dispatching` for more than `minutes` (0: all
/// of them): waiting + blocked, claim cleared, a blocker comment, the
/// task's `dispatch.stale` alert opened or counted, an event. Returns the
/// task ids.
pub fn reconcile_stale(conn: &Connection, minutes: i64, actor: &str, now: i64) -> Result<Vec<i64>> {
    reconcile_stale_among(conn, minutes, None, actor, now)
}

/// Claims made at or before this moment are stale (`minutes` 0: all).
fn stale_cutoff(minutes: i64, now: i64) -> i64 {
    if minutes == 0 {
        now
    } else {
        now - minutes * 60_000
    }
}

/// [`reconcile_stale`], limited to the tasks of `only` when given.
fn reconcile_stale_among(
    conn: &Connection,
    minutes: i64,
    only: Option<&[i64]>,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let mut stale = tasks::dispatching_since(conn, stale_cutoff(minutes, now))?;
    if let Some(only) = only {
        stale.retain(|t| only.contains(&t.id));
    }
    let mut ids = Vec::with_capacity(stale.len());
    // Read only when there is a stale task: this runs before every claim.
    let lang = if stale.is_empty() {
        Default::default()
    } else {
        ops_store::settings::load(conn)?.ui_language
    };
    for mut t in stale {
        let worker = t.claimed_by.clone().unwrap_or_else(|| "unknown".into());
        let held_min = (now - t.claimed_at.unwrap_or(now)) / 60_000;
        let reason = format!(
            "stale dispatch: worker {worker} held the task in dispatching for {held_min} min without starting it"
        );
        t.blocked = true;
        t.blocked_reason = Some(reason.clone());
        t.clear_claim();
        comments::add(conn, t.id, "system", "blocker",
            &format!("{reason} (limit: {minutes} min, attempt {}). Check the launcher on that worker, then unblock and dispatch again.", t.dispatch_attempts),
            now)?;
        let subject = format!("task:{}", t.id);
        let (alert, how) = alerts::raise(
            conn,
            &Raise {
                kind: "dispatch.stale",
                subject: &subject,
                task_id: Some(t.id),
                title: &super::watchdog::titles::stale(lang, t.id),
                detail: &reason,
            },
            true,
            now,
        )?;
        alert_event(conn, &alert, how, actor, now)?;
        let payload = json!({"worker_id": worker, "held_minutes": held_min, "stale_minutes": minutes,
                             "alert_id": alert.id, "agent": t.agent_slug});
        transition(
            conn,
            &mut t,
            Status::Waiting,
            "dispatch.reconciled_stale",
            actor,
            payload,
            now,
        )?;
        tasks::save(conn, &t, now)?;
        ids.push(t.id);
    }
    Ok(ids)
}

/// When this server started serving (`now_ms()` then; 0 in other
/// processes): no worker is judged stale before it has had
/// `dispatch_worker_stale_seconds` to send a heartbeat to this process,
/// so a server that was down does not take every running task back.
static SERVING_SINCE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Called once by `serve` when it starts answering.
pub fn serving_since(now: i64) {
    SERVING_SINCE.store(now, std::sync::atomic::Ordering::Relaxed);
}

/// The cutoffs of a stale run at `now`: a worker last seen at or before
/// the first is stale (`None` while the server has not been up for the
/// stale window), a task left out of its worker's heartbeats at or before
/// the second is no longer run.
fn stale_running_cutoffs(s: &Settings, now: i64) -> (Option<i64>, i64) {
    let cutoff = now - s.dispatch_worker_stale_seconds * 1000;
    let since = SERVING_SINCE.load(std::sync::atomic::Ordering::Relaxed);
    (
        (since <= cutoff).then_some(cutoff),
        now - s.dispatch_claim_grace_seconds * 1000,
    )
}

/// Whether a running task is due to be taken back (the claim path's
/// question, on a reader).
pub(crate) fn any_stale_running(conn: &Connection, s: &Settings, now: i64) -> Result<bool> {
    let (workers, unlisted) = stale_running_cutoffs(s, now);
    tasks::any_stale_running(conn, workers, unlisted)
}

/// Running tasks whose worker no longer runs them, in `workspaces`.
pub(crate) fn stale_running_in(
    conn: &Connection,
    s: &Settings,
    now: i64,
    workspaces: Option<&[i64]>,
) -> Result<Vec<Task>> {
    let (workers, unlisted) = stale_running_cutoffs(s, now);
    tasks::stale_running_in(conn, workers, unlisted, workspaces)
}

/// How a queued task is named where it waits too long: `#42 (codex,
/// model gpt-5, workspace 2, 25 min)`.
pub(crate) fn queued_label(t: &Task, now: i64) -> String {
    let model = t
        .model
        .as_deref()
        .map(|m| format!(", model {m}"))
        .unwrap_or_default();
    format!(
        "#{} ({}{model}, workspace {}, {} min)",
        t.id,
        t.agent_slug.as_deref().unwrap_or("no agent"),
        t.workspace_id,
        (now - t.queued_at.unwrap_or(now)).max(0) / 60_000
    )
}

/// Why a running task is taken back from its worker.
enum StaleRun {
    /// The worker's last heartbeat (`None`: none on record) is older than
    /// `stale_seconds`.
    WorkerStale {
        last_seen: Option<i64>,
        stale_seconds: i64,
    },
    /// The worker's heartbeats have left the task out since `since`; the
    /// last one came at `last_seen`.
    Unlisted {
        since: i64,
        last_seen: i64,
        grace: i64,
    },
}

/// Takes back every running task whose worker no longer runs it: its
/// worker's heartbeat is older than `dispatch_worker_stale_seconds` (or
/// the worker is unknown), or its fresh heartbeats have left the task out
/// for `dispatch_claim_grace_seconds` (the heartbeat itself takes those
/// back; this catches them when no heartbeat comes). Run by the watchdog
/// and by the claim path (at most once a second). Returns the task ids.
pub fn reconcile_stale_running(
    conn: &Connection,
    s: &Settings,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>> {
    let stale = stale_running_in(conn, s, now, None)?;
    let mut ids = Vec::with_capacity(stale.len());
    for t in stale {
        let worker = t.claimed_by.clone().unwrap_or_default();
        let hb = heartbeats::get(conn, &worker)?;
        let last_seen = hb.as_ref().map(|h| h.last_seen_at);
        let fresh = hb
            .as_ref()
            .is_some_and(|h| h.is_fresh(now, s.dispatch_worker_stale_seconds));
        let why = match (t.claim_unlisted_at, last_seen) {
            (Some(since), Some(seen)) if fresh => StaleRun::Unlisted {
                since,
                last_seen: seen,
                grace: s.dispatch_claim_grace_seconds,
            },
            _ => StaleRun::WorkerStale {
                last_seen,
                stale_seconds: s.dispatch_worker_stale_seconds,
            },
        };
        ids.push(t.id);
        release_run(conn, t, &why, s.ui_language, actor, now)?;
    }
    Ok(ids)
}

/// Takes a running task back from a worker that no longer runs it, as a
/// stale dispatch is: `waiting`, blocked with a reason naming the worker
/// and when it was last seen, the claim cleared — and remembered as
/// withdrawn (`claim_cancels`), so that if that launcher comes back with
/// the agent still running it ends it and reports how —, a blocker
/// comment, the task's `dispatch.stale_running` alert opened (or counted),
/// and the event `dispatch.reconciled_stale_running`.
fn release_run(
    conn: &Connection,
    mut t: Task,
    why: &StaleRun,
    lang: ops_domain::settings::Language,
    actor: &str,
    now: i64,
) -> Result<()> {
    let worker = t.claimed_by.clone().unwrap_or_else(|| "unknown".into());
    let at = |ms: i64| ops_base::time::rfc3339(ms);
    let ago = |ms: i64| (now - ms).max(0) / 1000;
    let (reason, payload) = match why {
        StaleRun::WorkerStale {
            last_seen: Some(seen),
            stale_seconds,
        } => (
            format!(
                "stale run: worker {worker} was last seen at {} ({} s ago; a worker is stale after {stale_seconds} s): its launcher or its host is gone",
                at(*seen),
                ago(*seen)
            ),
            json!({"why": "worker_stale", "last_seen_at": at(*seen), "stale_seconds": stale_seconds}),
        ),
        StaleRun::WorkerStale {
            last_seen: None,
            stale_seconds,
        } => (
            format!("stale run: worker {worker} has no heartbeat on record (forgotten, or never seen by this server)"),
            json!({"why": "worker_stale", "last_seen_at": null, "stale_seconds": stale_seconds}),
        ),
        StaleRun::Unlisted {
            since,
            last_seen,
            grace,
        } => (
            format!(
                "stale run: worker {worker} stopped listing the task among the tasks it runs at {} ({} s ago; grace {grace} s); it was last seen at {}: its launcher no longer runs it",
                at(*since),
                ago(*since),
                at(*last_seen)
            ),
            json!({"why": "unlisted", "unlisted_since": at(*since), "last_seen_at": at(*last_seen),
                   "grace_seconds": grace}),
        ),
    };
    if let Some(token) = &t.claim_token {
        ops_store::cancels::put(
            conn,
            t.id,
            &worker,
            token,
            ops_store::cancels::Why::StaleRunning,
            now,
        )?;
    }
    t.blocked = true;
    t.blocked_reason = Some(reason.clone());
    t.dispatch_finished_at = Some(now);
    t.clear_claim();
    comments::add(
        conn,
        t.id,
        "system",
        "blocker",
        &format!(
            "{reason} (attempt {}). Check the launcher on that worker: if the agent still runs there, the launcher ends it when it comes back. Then unblock and dispatch again.",
            t.dispatch_attempts
        ),
        now,
    )?;
    let subject = format!("task:{}", t.id);
    let (alert, how) = alerts::raise(
        conn,
        &Raise {
            kind: "dispatch.stale_running",
            subject: &subject,
            task_id: Some(t.id),
            title: &super::watchdog::titles::stale_running(lang, t.id),
            detail: &reason,
        },
        true,
        now,
    )?;
    alert_event(conn, &alert, how, actor, now)?;
    let mut payload = payload;
    payload["worker_id"] = json!(worker);
    payload["alert_id"] = json!(alert.id);
    payload["agent"] = json!(t.agent_slug);
    transition(
        conn,
        &mut t,
        Status::Waiting,
        "dispatch.reconciled_stale_running",
        actor,
        payload,
        now,
    )?;
    tasks::save(conn, &t, now)
}

/// The event of an alert that opened, reopened or counted an occurrence.
pub(crate) fn alert_event(
    conn: &Connection,
    a: &alerts::Alert,
    how: Raised,
    actor: &str,
    now: i64,
) -> Result<()> {
    let kind = match how {
        Raised::Opened => "alert.opened",
        Raised::Reopened => "alert.reopened",
        Raised::Counted => "alert.occurred",
        Raised::StillOpen => return Ok(()),
    };
    event(
        conn,
        now,
        None,
        a.task_id,
        kind,
        actor,
        json!({"alert_id": a.id, "kind": a.kind, "subject": a.subject, "occurrences": a.occurrences}),
    )
}

/// `POST /api/dispatch/reconcile-stale`; `only` limits it to some tasks.
pub fn reconcile_now(
    db: &Db,
    who: &Principal,
    minutes: Option<i64>,
    only: Option<Vec<i64>>,
) -> Result<Reconciled> {
    who.require_operator("manual reconciliation")?;
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        let minutes = match minutes {
            Some(m) => m,
            None => ops_store::settings::load(conn)?.dispatch_stale_minutes,
        };
        let ids = reconcile_stale_among(conn, minutes, only.as_deref(), &actor, now)?;
        Ok(Reconciled {
            stale_minutes: minutes,
            reconciled: ids.len(),
            task_ids: ids,
        })
    })
}

/// `GET /api/dispatch/stale`: tasks in `dispatching` for longer than the
/// setting.
pub fn stale_tasks(db: &Db, who: &Principal) -> Result<StaleTasks> {
    who.require_ops_admin("inspecting stale tasks")?;
    let conn = db.read()?;
    let s = ops_store::settings::load(&conn)?;
    let visible = who.visible_workspaces();
    let cutoff = now_ms() - s.dispatch_stale_minutes * 60_000;
    let list = tasks::dispatching_since_in(&conn, cutoff, visible.as_deref())?;
    Ok(StaleTasks {
        stale_minutes: s.dispatch_stale_minutes,
        total: list.len(),
        tasks: views::tasks(&list),
    })
}

/// A running task whose agent has shown nothing for this long is named in
/// health's warnings, before the launcher's silence timeout ends it.
const SILENT_WARNING_MS: i64 = 10 * 60_000;

/// `GET /api/dispatch/health`: queue counts, stale tasks and open alerts
/// of the caller's workspaces; the workers themselves (ids, hosts) only
/// for operators, and only when `list_workers` (the summary counts them
/// either way).
/// Every known worker, most recently seen first, as the heartbeat cache
/// (`Db::workers`) holds it — parsed once per heartbeat, each with its entry
/// as health lists it — and which of them are fresh: what health and the
/// metrics count.
pub struct Workers {
    pub all: Arc<Vec<Arc<Cached<health::WorkerListing>>>>,
    now: i64,
    stale_seconds: i64,
}

impl Workers {
    pub fn read(db: &Db, conn: &Connection, s: &Settings, now: i64) -> Result<Workers> {
        Ok(Workers {
            all: db.workers.list(conn, |hb| {
                health::WorkerListing::of(views::worker(hb, true))
            })?,
            now,
            stale_seconds: s.dispatch_worker_stale_seconds,
        })
    }

    pub fn is_fresh(&self, hb: &Heartbeat) -> bool {
        hb.is_fresh(self.now, self.stale_seconds)
    }

    pub fn fresh(&self) -> impl Iterator<Item = &Heartbeat> {
        self.all
            .iter()
            .map(|c| &c.hb)
            .filter(|hb| self.is_fresh(hb))
    }
}

/// The replica's lag when it is past `max_seconds` (health not ok, the
/// watchdog's alert open).
pub(crate) fn replication_lagging(
    r: &ops_protocol::health::Replication,
    max_seconds: i64,
) -> Option<f64> {
    r.lag_seconds
        .filter(|lag| r.configured && *lag > max_seconds as f64)
}

/// Health's warning while the replica lags.
pub(crate) fn replication_warning(lag: f64, max_seconds: i64, error: Option<&str>) -> String {
    format!(
        "the replica is {lag:.0} s behind (replication_max_lag_seconds is {max_seconds}): writes \
         of the last {lag:.0} s would be lost with this host. {}. Check ops-center-litestream.service \
         (journalctl -u ops-center-litestream) and the space on the database's and the replica's disks",
        error
            .unwrap_or("Litestream has not confirmed a sync")
            .trim_end_matches('.')
    )
}

pub fn health(db: &Db, who: &Principal, list_workers: bool) -> Result<Health> {
    let storage = db.storage();
    let conn = db.read()?;
    let visible = who.visible_workspaces();
    let visible = visible.as_deref();
    let now = now_ms();
    let s: Settings = ops_store::settings::load(&conn)?;
    let workers = Workers::read(db, &conn, &s, now)?;
    let fresh: Vec<&Heartbeat> = workers.fresh().collect();
    let (counts, blocked) = tasks::count_by_status(&conn, visible)?;
    let count = |st: Status| counts.iter().find(|(s, _)| *s == st).map_or(0, |(_, n)| *n);
    let stale_dispatching =
        tasks::dispatching_since_in(&conn, now - s.dispatch_stale_minutes * 60_000, visible)?.len();
    let stale_running = stale_running_in(&conn, &s, now, visible)?.len();
    let queued_cutoff = now - s.dispatch_stale_minutes * 60_000;
    let stale_queued = tasks::count_queued_since_in(&conn, queued_cutoff, visible)?;

    // Borrowed and deduplicated as they come: with a thousand workers,
    // copying each one's slugs was half of health's time.
    let runnable: BTreeSet<&str> = fresh
        .iter()
        .filter(|w| !w.draining)
        .flat_map(|w| w.usable())
        .collect();

    let mut warnings = Vec::new();
    if let Some(fault) = storage.fault {
        warnings.push(format!(
            "the database cannot be written: {}. Changes are refused (503) until it is fixed: free \
             space on its disk or fix its permissions; writes resume by themselves",
            fault.describe()
        ));
    }
    if db.space.gated() {
        let (reserve, _) = db.space.reserve();
        let mib = |b: u64| b / (1024 * 1024);
        warnings.push(format!(
            "the disk holding the database filled: its {} MiB reserve was released so that \
             checkpoints and Litestream can catch up, and writes are refused until {} MiB are \
             free on that disk (now {} MiB): free space there",
            mib(reserve),
            mib(db.space.resume_at()),
            mib(db.space.free())
        ));
    }
    if s.dispatch_enabled && fresh.is_empty() {
        warnings.push(format!(
            "dispatch is enabled but no worker has sent a heartbeat in the last {} s: start the launcher \
             (systemctl start ops-dispatch-launcher.service) or disable dispatch",
            s.dispatch_worker_stale_seconds
        ));
    }
    if stale_dispatching > 0 {
        warnings.push(format!(
            "{stale_dispatching} task(s) stuck in dispatching for more than {} min: reconcile them \
             (POST /api/dispatch/reconcile-stale) and check the launcher",
            s.dispatch_stale_minutes
        ));
    }
    if stale_queued > 0 && s.dispatch_enabled {
        let named = tasks::queued_since_in(&conn, queued_cutoff, visible, 5)?;
        warnings.push(format!(
            "{stale_queued} queued task(s) no worker has taken for more than {} min: {}{}; the fleet is busy, \
             or no fresh worker serves their agent, model or workspace",
            s.dispatch_stale_minutes,
            named
                .iter()
                .map(|t| queued_label(t, now))
                .collect::<Vec<_>>()
                .join(", "),
            if stale_queued > named.len() { ", …" } else { "" }
        ));
    }
    if stale_running > 0 {
        warnings.push(format!(
            "{stale_running} running task(s) whose worker no longer runs them (no heartbeat for more than {} s, or left out of its heartbeats for {} s): the watchdog takes them back (waiting, blocked); check the launcher on that worker",
            s.dispatch_worker_stale_seconds, s.dispatch_claim_grace_seconds
        ));
    }
    if s.dispatch_enabled || !fresh.is_empty() {
        let unrunnable: Vec<String> = agents::list(&conn)?
            .into_iter()
            .filter(|a| a.active && !runnable.contains(a.slug.as_str()))
            .map(|a| a.slug)
            .collect();
        if !unrunnable.is_empty() {
            // What the workers say about each: not installed, not logged
            // in (and how to log in), held back after repeated failures.
            let why = |slug: &str| {
                fresh
                    .iter()
                    .flat_map(|w| &w.agents)
                    .find(|a| a.slug == slug)
                    .and_then(|a| a.reason.clone())
                    .filter(|r| !r.is_empty())
                    .map_or(slug.to_string(), |r| format!("{slug} ({r})"))
            };
            warnings.push(format!(
                "active agent(s) {} cannot run on any fresh worker: install and log in their CLI on a \
                 launcher host (ops-center doctor), or deactivate them",
                unrunnable.iter().map(|s| why(s)).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    // The tasks the fresh workers say they run: a handful, whatever the
    // size of the board.
    let mut running: Vec<i64> = fresh
        .iter()
        .flat_map(|w| w.running_task_ids.clone())
        .collect();
    running.sort_unstable();
    running.dedup();
    let silent = tasks::silent_among(&conn, &running, now - SILENT_WARNING_MS, visible)?;
    if !silent.is_empty() {
        warnings.push(format!(
            "running task(s) whose agent has shown no output for {} min or more: {}; the launcher ends \
             an agent after AGENT_SILENCE_MINUTES (15) without output, check its log meanwhile",
            SILENT_WARNING_MS / 60_000,
            silent
                .iter()
                .map(|(id, slug, seen)| format!(
                    "#{id} ({}, {} min)",
                    slug.as_deref().unwrap_or("no agent"),
                    (now - seen) / 60_000
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if s.service_api_token.is_empty() || validate_token(&s.service_api_token).is_err() {
        warnings.push("the service token is weak: rotate it (deploy-auth-hardening.sh or ops-center admin set-service-token)".into());
    } else if s.token_generated {
        warnings.push(
            "the service token is the one generated at first start and was never rotated: set your own \
             (OPS_SERVICE_TOKEN, then restart) before enabling dispatch"
                .into(),
        );
    }
    let open_alerts = alerts::open_count(&conn, visible)?;
    if open_alerts > 0 {
        warnings.push(format!(
            "{open_alerts} open alert(s): see Operación → Automatizaciones → Watchdog or GET /api/alerts?status=open"
        ));
    }
    let replication = db.replica.status();
    let lagging = replication_lagging(&replication, s.replication_max_lag_seconds);
    if let Some(lag) = lagging {
        warnings.push(replication_warning(
            lag,
            s.replication_max_lag_seconds,
            replication.error.as_deref(),
        ));
    }
    let settings: SettingsView = s.view();
    Ok(Health {
        ok: storage.fault.is_none() && lagging.is_none(),
        storage_ok: storage.fault.is_none(),
        replication,
        storage: StorageSize {
            db_bytes: storage.db_bytes,
            wal_bytes: storage.wal_bytes,
        },
        dispatch_enabled: s.dispatch_enabled,
        worker_summary: WorkerSummary {
            total: workers.all.len(),
            fresh: fresh.len(),
            stale: workers.all.len() - fresh.len(),
            slots_total: fresh.iter().map(|w| w.slots_total).sum(),
            slots_busy: fresh.iter().map(|w| w.slots_busy).sum(),
        },
        queue: Queue {
            next: count(Status::Next),
            queued: count(Status::Queued),
            dispatching: count(Status::Dispatching),
            doing: count(Status::Doing),
            review: count(Status::Review),
            waiting: count(Status::Waiting),
            blocked,
            stale_dispatching,
            stale_running,
            stale_queued,
        },
        agent_slugs: runnable.iter().map(|s| s.to_string()).collect(),
        workers: if who.is_operator() && list_workers {
            workers
                .all
                .iter()
                .map(|c| {
                    if workers.is_fresh(&c.hb) {
                        c.derived.fresh.clone()
                    } else {
                        c.derived.stale.clone()
                    }
                })
                .collect()
        } else {
            Vec::new()
        },
        settings,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_launchers_signature_says_how_the_agent_ended() {
        let cases = [
            (
                "launcher process exited early (code=1, signal=null)",
                (Some(1), None),
            ),
            (
                "launcher process exited early (code=null, signal=SIGKILL)",
                (None, Some("SIGKILL")),
            ),
            (
                "launcher process exited early (code=unknown, signal=unknown)",
                (None, None),
            ),
            (
                "launcher process exited early (code=-3, signal=15)",
                (Some(-3), Some("15")),
            ),
            ("command not found", (None, None)),
            ("agent timed out after 2 h", (None, None)),
        ];
        for (sig, (code, signal)) in cases {
            let (c, s) = exit_in_signature(sig);
            assert_eq!((c, s.as_deref()), (code, signal), "{sig}");
        }
    }

    #[test]
    fn a_change_is_no_change_when_the_branch_stayed_where_the_run_found_it() {
        let change = |start: Option<&str>, head: Option<&str>, patch: &str| RunChange {
            branch: "ops/task-1".into(),
            head: head.map(str::to_string),
            base: Some("aaaa".into()),
            start: start.map(str::to_string),
            patch: patch.into(),
            ..RunChange::default()
        };
        assert!(left_branch_as_it_was(&change(
            Some("bbbb"),
            Some("BBBB"),
            "earlier runs' diff"
        )));
        assert!(!left_branch_as_it_was(&change(
            Some("bbbb"),
            Some("cccc"),
            ""
        )));
        // From a launcher that does not say where the run started.
        assert!(left_branch_as_it_was(&change(None, Some("aaaa"), " \n")));
        assert!(!left_branch_as_it_was(&change(
            None,
            Some("cccc"),
            "diff --git"
        )));
    }
}
