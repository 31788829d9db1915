//! The launcher against a real server, with the fake agent CLIs of
//! examples/agents as runtimes: whole dispatches, each failure signature,
//! a launcher killed with -9 mid-run, and a server restarted mid-run.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use ops_center::protocol::admin::AgentChange;
use ops_center::protocol::events::Event;
use ops_center::protocol::health::Health;
use ops_center::protocol::tasks::{NewTask, TaskDetail, TaskEdit};

use crate::client::{self, workers, TaskSpec};
pub use crate::util::enable_dispatch;
use crate::util::{bin, event_kinds, wait_for, wait_until, AgentGuard, Launcher, Server};

pub fn example(name: &str) -> String {
    format!("{}/examples/agents/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn create_agent(srv: &Server, slug: &str) {
    let agent = AgentChange {
        slug: Some(slug.into()),
        name: Some(slug.into()),
        active: Some(true),
        ..AgentChange::default()
    };
    srv.service().create_agent(&agent).ok();
}

/// An interactive task for `agent`, dispatched (queued).
pub fn queued_task(srv: &Server, agent: &str, description: &str) -> i64 {
    queued_task_with_model(srv, agent, description, None)
}

pub fn queued_task_with_model(
    srv: &Server,
    agent: &str,
    description: &str,
    model: Option<&str>,
) -> i64 {
    let svc = srv.service();
    let new = NewTask {
        model: model.map(str::to_string),
        ..client::task(&format!("task for {agent}"))
            .description(description)
            .interactive(agent)
    };
    let t = svc.create_task(&new).ok();
    assert_eq!(t.status, "next");
    assert_eq!(svc.dispatch(t.id).ok().task.status, "queued");
    t.id
}

pub fn task(srv: &Server, id: i64) -> TaskDetail {
    srv.service().task(id).ok()
}

/// Waits up to `secs` for task `id` to reach `want`; the task then.
pub fn wait_status(srv: &Server, id: i64, want: &str, secs: u64) -> TaskDetail {
    wait_for(secs, &format!("task {id} to reach {want}"), || {
        let t = task(srv, id);
        (t.task.status == want).then_some(t)
    })
}

pub fn log_comments(t: &TaskDetail) -> Vec<String> {
    t.comments
        .iter()
        .filter(|c| c.author == "ai-dispatch" && c.kind == "log")
        .map(|c| c.body.clone())
        .collect()
}

pub fn blockers(t: &TaskDetail) -> Vec<String> {
    t.comments
        .iter()
        .filter(|c| c.kind == "blocker")
        .map(|c| c.body.clone())
        .collect()
}

fn health(srv: &Server) -> Health {
    srv.service().health("").ok()
}

/// The pid the launcher reported in `started` (from the event).
pub fn started_pid(srv: &Server, id: i64) -> u32 {
    let list = srv
        .service()
        .events(&format!("?task_id={id}&kind=dispatch.started&limit=10"))
        .ok();
    let event = list.events.first().expect("a started event");
    event.payload["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no started pid: {event:?}")) as u32
}

/// Waits for the confirmation that the cancelled run of task `id` ended
/// (`dispatch.cancel_confirmed`); its event.
fn confirmation(srv: &Server, id: i64) -> Event {
    wait_for(
        30,
        &format!("the confirmation of task {id}'s cancelled run"),
        || {
            let ev = srv
                .service()
                .events(&format!("?task_id={id}&kind=dispatch.cancel_confirmed"))
                .ok();
            ev.events.into_iter().next()
        },
    )
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !matches!(
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next()),
                Some("Z")
            )
        })
        .unwrap_or(false)
}

