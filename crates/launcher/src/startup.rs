//! What the launcher does once as it starts, before its threads: checks
//! its configuration and folders, takes its log dir, names itself, and
//! adopts the runs a previous launcher left.

use std::path::Path;
use std::sync::Arc;

use super::boundary::{self, Boundary};
use super::config::{self, LauncherConfig};
use super::launch::start_runner;
use super::runner::Runner;
use super::{command, process, state, worktree, Ctx};

/// `AGENT_CMD_X` for a slug this host does not serve is most likely a typo
/// or a forgotten `SUPPORTED_AGENT_SLUGS` entry.
pub(crate) fn warn_unused_agent_vars(cfg: &LauncherConfig) {
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

/// Makes the log dir and checks it is writable; hides it and the
/// worktrees dir from agents, and when agents run as another user checks
/// that both are private (the worktrees dir made, and reachable by that
/// user).
pub(crate) fn prepare_dirs(
    cfg: &mut LauncherConfig,
    boundary: &mut Boundary,
) -> Result<(), String> {
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
    Ok(())
}

/// Two launchers on one log dir would both adopt the same state files and
/// report every task twice: the second one is refused. The pid file holds
/// the pid and its start time, so a pid left by a killed launcher and
/// reused by another process does not block a start.
pub(crate) fn claim_log_dir(dir: &Path) -> Result<std::path::PathBuf, String> {
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

/// Picks up the state files a previous launcher left: agents still
/// running are watched by pid, ended ones get their reports delivered.
pub(crate) fn adopt(ctx: &Arc<Ctx>) {
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

pub(crate) fn hostname() -> String {
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
pub(crate) fn worker_id(host: &str, log_dir: &Path) -> String {
    format!("{host}-{}", config::log_dir_tag(log_dir))
}
