//! Dispatch health: queue counts, the workers, and the warnings an
//! operator must act on.

use std::collections::BTreeSet;
use std::sync::Arc;

use rusqlite::Connection;

use super::reconcile::stale_running_in;
use crate::views;
use ops_base::error::Result;
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_domain::settings::{validate_token, Settings};
use ops_domain::task::Status;
use ops_protocol::admin::SettingsView;
use ops_protocol::health::{self, Health, Queue, StorageSize, WorkerSummary};
use ops_store::db::cache::Cached;
use ops_store::db::Db;
use ops_store::heartbeats::Heartbeat;
use ops_store::tasks::{self, Task};
use ops_store::{agents, alerts};

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

/// A running task whose agent has shown nothing for this long is named in
/// health's warnings, before the launcher's silence timeout ends it.
const SILENT_WARNING_MS: i64 = 10 * 60_000;

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

/// `GET /api/dispatch/health`: queue counts, stale tasks and open alerts
/// of the caller's workspaces; the workers themselves (ids, hosts) only
/// for operators, and only when `list_workers` (the summary counts them
/// either way).
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
