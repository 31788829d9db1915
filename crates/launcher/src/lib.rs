//! `ops-center launcher`: a worker that heartbeats what this host can run,
//! claims tasks for those agents, launches each agent CLI detached with log
//! files, and reports the outcome (docs/SPEC.md §15).
//!
//! Threads: signals; a probe (CLIs and auth checks, possibly slow); the
//! heartbeat, which only reads the probe's snapshot so nothing can hold it
//! up; the claim loop (this thread); and one runner per task. All state
//! that must outlive the process is in the state files of the log dir.
//!
//! Here: the entry point, the state the threads share ([`Ctx`]) and
//! [`run`], which starts them. `startup.rs` holds the checks made once at
//! start and the adoption of a previous launcher's runs; `heartbeat.rs`
//! the heartbeat; `claim.rs` the claim loop; `launch.rs` the launch of a
//! claimed task; `runner.rs` the thread that follows one run, and
//! `outcome.rs` the report that closes it.

pub mod api;
pub mod boundary;
pub mod caps;
mod claim;
pub mod clis;
pub mod command;
pub mod config;
mod heartbeat;
mod launch;
pub mod logging;
pub mod outcome;
pub mod process;
pub mod rate_limit;
pub mod runner;
mod startup;
pub mod state;
pub mod supervise;
pub mod transcript;
pub mod worktree;

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use api::Api;
use boundary::Boundary;
use caps::Caps;
use claim::claim_loop;
use config::LauncherConfig;
use heartbeat::heartbeat_loop;
use ops_protocol::dispatch::CancelledClaim;
use startup::{adopt, claim_log_dir, hostname, prepare_dirs, warn_unused_agent_vars, worker_id};

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

pub fn run(mut cfg: LauncherConfig, mut boundary: Boundary) -> Result<(), String> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    prepare_dirs(&mut cfg, &mut boundary)?;
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
