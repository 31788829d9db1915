//! The fleet simulation: many launchers against one server, each parked on
//! a long-poll claim (`?wait=`) and sending a heartbeat every 30 s, while
//! tasks are dispatched at a steady rate. What it costs the server to keep
//! a fleet waiting (CPU, memory, threads, connections), and how fast a
//! dispatched task reaches a launcher.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{enable_dispatch, row, Client, Res, Row, Server, AGENT};

/// How big and how long.
pub struct Fleet {
    pub launchers: usize,
    /// Seconds of the fleet parked with nothing dispatched.
    pub idle_secs: u64,
    /// Seconds of dispatching at `rate` tasks/s.
    pub dispatch_secs: u64,
    pub rate: f64,
}

const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);
/// How long each parked claim waits before it is answered `no_task` and
/// the launcher asks again, as the launcher does by default.
const WAIT_SECS: u64 = 30;

fn launcher_id(i: usize) -> String {
    format!("fleet-{i}")
}

fn heartbeat_body(i: usize) -> String {
    json!({
        "worker_id": launcher_id(i), "host": format!("fleet-host-{i}"), "pid": 1, "version": "bench",
        "agents": [{"slug": AGENT, "cli": AGENT, "available": true, "authenticated": true}],
        "models": [], "slots_total": 1, "slots_busy": 0, "running_task_ids": [], "draining": false
    })
    .to_string()
}

/// CPU seconds (user + system) the process has used.
fn cpu_secs(pid: u32) -> Res<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').ok_or("bad /proc/<pid>/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(11) + ticks(12)) / hz)
}

fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds of each thread of the process, by thread name.
fn thread_cpu(pid: u32) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in dir.filter_map(Result::ok) {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        // Handler threads are summed under one name.
        let name = if name.starts_with("http-") && name != "http-loop" {
            "http handlers".to_string()
        } else {
            name
        };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        *out.entry(name).or_default() += (ticks(11) + ticks(12)) / hz;
    }
    out
}

/// Open sockets of the process (the listener included).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The durations the server logged for the health calls, in the order
/// they came: the probe is the only caller and alternates the full answer
/// (first) with `?workers=false`, which the log line does not show.
fn server_health_times(log: &Path) -> Res<(Vec<f64>, Vec<f64>)> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("reading the server log: {e}"))?;
    let (mut full, mut short) = (Vec::new(), Vec::new());
    for ms in text.lines().filter_map(|l| {
        l.split_once("GET /api/dispatch/health 200 ")
            .and_then(|(_, rest)| rest.trim().strip_suffix("ms"))
            .and_then(|ms| ms.parse::<f64>().ok())
    }) {
        if full.len() == short.len() {
            full.push(ms);
        } else {
            short.push(ms);
        }
    }
    Ok((full, short))
}

