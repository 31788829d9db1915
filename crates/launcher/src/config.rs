//! The launcher's configuration (docs/SPEC.md §15.1), read from the environment once
//! at start. Every mistake is refused with a message naming the variable.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::command::{self, env_name};
use ops_domain::model_filter;

#[derive(Clone, Debug)]
pub struct LauncherConfig {
    /// Without a trailing slash, e.g. `http://127.0.0.1:3847/api`.
    pub api_base: String,
    pub token: String,
    pub workspace_id: Option<i64>,
    pub slugs: Vec<String>,
    pub models: Vec<String>,
    /// `AGENT_CMD_<SLUG>` per supported slug that sets one.
    pub agent_cmds: HashMap<String, String>,
    /// `AGENT_AUTH_CHECK_<SLUG>` per supported slug that sets one.
    pub auth_checks: HashMap<String, String>,
    pub slots: usize,
    pub log_dir: PathBuf,
    pub log_file: Option<PathBuf>,
    pub heartbeat_every: Duration,
    /// Pause between claims when there is nothing to do.
    pub poll_every: Duration,
    /// `OPS_LAUNCHER_CLAIM_WAIT_SECONDS`: how long a claim waits on the
    /// server for a task (a long poll; 0: plain polling).
    pub claim_wait: Duration,
    /// How long an auth-check result is trusted.
    pub auth_cache: Duration,
    pub auth_timeout: Duration,
    /// `{workdir}`, and the agents' working directory: where the launcher
    /// was started (the unit's `WorkingDirectory`).
    pub workdir: PathBuf,
    pub path_var: Option<String>,
    /// `AGENT_TIMEOUT_<SLUG>` per supported slug that sets one; the others
    /// get [`DEFAULT_AGENT_TIMEOUT`].
    pub agent_timeouts: HashMap<String, Duration>,
    /// `AGENT_SILENCE_MINUTES`: an agent that writes nothing to stdout or
    /// stderr for this long is ended.
    pub silence: Duration,
    /// `AGENT_RATE_LIMIT_GRACE`: an agent its provider's rate limit still
    /// refuses this long after the first refusal is ended, and its task
    /// queued again.
    pub rate_limit_grace: Duration,
    /// `AGENT_BREAKER_FAILURES`: consecutive failures of one slug with the
    /// same signature that hold it back (0: never).
    pub breaker_failures: u32,
    /// `AGENT_BREAKER_PAUSE`: how long a slug is held back.
    pub breaker_pause: Duration,
    /// `OPS_LAUNCHER_WORKTREES_DIR`: where the worktrees of tasks with a
    /// repository go; `None`: `worktrees/` in the log dir.
    pub worktrees_dir: Option<PathBuf>,
    /// `OPS_LAUNCHER_GIT_TIMEOUT_SECONDS`: the longest one git command may
    /// take before it is killed and counted as failed.
    pub git_timeout: Duration,
    /// `OPS_LAUNCHER_WORKTREE_MAX_AGE_DAYS`: a worktree unused for this
    /// long is removed (its branch stays) whatever its task's status, once
    /// no agent runs in it; `None` (0): only those of done or archived tasks.
    pub worktree_max_age: Option<Duration>,
    /// `OPS_AGENT_USER`: who the agents run as (see `launcher::boundary`).
    pub agent_user: Option<String>,
    /// `OPS_AGENT_SANDBOX`: `none` (default) or `bwrap`.
    pub sandbox: Option<String>,
    /// `AGENT_ENV_<SLUG>` per supported slug that sets one: what the
    /// agent gets of the launcher's environment besides the built-in list.
    pub agent_env: HashMap<String, Vec<String>>,
}