#[test]
fn a_task_goes_from_next_to_review_with_its_output() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let logs = srv.dir.path().join("launcher-logs");
    let mut l = Launcher::start(
        &srv,
        &logs,
        &[
            (
                "AGENT_CMD_CODEX",
                &format!(
                    "{} {{prompt_file}} {{task_id}}",
                    example("fake-agent-ok.sh")
                ),
            ),
            ("AGENT_CMD_HERMES", "/nonexistent/hermes-cli run"),
            ("AGENT_CMD_CLAUDECODE", &example("fake-agent-ok.sh")),
            ("AGENT_AUTH_CHECK_CLAUDECODE", "echo checking; exit 1"),
            ("SUPPORTED_AGENT_SLUGS", "codex,hermes,claudecode"),
            ("SUPPORTED_MODELS", "qwen*"),
        ],
    );

    // The heartbeat advertises only what can run here.
    let h = wait_for(20, "a fresh worker", || {
        let h = health(&srv);
        (h.worker_summary.fresh == 1).then_some(h)
    });
    assert_eq!(h.agent_slugs, ["codex"], "{h:?}");
    let w = &workers(&h)[0];
    assert_eq!(w.slots_total, 2);
    assert_eq!(w.models, ["qwen*"]);
    let agent = |slug: &str| w.agents.iter().find(|a| a.slug == slug).unwrap();
    let hermes = agent("hermes");
    assert!(!hermes.available);
    let claude = agent("claudecode");
    assert_eq!(
        (claude.available, claude.authenticated),
        (true, false),
        "{claude:?}"
    );
    assert!(
        claude
            .reason
            .as_deref()
            .unwrap()
            .starts_with("not logged in: "),
        "{claude:?}"
    );
    assert!(
        hermes
            .reason
            .as_deref()
            .unwrap()
            .contains("runtime no disponible en host: /nonexistent/hermes-cli"),
        "{hermes:?}"
    );

    // A model outside the worker's filter (qwen*) is never claimed; one in
    // the family is, with its label in {model}.
    let other = queued_task_with_model(&srv, "codex", "not for this host", Some("gemma4"));
    let id = queued_task_with_model(
        &srv,
        "codex",
        "Write the greeting.\nThen stop.",
        Some("local-qwen3.6-coder"),
    );
    let t = wait_status(&srv, id, "review", 30);
    let out = t.task.dispatch_output.as_deref().unwrap_or_default();
    assert!(out.contains("deliverable: all steps done"), "{t:?}");
    assert!(out.contains("model local-qwen3.6-coder"), "{out}");
    assert_eq!(task(&srv, other).task.status, "queued");
    assert!(
        out.contains(&format!("fake agent: task {id}")),
        "{{task_id}} reaches the command: {out}"
    );
    assert_eq!(t.task.exit_code, Some(0));
    let logs_text = log_comments(&t).join("");
    assert!(
        logs_text.contains("prompt on stdin: Write the greeting."),
        "{t:?}"
    );
    assert!(
        logs_text.contains("service token visible: no"),
        "the agent must not get the service token: {logs_text}"
    );
    assert!(
        logs_text.contains("prompt file"),
        "{{prompt_file}} reaches the command: {logs_text}"
    );
    let log_path = t.task.log_path.as_deref().expect("log_path");
    assert!(
        log_path.starts_with(&logs.display().to_string())
            && log_path.contains(&format!("task-{id}-"))
    );
    assert!(std::fs::read_to_string(log_path)
        .unwrap()
        .contains("deliverable"));
    assert!(t
        .task
        .err_log_path
        .as_deref()
        .unwrap()
        .ends_with(".err.log"));
    let kinds = event_kinds(&srv, id);
    for k in [
        "task.dispatched",
        "dispatch.claimed",
        "dispatch.started",
        "dispatch.finished",
    ] {
        assert!(kinds.iter().any(|e| e == k), "no {k} event: {kinds:?}");
    }
    wait_for(10, "state file removed after the final report", || {
        l.state_files().is_empty().then_some(())
    });

    // A second launcher on the same log dir would report every task twice.
    let out = Command::new(bin())
        .arg("launcher")
        .env_clear()
        .envs(l.env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another launcher (pid "), "{err}");

    // SIGTERM: a last heartbeat with draining=true, then exit 0.
    let st = l.signal_and_wait("TERM");
    assert!(st.success(), "launcher exit {st}\n{}", l.log());
    let w = &workers(&health(&srv))[0];
    assert!(w.draining, "{w:?}");
    assert!(l.log().contains("final heartbeat sent (draining=true)"));
}

#[test]
fn each_failure_signature_blocks_the_task_with_evidence() {
    let srv = Server::start();
    enable_dispatch(&srv);
    for slug in ["sigmissing", "sigearly", "signotfound"] {
        create_agent(&srv, slug);
    }
    // This one's command comes from OPS (launch_command), not the env.
    let sigfail = AgentChange {
        slug: Some("sigfail".into()),
        name: Some("sigfail".into()),
        active: Some(true),
        launch_command: Some(format!("{} {{task_id}}", example("fake-agent-fail.sh"))),
        ..AgentChange::default()
    };
    srv.service().create_agent(&sigfail).ok();
    let logs = srv.dir.path().join("launcher-logs");
    // A CLI that exists at start and disappears before its task comes.
    let vanishing = srv.dir.path().join("vanishing-agent");
    std::fs::copy(example("fake-agent-ok.sh"), &vanishing).unwrap();
    let l = Launcher::start(
        &srv,
        &logs,
        &[
            (
                "SUPPORTED_AGENT_SLUGS",
                "sigmissing,sigearly,signotfound,sigfail",
            ),
            ("AGENT_CMD_SIGMISSING", &vanishing.display().to_string()),
            ("AGENT_CMD_SIGEARLY", &example("fake-agent-early.sh")),
            (
                "AGENT_CMD_SIGNOTFOUND",
                &example("fake-agent-missing-tool.sh"),
            ),
            // Probes only at start (and on SIGHUP), so the vanished CLI is
            // still advertised when its task is claimed.
            ("OPS_LAUNCHER_HEARTBEAT_SECONDS", "60"),
            ("OPS_LAUNCHER_SLOTS", "4"),
        ],
    );
    wait_for(20, "all four agents usable", || {
        (health(&srv).agent_slugs.len() == 4).then_some(())
    });
    std::fs::remove_file(&vanishing).unwrap();

    let missing = queued_task(&srv, "sigmissing", "x");
    let early = queued_task(&srv, "sigearly", "x");
    let notfound = queued_task(&srv, "signotfound", "x");
    let fail = queued_task(&srv, "sigfail", "x");

    let check = |id: i64, signature: &str, evidence: &str| {
        let t = wait_status(&srv, id, "waiting", 30);
        assert!(t.task.blocked, "{t:?}");
        let reason = t.task.blocked_reason.as_deref().unwrap();
        assert!(
            reason.contains(signature),
            "blocked_reason {reason:?} lacks {signature:?}"
        );
        let b = blockers(&t);
        assert!(
            b.iter()
                .any(|b| b.contains(signature) && b.contains(evidence)),
            "blockers {b:#?} lack {evidence:?}"
        );
    };
    check(
        missing,
        &format!("runtime no disponible en host: {}", vanishing.display()),
        "does not exist",
    );
    check(
        early,
        "launcher process exited early (code=2, signal=null)",
        "unknown option --bogus",
    );
    check(
        notfound,
        "command not found",
        "ops-fake-tool-that-is-not-installed: command not found",
    );
    check(
        fail,
        "launcher process exited early (code=3, signal=null)",
        "could not apply the patch",
    );
    // A failed run's end is stored as a finished one's: its exit code (or
    // signal); a run that never started has none.
    for (id, code) in [(early, Some(2)), (fail, Some(3)), (missing, None)] {
        let t = task(&srv, id).task;
        assert_eq!((t.exit_code, &t.exit_signal), (code, &None), "{t:?}");
    }
    let ev = srv
        .service()
        .events(&format!("?task_id={fail}&kind=dispatch.failed"))
        .ok();
    assert_eq!(ev.events[0].payload["exit_code"], 3, "{ev:?}");

    // The vanished runtime is no longer advertised...
    let h = wait_for(10, "sigmissing withdrawn", || {
        let h = health(&srv);
        (!h.agent_slugs.iter().any(|s| s == "sigmissing")).then_some(h)
    });
    assert_eq!(h.agent_slugs.len(), 3, "{h:?}");
    // ...until it is found again.
    // SIGHUP probes again, and reopens the launcher's log file as
    // logrotate expects (moved away, then a new one by the same name).
    std::fs::copy(example("fake-agent-ok.sh"), &vanishing).unwrap();
    let rotated = l.log_file.with_extension("log.1");
    std::fs::rename(&l.log_file, &rotated).unwrap();
    l.signal("HUP");
    wait_for(10, "a new log file after SIGHUP", || {
        l.log().contains("SIGHUP: log file reopened").then_some(())
    });
    assert!(std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("starting"));
    wait_until(10, "sigmissing advertised again", || {
        health(&srv).agent_slugs.iter().any(|s| s == "sigmissing")
    });
}

#[test]
fn a_launcher_killed_mid_run_reports_the_end_after_restart() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let logs = srv.dir.path().join("launcher-logs");
    let mut l = Launcher::start(
        &srv,
        &logs,
        &[
            ("SUPPORTED_AGENT_SLUGS", "codex"),
            (
                "AGENT_CMD_CODEX",
                &format!("{} 4", example("fake-agent-long.sh")),
            ),
        ],
    );
    let id = queued_task(&srv, "codex", "long job");
    wait_status(&srv, id, "doing", 30);
    let pid = started_pid(&srv, id);
    let _guard = AgentGuard(pid);
    wait_for(10, "a first progress comment", || {
        (!log_comments(&task(&srv, id)).is_empty()).then_some(())
    });

    let w = wait_for(10, "the running task in the heartbeat", || {
        let w = workers(&health(&srv)).pop()?;
        (w.running_task_ids == [id]).then_some(w)
    });
    assert_eq!(w.slots_busy, 1, "{w:?}");

    l.kill9();
    assert!(alive(pid), "the agent must survive its launcher");
    assert_eq!(
        l.state_files().len(),
        1,
        "the running task keeps its state file"
    );

    l.start_again();
    let t = wait_status(&srv, id, "review", 30);
    let out = t.task.dispatch_output.as_deref().unwrap();
    assert!(out.contains("deliverable after 4 s"), "{out}");
    assert_eq!(
        t.task.exit_code,
        Some(0),
        "the supervisor recorded the adopted agent's exit code: {t:?}"
    );
    assert!(!out.contains("exit code unknown"), "{out}");
    let logs_text = log_comments(&t).join("");
    for i in 1..=4 {
        assert_eq!(
            logs_text.matches(&format!("progress {i}/4\n")).count(),
            1,
            "each line streamed once: {logs_text}"
        );
    }
    assert!(
        l.log().contains(&format!("task {id}: adopted")),
        "{}",
        l.log()
    );
    wait_for(10, "state file removed", || {
        l.state_files().is_empty().then_some(())
    });
}

