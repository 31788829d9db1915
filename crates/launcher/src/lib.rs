//! `ops-center launcher`: a worker that heartbeats what this host can run,
//! claims tasks for those agents, launches each agent CLI detached with log
//! files, and reports the outcome (docs/SPEC.md §15).
//!
//! Threads: signals; a probe (CLIs and auth checks, possibly slow); the
//! heartbeat, which only reads the probe's snapshot so nothing can hold it
//! up; the claim loop (this thread); and one runner per task. All state
//! that must outlive the process is in the state files of the log dir.

pub mod api;
pub mod boundary;
pub mod caps;
pub mod clis;
pub mod command;
pub mod config;
pub mod logging;
pub mod outcome;
pub mod process;
pub mod runner;
pub mod state;
pub mod supervise;
pub mod worktree;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use api::{Api, ApiError};
use boundary::{Boundary, SandboxView};
use caps::Caps;
use config::LauncherConfig;
use ops_protocol::dispatch::{
    CancelledClaim, ClaimAnswer, ClaimRequest, HeartbeatAnswer, HeartbeatReport,
};
use ops_protocol::tasks::TaskView;
use runner::Runner;
use state::{Ending, TaskState};

/// A stop request every thread can wait on.
#[derive(Default)]
pub struct Stop {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    pub fn set(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    pub fn is_set(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps `d` or until stopped; true when stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let g = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = self
            .cv
            .wait_timeout_while(g, d, |s| !*s)
            .unwrap_or_else(|p| p.into_inner());
        *g
    }
}

/// What the threads share.
pub struct Ctx {
    pub cfg: LauncherConfig,
    /// Who the agents run as, what they see and where.
    pub boundary: Boundary,
    pub api: Api,
    pub worker_id: String,
    pub host: String,
    pub stop: Stop,
    pub caps: Caps,
    /// The runs this launcher holds, each by its claim: one task may have
    /// two (a cancelled run still ending, and its new claim).
    running: Mutex<Vec<Run>>,
    /// Runs to end, by claim (the heartbeat's `cancel_claims`, or a newer
    /// claim of their task here), until their runner takes them.
    cancelled: Mutex<BTreeSet<CancelledClaim>>,
    /// This process has sent a heartbeat: later ones are not `starting`.
    announced: std::sync::atomic::AtomicBool,
    /// Wakes the heartbeat thread early (a slot freed, a runtime vanished).
    poke: crossbeam_channel::Sender<()>,
    /// Wakes the probe thread early (SIGHUP, e.g. after installing a CLI).
    reprobe: crossbeam_channel::Sender<()>,
}

impl Ctx {
    /// Where the clones of tasks go.
    pub fn worktrees_dir(&self) -> std::path::PathBuf {
        self.cfg.worktrees_dir(self.boundary.user.separate)
    }

