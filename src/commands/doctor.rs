//! `ops-center doctor`: for each slug of `SUPPORTED_AGENT_SLUGS`, resolve
//! its command the way the launcher would, then prove the runtime can run:
//! the CLI (inside a `sh -c` wrapper too) exists and is executable, every
//! flag of the command appears in the installed CLI's `--help`, and its
//! logged-in check passes (`AGENT_AUTH_CHECK_<SLUG>`, or the built-in one
//! of a known CLI).
//!
//! With `OPS_API_BASE` and `OPS_SERVICE_TOKEN` set it also reads the
//! agents' `launch_command` from OPS, which wins over `AGENT_CMD_<SLUG>`
//! at launch; without them (or with the server down) it checks the
//! environment and built-in commands and says so.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use ops_launcher::api::Api;
use ops_launcher::boundary::{self, Boundary, Notice, Sandbox};
use ops_launcher::caps::not_logged_in;
use ops_launcher::clis;
use ops_launcher::command::{self, env_name};
use ops_launcher::config::parse_slugs;
use ops_launcher::process::run_command;

pub fn main(args: &[String]) -> ExitCode {
    if matches!(args.first().map(String::as_str), Some("--help" | "-h")) {
        println!("{}", help());
        return ExitCode::SUCCESS;
    }
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
    let mut extra = HashMap::new();
    for slug in &slugs {
        let var = env_name("AGENT_ENV_", slug);
        if let Some(list) = env(&var) {
            match boundary::parse_env_list(&var, &list) {
                Ok(l) => {
                    extra.insert(slug.clone(), l);
                }
                Err(e) => {
                    let _ = writeln!(out, "[doctor] FAIL {e}");
                    return false;
                }
            }
        }
    }
    let sandbox = env("OPS_AGENT_SANDBOX");
    let resolved = Boundary::resolve(
        env("OPS_AGENT_USER").as_deref(),
        sandbox.as_deref(),
        extra,
        path_var.as_deref(),
        env("HOME").as_deref(),
    );
    let b = match resolved {
        Ok((b, notice)) => {
            let level = if notice == Notice::Separated {
                "OK"
            } else {
                "WARN"
            };
            let _ = writeln!(out, "[doctor] {level} {}", b.describe(&notice));
            if b.sandbox == Sandbox::Off {
                let _ = writeln!(out, "[doctor] note: {}", sandbox_availability(&b));
            }
            b
        }
        Err(e) => {
            let _ = writeln!(out, "[doctor] FAIL {e}");
            return false;
        }
    };
    let mut failed: Vec<String> = Vec::new();
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
            failed.push(format!("{slug} (missing)"));
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
                failed.push(format!("{slug} (bad command)"));
                continue;
            }
        };
        let path = match command::resolve_cli(&cli, path_var.as_deref())
            .and_then(|p| b.user.can_execute(&p).map(|()| p))
        {
            Ok(path) => path,
            Err(why) => {
                let _ = writeln!(
                    out,
                    "[doctor] MISSING {slug}: {cli} ({why}; from {})",
                    source.describe(slug)
                );
                failed.push(format!("{slug} (missing)"));
                continue;
            }
        };
        let _ = writeln!(out, "[doctor] OK {slug}: {}", path.display());
        if let Some(rejected) = rejected_flags(&b, slug, &template, &path) {
            let _ = writeln!(
                out,
                "[doctor] REJECTED {slug}: {} not accepted by this {cli} (not in its --help; from {}): {template}",
                rejected.join(" "),
                source.describe(slug)
            );
            failed.push(format!("{slug} (rejected flags)"));
            continue;
        }
        let configured = env(&env_name("AGENT_AUTH_CHECK_", slug));
        if let Some(check) = clis::auth_check(configured.as_deref(), slug, &cli, &path) {
            if let Err(e) = run_command(b.shell(slug, &check), AUTH_TIMEOUT) {
                let _ = writeln!(
                    out,
                    "[doctor] NOT LOGGED IN {slug}: {}",
                    not_logged_in(slug, &cli, configured.is_some(), &e)
                );
                failed.push(format!("{slug} (not logged in)"));
            }
        }
    }
    if failed.is_empty() {
        let _ = writeln!(out, "[doctor] PASS all runtimes available.");
        true
    } else {
        let _ = writeln!(
            out,
            "[doctor] FAIL {} of {} runtimes cannot run: {}. Install, fix or log in the CLI before enabling dispatch.",
            failed.len(),
            slugs.len(),
            failed.join(", ")
        );
        false
    }
}

fn help() -> String {
    let mut text = String::from(
        "usage: ops-center doctor\n\n\
         First says who the agents would run as (OPS_AGENT_USER; FAIL where the launcher would refuse to\n\
         start, WARN when they would run as root or as the launcher's own user) and whether the sandbox\n\
         (OPS_AGENT_SANDBOX=bwrap) works here; the checks below run as that user, with the agents'\n\
         environment. For each slug of SUPPORTED_AGENT_SLUGS: resolves its command (the agent's launch_command in OPS\n\
         when OPS_API_BASE and OPS_SERVICE_TOKEN are set, else AGENT_CMD_<SLUG>, else the built-in one),\n\
         then prints one line per check: OK <slug>: <path>, MISSING (the CLI is not installed),\n\
         REJECTED <flags> (the installed CLI's --help does not know them), NOT LOGGED IN (its logged-in\n\
         check fails: AGENT_AUTH_CHECK_<SLUG>, or the built-in one; AGENT_AUTH_CHECK_<SLUG>=none turns it\n\
         off). Ends with \"[doctor] PASS all runtimes available.\" (exit 0) or a FAIL line (exit 1).\n\n\
         Built-in commands and checks, and the releases they were checked against:\n",
    );
    for k in clis::KNOWN {
        text.push_str(&format!(
            "  {:<11} {}\n              logged in: {}\n              checked with {}\n",
            k.slug, k.command, k.auth_check, k.checked
        ));
    }
    text.push_str(
        "\nOverride a command with AGENT_CMD_<SLUG> or the agent's launch_command; `[ -m {model} ]` is left\n\
         out when the task has no model, {prompt} is the prompt as one argument.",
    );
    text
}