#[test]
fn a_server_restart_mid_run_loses_no_report() {
    let mut srv = Server::start();
    srv.keep_port();
    enable_dispatch(&srv);
    let logs = srv.dir.path().join("launcher-logs");
    let l = Launcher::start(
        &srv,
        &logs,
        &[
            ("SUPPORTED_AGENT_SLUGS", "codex"),
            (
                "AGENT_CMD_CODEX",
                &format!("{} 3", example("fake-agent-long.sh")),
            ),
        ],
    );
    let id = queued_task(&srv, "codex", "long job");
    wait_status(&srv, id, "doing", 30);
    let _guard = AgentGuard(started_pid(&srv, id));

    let st = srv.signal_and_wait("TERM");
    assert!(st.success());
    // The agent ends while the server is away: its outcome waits in the
    // state file.
    wait_for(20, "the ending recorded in the state file", || {
        let f = l.state_files().pop()?;
        let v: Value = serde_json::from_slice(&std::fs::read(f).ok()?).ok()?;
        (!v["ending"].is_null()).then_some(())
    });
    srv.start_again();
    let t = wait_status(&srv, id, "review", 60);
    assert_eq!(t.task.exit_code, Some(0));
    assert!(t
        .task
        .dispatch_output
        .as_deref()
        .unwrap()
        .contains("deliverable after 3 s"));
    let logs_text = log_comments(&t).join("");
    for i in 1..=3 {
        assert!(
            logs_text.contains(&format!("progress {i}/3")),
            "line {i} lost: {logs_text}"
        );
    }
    assert!(
        l.log().contains("report not delivered, retrying"),
        "{}",
        l.log()
    );
    wait_for(10, "state file removed", || {
        l.state_files().is_empty().then_some(())
    });
}

