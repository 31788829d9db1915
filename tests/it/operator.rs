//! `ops-center doctor` and the smokes, run as an operator would.

use std::process::{Command, Output};

use ops_center::protocol::admin::AgentChange;

use crate::client::{task, TaskSpec};
use crate::launcher::example;
use crate::util::{bin, enable_dispatch, queued_task, Server, Worker, TOKEN};

fn run(args: &[&str], vars: &[(&str, &str)]) -> (Output, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OPS_AGENT_USER", crate::util::own_user());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run ops-center");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn doctor_passes_when_every_runtime_exists_and_fails_naming_the_missing_one() {
    let ok = example("fake-agent-ok.sh");
    let (out, text) = run(
        &["doctor"],
        &[
            ("SUPPORTED_AGENT_SLUGS", "opencode,codex"),
            ("AGENT_CMD_OPENCODE", &ok),
            // A shell wrapper is checked for the program it runs.
            ("AGENT_CMD_CODEX", "sh -c 'exec cat'"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("[doctor] OK opencode: {ok}\n")),
        "{text}"
    );
    assert!(
        text.contains("[doctor] OK codex: /") && text.contains("/cat\n"),
        "{text}"
    );
    assert!(
        text.contains("[doctor] PASS all runtimes available.\n"),
        "{text}"
    );

    let (out, text) = run(
        &["doctor"],
        &[
            ("SUPPORTED_AGENT_SLUGS", "codex"),
            ("AGENT_CMD_CODEX", "sh -c 'exec no-such-codex-cli exec -'"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("[doctor] MISSING codex: no-such-codex-cli (not found in PATH"),
        "{text}"
    );

    let (out, text) = run(
        &["doctor"],
        &[
            ("SUPPORTED_AGENT_SLUGS", "opencode,hermes"),
            ("AGENT_CMD_OPENCODE", &ok),
            ("PATH", "/nonexistent"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[doctor] OK opencode:"), "{text}");
    assert!(
        text.contains("[doctor] MISSING hermes: hermes (not found in PATH"),
        "{text}"
    );
    assert!(
        text.contains("[doctor] FAIL 1 of 2 runtimes cannot run: hermes (missing)."),
        "{text}"
    );
    assert!(!text.contains("PASS"), "{text}");
}

#[test]
fn doctor_uses_the_launch_command_set_in_ops() {
    let srv = Server::start();
    let svc = srv.service();
    let agents = svc.agents().ok().agents;
    let hermes = agents.iter().find(|a| a.slug == "hermes").unwrap().id;
    let cmd = format!("{} {{prompt_file}}", example("fake-agent-ok.sh"));
    let command = AgentChange {
        launch_command: Some(cmd),
        ..AgentChange::default()
    };
    svc.edit_agent(hermes, &command).ok();
    let base = format!("http://{}/api", srv.addr);
    let (out, text) = run(
        &["doctor"],
        &[
            ("SUPPORTED_AGENT_SLUGS", "hermes"),
            ("OPS_API_BASE", &base),
            ("OPS_SERVICE_TOKEN", TOKEN),
            ("PATH", "/nonexistent"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "[doctor] OK hermes: {}",
            example("fake-agent-ok.sh")
        )),
        "{text}"
    );
}

/// What a smoke must leave as it found it.
fn footprint(srv: &Server) -> String {
    let conn = srv.sql();
    let mut out = String::new();
    for q in [
        "SELECT count(*) FROM tasks",
        "SELECT count(*) FROM task_comments",
        "SELECT count(*) FROM alerts",
        "SELECT count(*) FROM worker_heartbeats",
        "SELECT count(*) FROM agents",
    ] {
        let v: String = conn
            .query_row(q, [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| format!("{v:?}"))
            .unwrap_or_else(|_| "none".into());
        out.push_str(&format!("{q} = {v}\n"));
    }
    // The effective value: a default restored may now be a stored row.
    let v = srv.service().setting("dispatch_enabled").ok().value;
    out.push_str(&format!("dispatch_enabled = {v:?}\n"));
    out
}

fn smoke(srv: &Server, which: &str) -> String {
    let base = format!("http://{}/api", srv.addr);
    let (out, text) = run(
        &["smoke", which],
        &[
            ("OPS_API_BASE", &base),
            ("OPS_SERVICE_TOKEN", TOKEN),
            ("OPS_WORKSPACE_ID", "1"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "smoke {which} failed:\n{text}");
    text
}

#[test]
fn smokes_pass_against_a_live_server_and_leave_nothing_behind() {
    let srv = Server::start();
    // A real queued task of a real agent must not be touched by the smoke.
    let svc = srv.service();
    let real = svc.new_task(&task("real work").interactive("codex"));
    svc.dispatch(real).ok();
    let before = footprint(&srv);

    let text = smoke(&srv, "dispatch");
    for step in [
        "next",
        "queued",
        "dispatching",
        "doing",
        "review",
        "Human Gate",
        "stale_claim",
    ] {
        assert!(text.contains(step), "no {step} step:\n{text}");
    }
    assert!(text.contains("[smoke] PASS dispatch"), "{text}");
    assert_eq!(
        footprint(&srv),
        before,
        "smoke dispatch left something behind:\n{text}"
    );

    let text = smoke(&srv, "watchdog");
    assert!(text.contains("stale dispatch reconciled"), "{text}");
    assert!(text.contains("recurring failures on task:"), "{text}");
    assert!(text.contains("recurring failures on agent:"), "{text}");
    assert!(text.contains("[smoke] PASS watchdog"), "{text}");
    assert_eq!(
        footprint(&srv),
        before,
        "smoke watchdog left something behind:\n{text}"
    );

    // With dispatch already enabled, it stays enabled.
    svc.set_setting("dispatch_enabled", "true").ok();
    let before = footprint(&srv);
    smoke(&srv, "dispatch");
    let text = smoke(&srv, "watchdog");
    assert_eq!(
        footprint(&srv),
        before,
        "{text}\n{}",
        svc.get("/api/alerts").text
    );
    assert_eq!(
        svc.task(real).ok().task.status,
        "queued",
        "the real task was touched"
    );
    // Later watchdog passes do not raise the smokes' failures again from
    // the audit log. (Dispatch off: with it on and no launcher, the
    // watchdog rightly raises "no fresh worker".)
    svc.set_setting("dispatch_enabled", "false").ok();
    svc.watchdog().ok();
    svc.set_setting("dispatch_enabled", "true").ok();
    assert_eq!(footprint(&srv), before, "{}", svc.get("/api/alerts").text);
}

#[test]
fn the_watchdog_smoke_leaves_real_dispatching_work_alone() {
    let srv = Server::start();
    let base = format!("http://{}/api", srv.addr);
    // A real task stuck in dispatching: the smoke's reconciliation is
    // limited to its own task, so this one stays as it is.
    let svc = srv.service();
    let stuck = queued_task(&srv, task("stuck").interactive("codex"));
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w");
    w.heartbeat(&["codex"], &[]);
    assert_eq!(w.claim_one().0, stuck);
    let (out, text) = run(
        &["smoke", "watchdog"],
        &[("OPS_API_BASE", &base), ("OPS_SERVICE_TOKEN", TOKEN)],
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    let t = svc.task(stuck).ok().task;
    assert_eq!(t.status, "dispatching", "{t:?}");
    assert_eq!(t.claimed_by.as_deref(), Some("w"));
}

#[test]
fn a_failing_smoke_exits_non_zero_and_still_cleans_up() {
    let srv = Server::start();
    let before = footprint(&srv);
    let base = format!("http://{}/api", srv.addr);
    let svc = srv.service();
    // No workspace 999: the smoke fails at its first task, after it has
    // registered its agent and heartbeat, which it must remove again.
    let (out, text) = run(
        &["smoke", "watchdog"],
        &[
            ("OPS_API_BASE", &base),
            ("OPS_SERVICE_TOKEN", TOKEN),
            ("OPS_WORKSPACE_ID", "999"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[smoke] FAIL"), "{text}");
    assert!(text.contains("cleanup:"), "{text}");
    assert_eq!(
        footprint(&srv),
        before,
        "cleanup after a failed step:\n{text}"
    );
    assert!(
        !svc.settings().ok().dispatch_enabled,
        "the setting is restored"
    );

    let (out, text) = run(
        &["smoke", "dispatch"],
        &[
            ("OPS_API_BASE", "http://127.0.0.1:9/api"),
            ("OPS_SERVICE_TOKEN", TOKEN),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[smoke] FAIL"), "{text}");
}
