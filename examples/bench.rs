//! The benchmark: starts the real `ops-center` binary on a temporary
//! database and prints one table of figures, every one measured in this run.
//!
//! ```sh
//! cargo run --release --example bench            # full run (a few minutes)
//! cargo run --release --example bench -- --quick # smaller counts, under a minute
//! ```
//!
//! `--churn` runs only the churn campaign (`bench/churn.rs`): real
//! launchers running fake agents, restarted at random, runs cancelled and
//! dispatched again, until every task has ended (`--tasks N`, default
//! 2,000; `--launchers N`, default 4; `--seed N` to replay a run).
//!
//! Options: `--quick`; `--server PATH` to measure another build of the
//! server (by default `ops-center` is built with the same profile as this
//! program and taken from the same target directory); `--compare PATH` to
//! run only the 16- and 64-client claims of that server and of the one at
//! PATH, alternating, and print their ratio. `OPS_DB_SYNC` and
//! `OPS_HTTP_THREADS` are passed to the server and `OPS_DB_SYNC` also sets the
//! reference's `synchronous`.
//!
//! It measures, in order:
//! 1. the reference: in-process rusqlite, the server's pragmas and schema, one
//!    `BEGIN IMMEDIATE … COMMIT` per claim (pick the best queued task, stamp
//!    the claim, append the event);
//! 2. HTTP claims per second on `POST /api/dispatch/next` with 1, 4, 16 and
//!    64 keep-alive clients, interleaved with the reference in three rounds
//!    (median and spread of the rounds), then empty claims (nothing queued);
//! 3. full cycles per second (create → dispatch → next → started → finished);
//! 4. p50/p99 latency of `GET /api/dispatch/health` and of the first page of
//!    `GET /api/tasks` with the database filled to two sizes;
//! 5. the server's resident memory (VmRSS) idle and at the end of the load
//!    (after one more claim burst on the big database and 16 clients paging
//!    through the whole task list, which fills every reader's page cache);
//! 6. the fleet (`bench/fleet.rs`): 1,000 simulated launchers, each parked
//!    on a long-poll claim and heartbeating every 30 s, while tasks are
//!    dispatched at 5/s: dispatch → claim latency, the server's CPU (idle
//!    fleet, then dispatching), RSS, threads, sockets and health p99.
//!
//! Fixtures are written straight into the file with rusqlite while the
//! server is stopped (one transaction, the server's own schema), then the
//! server is started again. The exit status is non-zero only when the
//! benchmark itself fails (a request answered wrongly, a task handed out
//! twice, the server not starting); a missed target is reported in the table.

#[path = "bench/churn.rs"]
mod churn;
#[path = "bench/fleet.rs"]
mod fleet;

/// Turns dispatch on. The benchmark's workers keep their claims without
/// listing them in their heartbeats; past the grace the server would take
/// them back (a lost claim answer) and hand them out again, so the grace is
/// an hour.
fn enable_dispatch(c: &mut Client) -> Res<()> {
    c.expect(
        "PUT",
        "/api/settings/dispatch_enabled",
        r#"{"value":"true"}"#,
        200,
    )?;
    c.expect(
        "PUT",
        "/api/settings/dispatch_claim_grace_seconds",
        r#"{"value":"3600"}"#,
        200,
    )?;
    Ok(())
}

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[path = "../tests/support/harness.rs"]
mod harness;

use ops_center::protocol::dispatch::{
    AgentCapability, ClaimAnswer, ClaimProof, ClaimRequest, Finished, HeartbeatReport, ReportBody,
    Started,
};
use ops_center::protocol::tasks::{NewTask, TaskView};
use rusqlite::{params, Connection};
use serde_json::{json, Value};

const TOKEN: &str = "bench-service-token-0123456789abcdef-0123";
const ADMIN_PW: &str = "bench-admin-password-123";
/// The agent every benchmark task runs on.
const AGENT: &str = "opencode";

type Res<T> = std::result::Result<T, String>;

/// How much work each part does.
struct Sizes {
    name: &'static str,
    reference_claims: usize,
    claims_per_level: usize,
    cycles: usize,
    cycle_clients: usize,
    latency_samples: usize,
    fills: [usize; 2],
    /// List pages each of 16 clients reads across the whole table before
    /// the last RSS reading.
    deep_pages: usize,
    fleet: fleet::Fleet,
}

const FULL: Sizes = Sizes {
    name: "full",
    reference_claims: 20_000,
    claims_per_level: 20_000,
    cycles: 4_000,
    cycle_clients: 16,
    latency_samples: 1_000,
    fills: [100_000, 1_000_000],
    deep_pages: 20,
    fleet: fleet::Fleet {
        launchers: 1_000,
        idle_secs: 30,
        dispatch_secs: 60,
        rate: 5.0,
    },
};

const QUICK: Sizes = Sizes {
    name: "quick",
    reference_claims: 2_000,
    claims_per_level: 2_000,
    cycles: 300,
    cycle_clients: 16,
    latency_samples: 200,
    fills: [10_000, 100_000],
    deep_pages: 10,
    fleet: fleet::Fleet {
        launchers: 1_000,
        idle_secs: 5,
        dispatch_secs: 6,
        rate: 5.0,
    },
};

/// Client counts of the claim levels, each with its share of
/// `claims_per_level` per round (more clients get more claims, so that each
/// level runs long enough to be measured).
const LEVELS: [(usize, usize); 4] = [(1, 1), (4, 1), (16, 1), (64, 2)];
/// Connections that send a request head with the token and part of its
/// body, then nothing.
const SLOW_CLIENTS: usize = 500;
/// Rounds of the interleaved reference and claim levels.
const ROUNDS: usize = 3;