#[test]
fn configuration_mistakes_stop_the_launcher_with_a_message() {
    let run = |vars: &[(&str, &str)]| {
        let mut cmd = Command::new(bin());
        cmd.arg("launcher").env_clear().env("HOME", "/tmp");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(run(&[]).contains("OPS_API_BASE is not set"));
    let base = [
        ("OPS_API_BASE", "http://127.0.0.1:9/api"),
        ("OPS_SERVICE_TOKEN", "t"),
    ];
    assert!(run(&base).contains("SUPPORTED_AGENT_SLUGS is not set"));
    let with = |extra: (&'static str, &'static str)| {
        let mut v = base.to_vec();
        v.push(("SUPPORTED_AGENT_SLUGS", "codex"));
        v.push(extra);
        run(&v)
    };
    assert!(with(("OPS_LAUNCHER_SLOTS", "many")).contains("OPS_LAUNCHER_SLOTS must be a number"));
    assert!(with(("AGENT_CMD_CODEX", "codex {bogus}"))
        .contains("AGENT_CMD_CODEX uses unknown placeholder {bogus}"));
    assert!(
        with(("OPS_LAUNCHER_LOG_FILE", "/nonexistent/dir/x.log")).contains("OPS_LAUNCHER_LOG_FILE")
    );
    assert!(with(("AGENT_ENV_CODEX", "OPS_*")).contains("would pass the launcher's own"));
    assert!(with(("OPS_AGENT_USER", "no-such-user-here")).contains("no such user"));
    assert!(
        with(("OPS_AGENT_SANDBOX", "chroot")).contains("OPS_AGENT_SANDBOX must be none or bwrap")
    );
    // Root runs no agent as root unless told to; another user cannot
    // switch users.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let e = with(("OPS_LAUNCHER_SLOTS", "1"));
        assert!(
            e.contains("would run agents as root") && e.contains("OPS_AGENT_USER"),
            "{e}"
        );
    } else {
        let e = with(("OPS_AGENT_USER", "root"));
        assert!(e.contains("needs the launcher to run as root"), "{e}");
    }
}

/// Processes whose command line (its words joined by spaces, as a shell
/// would show it; /proc separates them with NUL) mentions `needle`.
fn processes_running(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            }) && alive(*pid)
        })
        .collect()
}

/// A launcher that dies at each step of a launch leaves no agent running
/// untracked: restarted, it reports every task it claimed, with the exit
/// code the supervisor recorded.
#[test]
fn a_launcher_killed_at_any_step_of_a_launch_leaves_no_run_untracked() {
    let srv = Server::start();
    enable_dispatch(&srv);
    for (n, step) in ["before_spawn", "after_spawn"].into_iter().enumerate() {
        let logs = srv.dir.path().join(format!("launcher-logs-{step}"));
        // A copy of the agent under a name of its own, to find its processes.
        let agent = srv.dir.path().join(format!("agent-{step}.sh"));
        std::fs::copy(example("fake-agent-long.sh"), &agent).unwrap();
        let slug = format!("crash{n}");
        create_agent(&srv, &slug);
        let mut l = Launcher::start(
            &srv,
            &logs,
            &[
                ("SUPPORTED_AGENT_SLUGS", slug.as_str()),
                (
                    &format!("AGENT_CMD_CRASH{n}"),
                    &format!("{} 2", agent.display()),
                ),
                ("OPS_LAUNCHER_CRASH_AT", step),
            ],
        );
        let id = queued_task(&srv, &slug, "crash test");
        l.wait_crash(30);
        assert!(
            l.log().contains(&format!("OPS_LAUNCHER_CRASH_AT={step}")),
            "{}",
            l.log()
        );
        assert_eq!(l.state_files().len(), 1, "{step}: the run is on disk");
        assert_eq!(task(&srv, id).task.status, "dispatching");
        let agent_name = agent.display().to_string();
        let _guard = scopeguard_kill(&agent_name);
        l.unset("OPS_LAUNCHER_CRASH_AT");
        l.start_again();
        match step {
            "before_spawn" => {
                // Nothing ran: the task is blocked saying so.
                let t = wait_status(&srv, id, "waiting", 30);
                assert!(t.task.blocked);
                let reason = t.task.blocked_reason.as_deref().unwrap();
                assert!(
                    reason.contains("the launcher stopped before it started the agent"),
                    "{reason}"
                );
                assert!(processes_running(&agent_name).is_empty(), "no agent runs");
            }
            _ => {
                // The agent ran under its supervisor and is reported with
                // its exit code.
                let t = wait_status(&srv, id, "review", 30);
                assert_eq!(t.task.exit_code, Some(0), "{t:?}");
                assert!(t
                    .task
                    .dispatch_output
                    .as_deref()
                    .unwrap()
                    .contains("deliverable after 2 s"));
            }
        }
        wait_for(10, "state file removed", || {
            l.state_files().is_empty().then_some(())
        });
        assert!(processes_running(&agent_name).is_empty());
    }
}

