//! The churn campaign (`bench -- --churn`): a real server, real launchers
//! (`ops-center launcher`) running the fake agent
//! `examples/agents/fake-agent-timed.sh`, and everything a fleet lives
//! through at once — launchers killed (`kill -9`) or stopped (SIGTERM) at
//! random every few seconds and started again, runs cancelled and their
//! tasks dispatched again at once or a little later, some agents failing.
//! It ends when no task is in flight any more, and checks that every task
//! ended in `review`, `done` or blocked with a reason, that none is stuck,
//! and — from the agents' own journal — that no task ran twice at once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{loadavg, row, thousands, Client, Res, Row, Server, TOKEN};

/// How big and how wild.
pub struct Churn {
    pub tasks: usize,
    pub launchers: usize,
    pub slots: usize,
    /// A launcher is restarted every this many seconds (uniformly at
    /// random between the two).
    pub restart_every: (f64, f64),
    /// A run is cancelled about this often, in seconds.
    pub cancel_every: f64,
    /// Share of cancelled tasks dispatched again at once (the others 1 to
    /// 5 s later).
    pub redispatch_at_once: f64,
    /// Share of tasks whose agent fails (exit 3).
    pub fail_share: f64,
    /// How long an agent works: uniformly between the two, in seconds.
    pub work: (f64, f64),
    /// The campaign fails when nothing moves for this long.
    pub stall_secs: u64,
    pub seed: u64,
}

/// The default campaign of the issue: 2,000 tasks, 4 launchers.
pub const DEFAULT: Churn = Churn {
    tasks: 2_000,
    launchers: 4,
    slots: 4,
    restart_every: (2.0, 6.0),
    cancel_every: 0.7,
    redispatch_at_once: 0.6,
    fail_share: 0.05,
    work: (0.2, 2.0),
    stall_secs: 300,
    seed: 0,
};

