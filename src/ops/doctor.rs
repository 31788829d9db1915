//! `ops-center doctor`: for each slug of `SUPPORTED_AGENT_SLUGS`, resolve
//! its command the way the launcher would and check that the CLI exists
//! and is executable.
//!
//! With `OPS_API_BASE` and `OPS_SERVICE_TOKEN` set it also reads the
//! agents' `launch_command` from OPS, which wins over `AGENT_CMD_<SLUG>`
//! at launch; without them (or with the server down) it checks the
//! environment and built-in commands and says so.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::launcher::api::Api;
use crate::launcher::command::{self, env_name};
use crate::launcher::config::parse_slugs;
use crate::launcher::process::check_command;

pub fn main(args: &[String]) -> ExitCode {
    if let Some(a) = args.first() {
        eprintln!("ops-center doctor: takes no arguments (got {a:?}); it reads SUPPORTED_AGENT_SLUGS and AGENT_CMD_*");
        return ExitCode::from(2);
    }
    let mut out = std::io::stdout().lock();
    let ok = run(|k| std::env::var(k).ok(), &mut out);
    let _ = out.flush();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints the report to `out`; true when every runtime is available.
pub fn run(env: impl Fn(&str) -> Option<String>, out: &mut dyn Write) -> bool {
    let env = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let slugs = match parse_slugs(env("SUPPORTED_AGENT_SLUGS").as_deref()) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "[doctor] FAIL {e}");
            return false;
        }
    };

    let mut ops_cmds: HashMap<String, Option<String>> = HashMap::new();
    match (env("OPS_API_BASE"), env("OPS_SERVICE_TOKEN")) {
        (Some(base), Some(token)) => {
            match Api::new(&base, &token, Duration::from_secs(5)).get("agents") {
                Ok(v) => {
                    for a in v["agents"].as_array().into_iter().flatten() {
                        if let Some(slug) = a["slug"].as_str() {
                            ops_cmds.insert(
                                slug.to_string(),
                                a["launch_command"].as_str().map(str::to_string),
                            );
                        }
                    }
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "[doctor] note: cannot read launch_command from OPS ({e}); checking AGENT_CMD_* and built-in commands"
                    );
                }
            }
        }
        _ => {
            let _ = writeln!(
                out,
                "[doctor] note: OPS_API_BASE/OPS_SERVICE_TOKEN not set; checking AGENT_CMD_* and built-in commands only"
            );
        }
    }

    let path_var = env("PATH");
    let mut missing = Vec::new();
    for slug in &slugs {
        let env_cmds: HashMap<String, String> = env(&env_name("AGENT_CMD_", slug))
            .map(|c| (slug.clone(), c))
            .into_iter()
            .collect();
        let ops = ops_cmds.get(slug).cloned().flatten();
        let Some((template, source)) = command::configured(slug, ops.as_deref(), &env_cmds) else {
            let _ = writeln!(
                out,
                "[doctor] MISSING {slug}: (no command) set {} or the agent's launch_command in OPS",
                env_name("AGENT_CMD_", slug)
            );
            missing.push(slug.clone());
            continue;
        };
        let checked = command::validate(&template).and_then(|()| command::cli_of(&template));
        let cli = match checked {
            Ok(cli) => cli,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "[doctor] MISSING {slug}: (bad command) {} {e}",
                    source.describe(slug)
                );
                missing.push(slug.clone());
                continue;
            }
        };
        match command::resolve_cli(&cli, path_var.as_deref()) {
            Ok(path) => {
                let _ = writeln!(out, "[doctor] OK {slug}: {}", path.display());
                if let Some(check) = env(&env_name("AGENT_AUTH_CHECK_", slug)) {
                    if let Err(e) = check_command(&check, Duration::from_secs(20)) {
                        let _ = writeln!(
                            out,
                            "[doctor] WARN {slug}: not logged in: {} {e}; the launcher will not advertise it",
                            env_name("AGENT_AUTH_CHECK_", slug)
                        );
                    }
                }
            }
            Err(why) => {
                let _ = writeln!(
                    out,
                    "[doctor] MISSING {slug}: {cli} ({why}; from {})",
                    source.describe(slug)
                );
                missing.push(slug.clone());
            }
        }
    }
    if missing.is_empty() {
        let _ = writeln!(out, "[doctor] PASS all runtimes available.");
        true
    } else {
        let _ = writeln!(
            out,
            "[doctor] FAIL {} of {} runtimes missing: {}. Install the missing CLI before enabling dispatch.",
            missing.len(),
            slugs.len(),
            missing.join(", ")
        );
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doctor(vars: &[(&str, &str)]) -> (bool, String) {
        let mut out = Vec::new();
        let ok = run(
            |k| {
                vars.iter()
                    .find(|(ak, _)| *ak == k)
                    .map(|(_, v)| v.to_string())
            },
            &mut out,
        );
        (ok, String::from_utf8(out).unwrap())
    }

    #[test]
    fn pass_and_missing() {
        let (ok, text) = doctor(&[
            ("SUPPORTED_AGENT_SLUGS", "codex,hermes"),
            ("AGENT_CMD_CODEX", "sh -c 'echo hi'"),
            ("AGENT_CMD_HERMES", "/bin/true --x {prompt_file}"),
            ("PATH", "/usr/bin:/bin"),
        ]);
        assert!(ok, "{text}");
        assert!(
            text.contains("[doctor] OK codex: /usr/bin/sh")
                || text.contains("[doctor] OK codex: /bin/sh"),
            "{text}"
        );
        assert!(text.contains("[doctor] OK hermes: /bin/true"), "{text}");
        assert!(
            text.ends_with("[doctor] PASS all runtimes available.\n"),
            "{text}"
        );

        let (ok, text) = doctor(&[
            ("SUPPORTED_AGENT_SLUGS", "codex,newbie"),
            ("AGENT_CMD_CODEX", "no-such-codex-cli exec -"),
            ("PATH", "/usr/bin:/bin"),
        ]);
        assert!(!ok);
        assert!(
            text.contains("[doctor] MISSING codex: no-such-codex-cli (not found in PATH"),
            "{text}"
        );
        assert!(
            text.contains("[doctor] MISSING newbie: (no command) set AGENT_CMD_NEWBIE"),
            "{text}"
        );
        assert!(
            text.contains("[doctor] FAIL 2 of 2 runtimes missing: codex, newbie."),
            "{text}"
        );

        let (ok, text) = doctor(&[]);
        assert!(!ok);
        assert!(
            text.starts_with("[doctor] FAIL SUPPORTED_AGENT_SLUGS is not set"),
            "{text}"
        );
    }
}