/// Runs the fleet against a fresh server on `db`; returns the table rows.
pub fn run(bin: &Path, db: &Path, dir: &Path, f: &Fleet) -> Res<Vec<Row>> {
    // A log of its own: the server side of the health calls is read from
    // it, and the full run's earlier servers log health calls too.
    let dir = &dir.join("fleet");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let srv = Server::start(bin, db, dir)?;
    let pid = srv.child.id();
    let addr = srv.addr.clone();
    {
        let mut c = Client::connect(&addr)?;
        enable_dispatch(&mut c)?;
        for i in 0..f.launchers {
            c.expect("POST", "/api/dispatch/heartbeat", &heartbeat_body(i), 200)?;
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    // When each task was dispatched (its dispatch answered), by id.
    let dispatched: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let claimed = Arc::new(AtomicUsize::new(0));
    let parked = Arc::new(AtomicUsize::new(0));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();

    let mut handles = Vec::new();
    // The launchers' claim loops: one connection and one small thread each.
    for i in 0..f.launchers {
        let (addr, stop, dispatched, latencies, claimed, parked, errors) = (
            addr.clone(),
            stop.clone(),
            dispatched.clone(),
            latencies.clone(),
            claimed.clone(),
            parked.clone(),
            errors.clone(),
        );
        let h = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                let result = (|| -> Res<()> {
                    let mut c = Client::connect(&addr)?;
                    let w = launcher_id(i);
                    let body = json!({"worker_id": w}).to_string();
                    let path = format!("/api/dispatch/next?wait={WAIT_SECS}");
                    parked.fetch_add(1, Ordering::SeqCst);
                    while !stop.load(Ordering::SeqCst) {
                        let v = c.expect("POST", &path, &body, 200)?;
                        let Some(tid) = v["task"]["id"].as_i64() else {
                            continue;
                        };
                        let got = Instant::now();
                        if let Some(at) = dispatched.lock().unwrap().get(&tid) {
                            latencies
                                .lock()
                                .unwrap()
                                .push((got - *at).as_secs_f64() * 1000.0);
                        }
                        claimed.fetch_add(1, Ordering::SeqCst);
                        // The dispatched work: the run's start and end.
                        let token = v["claim_token"].as_str().ok_or("claim without token")?;
                        let proof = json!({"worker_id": w, "claim_token": token});
                        let mut started = proof.clone();
                        started["pid"] = json!(4242);
                        c.expect(
                            "POST",
                            &format!("/api/dispatch/tasks/{tid}/started"),
                            &started.to_string(),
                            200,
                        )?;
                        let mut done = proof;
                        done["exit_code"] = json!(0);
                        done["output"] = json!("hello\n");
                        c.expect(
                            "POST",
                            &format!("/api/dispatch/tasks/{tid}/finished"),
                            &done.to_string(),
                            200,
                        )?;
                    }
                    Ok(())
                })();
                if let Err(e) = result {
                    if !stop.load(Ordering::SeqCst) {
                        errors.lock().unwrap().push(e);
                    }
                }
            })
            .map_err(|e| format!("cannot start launcher thread {i}: {e}"))?;
        handles.push(h);
    }
    // Heartbeats: every launcher once per 30 s, spread evenly, from two
    // connections (a launcher's heartbeat thread has its own).
    for part in 0..2 {
        let (addr, stop, errors, n) = (addr.clone(), stop.clone(), errors.clone(), f.launchers);
        handles.push(std::thread::spawn(move || {
            let Ok(mut c) = Client::connect(&addr) else {
                return;
            };
            let mine: Vec<usize> = (part..n).step_by(2).collect();
            let gap = HEARTBEAT_EVERY / mine.len().max(1) as u32;
            let mut next = Instant::now();
            'outer: loop {
                for &i in &mine {
                    if stop.load(Ordering::SeqCst) {
                        break 'outer;
                    }
                    if let Err(e) =
                        c.expect("POST", "/api/dispatch/heartbeat", &heartbeat_body(i), 200)
                    {
                        errors.lock().unwrap().push(e);
                        break 'outer;
                    }
                    next += gap;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            }
        }));
    }
    // Every launcher parked (its first claim sent), then a moment to settle.
    let t = Instant::now();
    while parked.load(Ordering::SeqCst) < f.launchers && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let conns_parked = sockets(pid);
    let threads_parked = threads(pid);
    // Health, probed 4 times a second once the fleet is parked (the
    // start-up storm of its first heartbeats and claims is not the steady
    // state the targets are about; the probe's own cost is in the CPU
    // figures), in turn with the worker list and without it
    // (`?workers=false`, what a monitoring probe of the fleet asks).
    let health: Arc<Mutex<Vec<f64>>> = Arc::default();
    let health_short: Arc<Mutex<Vec<f64>>> = Arc::default();
    {
        let (addr, stop, probe_errors, n) =
            (addr.clone(), stop.clone(), errors.clone(), f.launchers);
        let (health, health_short) = (health.clone(), health_short.clone());
        handles.push(std::thread::spawn(move || {
            let Ok(mut c) = Client::connect(&addr) else {
                return;
            };
            for k in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (path, into) = if k % 2 == 0 {
                    ("/api/dispatch/health", &health)
                } else {
                    ("/api/dispatch/health?workers=false", &health_short)
                };
                // The time to the answer's last byte; checking that it is
                // health (parsing 0.4 MB of JSON in this busy process)
                // comes after.
                let t = Instant::now();
                let body = match c.call("GET", path, "") {
                    Ok((200, body)) => body,
                    Ok((status, body)) => {
                        let body = String::from_utf8_lossy(&body).into_owned();
                        probe_errors
                            .lock()
                            .unwrap()
                            .push(format!("{path}: {status} {body}"));
                        return;
                    }
                    Err(e) => {
                        if !stop.load(Ordering::SeqCst) {
                            probe_errors.lock().unwrap().push(e);
                        }
                        return;
                    }
                };
                into.lock()
                    .unwrap()
                    .push(t.elapsed().as_secs_f64() * 1000.0);
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let listed = v["workers"].as_array().map_or(0, Vec::len);
                if v["worker_summary"]["total"] != n || listed != if k % 2 == 0 { n } else { 0 } {
                    probe_errors.lock().unwrap().push(format!(
                        "{path}: {listed} workers listed, summary {}",
                        v["worker_summary"]
                    ));
                    return;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }));
    }

    // The idle fleet: parked and heartbeating, nothing dispatched.
    let (cpu0, t0, by_thread0) = (cpu_secs(pid)?, Instant::now(), thread_cpu(pid));
    std::thread::sleep(Duration::from_secs(f.idle_secs));
    let idle_wall = t0.elapsed().as_secs_f64();
    let idle_cpu = (cpu_secs(pid)? - cpu0) / idle_wall * 100.0;
    let mut by_thread: Vec<(String, f64)> = thread_cpu(pid)
        .into_iter()
        .map(|(k, v)| {
            let before = by_thread0.get(&k).copied().unwrap_or(0.0);
            (k, (v - before) / idle_wall * 100.0)
        })
        .filter(|(_, pct)| *pct >= 0.1)
        .collect();
    by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
    let by_thread = by_thread
        .iter()
        .map(|(k, v)| format!("{k} {v:.1}"))
        .collect::<Vec<_>>()
        .join(", ");

    // Dispatching at the rate, from one client as an operator's script would.
    let (cpu1, t1) = (cpu_secs(pid)?, Instant::now());
    let mut c = Client::connect(&addr)?;
    let total = (f.rate * f.dispatch_secs as f64).round() as usize;
    let gap = Duration::from_secs_f64(1.0 / f.rate);
    let mut next = Instant::now();
    for k in 0..total {
        let body =
            json!({"title": format!("fleet {k}"), "execution": "interactive", "agent": AGENT});
        let t = c.expect("POST", "/api/tasks", &body.to_string(), 201)?;
        let id = t["id"].as_i64().ok_or("created task without id")?;
        // The clock starts just before the dispatch is sent, so the
        // latency includes its commit.
        dispatched.lock().unwrap().insert(id, Instant::now());
        c.expect("POST", &format!("/api/tasks/{id}/dispatch"), "", 200)?;
        next += gap;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let t = Instant::now();
    while claimed.load(Ordering::SeqCst) < total && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let busy_cpu = (cpu_secs(pid)? - cpu1) / t1.elapsed().as_secs_f64() * 100.0;
    let rss = srv.rss_kb()?[0];
    let threads_end = threads(pid);
    let got = claimed.load(Ordering::SeqCst);

    stop.store(true, Ordering::SeqCst);
    let errs = errors.lock().unwrap().clone();
    // Stopping the server answers every parked claim at once.
    let mut srv = srv;
    srv.stop()?;
    for h in handles {
        let _ = h.join();
    }
    if let Some(e) = errs.first() {
        return Err(format!(
            "fleet: {} launcher error(s), the first: {e}",
            errs.len()
        ));
    }
    if got != total {
        return Err(format!(
            "fleet: {got} of {total} dispatched tasks were claimed"
        ));
    }
    let mut lat = latencies.lock().unwrap().clone();
    let (p50, p99) = (percentile(&mut lat, 0.50), percentile(&mut lat, 0.99));
    let mut health = health.lock().unwrap().clone();
    let h50 = percentile(&mut health, 0.50);
    let h99 = percentile(&mut health, 0.99);
    let mut short = health_short.lock().unwrap().clone();
    let (s50, s99) = (percentile(&mut short, 0.50), percentile(&mut short, 0.99));
    // The same calls as the server timed them (its request log: from the
    // request's head read to its answer queued for writing), so that the
    // time spent in this process and in the transfer shows apart.
    let (mut server_full, mut server_short) = server_health_times(&srv.log)?;
    let server =
        |v: &mut Vec<f64>| format!("{:.2} / {:.2} ms", percentile(v, 0.50), percentile(v, 0.99));
    let (server_full, server_short) = (server(&mut server_full), server(&mut server_short));
    let n = f.launchers;
    let target = |mut r: Row, t: &str, met: bool| {
        r.target = t.into();
        r.met = Some(met);
        r
    };
    Ok(vec![
        target(
            row(
                format!(
                    "fleet of {n}: dispatch → claim p50 / p99 ({total} tasks at {}/s)",
                    f.rate
                ),
                format!("{p50:.1} / {p99:.1} ms"),
            ),
            "p99 < 250 ms",
            p99 < 250.0,
        ),
        target(
            row(
                format!(
                    "fleet of {n}: server CPU, parked and heartbeating ({} s)",
                    f.idle_secs
                ),
                format!("{idle_cpu:.1} % of one core ({by_thread})"),
            ),
            "< 10 %",
            idle_cpu < 10.0,
        ),
        row(
            format!(
                "fleet of {n}: server CPU while dispatching {}/s (with the runs' reports)",
                f.rate
            ),
            format!("{busy_cpu:.1} % of one core"),
        ),
        target(
            row(
                format!("fleet of {n}: server RSS at the end"),
                format!("{:.1} MB", rss as f64 / 1024.0),
            ),
            "< 64 MB",
            rss < 64 * 1024,
        ),
        row(
            format!("fleet of {n}: server threads / open sockets while parked"),
            format!("{threads_parked} (end {threads_end}) / {conns_parked}"),
        ),
        target(
            row(
                format!(
                    "fleet of {n}: GET /api/dispatch/health p50 / p99 ({} samples, {n} workers listed)",
                    health.len()
                ),
                format!("{h50:.2} / {h99:.2} ms (server side {server_full})"),
            ),
            "p99 < 5 ms",
            h99 < 5.0,
        ),
        target(
            row(
                format!(
                    "fleet of {n}: GET /api/dispatch/health?workers=false p50 / p99 ({} samples)",
                    short.len()
                ),
                format!("{s50:.2} / {s99:.2} ms (server side {server_short})"),
            ),
            "p99 < 5 ms",
            s99 < 5.0,
        ),
    ])
}
