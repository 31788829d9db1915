//! `GET /metrics`: the gauges read from the database, once per scrape, and
//! the process's counters (`ops_base::metrics`), in the Prometheus text format.

use super::dispatch::Workers;
use ops_base::error::Result;
use ops_base::metrics::{Text, METRICS};
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_domain::task::Status;
use ops_store::db::Db;
use ops_store::{alerts, runs, settings, tasks};

/// The whole scrape: service token or global admin.
pub fn scrape(db: &Db, who: &Principal) -> Result<String> {
    who.require_operator("reading the metrics")?;
    let storage = db.storage();
    let conn = db.read()?;
    let now = now_ms();
    let s = settings::load(&conn)?;
    let (counts, blocked) = tasks::count_by_status(&conn, None)?;
    let stale = tasks::dispatching_since(&conn, now - s.dispatch_stale_minutes * 60_000)?.len();
    let stale_running = super::dispatch::stale_running_in(&conn, &s, now, None)?.len();
    let stale_queued =
        tasks::count_queued_since_in(&conn, now - s.dispatch_stale_minutes * 60_000, None)?;
    // The heartbeat cache health reads too: no row parsed again per scrape.
    let workers = Workers::read(db, &conn, &s, now)?;
    let fresh = workers.fresh().count();
    let open_alerts = alerts::open_count(&conn, None)?;
    let by_agent = runs::totals_by_agent(&conn)?;
    drop(conn);

    let mut out = Text::default();
    out.header(
        "ops_tasks",
        "gauge",
        "Tasks by status, archived ones left out.",
    );
    for st in Status::ALL {
        let n = counts.iter().find(|(s, _)| *s == st).map_or(0, |(_, n)| *n);
        out.sample("ops_tasks", &[("status", st.as_str())], n);
    }
    out.gauge(
        "ops_tasks_blocked",
        "Tasks marked blocked, archived ones left out.",
        blocked,
    );
    out.gauge(
        "ops_tasks_stale_dispatching",
        "Tasks in dispatching for longer than dispatch_stale_minutes.",
        stale,
    );
    out.gauge(
        "ops_tasks_stale_running",
        "Tasks in doing whose worker no longer runs them (no heartbeat for dispatch_worker_stale_seconds, \
         or left out of its heartbeats for dispatch_claim_grace_seconds), not yet taken back.",
        stale_running,
    );
    out.gauge(
        "ops_tasks_stale_queued",
        "Queued tasks (not blocked) no worker has taken for more than dispatch_stale_minutes.",
        stale_queued,
    );
    out.gauge(
        "ops_workers_fresh",
        "Workers whose last heartbeat is within dispatch_worker_stale_seconds.",
        fresh,
    );
    out.gauge(
        "ops_workers",
        "Workers known by a heartbeat, fresh or not.",
        workers.all.len(),
    );
    out.gauge(
        "ops_dispatch_enabled",
        "1 when the dispatch_enabled setting is true, else 0.",
        u8::from(s.dispatch_enabled),
    );
    out.gauge("ops_alerts_open", "Alerts not yet resolved.", open_alerts);
    out.header(
        "ops_agent_tokens_total",
        "counter",
        "Tokens the agents' runs spent, by agent and direction (in: prompt, out: completion), over the runs kept.",
    );
    for (agent, spend) in &by_agent {
        out.sample(
            "ops_agent_tokens_total",
            &[("agent", agent), ("direction", "in")],
            spend.tokens_in,
        );
        out.sample(
            "ops_agent_tokens_total",
            &[("agent", agent), ("direction", "out")],
            spend.tokens_out,
        );
    }
    out.header(
        "ops_agent_cost_usd_total",
        "counter",
        "USD the agents' runs cost (the CLI's figure, else model_prices), by agent, over the runs kept.",
    );
    for (agent, spend) in &by_agent {
        out.sample(
            "ops_agent_cost_usd_total",
            &[("agent", agent)],
            spend.cost_usd,
        );
    }
    out.gauge(
        "ops_db_bytes",
        "Size of the database file.",
        storage.db_bytes,
    );
    out.gauge(
        "ops_db_wal_bytes",
        "Size of the database's write-ahead log.",
        storage.wal_bytes,
    );
    out.gauge(
        "ops_db_storage_fault",
        "1 while the database cannot be written (full disk, permissions, I/O error), else 0.",
        u8::from(storage.fault.is_some()),
    );
    let (reserve, held) = db.space.reserve();
    if reserve > 0 {
        out.gauge(
            "ops_db_disk_free_bytes",
            "Bytes left on the disk holding the database.",
            db.space.free(),
        );
        out.gauge(
            "ops_db_reserve_bytes",
            "Bytes held in the reserve beside the database (OPS_DB_RESERVE_MB); 0 once released.",
            if held { reserve } else { 0 },
        );
    }
    out.gauge(
        "ops_db_writes_held",
        "1 while writes are refused until the disk has room again (reserve released), else 0.",
        u8::from(db.space.gated()),
    );
    let replication = db.replica.status();
    out.gauge(
        "ops_replication_configured",
        "1 when a replica is kept (OPS_REPLICA=litestream), else 0.",
        u8::from(replication.configured),
    );
    if replication.configured {
        out.gauge(
            "ops_replication_lag_seconds",
            "Seconds since the replica was last known to hold every committed write.",
            replication.lag_seconds.unwrap_or(0.0),
        );
        out.gauge(
            "ops_replication_error",
            "1 while the last attempt to sync the replica failed, else 0.",
            u8::from(replication.error.is_some()),
        );
        out.gauge(
            "ops_replication_max_lag_seconds",
            "The replication_max_lag_seconds setting: past it health is not ok.",
            s.replication_max_lag_seconds,
        );
        out.gauge(
            "ops_replication_staging_bytes",
            "Bytes in Litestream's staging folder (OPS_LITESTREAM_DIR/meta).",
            db.replica.staging_bytes(),
        );
    }
    METRICS.write(&mut out);
    Ok(out.into_string())
}