/// The claims target of a level: the server must beat the in-process
/// reference with enough clients for its group commit to pay.
fn claim_target(clients: usize) -> Option<f64> {
    match clients {
        16 => Some(1.0),
        64 => Some(1.5),
        _ => None,
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// "min–max" of rates.
fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.0}–{max:.0}")
}

/// "min–max" of ratios.
fn spread_ratio(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.2}–{max:.2}")
}

fn main() -> ExitCode {
    let mut quick = false;
    let mut fleet_only = false;
    let mut server = None;
    let mut compare = None;
    let mut churn = None;
    let mut args = std::env::args().skip(1);
    let number = |flag: &str, v: Option<String>| -> Result<u64, ExitCode> {
        v.and_then(|v| v.parse().ok()).ok_or_else(|| {
            eprintln!("bench: {flag} takes a number");
            ExitCode::from(2)
        })
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--fleet-only" => fleet_only = true,
            "--churn" => churn = Some(churn.unwrap_or(churn::DEFAULT)),
            "--tasks" | "--launchers" | "--seed" => {
                let n = match number(&a, args.next()) {
                    Ok(n) => n,
                    Err(code) => return code,
                };
                let c = churn.get_or_insert(churn::DEFAULT);
                match a.as_str() {
                    "--tasks" => c.tasks = n.max(1) as usize,
                    "--launchers" => c.launchers = n.max(1) as usize,
                    _ => c.seed = n,
                }
            }
            "--server" => server = args.next().map(PathBuf::from),
            "--compare" => compare = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: bench [--quick] [--fleet-only] [--server PATH] [--compare PATH]");
                println!(
                    "       bench --churn [--tasks N] [--launchers N] [--seed N] [--server PATH]"
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("bench: unknown option {other:?} (accepted: --quick, --fleet-only, --churn, --tasks N, --launchers N, --seed N, --server PATH, --compare PATH)");
                return ExitCode::from(2);
            }
        }
    }
    let sizes = if quick { &QUICK } else { &FULL };
    let result = if let Some(c) = churn {
        run_churn(&c, server)
    } else if let Some(other) = compare {
        run_compare(sizes, server, other)
    } else if fleet_only {
        run_fleet(sizes, server)
    } else {
        run(sizes, server)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One row of the printed table.
struct Row {
    what: String,
    value: String,
    target: String,
    met: Option<bool>,
}

fn row(what: impl Into<String>, value: impl Into<String>) -> Row {
    Row {
        what: what.into(),
        value: value.into(),
        target: String::new(),
        met: None,
    }
}

fn run(sizes: &Sizes, server: Option<PathBuf>) -> Res<()> {
    let bin = match server {
        Some(p) => p,
        None => build_server()?,
    };
    let sync = std::env::var("OPS_DB_SYNC").unwrap_or_else(|_| "normal".into());
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let started = Instant::now();
    let load_before = loadavg();
    eprintln!(
        "bench ({}): server {}, temp dir {}, load average {load_before}",
        sizes.name,
        bin.display(),
        dir.path().display()
    );
    let mut rows = Vec::new();

    // 1 and 2. The reference and the HTTP claim levels, interleaved: each
    // round runs the reference and then every level, so that other load on
    // a shared machine falls on all of them alike; the table gives the
    // median of the rounds and their spread.
    let db = dir.path().join("ops.db");
    let mut srv = Server::start(&bin, &db, dir.path())?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = srv.rss_kb()?;
    {
        let mut c = Client::connect(&srv.addr)?;
        enable_dispatch(&mut c)?;
    }
    let per_round: usize = LEVELS
        .iter()
        .map(|&(_, n)| sizes.claims_per_level * n)
        .sum();
    srv.stop()?;
    // One more level's worth for the run with slow clients.
    fill(
        &db,
        per_round * ROUNDS + sizes.claims_per_level,
        Fill::Queued,
    )?;
    let reference_db = prepare_reference(dir.path(), &sync, sizes.reference_claims * ROUNDS)?;
    srv = Server::start(&bin, &db, dir.path())?;
    heartbeat_all(&srv.addr, LEVELS.iter().map(|&(c, _)| c).max().unwrap_or(1))?;
    let mut reference_rates = Vec::new();
    let mut level_rates = vec![Vec::new(); LEVELS.len()];
    let mut handed_out = HashSet::new();
    for round in 1..=ROUNDS {
        eprintln!(
            "[1-2/5] round {round}/{ROUNDS}: {} in-process claims, then HTTP claims with {:?} clients",
            sizes.reference_claims,
            LEVELS.iter().map(|&(c, _)| c).collect::<Vec<_>>()
        );
        reference_rates.push(reference(&reference_db, &sync, sizes.reference_claims)?);
        for (i, &(clients, share)) in LEVELS.iter().enumerate() {
            // Heartbeats expire after 90 s; a full round can take longer.
            heartbeat_all(&srv.addr, clients)?;
            let (rate, ids) = claims(&srv.addr, clients, sizes.claims_per_level * share)?;
            for id in ids {
                if !handed_out.insert(id) {
                    return Err(format!("task {id} was handed out twice"));
                }
            }
            level_rates[i].push(rate);
        }
    }
    let reference = median(&reference_rates);
    rows.push(row(
        "reference: in-process claims/s (rusqlite, one BEGIN IMMEDIATE per claim)",
        format!("{reference:.0} ({})", spread(&reference_rates)),
    ));
    for (i, &(clients, _)) in LEVELS.iter().enumerate() {
        // The ratio of each round to that round's reference.
        let ratios: Vec<f64> = level_rates[i]
            .iter()
            .zip(&reference_rates)
            .map(|(r, base)| r / base)
            .collect();
        let ratio = median(&ratios);
        let mut r = row(
            format!("HTTP claims/s, {clients} keep-alive client(s)"),
            format!(
                "{:.0} ({}); {ratio:.2}× reference ({})",
                median(&level_rates[i]),
                spread(&level_rates[i]),
                spread_ratio(&ratios)
            ),
        );
        if let Some(target) = claim_target(clients) {
            r.target = format!("≥ {target:.1}× reference");
            r.met = Some(ratio >= target);
        }
        rows.push(r);
    }

    // 16 clients again while slow clients hold connections (head and
    // token sent, body stalled): they must cost the others nothing. A
    // server that gives each a thread, or waits for their bodies in its
    // handlers, stops answering here.
    eprintln!(
        "[2/5] HTTP claims: {} with 16 clients while {SLOW_CLIENTS} slow clients stall",
        sizes.claims_per_level
    );
    heartbeat_all(&srv.addr, 16)?;
    let slow = stalled_clients(&srv.addr, SLOW_CLIENTS)?;
    let mut stalled = false;
    let value = match claims(&srv.addr, 16, sizes.claims_per_level) {
        Ok((rate, ids)) => {
            if let Some(id) = ids.iter().find(|id| !handed_out.insert(**id)) {
                return Err(format!("task {id} was handed out twice"));
            }
            format!("{rate:.0} ({:.2}× reference)", rate / reference)
        }
        Err(e) => {
            stalled = true;
            format!("no answer ({e})")
        }
    };
    rows.push(row(
        format!("HTTP claims/s, 16 clients, {SLOW_CLIENTS} slow clients stalled mid-body"),
        value,
    ));
    let value = match Client::connect(&srv.addr)
        .and_then(|mut c| latency(&mut c, "/api/dispatch/health", sizes.latency_samples))
    {
        Ok((p50, p99)) => format!("{p50:.2} / {p99:.2} ms"),
        Err(e) => format!("no answer ({e})"),
    };
    rows.push(row(
        format!("GET /api/dispatch/health p50 / p99, {SLOW_CLIENTS} slow clients stalled mid-body"),
        value,
    ));
    drop(slow);
    if stalled {
        // The claims it did not answer are still queued: take them, so
        // that the rest of the run starts from the same empty queue (after
        // a fresh heartbeat: the wait outlasted the last one).
        heartbeat_all(&srv.addr, 1)?;
        let mut c = Client::connect(&srv.addr)?;
        let body = claim_body(0);
        while answer::<ClaimAnswer>(c.expect("POST", "/api/dispatch/next", &body, 200)?)?
            .task
            .is_some()
        {}
    }

    // An empty claim: the queue is drained, so every claim answers
    // `{"task":null,"reason":"no_task"}`.
    eprintln!("[2/5] empty claims with 16 clients");
    heartbeat_all(&srv.addr, 16)?;
    let empty = empty_claims(&srv.addr, 16, sizes.claims_per_level)?;
    rows.push(row(
        "HTTP empty claims/s (nothing queued), 16 keep-alive clients",
        format!("{empty:.0} ({:.2}× reference)", empty / reference),
    ));

    // 3. Full cycles.
    eprintln!(
        "[3/5] full cycles: {} with {} clients",
        sizes.cycles, sizes.cycle_clients
    );
    heartbeat_all(&srv.addr, sizes.cycle_clients)?;
    let rate = cycles(&srv.addr, sizes.cycle_clients, sizes.cycles)?;
    rows.push(row(
        format!(
            "full cycles/s, {} clients (create → dispatch → next → started → finished)",
            sizes.cycle_clients
        ),
        format!("{rate:.0} ({:.0} requests/s)", rate * 5.0),
    ));

    // 4. Latency with the database filled to each size.
    for &size in &sizes.fills {
        let have = srv.count_tasks()?;
        srv.stop()?;
        eprintln!("[4/5] filling the database to {size} tasks (has {have})");
        let t = Instant::now();
        fill(&db, size.saturating_sub(have), Fill::Mixed)?;
        eprintln!("      filled in {:.1} s", t.elapsed().as_secs_f64());
        srv = Server::start(&bin, &db, dir.path())?;
        let mut c = Client::connect(&srv.addr)?;
        for (label, path) in [
            ("GET /api/dispatch/health", "/api/dispatch/health"),
            ("GET /api/tasks (first page)", "/api/tasks"),
            (
                "GET /api/tasks?status=next (first page)",
                "/api/tasks?status=next",
            ),
        ] {
            let (p50, p99) = latency(&mut c, path, sizes.latency_samples)?;
            let mut r = row(
                format!("{label} p50 / p99, {} tasks", thousands(size)),
                format!("{p50:.2} / {p99:.2} ms"),
            );
            if size == sizes.fills[1] && !path.contains('?') {
                r.target = "p99 < 5 ms".into();
                r.met = Some(p99 < 5.0);
            }
            rows.push(r);
        }
        // The searches count every row they match (a text search through
        // the title trigram index), so a common word is slow: fewer samples.
        for (label, path) in [
            (
                "GET /api/tasks?priority=3 (first page)",
                "/api/tasks?priority=3",
            ),
            (
                "GET /api/tasks?q=%23N (one task by number)",
                "/api/tasks?q=%23500",
            ),
            (
                "GET /api/tasks?q= (text matching no title)",
                "/api/tasks?q=zzz",
            ),
            (
                "GET /api/tasks?q= (text matching every title)",
                "/api/tasks?q=bench",
            ),
        ] {
            let (p50, p99) = latency(&mut c, path, (sizes.latency_samples / 50).max(5))?;
            rows.push(row(
                format!("{label} p50 / p99, {} tasks", thousands(size)),
                format!("{p50:.2} / {p99:.2} ms"),
            ));
        }
    }

    // 5. Memory at the end of the load: one more claim burst on the big
    // database, pages read across the whole table, then the reading.
    eprintln!("[5/5] claims on the filled database, then RSS");
    srv.stop()?;
    fill(&db, sizes.claims_per_level, Fill::Queued)?;
    srv = Server::start(&bin, &db, dir.path())?;
    heartbeat_all(&srv.addr, 16)?;
    let (rate, _) = claims(&srv.addr, 16, sizes.claims_per_level)?;
    let big = thousands(sizes.fills[1]);
    rows.push(row(
        format!("HTTP claims/s, 16 clients, {big} tasks in the database"),
        format!("{rate:.0} ({:.2}× reference)", rate / reference),
    ));
    // Every reader connection pages through the whole table, so that each
    // one's page cache is as full as it gets.
    let size = sizes.fills[1];
    let pages = sizes.deep_pages;
    parallel(&srv.addr, 16, move |c, i| {
        for k in 0..pages {
            let offset = (i * pages + k) * size / (16 * pages);
            c.expect(
                "GET",
                &format!("/api/tasks?limit=200&offset={offset}"),
                "",
                200,
            )?;
            c.expect("GET", "/api/dispatch/health", "", 200)?;
        }
        Ok(())
    })?;
    let rss_end = srv.rss_kb()?;
    let mb = |[total, anon, file, shmem]: [u64; 4]| {
        let m = |kb: u64| kb as f64 / 1024.0;
        format!(
            "{:.1} MB (anon {:.1}, file {:.1}, shmem {:.1})",
            m(total),
            m(anon),
            m(file),
            m(shmem)
        )
    };
    rows.push(Row {
        what: "server RSS idle (fresh start)".into(),
        value: mb(rss_idle),
        target: "< 30 MB".into(),
        met: Some(rss_idle[0] < 30 * 1024),
    });
    rows.push(Row {
        what: format!("server RSS at the end of the load ({big} tasks)"),
        value: mb(rss_end),
        target: "< 64 MB".into(),
        met: Some(rss_end[0] < 64 * 1024),
    });
    srv.stop()?;

    // 6. The fleet, on a database of its own.
    rows.extend(fleet_rows(sizes, &bin, dir.path())?);
    print_table(sizes, started, &sync, &load_before, &rows);
    Ok(())
}

fn fleet_rows(sizes: &Sizes, bin: &Path, dir: &Path) -> Res<Vec<Row>> {
    let f = &sizes.fleet;
    let load = loadavg();
    eprintln!(
        "[6/6] fleet: {} launchers parked on long-poll claims, {} s idle, then {} s of dispatching \
         at {}/s (load average {load})",
        f.launchers, f.idle_secs, f.dispatch_secs, f.rate
    );
    let mut rows = vec![row("fleet: load average before it", load)];
    rows.extend(fleet::run(bin, &dir.join("fleet.db"), dir, f)?);
    Ok(rows)
}

/// Only the fleet simulation (`--fleet-only`).
fn run_fleet(sizes: &Sizes, server: Option<PathBuf>) -> Res<()> {
    let bin = match server {
        Some(p) => p,
        None => build_server()?,
    };
    let sync = std::env::var("OPS_DB_SYNC").unwrap_or_else(|_| "normal".into());
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let (started, load_before) = (Instant::now(), loadavg());
    let rows = fleet_rows(sizes, &bin, dir.path())?;
    print_table(sizes, started, &sync, &load_before, &rows);
    Ok(())
}

/// Only the churn campaign (`--churn`).
fn run_churn(c: &churn::Churn, server: Option<PathBuf>) -> Res<()> {
    let bin = match server {
        Some(p) => p,
        None => build_server()?,
    };
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let started = Instant::now();
    let rows = churn::run(&bin, dir.path(), c)?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "ops-center churn campaign ({:.0} s): {cores} cores",
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("| measure | value |");
    println!("|---|---:|");
    for r in &rows {
        println!("| {} | {} |", r.what, r.value);
    }
    Ok(())
}

/// Rounds of `--compare`: each runs both builds at each level, their order
/// alternating from one round to the next.
const COMPARE_ROUNDS: usize = 7;

/// `--compare PATH`: HTTP claims/s of this build (`--server`, else the one
/// built with this program) and of the build at PATH, at 16 and 64
/// clients, in alternating rounds on a database of each one's own; the
/// median of the rounds' ratios shows what a change costs apart from the
/// machine's drift, which falls on both alike.
fn run_compare(sizes: &Sizes, server: Option<PathBuf>, other: PathBuf) -> Res<()> {
    let bin = match server {
        Some(p) => p,
        None => build_server()?,
    };
    let sync = std::env::var("OPS_DB_SYNC").unwrap_or_else(|_| "normal".into());
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let (started, load_before) = (Instant::now(), loadavg());
    let levels: Vec<(usize, usize)> = LEVELS.iter().copied().filter(|&(c, _)| c >= 16).collect();
    let per_round: usize = levels
        .iter()
        .map(|&(_, n)| sizes.claims_per_level * n)
        .sum();
    let mut servers = Vec::new();
    for (name, path) in [("a", &bin), ("b", &other)] {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).map_err(|e| format!("{}: {e}", sub.display()))?;
        let db = sub.join("ops.db");
        let mut srv = Server::start(path, &db, &sub)?;
        enable_dispatch(&mut Client::connect(&srv.addr)?)?;
        srv.stop()?;
        fill(&db, per_round * COMPARE_ROUNDS, Fill::Queued)?;
        servers.push(Server::start(path, &db, &sub)?);
    }
    eprintln!(
        "compare ({}): A {}, B {}, load average {load_before}",
        sizes.name,
        bin.display(),
        other.display()
    );
    // rates[level][server]
    let mut rates = vec![[Vec::new(), Vec::new()]; levels.len()];
    // Health's p50 and p99 per round: health[server]
    let mut health = [Vec::new(), Vec::new()];
    let mut handed_out = [HashSet::new(), HashSet::new()];
    for round in 0..COMPARE_ROUNDS {
        eprintln!("round {}/{COMPARE_ROUNDS}", round + 1);
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for k in order {
            let mut c = Client::connect(&servers[k].addr)?;
            health[k].push(latency(
                &mut c,
                "/api/dispatch/health",
                COMPARE_HEALTH_CALLS,
            )?);
        }
        for (i, &(clients, share)) in levels.iter().enumerate() {
            for k in order {
                let addr = &servers[k].addr;
                heartbeat_all(addr, clients)?;
                let (rate, ids) = claims(addr, clients, sizes.claims_per_level * share)?;
                for id in ids {
                    if !handed_out[k].insert(id) {
                        return Err(format!("task {id} was handed out twice"));
                    }
                }
                rates[i][k].push(rate);
            }
        }
    }
    for srv in &mut servers {
        srv.stop()?;
    }
    let mut rows = Vec::new();
    for (i, &(clients, _)) in levels.iter().enumerate() {
        let [a, b] = &rates[i];
        let ratios: Vec<f64> = b.iter().zip(a).map(|(b, a)| b / a).collect();
        // Each round's, for pooling several runs.
        eprintln!(
            "{clients} clients, B ÷ A by round: {}",
            ratios
                .iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        rows.push(row(
            format!("HTTP claims/s, {clients} clients: A / B, B ÷ A ({COMPARE_ROUNDS} rounds)"),
            format!(
                "{:.0} ({}) / {:.0} ({}); {:.3} ({})",
                median(a),
                spread(a),
                median(b),
                spread(b),
                median(&ratios),
                spread_ratio3(&ratios)
            ),
        ));
    }
    let [ha, hb] = &health;
    let pick = |v: &[(f64, f64)], p99: bool| -> Vec<f64> {
        v.iter()
            .map(|&(p50, p99v)| if p99 { p99v } else { p50 })
            .collect()
    };
    for (what, p99) in [("p50", false), ("p99", true)] {
        let (a, b) = (pick(ha, p99), pick(hb, p99));
        let ratios: Vec<f64> = b.iter().zip(&a).map(|(b, a)| b / a).collect();
        rows.push(row(
            format!(
                "health {what}, ms ({COMPARE_HEALTH_CALLS} calls a round): A / B, B ÷ A ({COMPARE_ROUNDS} rounds)"
            ),
            format!(
                "{:.3} ({}) / {:.3} ({}); {:.3} ({})",
                median(&a),
                spread_ms(&a),
                median(&b),
                spread_ms(&b),
                median(&ratios),
                spread_ratio3(&ratios)
            ),
        ));
    }
    print_table(sizes, started, &sync, &load_before, &rows);
    Ok(())
}

/// Health calls of each build in each round of `--compare`.
const COMPARE_HEALTH_CALLS: usize = 500;

fn spread_ms(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.3}–{max:.3}")
}

