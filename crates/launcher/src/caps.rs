//! What this host can run: for each supported slug, whether its CLI
//! resolves (`available`) and whether it is logged in (`authenticated`).
//! Probing may be slow (auth checks run commands), so it happens on its own
//! thread and the heartbeat only reads the last snapshot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use ops_protocol::admin::AgentList;
use ops_protocol::dispatch::AgentCapability;

use super::api::Api;
use super::boundary::Boundary;
use super::clis;
use super::command::{self, env_name};
use super::config::LauncherConfig;
use super::process::run_command;

#[derive(Clone, Debug)]
pub struct AgentCap {
    pub slug: String,
    /// The CLI as configured (first word of the command).
    pub cli: String,
    pub available: bool,
    pub authenticated: bool,
    /// Why the slug is not usable; empty when it is.
    pub reason: String,
}

impl AgentCap {
    pub fn usable(&self) -> bool {
        self.available && self.authenticated
    }

    /// As the heartbeat reports it.
    pub fn capability(&self) -> AgentCapability {
        AgentCapability {
            slug: self.slug.clone(),
            cli: self.cli.clone(),
            available: self.available,
            authenticated: self.authenticated,
            reason: Some(self.reason.clone()),
        }
    }
}

/// When an auth check ran, and what it said.
type AuthResult = (Instant, Result<(), String>);

#[derive(Default)]
pub struct Caps {
    snapshot: Mutex<Vec<AgentCap>>,
    /// `launch_command` per slug as OPS last told it (agents list or claim).
    ops_cmds: Mutex<HashMap<String, Option<String>>>,
    auth: Mutex<HashMap<String, AuthResult>>,
    /// The failure streak of each slug's runs on this host.
    streaks: Mutex<HashMap<String, Streak>>,
}

/// Consecutive failed runs of one slug with the same signature, and until
/// when the slug is held back because of them.
#[derive(Default)]
struct Streak {
    signature: String,
    count: u32,
    held_until: Option<Instant>,
}

impl Caps {
    pub fn snapshot(&self) -> Vec<AgentCap> {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn usable_slugs(&self) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter(AgentCap::usable)
            .map(|c| c.slug)
            .collect()
    }

    pub fn ops_command(&self, slug: &str) -> Option<String> {
        self.ops_cmds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(slug)
            .cloned()
            .flatten()
    }