/// An agent that ends while no launcher watches it, with a line on stdout,
/// its error on stderr and exit code 3, is judged by the restarted launcher
/// as the one that started it would have: blocked with the early-exit
/// signature, not in review for having printed something.
#[test]
fn an_adopted_agent_exiting_non_zero_is_blocked_with_its_exit_code() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let logs = srv.dir.path().join("launcher-logs");
    let mut l = Launcher::start(
        &srv,
        &logs,
        &[
            ("SUPPORTED_AGENT_SLUGS", "codex"),
            (
                "AGENT_CMD_CODEX",
                &format!("{} 2", example("fake-agent-fail-stderr.sh")),
            ),
        ],
    );
    let id = queued_task(&srv, "codex", "fails quietly");
    wait_status(&srv, id, "doing", 30);
    let agent = started_pid(&srv, id);
    let _guard = AgentGuard(agent);
    l.kill9();
    // The agent ends while no launcher watches it.
    wait_until(30, "the agent to end", || !alive(agent));
    l.start_again();
    let t = wait_status(&srv, id, "waiting", 30);
    assert!(t.task.blocked);
    let reason = t.task.blocked_reason.as_deref().unwrap();
    assert!(
        reason.contains("launcher process exited early (code=3, signal=null)"),
        "{reason}"
    );
    assert!(blockers(&t).join("").contains("the build broke"));
}

/// Kills every process mentioning `needle` when dropped.
fn scopeguard_kill(needle: &str) -> impl Drop + '_ {
    struct Guard<'a>(&'a str);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            for pid in processes_running(self.0) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
    Guard(needle)
}

/// No agent runs unbounded: one that goes silent, and one that outruns its
/// timeout, are ended (their process group too), their tasks blocked with
/// a signature that says which, and their slots freed for the next task.
#[test]
fn silent_and_overdue_agents_are_ended_and_their_slots_freed() {
    let srv = Server::start();
    enable_dispatch(&srv);
    create_agent(&srv, "quiet");
    let logs = srv.dir.path().join("launcher-logs");
    let _l = Launcher::start(
        &srv,
        &logs,
        &[
            ("SUPPORTED_AGENT_SLUGS", "quiet,codex"),
            ("AGENT_CMD_QUIET", &example("fake-agent-silent.sh")),
            ("AGENT_SILENCE_MINUTES", "2s"),
            (
                "AGENT_CMD_CODEX",
                &format!("{} 600", example("fake-agent-long.sh")),
            ),
            ("AGENT_TIMEOUT_CODEX", "3s"),
            ("OPS_LAUNCHER_SLOTS", "1"),
        ],
    );
    let silent = queued_task(&srv, "quiet", "hangs");
    let t = wait_status(&srv, silent, "waiting", 30);
    let reason = t.task.blocked_reason.as_deref().unwrap();
    assert!(reason.contains("agent silent for 2 s"), "{reason}");
    assert!(blockers(&t).join("").contains("fake agent: connecting"));

    // The one slot is free again: the next task runs, and chatting does
    // not save it from its run timeout.
    let overdue = queued_task(&srv, "codex", "runs forever");
    let t = wait_status(&srv, overdue, "waiting", 30);
    let reason = t.task.blocked_reason.as_deref().unwrap();
    assert!(reason.contains("agent timed out after 3 s"), "{reason}");
    assert!(processes_running("fake-agent-long.sh 600").is_empty());
    assert!(processes_running("fake-agent-silent.sh").is_empty());
}