fn spread_ratio3(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.3}–{max:.3}")
}

fn print_table(sizes: &Sizes, started: Instant, sync: &str, load_before: &str, rows: &[Row]) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "ops-center benchmark ({} run, {:.0} s): {cores} cores, OPS_DB_SYNC={sync}, \
         OPS_HTTP_THREADS={}, load average before {load_before}, after {}",
        sizes.name,
        started.elapsed().as_secs_f64(),
        std::env::var("OPS_HTTP_THREADS").unwrap_or_else(|_| "default".into()),
        loadavg()
    );
    println!();
    println!("| measure | value | target | met |");
    println!("|---|---:|---|---|");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        println!("| {} | {} | {} | {met} |", r.what, r.value, r.target);
    }
}

/// Builds `ops-center` with this program's profile and returns its path in
/// the same target directory (`target/<profile>/ops-center`).
fn build_server() -> Res<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // target/<profile>/examples/bench
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the target directory")?;
    let release = !cfg!(debug_assertions);
    if !release {
        eprintln!("bench: this is a debug build; figures are meaningful only with --release");
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--bin", "ops-center"])
        .args(if release { &["--release"][..] } else { &[][..] })
        .env(
            "CARGO_TARGET_DIR",
            profile_dir.parent().unwrap_or(profile_dir),
        )
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err("cargo build --bin ops-center failed".into());
    }
    let bin = profile_dir.join("ops-center");
    if !bin.exists() {
        return Err(format!("{} not found after the build", bin.display()));
    }
    Ok(bin)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ---------------------------------------------------------------- server --