/// A small xorshift generator: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, (lo, hi): (f64, f64)) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One `ops-center launcher` of the campaign, started again and again.
struct Launcher {
    cmd_env: Vec<(String, String)>,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Launcher {
    fn spawn(&mut self, bin: &Path) -> Res<()> {
        let mut cmd = Command::new(bin);
        cmd.arg("launcher")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("OPS_LAUNCHER_LOG_FILE", &self.log)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &self.cmd_env {
            cmd.env(k, v);
        }
        self.child = Some(
            cmd.spawn()
                .map_err(|e| format!("cannot start a launcher: {e}"))?,
        );
        Ok(())
    }

    /// Ends it with `signal` and reaps it.
    fn stop(&mut self, signal: i32) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of our own child process.
            unsafe {
                libc::kill(c.id() as libc::pid_t, signal);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the side threads counted.
#[derive(Default)]
struct Counts {
    kills: AtomicUsize,
    terms: AtomicUsize,
    cancels: AtomicUsize,
    cancels_raced: AtomicUsize,
    redispatched_at_once: AtomicUsize,
    redispatched_later: AtomicUsize,
}

fn status_counts(c: &mut Client) -> Res<Value> {
    let h = c.expect("GET", "/api/dispatch/health?workers=false", "", 200)?;
    Ok(h["queue"].clone())
}

fn total(c: &mut Client, query: &str) -> Res<u64> {
    let v = c.expect("GET", &format!("/api/tasks?limit=1&{query}"), "", 200)?;
    v["total"]
        .as_u64()
        .ok_or_else(|| "a list without total".into())
}

fn event_total(c: &mut Client, kind: &str) -> Res<u64> {
    let v = c.expect("GET", &format!("/api/events?limit=1&kind={kind}"), "", 200)?;
    v["total"]
        .as_u64()
        .ok_or_else(|| "a list without total".into())
}

/// Every task as the API shows it.
fn all_tasks(c: &mut Client) -> Res<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let v = c.expect(
            "GET",
            &format!("/api/tasks?limit=1000&offset={}", out.len()),
            "",
            200,
        )?;
        let page = v["tasks"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// Every event of `kind`, oldest last (as the API pages them).
fn all_events(c: &mut Client, kind: &str) -> Res<Vec<Value>> {
    let mut out = Vec::new();
    loop {
        let v = c.expect(
            "GET",
            &format!("/api/events?kind={kind}&limit=1000&offset={}", out.len()),
            "",
            200,
        )?;
        let page = v["events"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// One agent's run, from the journal.
#[derive(Clone, Debug)]
struct AgentRun {
    pid: u64,
    /// The launcher's run it belongs to (one claim).
    launch: String,
    start: i64,
    end: Option<(i64, String)>,
}

fn read_journal(path: &Path) -> Res<BTreeMap<i64, Vec<AgentRun>>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut runs: BTreeMap<i64, Vec<AgentRun>> = BTreeMap::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        let (Some(kind), Some(task), Some(pid), Some(at)) =
            (w.first(), w.get(1), w.get(2), w.get(3))
        else {
            return Err(format!("journal: bad line {line:?}"));
        };
        let task: i64 = task.parse().map_err(|_| format!("journal: {line:?}"))?;
        let pid: u64 = pid.parse().map_err(|_| format!("journal: {line:?}"))?;
        // Nanoseconds to microseconds: an i64 either way.
        let at: i64 = at
            .parse::<i128>()
            .map_err(|_| format!("journal: {line:?}"))? as i64
            / 1000;
        let launch = w.get(5).copied().unwrap_or("").to_string();
        let list = runs.entry(task).or_default();
        match *kind {
            "start" => list.push(AgentRun {
                pid,
                launch,
                start: at,
                end: None,
            }),
            "end" => {
                let how = w.get(4).copied().unwrap_or("").to_string();
                match list
                    .iter_mut()
                    .rev()
                    .find(|r| r.pid == pid && r.end.is_none())
                {
                    Some(r) => r.end = Some((at, how)),
                    None => return Err(format!("journal: an end without its start: {line:?}")),
                }
            }
            _ => return Err(format!("journal: bad line {line:?}")),
        }
    }
    Ok(runs)
}

/// `2026-12-07T16:54:22.626Z` in unix milliseconds.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (h, mi, sec) = (n(11, 13)?, n(14, 16)?, n(17, 19)?);
    let ms = if s.as_bytes().get(19) == Some(&b'.') {
        n(20, 23)?
    } else {
        0
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms)
}

/// Agents of one task that ran at the same time: (overlaps where the
/// earlier agent's run had been withdrawn — cancelled, or taken back from
/// its worker — before the later one started, so it was still ending;
/// the others: one launch that started two agents, or two claims whose
/// earlier one was never withdrawn; the longest overlap in ms).
/// `withdrawn`: when each task's runs were withdrawn (unix ms).
///
/// Claims of a task follow one another (the server holds one at a time),
/// each run by one launch; a claim that ended with the launcher's report
/// ended after its agent. So two launches' agents overlap only when the
/// earlier claim was withdrawn before the later agent started.
fn overlaps(
    runs: &BTreeMap<i64, Vec<AgentRun>>,
    withdrawn: &HashMap<i64, Vec<i64>>,
) -> (usize, Vec<String>, f64) {
    let mut ending = 0;
    let mut double = Vec::new();
    let mut longest = 0.0f64;
    for (task, list) in runs {
        let mut list = list.clone();
        list.sort_by_key(|r| r.start);
        for (i, a) in list.iter().enumerate() {
            let a_end = a.end.as_ref().map_or(i64::MAX, |e| e.0);
            for b in &list[i + 1..] {
                if b.start >= a_end {
                    continue;
                }
                let b_end = b.end.as_ref().map_or(i64::MAX, |e| e.0);
                let ms = (a_end.min(b_end) - b.start) as f64 / 1000.0;
                longest = longest.max(ms);
                // Journal times are in µs, events' in ms, of one clock.
                let was_withdrawn = a.launch != b.launch
                    && withdrawn
                        .get(task)
                        .is_some_and(|times| times.iter().any(|t| *t <= b.start / 1000 + 1));
                if was_withdrawn {
                    ending += 1;
                } else {
                    double.push(format!(
                        "task {task}: agents {} ({}) and {} ({}) ran at once ({ms:.0} ms)",
                        a.pid, a.launch, b.pid, b.launch
                    ));
                }
            }
        }
    }
    (ending, double, longest)
}

pub fn run(bin: &Path, dir: &Path, churn: &Churn) -> Res<Vec<Row>> {
    let started = Instant::now();
    let load_before = loadavg();
    let seed = if churn.seed == 0 {
        super::now_ms() as u64 | 1
    } else {
        churn.seed
    };
    eprintln!(
        "churn: {} tasks, {} launchers × {} slots, a launcher restarted every {}–{} s, a cancellation \
         every ~{} s, seed {seed}",
        churn.tasks,
        churn.launchers,
        churn.slots,
        churn.restart_every.0,
        churn.restart_every.1,
        churn.cancel_every
    );
    let mut server = Server::start(bin, &dir.join("churn.db"), dir)?;
    let addr = server.addr.clone();
    let mut c = Client::connect(&addr)?;
    c.expect(
        "PUT",
        "/api/settings/dispatch_enabled",
        r#"{"value":"true"}"#,
        200,
    )?;

    // The tasks, all queued before the fleet starts.
    let mut rng = Rng(seed);
    let mut will_fail = HashMap::new();
    for i in 0..churn.tasks {
        let secs = rng.between(churn.work);
        let fail = rng.unit() < churn.fail_share;
        let prompt = format!("{secs:.2}{}", if fail { " fail" } else { "" });
        let t = c.expect(
            "POST",
            "/api/tasks",
            &json!({"title": format!("churn {i}"), "description": prompt,
                    "execution": "interactive", "agent": "codex"})
            .to_string(),
            201,
        )?;
        let id = t["id"].as_i64().ok_or("a task without id")?;
        c.expect("POST", &format!("/api/tasks/{id}/dispatch"), "{}", 200)?;
        will_fail.insert(id, fail);
    }
    eprintln!(
        "churn: {} tasks queued in {:.1} s",
        churn.tasks,
        started.elapsed().as_secs_f64()
    );

    // The fleet.
    let journal = dir.join("journal");
    let agent = format!(
        "{}/examples/agents/fake-agent-timed.sh {}",
        env!("CARGO_MANIFEST_DIR"),
        journal.display()
    );
    let agent_user = ops_center::launcher::boundary::AgentUser::current(None).name;
    let launchers: Vec<Arc<Mutex<Launcher>>> = (0..churn.launchers)
        .map(|i| {
            let ldir = dir.join(format!("launcher-{i}"));
            std::fs::create_dir_all(&ldir).map_err(|e| e.to_string())?;
            let env = [
                ("OPS_API_BASE", format!("http://{addr}/api")),
                ("OPS_SERVICE_TOKEN", TOKEN.to_string()),
                (
                    "OPS_LAUNCHER_LOG_DIR",
                    ldir.join("logs").display().to_string(),
                ),
                ("OPS_LAUNCHER_HEARTBEAT_SECONDS", "2".into()),
                ("OPS_LAUNCHER_POLL_SECONDS", "1".into()),
                ("OPS_LAUNCHER_SLOTS", churn.slots.to_string()),
                ("OPS_AGENT_USER", agent_user.clone()),
                ("SUPPORTED_AGENT_SLUGS", "codex".into()),
                ("AGENT_CMD_CODEX", agent.clone()),
                ("AGENT_AUTH_CHECK_CODEX", "none".into()),
                ("RUST_LOG", "info".into()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            let mut l = Launcher {
                cmd_env: env,
                log: ldir.join("launcher.log"),
                dir: ldir,
                child: None,
            };
            l.spawn(bin)?;
            Ok(Arc::new(Mutex::new(l)))
        })
        .collect::<Res<_>>()?;

    let counts = Arc::new(Counts::default());
    let stop_restarts = Arc::new(AtomicBool::new(false));
    let stop_cancels = Arc::new(AtomicBool::new(false));
    // Cancelled tasks to dispatch again, with when.
    let later: Arc<Mutex<Vec<(Instant, i64)>>> = Arc::default();

    let restarter = {
        let (launchers, counts, stop) = (launchers.clone(), counts.clone(), stop_restarts.clone());
        let (bin, every) = (bin.to_path_buf(), churn.restart_every);
        let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
        std::thread::spawn(move || -> Res<()> {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs_f64(rng.between(every)));
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let i = rng.below(launchers.len());
                let kill = rng.unit() < 0.5;
                let mut l = launchers[i].lock().unwrap_or_else(|p| p.into_inner());
                l.stop(if kill { libc::SIGKILL } else { libc::SIGTERM });
                if kill {
                    counts.kills.fetch_add(1, Ordering::Relaxed);
                } else {
                    counts.terms.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_secs_f64(rng.between((0.0, 1.0))));
                l.spawn(&bin)?;
            }
            Ok(())
        })
    };

    let canceller = {
        let (counts, stop, later) = (counts.clone(), stop_cancels.clone(), later.clone());
        let (addr, every, at_once) = (addr.clone(), churn.cancel_every, churn.redispatch_at_once);
        let mut rng = Rng(seed ^ 0x5851_f42d_4c95_7f2d);
        std::thread::spawn(move || -> Res<()> {
            let mut c = Client::connect(&addr)?;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs_f64(every * rng.between((0.5, 1.5))));
                let due: Vec<i64> = {
                    let mut l = later.lock().unwrap_or_else(|p| p.into_inner());
                    let now = Instant::now();
                    let due = l
                        .iter()
                        .filter(|(at, _)| *at <= now)
                        .map(|(_, id)| *id)
                        .collect();
                    l.retain(|(at, _)| *at > now);
                    due
                };
                for id in due {
                    c.expect("POST", &format!("/api/tasks/{id}/dispatch"), "{}", 200)?;
                    counts.redispatched_later.fetch_add(1, Ordering::Relaxed);
                }
                // A run in flight, most often a running one.
                let status = ["doing", "doing", "dispatching", "queued"][rng.below(4)];
                let v = c.expect(
                    "GET",
                    &format!("/api/tasks?status={status}&limit=100"),
                    "",
                    200,
                )?;
                let list = v["tasks"].as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    continue;
                }
                let id = list[rng.below(list.len())]["id"].as_i64().unwrap_or(0);
                let (code, _) = c.call("POST", &format!("/api/tasks/{id}/cancel"), "{}")?;
                match code {
                    200 => {
                        counts.cancels.fetch_add(1, Ordering::Relaxed);
                        if rng.unit() < at_once {
                            c.expect("POST", &format!("/api/tasks/{id}/dispatch"), "{}", 200)?;
                            counts.redispatched_at_once.fetch_add(1, Ordering::Relaxed);
                        } else {
                            let at =
                                Instant::now() + Duration::from_secs_f64(rng.between((1.0, 5.0)));
                            later
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((at, id));
                        }
                    }
                    // It ended meanwhile.
                    409 => {
                        counts.cancels_raced.fetch_add(1, Ordering::Relaxed);
                    }
                    other => return Err(format!("cancel of task {id}: status {other}")),
                }
            }
            // What is left to dispatch again, now.
            let left: Vec<i64> = later
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
                .map(|(_, id)| id)
                .collect();
            for id in left {
                c.expect("POST", &format!("/api/tasks/{id}/dispatch"), "{}", 200)?;
                counts.redispatched_later.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };

    // Until nothing is in flight: cancellations stop when nine tasks in
    // ten have ended; restarts go on to the end.
    let mut last_progress = (Instant::now(), String::new());
    let mut last_print = Instant::now();
    let mut canceller = Some(canceller);
    let outcome = loop {
        std::thread::sleep(Duration::from_secs(1));
        let q = status_counts(&mut c)?;
        let n = |k: &str| q[k].as_u64().unwrap_or(0);
        let waiting_free = total(&mut c, "status=waiting&blocked=false")?;
        let ended = n("review") + total(&mut c, "status=done")? + (n("waiting") - waiting_free);
        let flight = n("queued") + n("dispatching") + n("doing");
        let shape = format!(
            "queued {} dispatching {} doing {} review {} waiting {} (blocked {})",
            n("queued"),
            n("dispatching"),
            n("doing"),
            n("review"),
            n("waiting"),
            n("blocked")
        );
        if last_print.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "churn: {:>4.0} s: {shape}; {} launcher restarts, {} cancellations",
                started.elapsed().as_secs_f64(),
                counts.kills.load(Ordering::Relaxed) + counts.terms.load(Ordering::Relaxed),
                counts.cancels.load(Ordering::Relaxed)
            );
            last_print = Instant::now();
        }
        if shape != last_progress.1 {
            last_progress = (Instant::now(), shape.clone());
        }
        if canceller.is_some() && ended as usize * 10 >= churn.tasks * 9 {
            stop_cancels.store(true, Ordering::SeqCst);
            canceller
                .take()
                .expect("running")
                .join()
                .map_err(|_| "the canceller panicked")??;
            eprintln!("churn: cancellations over; everything cancelled was dispatched again");
            continue;
        }
        if canceller.is_none() && flight == 0 && waiting_free == 0 {
            break Ok(());
        }
        if last_progress.0.elapsed() >= Duration::from_secs(churn.stall_secs) {
            break Err(format!("nothing moved for {} s: {shape}", churn.stall_secs));
        }
    };
    stop_restarts.store(true, Ordering::SeqCst);
    stop_cancels.store(true, Ordering::SeqCst);
    restarter.join().map_err(|_| "the restarter panicked")??;
    if let Some(t) = canceller {
        t.join().map_err(|_| "the canceller panicked")??;
    }
    let campaign_secs = started.elapsed().as_secs_f64();

    // Withdrawn runs confirmed by their launchers before they stop: wait
    // while the count still falls. A withdrawn claim whose answer never
    // reached a launcher (killed while claiming) is never confirmed.
    let pending = || -> Res<Vec<i64>> {
        let conn = rusqlite::Connection::open_with_flags(
            dir.join("churn.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(|e| e.to_string())?;
        let mut stmt = conn
            .prepare(
                "SELECT task_id FROM claim_cancels WHERE confirmed_at IS NULL ORDER BY task_id",
            )
            .map_err(|e| e.to_string())?;
        let ids: Vec<i64> = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        Ok(ids)
    };
    let mut unconfirmed = pending()?;
    let mut moved = Instant::now();
    while !unconfirmed.is_empty() && moved.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(500));
        let now = pending()?;
        if now.len() < unconfirmed.len() {
            moved = Instant::now();
        }
        unconfirmed = now;
    }
    for l in &launchers {
        l.lock()
            .unwrap_or_else(|p| p.into_inner())
            .stop(libc::SIGTERM);
    }
    // A new connection: the campaign's may have idled past the server's
    // keep-alive limit meanwhile.
    let mut c = Client::connect(&addr)?;
    for id in &unconfirmed {
        // What each such task was when it was cancelled, and its claims.
        let ev = c.expect(
            "GET",
            &format!("/api/events?task_id={id}&limit=100"),
            "",
            200,
        )?;
        let story: Vec<String> = ev["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .rev()
            .filter(|e| e["kind"] != "dispatch.output")
            .map(|e| {
                format!(
                    "{} {}{}",
                    e["kind"].as_str().unwrap_or(""),
                    e["payload"]["worker_id"].as_str().unwrap_or(""),
                    e["payload"]["from"]
                        .as_str()
                        .map(|f| format!(" from {f}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        eprintln!(
            "churn: task {id}'s withdrawn run was never confirmed: {}",
            story.join(" → ")
        );
    }

    // What happened.
    // The watchdog's follow-up tasks (its recurring-failure alert on the
    // agent, whose runs fail on purpose here) are not the campaign's.
    let (tasks, followups): (Vec<Value>, Vec<Value>) = all_tasks(&mut c)?
        .into_iter()
        .partition(|t| !t["title"].as_str().unwrap_or("").starts_with("[watchdog]"));
    let mut bad = Vec::new();
    let (mut review, mut done, mut failed_as_meant, mut blocked_other) = (0, 0, 0, BTreeMap::new());
    for t in &tasks {
        let id = t["id"].as_i64().unwrap_or(0);
        let reason = t["blocked_reason"].as_str().unwrap_or("");
        match (
            t["status"].as_str().unwrap_or(""),
            t["blocked"].as_bool() == Some(true),
        ) {
            ("review", false) => review += 1,
            ("done", false) => done += 1,
            ("waiting", true) if !reason.trim().is_empty() => {
                if reason.contains("exited early (code=3") && will_fail.get(&id) == Some(&true) {
                    failed_as_meant += 1;
                } else {
                    let class: String = reason
                        .split(':')
                        .next()
                        .unwrap_or(reason)
                        .chars()
                        .take(60)
                        .collect();
                    *blocked_other.entry(class).or_insert(0) += 1;
                }
            }
            (s, b) => bad.push(format!("task {id}: {s}, blocked {b}, reason {reason:?}")),
        }
    }
    if tasks.len() != churn.tasks {
        bad.push(format!(
            "{} tasks listed, {} created",
            tasks.len(),
            churn.tasks
        ));
    }
    let runs = read_journal(&journal)?;
    let agents: usize = runs.values().map(Vec::len).sum();
    let unended: Vec<String> = runs
        .iter()
        .flat_map(|(t, l)| {
            l.iter()
                .filter(|r| r.end.is_none())
                .map(move |r| format!("task {t} pid {}", r.pid))
        })
        .collect();
    let mut withdrawn: HashMap<i64, Vec<i64>> = HashMap::new();
    for kind in ["task.cancelled", "dispatch.reconciled_stale_running"] {
        for e in all_events(&mut c, kind)? {
            if let (Some(t), Some(at)) = (
                e["task_id"].as_i64(),
                e["at"].as_str().and_then(parse_rfc3339),
            ) {
                withdrawn.entry(t).or_default().push(at);
            }
        }
    }
    let (still_ending, double, longest) = overlaps(&runs, &withdrawn);
    let cancelled_agents = runs
        .values()
        .flatten()
        .filter(|r| r.end.as_ref().is_some_and(|e| e.1 == "term"))
        .count();
    // No claim was handed out while another was live: each claim takes a
    // queued task.
    let claims = all_events(&mut c, "dispatch.claimed")?;
    let claimed_unqueued = claims
        .iter()
        .filter(|e| e["payload"]["from"] != "queued")
        .count();
    let attempts: Vec<i64> = tasks
        .iter()
        .filter_map(|t| t["dispatch_attempts"].as_i64())
        .collect();
    let health = c.expect("GET", "/api/dispatch/health?workers=false", "", 200)?;
    let kinds = [
        "task.cancelled",
        "dispatch.cancel_confirmed",
        "dispatch.claim_lost",
        "dispatch.reconciled_stale",
        "dispatch.reconciled_stale_running",
        "dispatch.finished",
        "dispatch.failed",
    ];
    let mut event_counts = Vec::new();
    for k in kinds {
        event_counts.push((k, event_total(&mut c, k)?));
    }
    server.stop()?;

    let ended_ok = outcome.is_ok()
        && bad.is_empty()
        && double.is_empty()
        && unended.is_empty()
        && claimed_unqueued == 0;
    let mut rows = vec![
        row(
            "churn: load average before / after",
            format!("{load_before} / {}", loadavg()),
        ),
        row("churn: seed", seed.to_string()),
        row("churn: tasks", thousands(churn.tasks)),
        row(
            "churn: launchers × slots",
            format!("{} × {}", churn.launchers, churn.slots),
        ),
        row(
            "churn: campaign time (queue filled → nothing in flight)",
            format!("{campaign_secs:.0} s"),
        ),
        row(
            "churn: launcher restarts (kill -9 / SIGTERM)",
            format!(
                "{} / {}",
                counts.kills.load(Ordering::Relaxed),
                counts.terms.load(Ordering::Relaxed)
            ),
        ),
        row(
            "churn: cancellations (dispatched again at once / later; raced with the end)",
            format!(
                "{} ({} / {}; {})",
                counts.cancels.load(Ordering::Relaxed),
                counts.redispatched_at_once.load(Ordering::Relaxed),
                counts.redispatched_later.load(Ordering::Relaxed),
                counts.cancels_raced.load(Ordering::Relaxed)
            ),
        ),
        row("churn: claims handed out", thousands(claims.len())),
        row(
            "churn: claims of a task that was not queued (must be 0)",
            claimed_unqueued.to_string(),
        ),
        row(
            "churn: attempts per task (max)",
            attempts.iter().max().copied().unwrap_or(0).to_string(),
        ),
        row("churn: agents started (journal)", thousands(agents)),
        row(
            "churn: agents ended by a cancellation",
            cancelled_agents.to_string(),
        ),
        row(
            "churn: agents that never ended (must be 0)",
            unended.len().to_string(),
        ),
        row(
            "churn: two agents of one task at once, neither run withdrawn (must be 0)",
            double.len().to_string(),
        ),
        row(
            "churn: a withdrawn run's agent still ending when the task's next agent started",
            format!("{still_ending} (longest overlap {longest:.0} ms)"),
        ),
        row(
            "churn: withdrawn runs never confirmed (their launcher never had them)",
            unconfirmed.len().to_string(),
        ),
        row("churn: ended in review", thousands(review)),
        row("churn: ended done", thousands(done)),
        row(
            "churn: ended blocked: their agent failed, as meant",
            thousands(failed_as_meant),
        ),
    ];
    for (class, n) in &blocked_other {
        rows.push(row(format!("churn: ended blocked: {class}"), thousands(*n)));
    }
    rows.push(row(
        "churn: the watchdog's follow-up tasks (not the campaign's)",
        followups
            .iter()
            .map(|t| t["title"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join("; "),
    ));
    rows.push(row(
        "churn: not in review, done or blocked with a reason (must be 0)",
        bad.len().to_string(),
    ));
    for (k, n) in event_counts {
        rows.push(row(format!("churn: events {k}"), thousands(n as usize)));
    }
    let q = &health["queue"];
    rows.push(row(
        "churn: health at the end: stale dispatching / running / queued",
        format!(
            "{} / {} / {}",
            q["stale_dispatching"], q["stale_running"], q["stale_queued"]
        ),
    ));
    rows.push(row(
        "churn: verdict",
        if ended_ok {
            "every task ended; none stuck; none ran twice at once"
        } else {
            "FAILED"
        },
    ));
    if !ended_ok {
        for r in &rows {
            eprintln!("| {} | {} |", r.what, r.value);
        }
        let mut why = Vec::new();
        if let Err(e) = &outcome {
            why.push(e.clone());
        }
        why.extend(bad.into_iter().take(20));
        why.extend(double.into_iter().take(20));
        why.extend(unended.into_iter().take(20));
        if claimed_unqueued > 0 {
            why.push(format!(
                "{claimed_unqueued} claims of a task that was not queued"
            ));
        }
        return Err(format!("churn campaign failed:\n{}", why.join("\n")));
    }
    Ok(rows)
}