impl LauncherConfig {
    /// Where the clones of tasks go (and, when agents run as another
    /// user, the prompt files they are given). By default in the log
    /// folder, except when agents run apart (`agents_apart`): they must be
    /// able to reach their clone, and the default log folder is in root's
    /// home, which is closed to them.
    pub fn worktrees_dir(&self, agents_apart: bool) -> PathBuf {
        match &self.worktrees_dir {
            Some(d) => d.clone(),
            None if agents_apart => PathBuf::from(APART_WORKTREES_DIR)
                .join(format!("worktrees-{}", log_dir_tag(&self.log_dir))),
            None => self.log_dir.join("worktrees"),
        }
    }

    /// How long an agent of `slug` may run.
    pub fn timeout_of(&self, slug: &str) -> Duration {
        self.agent_timeouts
            .get(slug)
            .copied()
            .unwrap_or(DEFAULT_AGENT_TIMEOUT)
    }
}

/// Where the default worktrees folders go when agents run as another
/// user: one per launcher (per log folder), so that two launchers of a host
/// never take each other's clones for their own.
pub const APART_WORKTREES_DIR: &str = "/var/lib/ops-dispatch-launcher";

/// Eight hex digits naming a log folder (its canonical path): stable
/// across restarts, distinct for two launchers of one host.
pub fn log_dir_tag(log_dir: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let dir = log_dir
        .canonicalize()
        .unwrap_or_else(|_| log_dir.to_path_buf());
    let h = Sha256::digest(dir.display().to_string().as_bytes());
    h.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

pub const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
pub const DEFAULT_SILENCE: Duration = Duration::from_secs(15 * 60);
/// `AGENT_RATE_LIMIT_GRACE` when unset: the CLIs' own retries of a rate
/// limit take about a minute.
pub const DEFAULT_RATE_LIMIT_GRACE: Duration = Duration::from_secs(2 * 60);

/// A duration as operators write it: `90s`, `15m`, `2h`, or a bare number
/// of minutes.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "m"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| *n > 0.0 && n.is_finite())?;
    let secs = match unit {
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

pub const DEFAULT_SLOTS: usize = 2;
pub const DEFAULT_HEARTBEAT_SECONDS: u64 = 30;
pub const DEFAULT_POLL_SECONDS: u64 = 10;
/// Under the API client's 15 s timeout, with room to spare.
pub const DEFAULT_CLAIM_WAIT_SECONDS: u64 = 10;

/// Reads the configuration through `env` (a parameter so tests can feed
/// it). Does not touch the file system.
pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<LauncherConfig, String> {
    let env = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };

    let api_base = env("OPS_API_BASE").ok_or(
        "OPS_API_BASE is not set: give the server's API base, e.g. http://127.0.0.1:3847/api",
    )?;
    let api_base = api_base.trim_end_matches('/').to_string();
    let scheme_ok = ["http://", "https://"]
        .iter()
        .any(|p| api_base.starts_with(p) && api_base.len() > p.len());
    if !scheme_ok {
        return Err(format!(
            "OPS_API_BASE must be an http:// or https:// URL such as http://127.0.0.1:3847/api, got {api_base:?}"
        ));
    }
    if !api_base.ends_with("/api") {
        return Err(format!(
            "OPS_API_BASE must end with /api (e.g. http://127.0.0.1:3847/api), got {api_base:?}"
        ));
    }
    let token = env("OPS_SERVICE_TOKEN")
        .ok_or("OPS_SERVICE_TOKEN is not set: give the value of ops_settings.service_api_token")?;
    let workspace_id = match env("OPS_WORKSPACE_ID") {
        None => None,
        Some(s) => Some(s.parse::<i64>().ok().filter(|n| *n > 0).ok_or(format!(
            "OPS_WORKSPACE_ID must be a positive workspace id, got {s:?}"
        ))?),
    };
    let slugs = parse_slugs(env("SUPPORTED_AGENT_SLUGS").as_deref())?;
    let models = model_filter::parse_list(&env("SUPPORTED_MODELS").unwrap_or_default());

    let mut agent_cmds = HashMap::new();
    let mut auth_checks = HashMap::new();
    let mut agent_timeouts = HashMap::new();
    let mut agent_env = HashMap::new();
    for slug in &slugs {
        let var = env_name("AGENT_ENV_", slug);
        if let Some(list) = env(&var) {
            agent_env.insert(slug.clone(), super::boundary::parse_env_list(&var, &list)?);
        }
        let var = env_name("AGENT_CMD_", slug);
        if let Some(cmd) = env(&var) {
            command::validate(&cmd).map_err(|e| format!("{var} {e}: {cmd:?}"))?;
            agent_cmds.insert(slug.clone(), cmd);
        }
        let var = env_name("AGENT_AUTH_CHECK_", slug);
        if let Some(cmd) = env(&var) {
            auth_checks.insert(slug.clone(), cmd);
        }
        let var = env_name("AGENT_TIMEOUT_", slug);
        if let Some(t) = env(&var) {
            let d = parse_duration(&t).ok_or(format!(
                "{var} must be a duration such as 90s, 30m or 2h (a bare number is minutes), got {t:?}"
            ))?;
            agent_timeouts.insert(slug.clone(), d);
        }
    }
    let breaker_failures = match env("AGENT_BREAKER_FAILURES") {
        None => 3,
        Some(n) => n.parse::<u32>().ok().filter(|n| *n <= 100).ok_or(format!(
            "AGENT_BREAKER_FAILURES must be a number from 0 (never hold a CLI back) to 100, got {n:?}"
        ))?,
    };
    let breaker_pause = match env("AGENT_BREAKER_PAUSE") {
        None => Duration::from_secs(10 * 60),
        Some(t) => parse_duration(&t).ok_or(format!(
            "AGENT_BREAKER_PAUSE must be a duration such as 90s, 10m or 1h (a bare number is minutes), got {t:?}"
        ))?,
    };
    let silence = match env("AGENT_SILENCE_MINUTES") {
        None => DEFAULT_SILENCE,
        Some(t) => parse_duration(&t).ok_or(format!(
            "AGENT_SILENCE_MINUTES must be a number of minutes (or a duration such as 90s), got {t:?}"
        ))?,
    };

    let rate_limit_grace = match env("AGENT_RATE_LIMIT_GRACE") {
        None => DEFAULT_RATE_LIMIT_GRACE,
        Some(t) => parse_duration(&t).ok_or(format!(
            "AGENT_RATE_LIMIT_GRACE must be a duration such as 90s or 2m (a bare number is minutes), got {t:?}"
        ))?,
    };

    let slots = match env("OPS_LAUNCHER_SLOTS") {
        None => DEFAULT_SLOTS,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .ok_or(format!(
                "OPS_LAUNCHER_SLOTS must be a number from 1 to 64, got {s:?}"
            ))?,
    };
    let log_dir = match env("OPS_LAUNCHER_LOG_DIR") {
        Some(d) => PathBuf::from(d),
        None => match env("HOME") {
            Some(home) => PathBuf::from(home).join(".ops-launcher-logs"),
            None => {
                return Err(
                    "OPS_LAUNCHER_LOG_DIR is not set and neither is HOME to default it from".into(),
                )
            }
        },
    };
    let seconds = |var: &str, default: u64, max: u64| -> Result<Duration, String> {
        match env(var) {
            None => Ok(Duration::from_secs(default)),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .map(Duration::from_secs)
                .ok_or(format!(
                    "{var} must be a number of seconds from 1 to {max}, got {s:?}"
                )),
        }
    };
    Ok(LauncherConfig {
        api_base,
        token,
        workspace_id,
        slugs,
        models,
        agent_cmds,
        auth_checks,
        agent_timeouts,
        silence,
        rate_limit_grace,
        breaker_failures,
        breaker_pause,
        slots,
        log_dir,
        log_file: env("OPS_LAUNCHER_LOG_FILE").map(PathBuf::from),
        heartbeat_every: seconds(
            "OPS_LAUNCHER_HEARTBEAT_SECONDS",
            DEFAULT_HEARTBEAT_SECONDS,
            3600,
        )?,
        poll_every: seconds("OPS_LAUNCHER_POLL_SECONDS", DEFAULT_POLL_SECONDS, 3600)?,
        claim_wait: match env("OPS_LAUNCHER_CLAIM_WAIT_SECONDS") {
            None => Duration::from_secs(DEFAULT_CLAIM_WAIT_SECONDS),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= 12)
                .map(Duration::from_secs)
                .ok_or(format!(
                    "OPS_LAUNCHER_CLAIM_WAIT_SECONDS must be a number of seconds from 0 (plain polling) to 12, got {s:?}"
                ))?,
        },
        auth_cache: seconds("OPS_LAUNCHER_AUTH_CACHE_SECONDS", 300, 86_400)?,
        auth_timeout: seconds("OPS_LAUNCHER_AUTH_TIMEOUT_SECONDS", 20, 600)?,
        workdir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        path_var: env("PATH"),
        worktrees_dir: match env("OPS_LAUNCHER_WORKTREES_DIR") {
            None => None,
            Some(d) if d.starts_with('/') => Some(PathBuf::from(d)),
            Some(d) => {
                return Err(format!(
                    "OPS_LAUNCHER_WORKTREES_DIR must be an absolute path, got {d:?}"
                ))
            }
        },
        git_timeout: seconds("OPS_LAUNCHER_GIT_TIMEOUT_SECONDS", 120, 3600)?,
        agent_user: env("OPS_AGENT_USER"),
        sandbox: match env("OPS_AGENT_SANDBOX") {
            Some(s) if s != "none" && s != "bwrap" => {
                return Err(format!(
                    "OPS_AGENT_SANDBOX must be none or bwrap, got {s:?}"
                ))
            }
            s => s,
        },
        agent_env,
        worktree_max_age: match env("OPS_LAUNCHER_WORKTREE_MAX_AGE_DAYS") {
            None => Some(Duration::from_secs(30 * 86_400)),
            Some(s) => match s.parse::<u64>().ok().filter(|n| *n <= 3650) {
                Some(0) => None,
                Some(n) => Some(Duration::from_secs(n * 86_400)),
                None => {
                    return Err(format!(
                        "OPS_LAUNCHER_WORKTREE_MAX_AGE_DAYS must be a number of days from 0 (never by age) \
                         to 3650, got {s:?}"
                    ))
                }
            },
        },
    })
}