/// A running `ops-center serve`.
struct Server {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Server {
    fn start(bin: &Path, db: &Path, dir: &Path) -> Res<Server> {
        let log = dir.join("server.log");
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--db"])
            .arg(db)
            .env("OPS_SERVICE_TOKEN", TOKEN)
            .env("OPS_ADMIN_USER", "admin")
            .env("OPS_ADMIN_PASSWORD", ADMIN_PW);
        let started = harness::start_serve(cmd, &log, Duration::from_secs(120))?;
        Ok(Server {
            child: started.child,
            addr: started.addr,
            log,
        })
    }

    /// VmRSS and its parts (RssAnon, RssFile, RssShmem) in KiB, from
    /// /proc/<pid>/status.
    fn rss_kb(&self) -> Res<[u64; 4]> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .map_err(|e| format!("reading /proc/<pid>/status: {e}"))?;
        let field = |name: &str| -> Res<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no {name} in /proc/<pid>/status"))
        };
        Ok([
            field("VmRSS:")?,
            field("RssAnon:")?,
            field("RssFile:")?,
            field("RssShmem:")?,
        ])
    }

    /// The number of tasks, archived ones included, from the API.
    fn count_tasks(&self) -> Res<usize> {
        let mut c = Client::connect(&self.addr)?;
        let mut n = 0;
        for q in ["false", "true"] {
            let v = c.expect("GET", &format!("/api/tasks?limit=1&archived={q}"), "", 200)?;
            n += v["total"].as_u64().ok_or("list without total")? as usize;
        }
        Ok(n)
    }

    /// SIGTERM, then waits for the clean exit.
    fn stop(&mut self) -> Res<()> {
        // SAFETY: kill(2) on the pid of our own child process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) if st.success() => return Ok(()),
                Ok(Some(st)) => {
                    return Err(format!(
                        "the server exited with {st}; its log:\n{}",
                        harness::tail(&self.log, 30)
                    ))
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    return Err("the server did not stop within 60 s of SIGTERM".into());
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        harness::end(&mut self.child);
    }
}