/// A CLI that is installed but not logged in is not usable: the built-in
/// logged-in check of a known CLI finds it out, the heartbeat says why and
/// what to run, and no task is claimed for it. With the check turned off
/// (`none`), a run that fails for it says so in `blocked_reason`.
#[test]
fn a_logged_out_cli_is_found_out_before_and_after_a_claim() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let logs = srv.dir.path().join("launcher-logs");
    let fake_clis = format!(
        "{}/examples/agents/fake-clis:{}",
        env!("CARGO_MANIFEST_DIR"),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut l = Launcher::start(
        &srv,
        &logs,
        &[
            ("SUPPORTED_AGENT_SLUGS", "claudecode"),
            ("PATH", fake_clis.as_str()),
        ],
    );
    let h = wait_for(10, "the heartbeat", || {
        let h = health(&srv);
        workers(&h).first()?.agents.first()?;
        Some(h)
    });
    let agent = workers(&h)[0].agents[0].clone();
    assert!(agent.available, "{h:?}");
    assert!(!agent.authenticated, "{h:?}");
    let why = agent.reason.unwrap();
    assert!(why.starts_with("not logged in: claude"), "{why}");
    assert!(why.contains("claude auth login"), "{why}");
    assert!(!h.agent_slugs.iter().any(|s| s == "claudecode"));
    // The launcher does not ask for a task while no agent is usable, and
    // probes its agents on the heartbeat's period: once a heartbeat has
    // come after the dispatch, it has looked again and left the task.
    wait_until(10, "the launcher to stop claiming", || {
        l.log()
            .contains("no usable agent on this host: not claiming")
    });
    let seen = |h: &Health| workers(h)[0].last_seen_at.clone();
    let before = seen(&health(&srv));
    let held = queued_task(&srv, "claudecode", "needs a login");
    wait_until(10, "a heartbeat after the dispatch", || {
        seen(&health(&srv)) != before
    });
    assert_eq!(task(&srv, held).task.status, "queued", "never claimed");
    assert!(!l.log().contains(&format!("task {held}: ")), "{}", l.log());

    // Checking turned off: the run fails, and says why.
    l.kill9();
    let mut l = Launcher::start(
        &srv,
        &logs,
        &[
            ("SUPPORTED_AGENT_SLUGS", "claudecode"),
            ("PATH", fake_clis.as_str()),
            ("AGENT_AUTH_CHECK_CLAUDECODE", "none"),
        ],
    );
    let t = wait_status(&srv, held, "waiting", 30);
    let reason = t.task.blocked_reason.as_deref().unwrap();
    assert!(reason.starts_with("not logged in: claude"), "{reason}");
    assert!(
        reason.contains("launcher process exited early (code=1"),
        "{reason}"
    );
    l.kill9();
}

/// One broken CLI does not drain the queue: after two consecutive failures
/// with the same signature the slug is held back (not usable, nothing
/// claimed, the heartbeat says why), and tried again after the pause.
#[test]
fn a_cli_failing_the_same_way_is_held_back_then_tried_again() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let logs = srv.dir.path().join("launcher-logs");
    let _l = Launcher::start(
        &srv,
        &logs,
        &[
            ("SUPPORTED_AGENT_SLUGS", "codex"),
            ("AGENT_CMD_CODEX", &example("fake-agent-fail.sh")),
            ("AGENT_BREAKER_FAILURES", "2"),
            ("AGENT_BREAKER_PAUSE", "6s"),
            ("OPS_LAUNCHER_SLOTS", "1"),
        ],
    );
    let ids: Vec<i64> = (0..3)
        .map(|i| queued_task(&srv, "codex", &format!("breaks {i}")))
        .collect();
    for id in &ids[..2] {
        wait_status(&srv, *id, "waiting", 30);
    }
    let w = wait_for(10, "the held-back slug in the heartbeat", || {
        let reason = workers(&health(&srv))
            .first()?
            .agents
            .first()?
            .reason
            .clone()?;
        reason.starts_with("held back").then_some(reason)
    });
    assert!(
        w.contains(
            "its last 2 tasks on this host failed with \"launcher process exited early (code=3"
        ),
        "{w}"
    );
    assert_eq!(
        task(&srv, ids[2]).task.status,
        "queued",
        "nothing claimed while held back"
    );
    // After the pause the CLI is tried again.
    let t = wait_status(&srv, ids[2], "waiting", 40);
    assert!(t
        .task
        .blocked_reason
        .as_deref()
        .unwrap()
        .contains("exited early (code=3"));
}

/// The processes of process group `group`, from `/proc`.
fn group_members(group: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                let rest: Vec<&str> = s
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .collect();
                rest.first() != Some(&"Z") && rest.get(2) == Some(&group.to_string().as_str())
            })
        })
        .collect()
}