/// How long a logged-in check or a `--help` may take.
const AUTH_TIMEOUT: Duration = Duration::from_secs(20);

/// The flags of `template` that the installed CLI's `--help` (of the
/// template's subcommand) does not mention; `None` when all are there or
/// nothing can be checked (no flags, a shell wrapper, a CLI whose help
/// fails).
fn rejected_flags(
    b: &Boundary,
    slug: &str,
    template: &str,
    cli: &std::path::Path,
) -> Option<Vec<String>> {
    let (subcommands, flags) = command::flags_of(template)?;
    let quote = |w: &str| format!("'{}'", w.replace('\'', "'\\''"));
    let mut help_cmd = quote(&cli.display().to_string());
    for s in &subcommands {
        help_cmd.push(' ');
        help_cmd.push_str(&quote(s));
    }
    help_cmd.push_str(" --help </dev/null");
    let help = run_command(b.shell(slug, &help_cmd), AUTH_TIMEOUT).ok()?;
    let unknown = command::unknown_flags(&help, &flags);
    (!unknown.is_empty()).then_some(unknown)
}

/// Whether `OPS_AGENT_SANDBOX=bwrap` would work here, for a launcher
/// that runs without it.
fn sandbox_availability(b: &Boundary) -> String {
    match Sandbox::parse(Some("bwrap"), b.path_var.as_deref()) {
        Err(e) => format!("no sandbox; {e}"),
        Ok(s) => match s.check(&b.user, b.path_var.as_deref()) {
            Ok(()) => {
                "no sandbox; bubblewrap works here: OPS_AGENT_SANDBOX=bwrap would run each agent \
                 in one"
                    .to_string()
            }
            Err(e) => format!("no sandbox; {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doctor(vars: &[(&str, &str)]) -> (bool, String) {
        let mut out = Vec::new();
        // Agents as the test's own user, unless the test says otherwise.
        let me = ops_launcher::boundary::AgentUser::current(None).name;
        let ok = run(
            |k| {
                vars.iter()
                    .find(|(ak, _)| *ak == k)
                    .map(|(_, v)| v.to_string())
                    .or_else(|| (k == "OPS_AGENT_USER").then(|| me.clone()))
            },
            &mut out,
        );
        (ok, String::from_utf8(out).unwrap())
    }

    #[test]
    fn says_who_agents_run_as_and_refuses_what_the_launcher_would() {
        let slugs = [
            ("SUPPORTED_AGENT_SLUGS", "codex"),
            ("AGENT_CMD_CODEX", "/bin/true"),
        ];
        let (ok, text) = doctor(&slugs);
        assert!(ok, "{text}");
        // The tests run agents as their own user: nothing separates them.
        assert!(
            text.contains("\n[doctor] WARN agents run as ") && text.contains("no sandbox"),
            "{text}"
        );
        let mut v = slugs.to_vec();
        v.push(("OPS_AGENT_USER", "no-such-user-here"));
        let (ok, text) = doctor(&v);
        assert!(
            !ok && text.contains("[doctor] FAIL OPS_AGENT_USER=no-such-user-here"),
            "{text}"
        );
        let mut v = slugs.to_vec();
        v.push(("AGENT_ENV_CODEX", "*"));
        let (ok, text) = doctor(&v);
        assert!(
            !ok && text.contains("[doctor] FAIL AGENT_ENV_CODEX"),
            "{text}"
        );
    }

    #[test]
    fn pass_and_missing() {
        let (ok, text) = doctor(&[
            ("SUPPORTED_AGENT_SLUGS", "codex,hermes"),
            ("AGENT_CMD_CODEX", "sh -c 'echo hi'"),
            ("AGENT_CMD_HERMES", "/bin/true {prompt_file}"),
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
            text.contains(
                "[doctor] FAIL 2 of 2 runtimes cannot run: codex (missing), newbie (missing)."
            ),
            "{text}"
        );

        // A flag the installed CLI does not know, and a CLI that is not
        // logged in, are failures too.
        let (ok, text) = doctor(&[
            ("SUPPORTED_AGENT_SLUGS", "codex,claudecode"),
            ("AGENT_CMD_CODEX", "/bin/ls --no-such-flag {prompt_file}"),
            ("AGENT_CMD_CLAUDECODE", "/bin/true"),
            ("AGENT_AUTH_CHECK_CLAUDECODE", "exit 1"),
            ("PATH", "/usr/bin:/bin"),
        ]);
        assert!(!ok);
        assert!(
            text.contains("[doctor] REJECTED codex: --no-such-flag not accepted"),
            "{text}"
        );
        assert!(
            text.contains(
                "[doctor] NOT LOGGED IN claudecode: not logged in: true (AGENT_AUTH_CHECK_CLAUDECODE exited with"
            ),
            "{text}"
        );
        assert!(text.contains("log in with: claude auth login"), "{text}");
        assert!(
            text.contains("FAIL 2 of 2 runtimes cannot run: codex (rejected flags), claudecode (not logged in)"),
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