// ---------------------------------------------------------------- client --

/// A raw HTTP/1.1 keep-alive connection with the service token.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    addr: String,
    out: Vec<u8>,
}

impl Client {
    fn connect(addr: &str) -> Res<Client> {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        Ok(Client {
            reader: BufReader::with_capacity(64 * 1024, s.try_clone().map_err(|e| e.to_string())?),
            writer: s,
            addr: addr.to_string(),
            out: Vec::with_capacity(1024),
        })
    }

    /// Sends one request and reads the whole response: (status, body).
    fn call(&mut self, method: &str, path: &str, body: &str) -> Res<(u16, Vec<u8>)> {
        self.out.clear();
        write!(
            self.out,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nX-OPS-Service-Token: {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .map_err(|e| e.to_string())?;
        self.writer
            .write_all(&self.out)
            .map_err(|e| format!("{method} {path}: write: {e}"))?;
        self.read_response()
            .map_err(|e| format!("{method} {path}: {e}"))
    }

    fn read_response(&mut self) -> Res<(u16, Vec<u8>)> {
        let mut line = String::new();
        self.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            self.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                self.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| format!("bad chunk size {line:?}"))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        self.read_line(&mut line)?;
                        if line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.reader
                    .read_exact(&mut body[start..])
                    .map_err(|e| format!("read chunk: {e}"))?;
                self.read_line(&mut line)?;
            }
        } else {
            let n = length.ok_or("response without Content-Length")?;
            body.resize(n, 0);
            self.reader
                .read_exact(&mut body)
                .map_err(|e| format!("read body: {e}"))?;
        }
        Ok((status, body))
    }

    fn read_line(&mut self, line: &mut String) -> Res<()> {
        line.clear();
        match self.reader.read_line(line) {
            Ok(0) => Err("connection closed by the server".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// A call whose status must be `status`; returns the JSON body.
    fn expect(&mut self, method: &str, path: &str, body: &str, status: u16) -> Res<Value> {
        let (got, bytes) = self.call(method, path, body)?;
        if got != status {
            return Err(format!(
                "{method} {path}: expected {status}, got {got}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("{method} {path}: bad JSON: {e}"))
    }
}

fn worker(i: usize) -> String {
    format!("bench-worker-{i}")
}

/// The body of a claim by worker `i`, serialized once per client.
fn claim_body(i: usize) -> String {
    let request = ClaimRequest {
        worker_id: worker(i),
        agent_slugs: None,
        workspace_id: None,
    };
    serde_json::to_string(&request).expect("serializes")
}

/// An answer read as its protocol type.
fn answer<A: serde::de::DeserializeOwned>(v: Value) -> Res<A> {
    serde_json::from_value(v.clone()).map_err(|e| format!("unexpected answer ({e}): {v}"))
}

/// A fresh heartbeat for workers 0..n, each able to run the benchmark agent.
fn heartbeat_all(addr: &str, n: usize) -> Res<()> {
    let mut c = Client::connect(addr)?;
    for i in 0..n {
        let body = HeartbeatReport {
            worker_id: worker(i),
            host: "bench".into(),
            pid: Some(1),
            version: "bench".into(),
            agents: vec![AgentCapability {
                slug: AGENT.into(),
                cli: AGENT.into(),
                available: true,
                authenticated: true,
                reason: None,
            }],
            models: Vec::new(),
            slots_total: 4,
            slots_busy: 0,
            running_task_ids: Vec::new(),
            draining: false,
            workspace_id: None,
            starting: false,
        };
        let body = serde_json::to_string(&body).map_err(|e| e.to_string())?;
        c.expect("POST", "/api/dispatch/heartbeat", &body, 200)?;
    }
    Ok(())
}

/// Runs `f(client, worker_index)` on `clients` threads, each with its own
/// connection, started together; returns the wall time and the results.
fn parallel<T: Send + 'static>(
    addr: &str,
    clients: usize,
    f: impl Fn(&mut Client, usize) -> Res<T> + Send + Sync + 'static,
) -> Res<(Duration, Vec<T>)> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut handles = Vec::new();
    for i in 0..clients {
        let mut c = Client::connect(addr)?;
        let (f, barrier) = (f.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || {
            barrier.wait();
            f(&mut c, i)
        }));
    }
    barrier.wait();
    let t = Instant::now();
    let results: Vec<Res<T>> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("client thread panicked".into()))
        })
        .collect();
    let elapsed = t.elapsed();
    Ok((elapsed, results.into_iter().collect::<Res<Vec<T>>>()?))
}