    /// Git as the launcher runs it: in a task's clone as the agent user.
    pub fn git(&self) -> worktree::Git<'_> {
        worktree::Git {
            boundary: &self.boundary,
            timeout: self.cfg.git_timeout,
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, Vec<Run>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tasks this launcher runs (each once, however many runs).
    pub fn running(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.runs().iter().map(|r| r.task_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The slots in use: one per run.
    pub fn busy(&self) -> usize {
        self.runs().len()
    }

    fn take_slot(&self, id: i64, token: &str) {
        let mut runs = self.runs();
        if !runs.iter().any(|r| r.is(id, token)) {
            runs.push(Run {
                task_id: id,
                token: token.to_string(),
                agent_ended: false,
            });
        }
    }

    pub fn finish_slot(&self, id: i64, token: &str) {
        self.runs().retain(|r| !r.is(id, token));
        let _ = self.poke.try_send(());
    }

    /// The run of claim `token` has no agent running any more (it ended,
    /// or never started).
    pub fn agent_ended(&self, id: i64, token: &str) {
        for r in self.runs().iter_mut().filter(|r| r.is(id, token)) {
            r.agent_ended = true;
        }
    }

    /// A task claimed again while an earlier run of it is still here: the
    /// server took that claim back (cancelled, reconciled, moved by hand),
    /// so its agent is ended now, and the new agent starts only once it
    /// is gone (they would share the task's clone). Waits at most `limit`.
    fn end_older_runs(&self, id: i64, token: &str, limit: Duration) {
        let older: Vec<String> = self
            .runs()
            .iter()
            .filter(|r| r.task_id == id && r.token != token && !r.agent_ended)
            .map(|r| r.token.clone())
            .collect();
        if older.is_empty() {
            return;
        }
        log::warn!(
            "task {id}: claimed again while {} earlier run(s) of it still run here: ending them first",
            older.len()
        );
        self.cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(older.iter().map(|t| CancelledClaim {
                task_id: id,
                claim_token: t.clone(),
            }));
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = self
                .runs()
                .iter()
                .filter(|r| r.task_id == id && older.contains(&r.token) && !r.agent_ended)
                .count();
            if left == 0 {
                return;
            }
            if std::time::Instant::now() >= deadline {
                log::error!(
                    "task {id}: an earlier run's agent has not ended after {} s; starting the new run anyway",
                    limit.as_secs()
                );
                return;
            }
            if self.stop.sleep(Duration::from_millis(50)) {
                return;
            }
        }
    }

    fn heartbeat_report(&self, draining: bool) -> HeartbeatReport {
        let running = self.running();
        let busy = self.busy();
        HeartbeatReport {
            worker_id: self.worker_id.clone(),
            host: self.host.clone(),
            pid: Some(i64::from(std::process::id())),
            version: env!("CARGO_PKG_VERSION").to_string(),
            agents: self
                .caps
                .snapshot()
                .iter()
                .map(|c| c.capability())
                .collect(),
            models: self.cfg.models.clone(),
            slots_total: self.cfg.slots as i64,
            slots_busy: busy as i64,
            running_task_ids: running,
            draining,
            workspace_id: self.cfg.workspace_id,
            // Until the server has heard from this process once.
            starting: !self.announced.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    fn heartbeat(&self, draining: bool) -> Result<(), ApiError> {
        let report = self.heartbeat_report(draining);
        // `starting` goes with the first attempt only: a server of an
        // older version refuses the field, and the claim-lost grace covers
        // a first heartbeat that did not arrive.
        self.announced
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let answer = self
            .api
            .post_as::<HeartbeatAnswer>("dispatch/heartbeat", &report)?;
        let mut cancel = answer.cancel_claims;
        // A server that names tasks only: every run of each of them here.
        let named: Vec<i64> = cancel.iter().map(|c| c.task_id).collect();
        for id in answer.cancel.iter().filter(|id| !named.contains(id)) {
            cancel.extend(self.runs().iter().filter(|r| r.task_id == *id).map(|r| {
                CancelledClaim {
                    task_id: *id,
                    claim_token: r.token.clone(),
                }
            }));
        }
        if !cancel.is_empty() {
            let mut ids: Vec<i64> = cancel.iter().map(|c| c.task_id).collect();
            ids.dedup();
            log::warn!("the server cancelled tasks {ids:?}: ending their agents");
            self.cancelled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(cancel);
        }
        Ok(())
    }

    /// Whether the run of claim `token` on task `id` is to be ended (asked
    /// once per cancellation).
    pub fn take_cancel(&self, id: i64, token: &str) -> bool {
        self.cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&CancelledClaim {
                task_id: id,
                claim_token: token.to_string(),
            })
    }
}

/// One run this launcher holds.
struct Run {
    task_id: i64,
    token: String,
    /// Its agent is known to have ended (or never started).
    agent_ended: bool,
}

impl Run {
    fn is(&self, id: i64, token: &str) -> bool {
        self.task_id == id && self.token == token
    }
}

/// Entry point of `ops-center launcher`.
pub fn main(args: &[String]) -> Result<(), String> {
    if args.first().map(String::as_str) == Some(supervise::SUBCOMMAND) {
        return supervise::main(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("prune-worktrees") {
        return prune_worktrees(&args[1..]);
    }
    if let Some(a) = args.first() {
        return Err(format!(
            "launcher takes no arguments (got {a:?}); it is configured by environment: OPS_API_BASE, \
             OPS_SERVICE_TOKEN, SUPPORTED_AGENT_SLUGS, ..."
        ));
    }
    let cfg = config::from_env(|k| std::env::var(k).ok())?;
    logging::init(cfg.log_file.clone())?;
    warn_unused_agent_vars(&cfg);
    let (boundary, notice) = Boundary::from_config(&cfg)?;
    let line = boundary.describe(&notice);
    match notice {
        boundary::Notice::Separated => log::info!("{line}"),
        boundary::Notice::SameUser | boundary::Notice::Root => log::warn!("{line}"),
    }
    run(cfg, boundary)
}

/// `ops-center launcher prune-worktrees [--older-than-days N]`: one
/// clean-up pass now, with the launcher's environment, removing also the
/// worktrees unused for N days (default `OPS_LAUNCHER_WORKTREE_MAX_AGE_DAYS`)
/// whose task is not running.
fn prune_worktrees(args: &[String]) -> Result<(), String> {
    let cfg = config::from_env(|k| std::env::var(k).ok())?;
    logging::init(None)?;
    let (boundary, _) = Boundary::from_config(&cfg)?;
    let max_age = match args {
        [] => cfg.worktree_max_age,
        [flag, n] if flag == "--older-than-days" => match n.parse::<u64>() {
            Ok(0) => Some(Duration::ZERO),
            Ok(d) if d <= 3650 => Some(Duration::from_secs(d * 86_400)),
            _ => return Err(format!("--older-than-days takes 0 to 3650 days, got {n:?}")),
        },
        _ => return Err("usage: ops-center launcher prune-worktrees [--older-than-days N]".into()),
    };
    let api = Api::new(&cfg.api_base, &cfg.token, Duration::from_secs(15));
    let dir = cfg.worktrees_dir(boundary.user.separate);
    let git = worktree::Git {
        boundary: &boundary,
        timeout: cfg.git_timeout,
    };
    let done = worktree::clean(&dir, &api, &Vec::new, max_age, &git);
    if done.is_empty() {
        println!("no worktree to remove in {}", dir.display());
    }
    for line in done {
        println!("{line}");
    }
    Ok(())
}

/// `AGENT_CMD_X` for a slug this host does not serve is most likely a typo
/// or a forgotten `SUPPORTED_AGENT_SLUGS` entry.
fn warn_unused_agent_vars(cfg: &LauncherConfig) {
    for (k, _) in std::env::vars() {
        for prefix in ["AGENT_CMD_", "AGENT_AUTH_CHECK_", "AGENT_ENV_"] {
            if let Some(tail) = k.strip_prefix(prefix) {
                if !cfg.slugs.iter().any(|s| command::env_name(prefix, s) == k) {
                    log::warn!(
                        "{k} is set but no slug of SUPPORTED_AGENT_SLUGS ({}) maps to {tail}; it is ignored",
                        cfg.slugs.join(",")
                    );
                }
            }
        }
    }
}

pub fn run(mut cfg: LauncherConfig, mut boundary: Boundary) -> Result<(), String> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::fs::create_dir_all(&cfg.log_dir).map_err(|e| {
        format!(
            "OPS_LAUNCHER_LOG_DIR {}: cannot create: {e}",
            cfg.log_dir.display()
        )
    })?;
    let probe_file = cfg.log_dir.join(".write-test");
    std::fs::write(&probe_file, b"").map_err(|e| {
        format!(
            "OPS_LAUNCHER_LOG_DIR {}: not writable: {e}",
            cfg.log_dir.display()
        )
    })?;
    let _ = std::fs::remove_file(probe_file);
    // Paths reported to OPS must mean something on their own.
    if let Ok(abs) = cfg.log_dir.canonicalize() {
        cfg.log_dir = abs;
    }
    let wts = cfg.worktrees_dir(boundary.user.separate);
    boundary.hidden = vec![cfg.log_dir.clone(), wts.clone()];
    if boundary.user.separate {
        // The launcher's logs and state are its own: agents reach their
        // clone and prompt in the worktrees folder, which must not be in
        // here. Neither may be a folder an agent could swap for its own.
        use std::os::unix::fs::PermissionsExt;
        boundary::check_private(&cfg.log_dir)
            .map_err(|e| format!("OPS_LAUNCHER_LOG_DIR {}: {e}", cfg.log_dir.display()))?;
        std::fs::set_permissions(&cfg.log_dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |e| {
                format!(
                    "OPS_LAUNCHER_LOG_DIR {}: cannot restrict to mode 700: {e}",
                    cfg.log_dir.display()
                )
            },
        )?;
        worktree::make_dir(&wts, &boundary.user)
            .and_then(|()| boundary::check_private(&wts))
            .and_then(|()| boundary.user.can_reach(&wts))
            .map_err(|e| format!("OPS_LAUNCHER_WORKTREES_DIR {}: {e}", wts.display()))?;
    }
    let pid_file = claim_log_dir(&cfg.log_dir)?;

    let host = hostname();
    let worker_id = worker_id(&host, &cfg.log_dir);
    let (poke_tx, poke_rx) = crossbeam_channel::bounded(1);
    let (reprobe_tx, reprobe_rx) = crossbeam_channel::bounded::<()>(1);
    let ctx = Arc::new(Ctx {
        api: Api::new(&cfg.api_base, &cfg.token, Duration::from_secs(15)),
        cfg,
        boundary,
        worker_id,
        host,
        stop: Stop::default(),
        caps: Caps::default(),
        running: Mutex::new(Vec::new()),
        cancelled: Mutex::new(BTreeSet::new()),
        announced: std::sync::atomic::AtomicBool::new(false),
        poke: poke_tx,
        reprobe: reprobe_tx,
    });
    log::info!(
        "launcher {} starting: api {}, slugs {}, models [{}], {} slots, logs in {}",
        ctx.worker_id,
        ctx.cfg.api_base,
        ctx.cfg.slugs.join(","),
        ctx.cfg.models.join(","),
        ctx.cfg.slots,
        ctx.cfg.log_dir.display()
    );

    {
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    match sig {
                        SIGHUP => {
                            logging::reopen();
                            ctx.caps.forgive();
                            log::info!(
                                "SIGHUP: log file reopened, held-back agents forgiven, runtimes probed again"
                            );
                            let _ = ctx.reprobe.try_send(());
                        }
                        _ => {
                            log::info!(
                                "{}: draining (no new claims), then exiting",
                                process::signal_name(sig)
                            );
                            ctx.stop.set();
                            // Draining at once also answers a claim
                            // waiting on the server.
                            let _ = ctx.heartbeat(true);
                            let _ = ctx.poke.try_send(());
                            let _ = ctx.reprobe.try_send(());
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
    }

    ctx.caps.refresh_ops_commands(&ctx.api);
    ctx.caps.probe(&ctx.cfg, &ctx.boundary);
    adopt(&ctx);
    if let Err(e) = ctx.heartbeat(false) {
        log::warn!("first heartbeat not delivered: {e}");
    }

    let probe = {
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("probe".into())
            .spawn(move || loop {
                let _ = reprobe_rx.recv_timeout(ctx.cfg.heartbeat_every);
                if ctx.stop.is_set() {
                    return;
                }
                let before = ctx.caps.usable_slugs();
                ctx.caps.refresh_ops_commands(&ctx.api);
                ctx.caps.probe(&ctx.cfg, &ctx.boundary);
                worktree::clean(
                    &ctx.worktrees_dir(),
                    &ctx.api,
                    &|| ctx.running(),
                    ctx.cfg.worktree_max_age,
                    &ctx.git(),
                );
                if ctx.caps.usable_slugs() != before {
                    let _ = ctx.poke.try_send(());
                }
            })
            .map_err(|e| e.to_string())?
    };
    let heartbeat = {
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || heartbeat_loop(&ctx, poke_rx))
            .map_err(|e| e.to_string())?
    };

    claim_loop(&ctx);

    let _ = heartbeat.join();
    match ctx.heartbeat(true) {
        Ok(()) => log::info!("final heartbeat sent (draining=true)"),
        Err(e) => log::warn!("final heartbeat not delivered: {e}"),
    }
    let _ = probe.join();
    let running = ctx.running();
    if !running.is_empty() {
        log::info!("agents of tasks {running:?} keep running; the next launcher start adopts them");
    }
    let _ = std::fs::remove_file(&pid_file);
    log::info!("launcher stopped");
    Ok(())
}

/// Two launchers on one log dir would both adopt the same state files and
/// report every task twice: the second one is refused. The pid file holds
/// the pid and its start time, so a pid left by a killed launcher and
/// reused by another process does not block a start.
fn claim_log_dir(dir: &Path) -> Result<std::path::PathBuf, String> {
    let path = dir.join("launcher.pid");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut it = text.split_whitespace().map(|w| w.parse::<u64>().ok());
        if let (Some(Some(pid)), ticks) = (it.next(), it.next().flatten()) {
            let pid = pid as u32;
            if pid != std::process::id() && process::alive(pid, ticks) {
                return Err(format!(
                    "another launcher (pid {pid}) is using OPS_LAUNCHER_LOG_DIR {}: stop it, or give this \
                     one its own log dir",
                    dir.display()
                ));
            }
        }
    }
    let me = std::process::id();
    let ticks = process::start_ticks(me)
        .map(|t| t.to_string())
        .unwrap_or_default();
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{me} {ticks}\n").as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(path)
}

fn heartbeat_loop(ctx: &Ctx, poke: crossbeam_channel::Receiver<()>) {
    let mut failing = false;
    loop {
        match poke.recv_timeout(ctx.cfg.heartbeat_every) {
            Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        if ctx.stop.is_set() {
            return;
        }
        match ctx.heartbeat(false) {
            Ok(()) if failing => {
                log::info!("heartbeat delivered again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    log::warn!(
                        "heartbeat not delivered: {e}; retrying every {} s",
                        ctx.cfg.heartbeat_every.as_secs()
                    );
                }
                failing = true;
            }
        }
    }
}

/// One claim answer that holds a task.
struct Claim {
    task: TaskView,
    slug: String,
    launch_command: Option<String>,
    agent_model: Option<String>,
    token: String,
    /// The repository the task runs in, and its base ref.
    repo: Option<(String, Option<String>)>,
}

fn claim(ctx: &Ctx, slugs: &[String]) -> Result<Result<Claim, String>, ApiError> {
    let body = ClaimRequest {
        worker_id: ctx.worker_id.clone(),
        agent_slugs: Some(slugs.to_vec()),
        workspace_id: ctx.cfg.workspace_id,
    };
    // A long poll: the server answers as soon as a task for this worker is
    // queued, or `no_task` when the wait is over.
    let path = match ctx.cfg.claim_wait.as_secs() {
        0 => "dispatch/next".to_string(),
        s => format!("dispatch/next?wait={s}"),
    };
    let answer: ClaimAnswer = ctx.api.post_as(&path, &body)?;
    let ClaimAnswer {
        task: Some(task),
        agent: Some(agent),
        claim_token: Some(token),
        repo,
        ..
    } = answer
    else {
        if answer.task.is_some() {
            return Err(ApiError::Transport(format!(
                "claim answer with a task but without its agent or claim_token: {answer:?}"
            )));
        }
        return Ok(Err(answer.reason.unwrap_or_else(|| "no_task".into())));
    };
    Ok(Ok(Claim {
        task,
        slug: agent.slug,
        launch_command: agent.launch_command,
        agent_model: agent.model,
        token,
        repo: repo.map(|r| (r.path, r.base_ref)),
    }))
}

fn claim_loop(ctx: &Arc<Ctx>) {
    let mut backoff = Duration::from_secs(1);
    let mut last_reason = String::new();
    while !ctx.stop.is_set() {
        if ctx.busy() >= ctx.cfg.slots {
            ctx.stop.sleep(Duration::from_millis(500));
            continue;
        }
        let slugs = ctx.caps.usable_slugs();
        if slugs.is_empty() {
            if last_reason != "no usable agent" {
                log::warn!(
                    "no usable agent on this host: not claiming (see the heartbeat's reasons)"
                );
                last_reason = "no usable agent".into();
            }
            ctx.stop.sleep(ctx.cfg.poll_every);
            continue;
        }
        let asked = std::time::Instant::now();
        match claim(ctx, &slugs) {
            Ok(Ok(c)) => {
                backoff = Duration::from_secs(1);
                last_reason.clear();
                launch(ctx, c);
            }
            Ok(Err(reason)) => {
                backoff = Duration::from_secs(1);
                if reason != last_reason {
                    log::info!("no task to claim: {reason}");
                    last_reason = reason.clone();
                }
                // A server that waited the whole time is asked again at
                // once; one that answered at once (it does not wait, or
                // dispatch is off) after the poll pause.
                let waited = reason == "no_task"
                    && !ctx.cfg.claim_wait.is_zero()
                    && asked.elapsed() + Duration::from_secs(1) >= ctx.cfg.claim_wait;
                if !waited {
                    ctx.stop.sleep(ctx.cfg.poll_every);
                }
            }
            Err(e) => {
                log::warn!("claim failed, retrying in {} s: {e}", backoff.as_secs());
                last_reason.clear();
                ctx.stop.sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// `20261124T001500.123Z`: sortable, unique enough per task.
fn stamp() -> String {
    let s = ops_base::time::rfc3339(ops_base::time::now_ms());
    s.replace(['-', ':'], "")
}

/// How long a new claim of a task waits for an earlier run of it here to
/// end: the runner sends TERM at once and KILL after its grace (10 s).
const OLDER_RUN_WAIT: Duration = Duration::from_secs(30);

/// Starts the agent of a claimed task and hands it to a runner thread.
/// Whatever goes wrong ends in a state file with a final report, so the
/// failure reaches the task.
fn launch(ctx: &Arc<Ctx>, c: Claim) {
    let id = c.task.id;
    ctx.caps.learn_command(&c.slug, c.launch_command.clone());
    let base = ctx.cfg.log_dir.join(format!("task-{id}-{}", stamp()));
    let path_of = |ext: &str| {
        base.with_file_name(format!(
            "{}{ext}",
            base.file_name().unwrap().to_string_lossy()
        ))
    };
    let (log_path, err_log_path) = (path_of(".log"), path_of(".err.log"));
    // Beside the clones when agents run apart: the log folder is closed
    // to them.
    let prompt_path = if ctx.boundary.user.separate {
        ctx.worktrees_dir()
            .join(path_of(".prompt.md").file_name().expect("named"))
    } else {
        path_of(".prompt.md")
    };
    let model = c
        .task
        .model
        .as_deref()
        .filter(|m| !m.is_empty())
        .or(c.agent_model.as_deref())
        .unwrap_or("");
    let prompt = if c.task.description.trim().is_empty() {
        c.task.title.as_str()
    } else {
        c.task.description.as_str()
    };

    let mut st = TaskState {
        task_id: id,
        worker_id: ctx.worker_id.clone(),
        claim_token: c.token.clone(),
        agent_slug: c.slug.clone(),
        command: Vec::new(),
        cli: c.slug.clone(),
        pid: None,
        pid_start_ticks: None,
        log_path: log_path.clone(),
        err_log_path: err_log_path.clone(),
        prompt_path: prompt_path.clone(),
        started_at_ms: ops_base::time::now_ms(),
        started_reported: false,
        output_offset: 0,
        streamed: 0,
        output_capped: false,
        ending: None,
        final_report: None,
        abandoned: false,
        supervised: false,
        ended_by: None,
        term_sent_at_ms: None,
        cancelled_at_ms: None,
        worktree: None,
        change: None,
        change_error: None,
        tampered: None,
    };
    // Counted as running from here, so that the heartbeat lists the task
    // while its worktree is made.
    ctx.take_slot(id, &c.token);
    ctx.end_older_runs(id, &c.token, OLDER_RUN_WAIT);
    let mut child = None;
    let repo_unusable = c.repo.as_ref().and_then(|(repo, base)| {
        let dir = ctx.worktrees_dir();
        match worktree::prepare(&dir, id, repo, base.as_deref(), &ctx.git()) {
            Ok(wt) => {
                log::info!("task {id}: worktree {} on {}", wt.path.display(), wt.branch);
                st.worktree = Some(wt);
                None
            }
            Err(u) => Some(u),
        }
    });
    if let Some(u) = repo_unusable {
        log::error!(
            "task {id}: {}: {}: {}",
            worktree::SIG_REPO,
            u.kind,
            u.reason
        );
        st.ending = Some(Ending::RepoUnusable {
            problem: u.kind.to_string(),
            reason: u.reason,
            evidence: u.evidence,
        });
    } else {
        match prepare(ctx, &c, &mut st, prompt, model) {
            Err(Unprepared {
                reason,
                runtime_missing,
            }) => {
                log::error!("task {id}: cannot start agent {}: {reason}", c.slug);
                if runtime_missing {
                    ctx.caps.mark_missing(&c.slug, &st.cli, &reason);
                    let _ = ctx.poke.try_send(());
                }
                st.ending = Some(Ending::NotStarted {
                    reason,
                    runtime_missing,
                });
            }
            Ok(argv) => child = start_supervised(ctx, &c.slug, &mut st, &argv, model),
        }
    }
    let path = st.path_in(&ctx.cfg.log_dir);
    if let Err(e) = state::save(&path, &st) {
        log::error!(
            "task {id}: cannot write state file {}: {e}; a launcher restart could not adopt it",
            path.display()
        );
    }
    start_runner(ctx, Runner::new(ctx.clone(), st, path, child));
}

/// Starts the agent under its supervisor. The state file is written first,
/// so that a launcher killed at any point of the launch leaves the run
/// known to the next start: either no supervisor ever started (the record
/// never appears) or its record says what became of the agent.
fn start_supervised(
    ctx: &Ctx,
    slug: &str,
    st: &mut TaskState,
    argv: &[String],
    model: &str,
) -> Option<std::process::Child> {
    let id = st.task_id;
    st.supervised = true;
    let path = st.path_in(&ctx.cfg.log_dir);
    if let Err(e) = state::save(&path, st) {
        // Without a state file a restart could not adopt the run: do not
        // start it at all.
        let reason = format!("cannot write state file {}: {e}", path.display());
        log::error!("task {id}: {reason}");
        st.ending = Some(Ending::NotStarted {
            reason,
            runtime_missing: false,
        });
        return None;
    }
    crash_point("before_spawn");
    let workdir = workdir_of(ctx, st);
    let mut env = ctx.boundary.env_for(slug, &workdir);
    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    set("OPS_TASK_ID", id.to_string());
    set("OPS_TASK_MODEL", model.to_string());
    set("OPS_PROMPT_FILE", st.prompt_path.display().to_string());
    if let Some(wt) = &st.worktree {
        // The agent may commit on its branch itself; what is left is
        // committed for it when it ends.
        set("OPS_TASK_BRANCH", wt.branch.clone());
        set("OPS_TASK_BASE", wt.base.clone());
    }
    // The clone reads its repository's objects, wherever that is.
    let mut shown = vec![st.prompt_path.as_path()];
    shown.extend(st.worktree.as_ref().map(|wt| wt.objects.as_path()));
    let argv = ctx.boundary.sandbox.wrap(
        &SandboxView {
            workdir: &workdir,
            home: &ctx.boundary.user.home,
            hidden: &ctx.boundary.hidden,
            shown: &shown,
        },
        argv,
    );
    match process::spawn_supervised(&process::Supervised {
        argv: &argv,
        record: &st.record_path(),
        user: &ctx.boundary.user,
        workdir: &workdir,
        prompt: &st.prompt_path,
        log: &st.log_path,
        err_log: &st.err_log_path,
        env: &env,
    }) {
        Ok(ch) => {
            crash_point("after_spawn");
            st.pid = Some(ch.id());
            st.pid_start_ticks = process::start_ticks(ch.id());
            log::info!(
                "task {id}: started {slug} (process group {}), log {}",
                ch.id(),
                st.log_path.display()
            );
            Some(ch)
        }
        Err(e) => {
            let reason = format!("cannot start the supervisor of {}: {e}", argv[0]);
            log::error!("task {id}: {reason}");
            st.ending = Some(Ending::NotStarted {
                reason,
                runtime_missing: false,
            });
            None
        }
    }
}

/// `{workdir}` and the agent's working directory: the task's clone; for a
/// task without a repository, the launcher's own directory when agents run
/// as the launcher's user, else the agent user's home (the launcher's
/// directory is not the agent's to write).
fn workdir_of(ctx: &Ctx, st: &TaskState) -> std::path::PathBuf {
    match &st.worktree {
        Some(wt) => wt.path.clone(),
        None if ctx.boundary.user.separate => ctx.boundary.user.home.clone(),
        None => ctx.cfg.workdir.clone(),
    }
}

/// Tests of adoption end the launcher at a named step of a launch, as a
/// `kill -9` there would (`OPS_LAUNCHER_CRASH_AT=before_spawn|after_spawn`;
/// not for production use).
fn crash_point(step: &str) {
    if std::env::var("OPS_LAUNCHER_CRASH_AT").is_ok_and(|v| v == step) {
        log::warn!("OPS_LAUNCHER_CRASH_AT={step}: aborting here");
        std::process::abort();
    }
}

/// Why a claimed task's agent cannot be started.
struct Unprepared {
    reason: String,
    /// The runtime is missing here (as opposed to a launcher-side problem).
    runtime_missing: bool,
}

fn runtime_missing(reason: String) -> Unprepared {
    Unprepared {
        reason,
        runtime_missing: true,
    }
}

fn setup_error(reason: String) -> Unprepared {
    Unprepared {
        reason,
        runtime_missing: false,
    }
}

/// Resolves the command and writes the prompt and empty log files.
fn prepare(
    ctx: &Ctx,
    c: &Claim,
    st: &mut TaskState,
    prompt: &str,
    model: &str,
) -> Result<Vec<String>, Unprepared> {
    let Some((template, source)) =
        command::configured(&c.slug, c.launch_command.as_deref(), &ctx.cfg.agent_cmds)
    else {
        return Err(runtime_missing(format!(
            "no command for agent {}: set {} or the agent's launch_command in OPS",
            c.slug,
            command::env_name("AGENT_CMD_", &c.slug)
        )));
    };
    command::validate(&template)
        .map_err(|e| setup_error(format!("{} {e}: {template:?}", source.describe(&c.slug))))?;
    let vars = command::Vars {
        prompt_file: &st.prompt_path.display().to_string(),
        prompt,
        task_id: st.task_id,
        model,
        workdir: &workdir_of(ctx, st).display().to_string(),
    };
    let mut argv = command::render(&template, &vars).map_err(setup_error)?;
    // What logs and evidence show: the prompt is in the task already.
    st.command = command::render(
        &template,
        &command::Vars {
            prompt: "{prompt}",
            ..vars
        },
    )
    .map_err(setup_error)?;
    // The agent's CLI (inside a shell wrapper too) must exist here.
    st.cli = command::cli_of(&template).map_err(setup_error)?;
    command::resolve_cli(&st.cli, ctx.cfg.path_var.as_deref()).map_err(runtime_missing)?;
    let resolved = command::resolve_cli(&argv[0], ctx.cfg.path_var.as_deref())
        .and_then(|p| ctx.boundary.user.can_execute(&p).map(|()| p))
        .map_err(runtime_missing)?;
    argv[0] = resolved.display().to_string();
    // The prompt is on the agent's stdin; the file is there for
    // `{prompt_file}`, readable by the agent user, written by no agent.
    process::open_log(&st.prompt_path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, prompt.as_bytes()))
        .and_then(|()| ctx.boundary.user.share_read(&st.prompt_path))
        .map_err(|e| setup_error(format!("cannot write {}: {e}", st.prompt_path.display())))?;
    for p in [&st.log_path, &st.err_log_path] {
        process::open_log(p)
            .map_err(|e| setup_error(format!("cannot create {}: {e}", p.display())))?;
    }
    Ok(argv)
}

fn start_runner(ctx: &Arc<Ctx>, r: Runner) {
    let id = r.st.task_id;
    let token = r.st.claim_token.clone();
    ctx.take_slot(id, &token);
    let _ = ctx.poke.try_send(());
    let c = ctx.clone();
    let r_token = token.clone();
    let body = move || {
        // A bug in one runner must not take the slot (or the launcher)
        // with it; its state file stays for the next start.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.run())).is_err() {
            log::error!("task {id}: its runner failed unexpectedly; the state file is kept for the next start");
            c.finish_slot(id, &token);
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name(format!("task-{id}"))
        .spawn(body)
    {
        log::error!("task {id}: cannot start its runner thread: {e}");
        ctx.finish_slot(id, &r_token);
    }
}

/// Picks up the state files a previous launcher left: agents still
/// running are watched by pid, ended ones get their reports delivered.
fn adopt(ctx: &Arc<Ctx>) {
    for entry in state::load_all(&ctx.cfg.log_dir) {
        let (path, st) = match entry {
            Ok(x) => x,
            Err(e) => {
                log::error!("unreadable state file, left as is: {e}");
                continue;
            }
        };
        let what = match (&st.ending, st.pid) {
            (Some(_), _) => "reports pending".to_string(),
            (None, _) if st.supervised => "supervised run".to_string(),
            (None, Some(pid)) if process::alive(pid, st.pid_start_ticks) => {
                format!("agent pid {pid} still running")
            }
            (None, Some(pid)) => format!("agent pid {pid} ended while no launcher watched it"),
            (None, None) => "agent never started".to_string(),
        };
        log::info!(
            "task {}: adopted from {} ({what})",
            st.task_id,
            path.display()
        );
        start_runner(ctx, Runner::new(ctx.clone(), st, path, None));
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Stable across restarts (so reports of adopted tasks and the health view
/// stay with one worker), distinct for two launchers on one host as long
/// as they use different log dirs (they could not share one anyway).
fn worker_id(host: &str, log_dir: &Path) -> String {
    format!("{host}-{}", config::log_dir_tag(log_dir))
}