/// Cancelling a running task over HTTP: the launcher ends the agent's
/// whole process group when it learns of it, and the task says who
/// cancelled it and how the agent ended.
#[test]
fn a_cancelled_run_has_its_process_group_ended_and_its_end_recorded() {
    const AGENT: &str = "fake-agent-long.sh 617";
    let srv = Server::start();
    enable_dispatch(&srv);
    let logs = srv.dir.path().join("launcher-logs");
    let _l = Launcher::start(
        &srv,
        &logs,
        &[
            ("SUPPORTED_AGENT_SLUGS", "codex"),
            (
                "AGENT_CMD_CODEX",
                &format!("{} 617", example("fake-agent-long.sh")),
            ),
            ("OPS_LAUNCHER_SLOTS", "1"),
        ],
    );
    let _guard = scopeguard_kill(AGENT);
    let id = queued_task(&srv, "codex", "runs until cancelled");
    wait_status(&srv, id, "doing", 30);
    let group = started_pid(&srv, id);
    wait_until(20, "the agent to run", || {
        !processes_running(AGENT).is_empty()
    });
    assert!(
        !group_members(group).is_empty(),
        "the run's group {group} is there"
    );

    assert_eq!(srv.service().cancel(id).ok().status, "waiting");

    let confirmed = confirmation(&srv, id);
    assert!(
        group_members(group).is_empty(),
        "group {group} still has {:?}",
        group_members(group)
    );
    assert!(!alive(group));
    let left: Vec<String> = processes_running(AGENT)
        .iter()
        .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
        .collect();
    assert!(left.is_empty(), "group {group}: {left:?}");
    let p = &confirmed.payload;
    assert!(
        p["signal"]
            .as_str()
            .is_some_and(|s| s.contains("TERM") || s.contains("KILL"))
            || p["exit_code"].as_i64().is_some(),
        "{p}"
    );
    assert!(
        p["elapsed_ms"].as_i64().is_some_and(|ms| ms < 15_000),
        "{p}"
    );
    let t = task(&srv, id);
    assert_eq!(t.task.status, "waiting");
    assert!(!t.task.blocked);
    let notes: Vec<&str> = t.comments.iter().map(|c| c.body.as_str()).collect();
    assert!(
        notes
            .iter()
            .any(|b| b.starts_with("cancelled by service while doing")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|b| b.starts_with("the cancelled agent ended on worker")),
        "{notes:?}"
    );
    // The slot is free again: the next task runs.
    let next = queued_task(&srv, "codex", "after the cancellation");
    wait_status(&srv, next, "doing", 30);
}

/// An agent that prints nothing gives the launcher no report to be
/// refused: it learns the cancellation from its heartbeat's `cancel`.
#[test]
fn a_silent_cancelled_run_is_ended_through_the_heartbeat() {
    let srv = Server::start();
    enable_dispatch(&srv);
    create_agent(&srv, "quiet");
    let logs = srv.dir.path().join("launcher-logs");
    let l = Launcher::start(
        &srv,
        &logs,
        &[
            ("SUPPORTED_AGENT_SLUGS", "quiet"),
            ("AGENT_CMD_QUIET", &example("fake-agent-silent.sh")),
        ],
    );
    let _guard = scopeguard_kill("fake-agent-silent.sh");
    let id = queued_task(&srv, "quiet", "hangs until cancelled");
    wait_status(&srv, id, "doing", 30);
    let group = started_pid(&srv, id);
    // Its one line is in: from here on it sends nothing.
    wait_until(20, "its output", || {
        !log_comments(&task(&srv, id)).is_empty()
    });
    srv.service().cancel(id).ok();
    confirmation(&srv, id);
    assert!(
        l.log()
            .contains(&format!("the server cancelled tasks [{id}]")),
        "{}",
        l.log()
    );
    wait_until(5, &format!("group {group} to be gone"), || {
        group_members(group).is_empty()
    });
}

/// Cancel a running task and dispatch it again at once, to the same
/// launcher, before that launcher learned of the cancellation: the new
/// claim is not ended by the old cancellation. The launcher ends the old
/// run first (the two would share the task's folder), confirms how it
/// ended, and runs the new claim to `review`; the two agents never ran at
/// the same time.
#[test]
fn a_task_cancelled_and_dispatched_again_to_the_same_launcher_runs_to_review() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let logs = srv.dir.path().join("launcher-logs");
    let journal = srv.dir.path().join("journal");
    let cmd = format!("{} {}", example("fake-agent-timed.sh"), journal.display());
    let l = Launcher::start(
        &srv,
        &logs,
        &[
            ("SUPPORTED_AGENT_SLUGS", "codex"),
            ("AGENT_CMD_CODEX", &cmd),
            ("OPS_LAUNCHER_SLOTS", "2"),
            // The launcher would learn the cancellation from its heartbeat
            // only much later: the new claim is what tells it.
            ("OPS_LAUNCHER_HEARTBEAT_SECONDS", "600"),
        ],
    );
    let _guard = scopeguard_kill("fake-agent-timed.sh");
    let id = queued_task(&srv, "codex", "600 seconds of work");
    wait_status(&srv, id, "doing", 30);
    let first_group = started_pid(&srv, id);
    let svc = srv.service();
    svc.cancel(id).ok();
    let shorter = TaskEdit {
        description: Some("0.2 seconds".into()),
        ..TaskEdit::default()
    };
    svc.edit_task(id, &shorter).ok();
    svc.dispatch(id).ok();

    let t = wait_status(&srv, id, "review", 60);
    assert_eq!(t.task.dispatch_attempts, 2, "{t:?}");
    assert!(!t.task.blocked);
    assert!(
        t.task
            .dispatch_output
            .as_deref()
            .is_some_and(|o| o.contains("deliverable")),
        "{t:?}"
    );
    // The old run's end is confirmed, fenced by its own claim.
    let confirmed = confirmation(&srv, id).payload;
    assert!(
        confirmed["signal"]
            .as_str()
            .is_some_and(|s| s.contains("TERM"))
            || confirmed["exit_code"] == 143,
        "{confirmed}"
    );
    assert!(!alive(first_group), "the first run's group is gone");
    assert!(
        l.log()
            .contains("claimed again while 1 earlier run(s) of it still run here"),
        "{}",
        l.log()
    );
    assert_eq!(
        task(&srv, id).task.status,
        "review",
        "the confirmation changed nothing"
    );
    // One agent after the other, never both.
    let text = std::fs::read_to_string(&journal).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l[0]).collect();
    assert_eq!(kinds, ["start", "end", "start", "end"], "{text}");
    assert_eq!(lines[1][4], "term", "{text}");
    assert_eq!(lines[3][4], "ok", "{text}");
}