/// `n` connections stalled mid-body, held open until dropped.
fn stalled_clients(addr: &str, n: usize) -> Res<Vec<TcpStream>> {
    let head = format!(
        "POST /api/dispatch/next HTTP/1.1\r\nHost: bench\r\nX-OPS-Service-Token: {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"worker_id\":"
    );
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
            s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
            Ok(s)
        })
        .collect()
}

/// `total` claims shared by `clients` clients: (claims/s, claimed ids).
fn claims(addr: &str, clients: usize, total: usize) -> Res<(f64, Vec<i64>)> {
    let left = Arc::new(AtomicUsize::new(total));
    let (elapsed, ids) = parallel(addr, clients, move |c, i| {
        let body = claim_body(i);
        let mut ids = Vec::new();
        while left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let v: ClaimAnswer = answer(c.expect("POST", "/api/dispatch/next", &body, 200)?)?;
            let task = v
                .task
                .ok_or_else(|| format!("claim returned no task: {:?}", v.reason))?;
            ids.push(task.id);
        }
        Ok(ids)
    })?;
    let ids: Vec<i64> = ids.into_iter().flatten().collect();
    Ok((ids.len() as f64 / elapsed.as_secs_f64(), ids))
}

/// `total` claims with nothing to claim, shared by `clients` clients:
/// claims/s. Each must answer `no_task`.
fn empty_claims(addr: &str, clients: usize, total: usize) -> Res<f64> {
    let left = Arc::new(AtomicUsize::new(total));
    let (elapsed, done) = parallel(addr, clients, move |c, i| {
        let body = claim_body(i);
        let mut done = 0usize;
        while left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let v: ClaimAnswer = answer(c.expect("POST", "/api/dispatch/next", &body, 200)?)?;
            if v.task.is_some() || v.reason.as_deref() != Some("no_task") {
                return Err(format!("an empty claim answered {v:?}"));
            }
            done += 1;
        }
        Ok(done)
    })?;
    Ok(done.into_iter().sum::<usize>() as f64 / elapsed.as_secs_f64())
}