    pub fn learn_command(&self, slug: &str, launch_command: Option<String>) {
        self.ops_cmds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slug.to_string(), launch_command);
    }

    /// Reads the agents' `launch_command` from OPS; on failure the last
    /// known values stay.
    pub fn refresh_ops_commands(&self, api: &Api) {
        match api.get_as::<AgentList>("agents") {
            Ok(list) => {
                for a in list.agents {
                    self.learn_command(&a.slug, a.launch_command);
                }
            }
            Err(e) => {
                log::debug!("cannot read agents from OPS ({e}); keeping known launch commands")
            }
        }
    }

    /// A launch just found the CLI missing: stop advertising the slug now,
    /// rather than at the next probe.
    pub fn mark_missing(&self, slug: &str, cli: &str, why: &str) {
        let mut snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = snap.iter_mut().find(|c| c.slug == slug) {
            c.available = false;
            c.cli = cli.to_string();
            c.reason = format!("runtime no disponible en host: {cli} ({why})");
        }
    }

    /// A run of `slug` ended, `failed` with that signature or not. After
    /// `cfg.breaker_failures` consecutive failures with the same signature
    /// the slug is held back (not usable, so not claimed) for
    /// `cfg.breaker_pause`: one broken CLI must not drain the queue.
    /// True when this outcome held it back.
    pub fn record_outcome(&self, cfg: &LauncherConfig, slug: &str, failed: Option<&str>) -> bool {
        let mut streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        let s = streaks.entry(slug.to_string()).or_default();
        let Some(signature) = failed else {
            *s = Streak::default();
            return false;
        };
        if s.signature == signature {
            s.count += 1;
        } else {
            s.signature = signature.to_string();
            s.count = 1;
        }
        if cfg.breaker_failures == 0 || s.count < cfg.breaker_failures || s.held_until.is_some() {
            return false;
        }
        s.held_until = Some(Instant::now() + cfg.breaker_pause);
        let why = held_back_reason(s, cfg.breaker_pause);
        drop(streaks);
        log::warn!("agent {slug} held back: {why}");
        let mut snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = snap.iter_mut().find(|c| c.slug == slug) {
            c.available = false;
            c.reason = why;
        }
        true
    }

    /// Forgets every failure streak (SIGHUP: the operator fixed a CLI).
    pub fn forgive(&self) {
        self.streaks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Why `slug` is held back by its failure streak, while it is; once
    /// the pause is over the streak starts again from zero.
    fn held_back(&self, slug: &str) -> Option<String> {
        let mut streaks = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        let s = streaks.get_mut(slug)?;
        let until = s.held_until?;
        let left = until.checked_duration_since(Instant::now());
        match left {
            Some(left) if !left.is_zero() => Some(held_back_reason(s, left)),
            _ => {
                *s = Streak::default();
                None
            }
        }
    }

    /// Looks at every supported slug again and replaces the snapshot.
    pub fn probe(&self, cfg: &LauncherConfig, boundary: &Boundary) {
        let mut fresh = Vec::new();
        for slug in &cfg.slugs {
            let mut cap = self.probe_one(cfg, boundary, slug);
            if cap.usable() {
                if let Some(why) = self.held_back(slug) {
                    cap.available = false;
                    cap.reason = why;
                }
            }
            fresh.push(cap);
        }
        let mut snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        for new in &fresh {
            let before = snap.iter().find(|c| c.slug == new.slug);
            if before.map(AgentCap::usable) != Some(new.usable()) {
                if new.usable() {
                    log::info!("agent {} usable: {}", new.slug, new.cli);
                } else {
                    log::warn!("agent {} not usable: {}", new.slug, new.reason);
                }
            }
        }
        *snap = fresh;
    }

    fn probe_one(&self, cfg: &LauncherConfig, boundary: &Boundary, slug: &str) -> AgentCap {
        let mut cap = AgentCap {
            slug: slug.to_string(),
            cli: String::new(),
            available: false,
            authenticated: false,
            reason: String::new(),
        };
        let ops = self.ops_command(slug);
        let Some((template, source)) = command::configured(slug, ops.as_deref(), &cfg.agent_cmds)
        else {
            cap.reason = format!(
                "no command: set {} or the agent's launch_command in OPS",
                env_name("AGENT_CMD_", slug)
            );
            return cap;
        };
        let cli = match command::cli_of(&template) {
            Ok(c) => c,
            Err(e) => {
                cap.reason = format!("{} {e}", source.describe(slug));
                return cap;
            }
        };
        cap.cli = cli.clone();
        let resolved = match command::resolve_cli(&cli, cfg.path_var.as_deref())
            .and_then(|p| boundary.user.can_execute(&p).map(|()| p))
        {
            Ok(p) => p,
            Err(why) => {
                cap.reason = format!("runtime no disponible en host: {cli} ({why})");
                return cap;
            }
        };
        cap.available = true;
        let check = clis::auth_check(
            cfg.auth_checks.get(slug).map(String::as_str),
            slug,
            &cli,
            &resolved,
        );
        match check {
            None => cap.authenticated = true,
            Some(check) => match self.auth_result(cfg, boundary, slug, &check) {
                Ok(()) => cap.authenticated = true,
                Err(e) => {
                    let configured = cfg.auth_checks.contains_key(slug);
                    cap.reason = not_logged_in(slug, &cli, configured, &e);
                }
            },
        }
        cap
    }

    /// Runs the logged-in check as the agent would run (its user, its
    /// environment): a login that only the launcher's user has is none.
    fn auth_result(
        &self,
        cfg: &LauncherConfig,
        boundary: &Boundary,
        slug: &str,
        check: &str,
    ) -> Result<(), String> {
        if let Some((at, r)) = self
            .auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(slug)
        {
            if at.elapsed() < cfg.auth_cache {
                return r.clone();
            }
        }
        let r = run_command(boundary.shell(slug, check), cfg.auth_timeout).map(drop);
        self.auth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(slug.to_string(), (Instant::now(), r.clone()));
        r
    }
}

/// Why a CLI is not usable when its logged-in check fails, with what to
/// run about it. `configured`: the check came from `AGENT_AUTH_CHECK_<SLUG>`.
pub fn not_logged_in(slug: &str, cli: &str, configured: bool, error: &str) -> String {
    let check = if configured {
        env_name("AGENT_AUTH_CHECK_", slug)
    } else {
        "its logged-in check".to_string()
    };
    let hint = clis::known(slug)
        .map(|k| format!("; log in with: {}", k.login_hint))
        .unwrap_or_default();
    let cli = std::path::Path::new(cli)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(cli);
    format!("not logged in: {cli} ({check} {error}){hint}")
}

fn held_back_reason(s: &Streak, left: std::time::Duration) -> String {
    format!(
        "held back: its last {} tasks on this host failed with \"{}\"; tried again in {} min \
         (fix the CLI, then SIGHUP the launcher to probe it now)",
        s.count,
        s.signature,
        left.as_secs().div_ceil(60)
    )
}