/// A launcher that disappears (its host lost) leaves its running task
/// with no owner: once its heartbeat is older than
/// `dispatch_worker_stale_seconds`, the watchdog takes the task back —
/// waiting, blocked with the worker and when it was last seen, an alert.
/// When that launcher comes back with the agent still running, it is told
/// to end it (the withdrawn claim is in its heartbeat's answer), and it
/// confirms how it ended; the task stays as the watchdog left it.
#[test]
fn a_running_task_whose_launcher_vanished_is_taken_back_and_its_agent_ended_on_return() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let logs = srv.dir.path().join("launcher-logs");
    let journal = srv.dir.path().join("journal");
    let cmd = format!("{} {}", example("fake-agent-timed.sh"), journal.display());
    let mut l = Launcher::start(
        &srv,
        &logs,
        &[
            ("SUPPORTED_AGENT_SLUGS", "codex"),
            ("AGENT_CMD_CODEX", &cmd),
        ],
    );
    let _guard = scopeguard_kill("fake-agent-timed.sh");
    let id = queued_task(&srv, "codex", "600 seconds of work");
    wait_status(&srv, id, "doing", 30);
    let group = started_pid(&srv, id);
    l.kill9();
    assert!(alive(group), "the agent outlives its launcher");

    // The launcher's heartbeat ages past the window (90 s).
    srv.advance_clock(91);
    let svc = srv.service();
    let report = svc.watchdog().ok();
    assert_eq!(report.task_ids, [id], "{report:?}");
    let t = task(&srv, id);
    assert_eq!((t.task.status.as_str(), t.task.blocked), ("waiting", true));
    assert!(
        t.task
            .blocked_reason
            .as_deref()
            .unwrap()
            .contains("was last seen at"),
        "{t:?}"
    );
    assert!(blockers(&t)
        .iter()
        .any(|b| b.starts_with("stale run: worker")));
    let alerts = svc.get("/api/alerts?status=open").json;
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "dispatch.stale_running" && a["task_id"] == id),
        "{alerts}"
    );

    // It comes back: it adopts the run, learns the claim was withdrawn,
    // ends the agent and confirms.
    l.start_again();
    let confirmed = confirmation(&srv, id).payload;
    assert_eq!(confirmed["reason"], "stale_running", "{confirmed}");
    wait_for(10, "the agent's group to be gone", || {
        group_members(group).is_empty().then_some(())
    });
    let t = task(&srv, id);
    assert_eq!((t.task.status.as_str(), t.task.blocked), ("waiting", true));
    wait_for(10, "state file removed", || {
        l.state_files().is_empty().then_some(())
    });
}

/// Lets the next long-poll claim of `worker` through the test hook: when
/// this returns, it has taken its answer over and is on its way to park.
fn next_park(srv: &Server, worker: &str) {
    srv.hold_park(worker, "arm");
    assert!(
        srv.hold_park(worker, "wait"),
        "{worker} never parked a claim"
    );
    srv.hold_park(worker, "release");
}

#[test]
fn a_launcher_killed_while_parked_leaves_the_next_task_to_its_successor() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let logs = srv.dir.path().join("launcher-logs");
    let mut l = Launcher::start(
        &srv,
        &logs,
        &[
            (
                "AGENT_CMD_CODEX",
                &format!(
                    "{} {{prompt_file}} {{task_id}}",
                    example("fake-agent-ok.sh")
                ),
            ),
            ("SUPPORTED_AGENT_SLUGS", "codex"),
            ("OPS_LAUNCHER_CLAIM_WAIT_SECONDS", "10"),
        ],
    );
    let worker = wait_for(20, "a fresh worker", || {
        workers(&health(&srv)).pop().map(|w| w.worker_id)
    });
    // Parked on the server, then killed: its connection closes.
    next_park(&srv, &worker);
    l.kill9();
    // The restarted launcher (same log dir, same worker id) parks too.
    l.start_again();
    next_park(&srv, &worker);
    let queued_at = Instant::now();
    let id = queued_task(&srv, "codex", "after the restart");
    let claimed = wait_for(5, "the task claimed", || {
        (task(&srv, id).task.status != "queued").then_some(Instant::now())
    });
    assert!(
        claimed - queued_at < Duration::from_secs(1),
        "claimed {:?} after the dispatch",
        claimed - queued_at
    );
    wait_status(&srv, id, "review", 30);
    let kinds = event_kinds(&srv, id);
    let claims = kinds.iter().filter(|k| *k == "dispatch.claimed").count();
    let undelivered = kinds
        .iter()
        .filter(|k| *k == "dispatch.claim_undelivered")
        .count();
    assert_eq!(claims, 1 + undelivered, "{kinds:?}");
}