/// `total` full cycles shared by `clients` clients: cycles/s.
fn cycles(addr: &str, clients: usize, total: usize) -> Res<f64> {
    let left = Arc::new(AtomicUsize::new(total));
    let (elapsed, done) = parallel(addr, clients, move |c, i| {
        let w = worker(i);
        let claim = claim_body(i);
        let mut done = 0usize;
        while left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let new = NewTask {
                title: "bench cycle".into(),
                description: Some("print hello".into()),
                execution: Some("interactive".into()),
                agent: Some(AGENT.into()),
                ..NewTask::default()
            };
            let body = serde_json::to_string(&new).map_err(|e| e.to_string())?;
            let t: TaskView = answer(c.expect("POST", "/api/tasks", &body, 201)?)?;
            let id = t.id;
            c.expect("POST", &format!("/api/tasks/{id}/dispatch"), "", 200)?;
            let v: ClaimAnswer = answer(c.expect("POST", "/api/dispatch/next", &claim, 200)?)?;
            let (Some(task), Some(token)) = (v.task, v.claim_token) else {
                return Err(format!("claim returned no task: {:?}", v.reason));
            };
            let tid = task.id;
            let proof = ClaimProof {
                worker_id: w.clone(),
                claim_token: token,
            };
            let started = ReportBody {
                claim: proof.clone(),
                report: Started {
                    pid: Some(4242),
                    log_path: Some(format!("/tmp/task-{tid}.log")),
                    err_log_path: Some(format!("/tmp/task-{tid}.err.log")),
                },
            };
            c.expect(
                "POST",
                &format!("/api/dispatch/tasks/{tid}/started"),
                &serde_json::to_string(&started).map_err(|e| e.to_string())?,
                200,
            )?;
            let finished = ReportBody {
                claim: proof,
                report: Finished {
                    exit_code: Some(0),
                    signal: None,
                    output: "hello\n".into(),
                    change: None,
                },
            };
            let t: TaskView = answer(c.expect(
                "POST",
                &format!("/api/dispatch/tasks/{tid}/finished"),
                &serde_json::to_string(&finished).map_err(|e| e.to_string())?,
                200,
            )?)?;
            if t.status != "review" {
                return Err(format!("task {tid} finished in {}", t.status));
            }
            done += 1;
        }
        Ok(done)
    })?;
    let done: usize = done.into_iter().sum();
    Ok(done as f64 / elapsed.as_secs_f64())
}