/// `SUPPORTED_AGENT_SLUGS`: comma separated, lower case, no duplicates.
pub fn parse_slugs(raw: Option<&str>) -> Result<Vec<String>, String> {
    let raw = raw.ok_or("SUPPORTED_AGENT_SLUGS is not set: list the agent slugs this host serves, e.g. opencode,codex,hermes")?;
    let mut slugs: Vec<String> = Vec::new();
    for s in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let s = s.to_ascii_lowercase();
        let valid = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !valid {
            return Err(format!(
                "SUPPORTED_AGENT_SLUGS: {s:?} is not an agent slug (letters, digits, '-', '_', '.')"
            ));
        }
        if !slugs.contains(&s) {
            slugs.push(s);
        }
    }
    if slugs.is_empty() {
        return Err("SUPPORTED_AGENT_SLUGS is empty: list the agent slugs this host serves".into());
    }
    Ok(slugs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<LauncherConfig, String> {
        let mut all = vec![
            ("OPS_API_BASE", "http://127.0.0.1:3847/api"),
            ("OPS_SERVICE_TOKEN", "tok"),
            ("SUPPORTED_AGENT_SLUGS", "opencode,codex"),
            ("HOME", "/home/x"),
        ];
        for (k, v) in vars {
            all.retain(|(ak, _)| ak != k);
            all.push((k, v));
        }
        from_env(|k| {
            all.iter()
                .find(|(ak, _)| *ak == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.slots, 2);
        assert_eq!(c.log_dir, PathBuf::from("/home/x/.ops-launcher-logs"));
        assert_eq!(c.log_file, None);
        assert_eq!(c.heartbeat_every, Duration::from_secs(30));
        assert_eq!(c.slugs, ["opencode", "codex"]);
        assert!(c.models.is_empty());
        assert_eq!(c.workspace_id, None);
        let c = cfg(&[
            ("OPS_API_BASE", "http://h:1/api/"),
            ("SUPPORTED_MODELS", "qwen*, gpt-5"),
        ])
        .unwrap();
        assert_eq!(c.api_base, "http://h:1/api");
        assert_eq!(c.models, ["qwen*", "gpt-5"]);
    }

    #[test]
    fn reads_per_slug_commands() {
        let c = cfg(&[
            ("SUPPORTED_AGENT_SLUGS", "Codex, my-agent,codex"),
            ("AGENT_CMD_MY_AGENT", "my-agent --file {prompt_file}"),
            ("AGENT_AUTH_CHECK_CODEX", "codex login status"),
            ("AGENT_CMD_HERMES", "ignored, not supported here"),
        ])
        .unwrap();
        assert_eq!(c.slugs, ["codex", "my-agent"]);
        assert_eq!(
            c.agent_cmds.get("my-agent").unwrap(),
            "my-agent --file {prompt_file}"
        );
        assert_eq!(c.agent_cmds.len(), 1);
        assert_eq!(c.auth_checks.get("codex").unwrap(), "codex login status");
        let c = cfg(&[("AGENT_ENV_CODEX", "MY_PROXY, CORP_*")]).unwrap();
        assert_eq!(c.agent_env["codex"], ["MY_PROXY", "CORP_*"]);
    }

    #[test]
    fn each_mistake_is_named() {
        let err = |vars: &[(&str, &str)]| cfg(vars).unwrap_err();
        assert!(err(&[("OPS_API_BASE", "")]).contains("OPS_API_BASE is not set"));
        assert!(err(&[("OPS_API_BASE", "127.0.0.1:3847/api")]).contains("http://"));
        assert!(err(&[("OPS_API_BASE", "http://127.0.0.1:3847")]).contains("end with /api"));
        assert!(err(&[("OPS_API_BASE", "ftp://ops.example/api")]).contains("http:// or https://"));
        assert!(err(&[("OPS_SERVICE_TOKEN", " ")]).contains("OPS_SERVICE_TOKEN"));
        assert!(err(&[("OPS_WORKSPACE_ID", "one")]).contains("OPS_WORKSPACE_ID"));
        assert!(err(&[("SUPPORTED_AGENT_SLUGS", "")]).contains("SUPPORTED_AGENT_SLUGS is not set"));
        assert!(err(&[("SUPPORTED_AGENT_SLUGS", " , ")]).contains("empty"));
        assert!(err(&[("SUPPORTED_AGENT_SLUGS", "a b")]).contains("\"a b\""));
        assert!(err(&[("AGENT_CMD_CODEX", "codex 'oops")]).contains("AGENT_CMD_CODEX"));
        assert!(err(&[("AGENT_CMD_CODEX", "codex {prompts}")]).contains("{prompt}"));
        assert!(err(&[("OPS_LAUNCHER_SLOTS", "0")]).contains("OPS_LAUNCHER_SLOTS"));
        assert!(err(&[("AGENT_ENV_CODEX", "OPS_SERVICE_TOKEN")]).contains("AGENT_ENV_CODEX"));
        assert!(err(&[("AGENT_ENV_CODEX", "*")]).contains("AGENT_ENV_CODEX"));
        assert!(err(&[("OPS_LAUNCHER_SLOTS", "two")]).contains("OPS_LAUNCHER_SLOTS"));
        assert!(err(&[("OPS_LAUNCHER_HEARTBEAT_SECONDS", "0")])
            .contains("OPS_LAUNCHER_HEARTBEAT_SECONDS"));
        assert!(err(&[("HOME", "")]).contains("OPS_LAUNCHER_LOG_DIR"));
        assert!(cfg(&[("HOME", ""), ("OPS_LAUNCHER_LOG_DIR", "/var/x")]).is_ok());
    }
}