/// Sequential GETs of `path`: (p50, p99) in milliseconds.
fn latency(c: &mut Client, path: &str, samples: usize) -> Res<(f64, f64)> {
    for _ in 0..samples.min(20) {
        c.expect("GET", path, "", 200)?;
    }
    let mut ms = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let (status, body) = c.call("GET", path, "")?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            return Err(format!(
                "GET {path}: {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    Ok((pct(0.50), pct(0.99)))
}

// -------------------------------------------------------------- fixtures --

/// The server's pragmas on a direct connection (`OPS_DB_SYNC` decides
/// `synchronous`, as in the server).
fn open_direct(path: &Path, sync: &str) -> Res<Connection> {
    let conn = Connection::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("journal_mode is {mode}, not wal"));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync};
         PRAGMA busy_timeout=5000;
         PRAGMA foreign_keys=ON;
         PRAGMA cache_size=-8000;
         PRAGMA journal_size_limit=67108864;
         PRAGMA wal_autocheckpoint=4000;"
    ))
    .map_err(|e| e.to_string())?;
    Ok(conn)
}

#[derive(Clone, Copy)]
enum Fill {
    /// Interactive tasks of the benchmark agent, queued, ready to claim.
    Queued,
    /// The mix of a long-lived board: mostly done, some archived, the rest
    /// spread over the other statuses (none queued, none dispatching).
    Mixed,
}

/// Inserts `n` tasks in one transaction (the server must be stopped).
fn fill(db: &Path, n: usize, kind: Fill) -> Res<()> {
    let mut conn = open_direct(db, "normal")?;
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    let agent: i64 = tx
        .query_row("SELECT id FROM agents WHERE slug = ?1", [AGENT], |r| {
            r.get(0)
        })
        .map_err(|e| format!("agent {AGENT}: {e}"))?;
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO tasks(workspace_id, title, description, status, execution, agent_id,
                                   priority, blocked, blocked_reason, dispatch_output,
                                   created_at, updated_at, archived_at)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
            )
            .map_err(|e| e.to_string())?;
        let now = now_ms();
        // A small deterministic generator, so runs are comparable.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..n {
            let r = next() % 100;
            let (status, interactive, blocked, output, archived) = match kind {
                Fill::Queued => ("queued", true, false, false, false),
                Fill::Mixed => match r {
                    0..=59 => ("done", r % 2 == 0, false, true, false),
                    60..=74 => ("done", r % 2 == 0, false, true, true),
                    75..=82 => ("next", false, false, false, false),
                    83..=88 => ("review", true, false, true, false),
                    89..=94 => ("waiting", true, true, false, false),
                    _ => ("doing", false, false, false, false),
                },
            };
            let priority = (next() % 5) as i64;
            stmt.execute(params![
                format!("bench task {i}"),
                "Read the repository, fix the failing test, run the suite and report what changed.",
                status,
                if interactive { "interactive" } else { "manual" },
                if interactive || r % 3 == 0 {
                    Some(agent)
                } else {
                    None
                },
                priority,
                blocked,
                blocked.then_some("finished without deliverable evidence"),
                output.then_some("all tests pass\n"),
                now - (n - i) as i64,
                archived.then_some(now),
            ])
            .map_err(|e| format!("insert: {e}"))?;
        }
    }
    tx.commit().map_err(|e| format!("commit: {e}"))?;
    Ok(())
}

/// The reference's database: the server's schema and migrations, with `n`
/// queued tasks.
fn prepare_reference(dir: &Path, sync: &str, n: usize) -> Res<PathBuf> {
    let path = dir.join("reference.db");
    let s = ops_center::db::Sync::parse(sync).ok_or("OPS_DB_SYNC must be normal or full")?;
    ops_center::db::Db::open(&path, s, 1)
        .map_err(|e| e.to_string())?
        .close();
    fill(&path, n, Fill::Queued)?;
    Ok(path)
}

/// The naive limit: `n` claims done in-process, one committed transaction
/// each, on a database with the server's schema and pragmas. Returns
/// claims/s.
fn reference(path: &Path, sync: &str, n: usize) -> Res<f64> {
    let conn = open_direct(path, sync)?;
    let worker = "bench-reference";
    let t = Instant::now();
    for _ in 0..n {
        let now = now_ms();
        let token = ops_center::app::secrets::random_hex(16);
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| e.to_string())?;
        let (id, attempts): (i64, i64) = conn
            .prepare_cached(
                "SELECT t.id, t.dispatch_attempts FROM tasks t JOIN agents a ON a.id = t.agent_id
                 WHERE t.status = 'queued' AND t.archived_at IS NULL AND t.blocked = 0
                   AND (t.sensitive = 0 OR t.gate_approved_at IS NOT NULL)
                   AND a.active = 1 AND a.slug IN (?1)
                 ORDER BY t.priority DESC, t.id LIMIT 1",
            )
            .and_then(|mut s| s.query_row([AGENT], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(|e| format!("reference pick: {e}"))?;
        conn.prepare_cached(
            "UPDATE tasks SET status = 'dispatching', claimed_by = ?2, claim_token = ?3,
                    claimed_at = ?4, dispatch_attempts = ?5, updated_at = ?4
             WHERE id = ?1 AND status = 'queued'",
        )
        .and_then(|mut s| s.execute(params![id, worker, token, now, attempts + 1]))
        .map_err(|e| format!("reference stamp: {e}"))?;
        let payload = json!({"worker_id": worker, "attempt": attempts + 1, "agent": AGENT,
                             "from": "queued", "to": "dispatching"});
        conn.prepare_cached(
            "INSERT INTO events(at, workspace_id, task_id, kind, actor, payload)
             VALUES (?1, 1, ?2, 'dispatch.claimed', ?3, ?4)",
        )
        .and_then(|mut s| {
            s.execute(params![
                now,
                id,
                format!("worker:{worker}"),
                payload.to_string()
            ])
        })
        .map_err(|e| format!("reference event: {e}"))?;
        conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}
