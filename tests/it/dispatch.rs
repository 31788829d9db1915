//! The dispatch protocol: queueing, claims, worker reports, the Human Gate.

use serde_json::json;

use ops_center::protocol::admin::AgentChange;
use ops_center::protocol::dispatch::{
    ClaimAnswer, ClaimRequest, Failed, Finished, HeartbeatReport, Output, ReconcileRequest,
    RunChange, Started,
};
use ops_center::protocol::health::Health;
use ops_center::protocol::tasks::{NewTask, TaskEdit};

use crate::client::{
    blocked_with, cancel_ended, failed, finished, logged_out, output, started, task, unblocked,
    workers, TaskSpec,
};
use crate::util::{dispatchable, enable_dispatch, event_kinds, queued_task, Server, Worker};

#[test]
fn a_task_goes_from_next_to_review_through_a_worker() {
    let srv = Server::start();
    let svc = srv.service();
    let id = queued_task(&srv, "codex");
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex", "hermes"], &[]);

    let r = w.client.claim(&w.request());
    let claim = r.ok();
    let task = claim.task.as_ref().expect("a task");
    assert_eq!(task.id, id, "{}", r.text);
    assert_eq!(task.status, "dispatching");
    assert_eq!(task.claimed_by.as_deref(), Some("w1"));
    assert_eq!(task.dispatch_attempts, 1);
    assert_eq!(claim.agent.as_ref().unwrap().slug, "codex");
    assert!(r.json["agent"].get("launch_command").is_some());
    assert_eq!(claim.reconciled, 0);
    assert!(
        r.json["task"].get("claim_token").is_none(),
        "the token is not part of the task object"
    );
    let token = claim.claim_token.unwrap();
    assert!(token.len() >= 32);

    let run = Started {
        pid: Some(4242),
        log_path: Some("/tmp/t.log".into()),
        err_log_path: Some("/tmp/t.err.log".into()),
    };
    let t = w.report(id, &token, run).ok();
    assert_eq!(t.status, "doing");
    assert_eq!(t.log_path.as_deref(), Some("/tmp/t.log"));
    // A retried report is harmless.
    w.report(id, &token, started(Some(4242))).ok();

    w.report(id, &token, output("compiling...\n")).ok();
    let t = w
        .report(id, &token, finished(Some(0), "compiling...\nall done\n"))
        .ok();
    assert_eq!(t.status, "review");
    let done = Some("compiling...\nall done\n");
    assert_eq!(t.dispatch_output.as_deref(), done);
    assert_eq!(t.exit_code, Some(0));
    w.report(id, &token, finished(Some(0), "x")).ok();
    let t = svc.task(id).ok();
    assert_eq!(
        t.task.dispatch_output.as_deref(),
        done,
        "a retry changes nothing"
    );
    let logs: Vec<_> = t
        .comments
        .iter()
        .filter(|c| c.author == "ai-dispatch" && c.kind == "log")
        .collect();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].body, "compiling...\n");

    // With evidence, the done guard lets it through.
    svc.move_task(id, "done").ok();
    assert_eq!(
        event_kinds(&srv, id),
        [
            "task.created",
            "task.dispatched",
            "dispatch.claimed",
            "dispatch.started",
            "dispatch.output",
            "dispatch.finished",
            "task.status_changed",
            "task.updated"
        ]
    );
}

#[test]
fn claims_hand_out_only_what_the_worker_can_run() {
    let srv = Server::start();
    let svc = srv.service();
    let w = Worker::new(&srv, "w1");
    let codex = queued_task(&srv, "codex");

    // Dispatch disabled (the default) hands out nothing.
    w.heartbeat(&["codex"], &[]);
    assert_eq!(w.no_claim(), "dispatch_disabled");
    enable_dispatch(&srv);

    // No heartbeat, or a stale one: nothing.
    let stranger = Worker::new(&srv, "never-seen");
    assert_eq!(stranger.no_claim(), "worker_not_fresh");
    srv.advance_clock(91);
    assert_eq!(w.no_claim(), "worker_not_fresh");

    // An agent it does not report usable: nothing.
    let mut beat = w.heartbeat_of(&["hermes"], &[]);
    beat.agents
        .insert(0, logged_out("codex", "codex", "not logged in"));
    assert_eq!(w.beat(&beat).ok().usable_agents, ["hermes"]);
    assert_eq!(w.no_claim(), "no_task");
    // Asking for an agent it cannot run: nothing either.
    let codex_only = ClaimRequest {
        agent_slugs: Some(vec!["codex".into()]),
        ..w.request()
    };
    let answer = w.client.claim(&codex_only).ok();
    assert_eq!(answer.reason.as_deref(), Some("no_usable_agents"));

    // Usable again: it gets the task (GET works as well as POST).
    w.heartbeat(&["codex"], &[]);
    let r = svc.get("/api/dispatch/next?worker_id=w1&agent_slugs=codex,hermes");
    let answer: ClaimAnswer = r.body();
    assert_eq!(answer.task.map(|t| t.id), Some(codex), "{}", r.text);
    assert_eq!(w.no_claim(), "no_task", "never handed out twice");
}

#[test]
fn claims_follow_priority_age_models_and_workspaces() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let low = queued_task(&srv, dispatchable("codex").priority(1));
    let high_old = queued_task(&srv, dispatchable("codex").priority(5));
    let high_new = queued_task(&srv, dispatchable("codex").priority(5));
    let gemma = queued_task(
        &srv,
        dispatchable("codex").priority(9).model("local-gemma4"),
    );
    let ws2 = srv.admin().create_workspace("two").ok().id;
    let other_ws = queued_task(&srv, dispatchable("codex").priority(9).workspace(ws2));

    let qwen = Worker::new(&srv, "qwen-box");
    qwen.heartbeat(&["codex"], &["qwen*", "minimax*"]);
    let scoped = |w: &Worker| {
        let request = ClaimRequest {
            workspace_id: Some(1),
            ..w.request()
        };
        w.client.claim(&request).ok().task.map(|t| t.id)
    };
    assert_eq!(
        scoped(&qwen),
        Some(high_old),
        "the gemma task is skipped by a qwen worker; oldest of the top priority first"
    );
    assert_eq!(scoped(&qwen), Some(high_new));
    assert_eq!(scoped(&qwen), Some(low));
    assert_eq!(scoped(&qwen), None);
    let gemma_box = Worker::new(&srv, "gemma-box");
    gemma_box.heartbeat(&["codex"], &["gemma*"]);
    assert_eq!(scoped(&gemma_box), Some(gemma));
    assert_eq!(
        gemma_box.claim_one().0,
        other_ws,
        "without a workspace filter any workspace"
    );
}

#[test]
fn human_gate_blocks_until_a_human_approves() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let (_, member) = srv.user("member", Some((1, "member")));
    let (_, ws_admin) = srv.user("wsadmin", Some((1, "admin")));

    let id = svc.new_task(&task("rotate prod keys").interactive("codex").sensitive());
    svc.dispatch(id).refused(409, "human_gate");
    let t = svc.task(id).ok().task;
    assert!(t.blocked);
    assert!(t.blocked_reason.unwrap().contains("Human Gate"));
    assert_eq!(t.status, "next");
    assert!(event_kinds(&srv, id).contains(&"dispatch.human_gate_blocked".to_string()));
    assert_eq!(w.no_claim(), "no_task");

    // Never by the service token (an agent cannot approve its own work),
    // nor by a plain member.
    let r = svc.approve(id);
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(member.approve(id).status, 403);
    let t = ws_admin.approve(id).ok();
    assert_eq!(t.gate_approved_by.as_deref(), Some("wsadmin"));
    assert!(!t.blocked, "the gate's block is lifted");

    svc.dispatch(id).ok();
    // Changing the prompt withdraws the approval: the queued task is not
    // handed out until a human approves again.
    let prompt = TaskEdit {
        description: Some("rotate ALL the keys".into()),
        ..TaskEdit::default()
    };
    assert_eq!(svc.edit_task(id, &prompt).ok().gate_approved_at, None);
    assert_eq!(w.no_claim(), "no_task");
    srv.admin().approve(id).ok();
    assert_eq!(w.claim_one().0, id);
    // Changing the agent withdraws it too.
    svc.move_task(id, "next").ok();
    srv.admin().approve(id).ok();
    let agent = TaskEdit {
        agent: Some(Some("hermes".into())),
        ..TaskEdit::default()
    };
    assert_eq!(svc.edit_task(id, &agent).ok().gate_approved_at, None);
    let kinds = event_kinds(&srv, id);
    assert_eq!(kinds.iter().filter(|k| *k == "gate.approved").count(), 3);
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "gate.approval_withdrawn")
            .count(),
        2
    );
}

/// Reconciles every dispatching task at once (`minutes: 0`); their ids.
fn reconcile_all(srv: &Server) -> Vec<i64> {
    let all = ReconcileRequest {
        minutes: Some(0),
        task_ids: None,
    };
    srv.service().reconcile(&all).ok().task_ids
}

/// Lifts the block of task `id` and queues it again.
fn requeue(srv: &Server, id: i64) {
    let svc = srv.service();
    svc.edit_task(id, &unblocked()).ok();
    svc.dispatch(id).ok();
}

#[test]
fn a_reclaimed_tasks_late_report_is_refused() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let id = queued_task(&srv, "codex");
    let old = Worker::new(&srv, "old");
    old.heartbeat(&["codex"], &[]);
    let (_, old_token) = old.claim_one();

    // The claim goes stale and is reconciled; the task is dispatched again
    // and another worker takes it.
    assert_eq!(reconcile_all(&srv), [id]);
    requeue(&srv, id);
    let new = Worker::new(&srv, "new");
    new.heartbeat(&["codex"], &[]);
    let (_, new_token) = new.claim_one();
    assert_ne!(old_token, new_token);

    let before = srv.fingerprint();
    // Every report, by the old worker and by the new worker's id, with the
    // old token.
    for w in [&old, &new] {
        w.report(id, &old_token, started(Some(1)))
            .refused(409, "stale_claim");
        w.report(id, &old_token, output("late"))
            .refused(409, "stale_claim");
        w.report(id, &old_token, finished(Some(0), "late output"))
            .refused(409, "stale_claim");
        w.report(id, &old_token, failed("late", "late", ""))
            .refused(409, "stale_claim");
    }
    assert_eq!(
        before,
        srv.fingerprint(),
        "a stale report changed something"
    );
    let t = new.report(id, &new_token, started(Some(2))).ok();
    assert_eq!(t.dispatch_attempts, 2);
}

#[test]
fn failures_become_blockers_with_evidence() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);

    let failing = queued_task(&srv, "codex");
    let (id, token) = w.claim_one();
    assert_eq!(id, failing);
    w.report(id, &token, started(Some(7))).ok();
    let t = w
        .report(
            id,
            &token,
            failed(
                "command not found",
                "command not found in .err.log",
                "sh: 1: codex: command not found",
            ),
        )
        .ok();
    assert_eq!(t.status, "waiting");
    assert!(t.blocked);
    assert_eq!(
        t.blocked_reason.as_deref(),
        Some("command not found in .err.log")
    );
    let t = svc.task(id).ok();
    let blocker = t
        .comments
        .iter()
        .find(|c| c.kind == "blocker")
        .expect("a blocker comment");
    assert!(blocker.body.contains("sh: 1: codex: command not found"));
    assert!(event_kinds(&srv, id).contains(&"dispatch.failed".to_string()));

    // A run that ends without output is parked, not sent to review.
    let silent = queued_task(&srv, "codex");
    let (id, token) = w.claim_one();
    assert_eq!(id, silent);
    w.report(id, &token, started(None)).ok();
    let t = w.report(id, &token, finished(None, "")).ok();
    assert_eq!(t.status, "waiting");
    assert!(t.blocked);
    assert_eq!(
        t.blocked_reason.as_deref(),
        Some("finished without deliverable evidence")
    );
    svc.move_task(id, "done").refused(409, "done_guard");
}

#[test]
fn dispatch_refuses_what_cannot_run() {
    let srv = Server::start();
    let svc = srv.service();
    let manual = svc.new_task(&task("m").agent("codex"));
    let no_agent = svc.new_task(&NewTask {
        execution: Some("interactive".into()),
        ..task("n")
    });
    let blocked = svc.new_task(&task("b").interactive("codex"));
    let block = TaskEdit {
        blocked: Some(true),
        blocked_reason: Some(Some("waiting on a key".into())),
        ..TaskEdit::default()
    };
    svc.edit_task(blocked, &block).ok();
    let inactive = svc.new_task(&task("i").interactive("claudecode"));
    let off = AgentChange {
        active: Some(false),
        ..AgentChange::default()
    };
    svc.edit_agent(2, &off).ok();
    let queued = queued_task(&srv, "codex");
    let before = srv.fingerprint();
    for (id, code) in [
        (manual, "not_interactive"),
        (no_agent, "no_agent"),
        (blocked, "task_blocked"),
        (inactive, "agent_inactive"),
        (queued, "invalid_transition"),
    ] {
        svc.dispatch(id).refused(409, code);
    }
    assert_eq!(svc.dispatch(99999).status, 404);
    assert_eq!(before, srv.fingerprint());
}

#[test]
fn dispatch_output_keeps_the_tail_of_long_output() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let id = queued_task(&srv, "codex");
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let (_, token) = w.claim_one();
    w.report(id, &token, started(None)).ok();
    // 100 KiB of numbered lines, then a last line that must survive.
    let mut long: String = (0..10_000).map(|i| format!("line {i:05}\n")).collect();
    long.push_str("THE END\n");
    let t = w.report(id, &token, finished(Some(0), &long)).ok();
    let kept = t.dispatch_output.unwrap();
    assert_eq!(kept.len(), 64 * 1024, "bounded to 64 KiB");
    assert!(kept.ends_with("line 09999\nTHE END\n"), "the tail is kept");
    assert!(long.ends_with(&kept));
}

#[test]
fn a_claim_whose_answer_was_lost_is_requeued_by_the_next_heartbeats() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    let other = Worker::new(&srv, "w2");
    w.heartbeat(&["codex"], &[]);
    other.heartbeat(&["codex"], &[]);
    let lost = queued_task(&srv, dispatchable("codex").priority(9));
    let held = queued_task(&srv, dispatchable("codex").priority(8));
    let elsewhere = queued_task(&srv, dispatchable("codex").priority(7));
    // w1 claims two tasks but (its answer lost) only knows of one; w2 holds
    // the third and sends no heartbeat.
    let (t, lost_token) = w.claim_one();
    assert_eq!(t, lost);
    assert_eq!(w.claim_one().0, held);
    assert_eq!(other.claim_one().0, elsewhere);
    let beat = |running: &[i64]| {
        let report = HeartbeatReport {
            running_task_ids: running.to_vec(),
            ..w.heartbeat_of(&["codex"], &[])
        };
        w.beat(&report).ok()
    };
    let status = |id: i64| svc.task(id).ok().task;
    let age_claims = |secs: i64| srv.advance_clock(secs);

    // Within the grace (60 s by default) the claim answer may still be on
    // its way: nothing moves.
    assert_eq!(beat(&[held]).requeued, NONE);
    assert_eq!(status(lost).status, "dispatching");

    // Past it, the task the worker does not list goes back to the queue.
    age_claims(61);
    assert_eq!(beat(&[held]).requeued, [lost]);
    let t = status(lost);
    assert_eq!(t.status, "queued");
    assert!(!t.blocked, "it never started: not blocked");
    assert_eq!(t.claimed_by, None);
    assert!(event_kinds(&srv, lost).contains(&"dispatch.claim_lost".to_string()));
    // The listed task and the other worker's stay as they are.
    assert_eq!(status(held).status, "dispatching");
    assert_eq!(status(elsewhere).status, "dispatching");
    // The lost claim's token is dead; the task is handed out again.
    w.report(lost, &lost_token, started(Some(1)))
        .refused(409, "stale_claim");
    assert_eq!(w.claim_one().0, lost);

    // The grace is a setting.
    svc.set_setting("dispatch_claim_grace_seconds", "300").ok();
    age_claims(120);
    assert_eq!(beat(&[]).requeued, NONE);
    age_claims(200);
    let mut requeued = beat(&[]).requeued;
    requeued.sort();
    assert_eq!(requeued, vec![lost, held]);
}

/// No task ids.
const NONE: [i64; 0] = [];

/// Health names what an operator must act on about the runtimes: each
/// active agent no fresh worker can run, with the worker's reason (not
/// logged in, and how to log in), and each task a worker runs whose agent
/// has shown nothing for ten minutes, before the launcher's silence timeout.
#[test]
fn health_names_logged_out_agents_and_silent_running_tasks() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    let beat = |running: &[i64]| {
        let mut report = w.heartbeat_of(&["codex"], &[]);
        report.agents.push(logged_out(
            "claudecode",
            "claude",
            "not logged in: claude; log in with: claude auth login",
        ));
        report.running_task_ids = running.to_vec();
        w.beat(&report).ok();
    };
    beat(&[]);
    let id = queued_task(&srv, "codex");
    let token = w.claim().claim_token.expect("a claim");
    w.report(id, &token, started(Some(1))).ok();
    beat(&[id]);

    let warnings = |srv: &Server| -> String { srv.service().health("").ok().warnings.join("\n") };
    let now = warnings(&srv);
    assert!(
        now.contains("claudecode (not logged in: claude; log in with: claude auth login)"),
        "{now}"
    );
    assert!(!now.contains("no output"), "{now}");

    // Eleven minutes without a sign of life from the agent; the worker
    // itself goes on beating.
    srv.advance_clock(660);
    beat(&[id]);
    let later = warnings(&srv);
    assert!(
        later.contains(&format!(
            "no output for 10 min or more: #{id} (codex, 11 min)"
        )),
        "{later}"
    );
    // Output is a sign of life.
    w.report(id, &token, output("still working\n")).ok();
    assert!(!warnings(&srv).contains("no output"));
}

/// An `output` report sent again (the launcher died after the server took
/// it, before it noted so) is recognised by its offset and logged once; a
/// report without an offset (an older launcher) is taken as before, and a
/// new claim starts the offsets again.
#[test]
fn a_retried_output_chunk_is_logged_once() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let id = queued_task(&srv, "codex");
    let (_, token) = w.claim_one();
    let logs = |srv: &Server| -> Vec<String> {
        let t = srv.service().task(id).ok();
        t.comments
            .into_iter()
            .filter(|c| c.kind == "log")
            .map(|c| c.body)
            .collect()
    };
    let at = |chunk: &str, offset: i64| Output {
        chunk: chunk.into(),
        offset: Some(offset),
        events: Vec::new(),
    };
    for (chunk, offset) in [
        ("one\n", 0),
        ("one\n", 0),
        ("two\n", 4),
        ("two\n", 4),
        ("stale\n", 2),
    ] {
        w.report(id, &token, at(chunk, offset)).ok();
    }
    assert_eq!(logs(&srv), ["one\n", "two\n"]);
    for bad in [json!(-1), json!("4"), json!(1.5)] {
        let r = w.report_raw(id, &token, "output", json!({"chunk": "x", "offset": bad}));
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.text.contains("offset"), "{}", r.text);
    }
    // Without an offset: taken, as from a launcher that does not send it.
    w.report(id, &token, output("legacy\n")).ok();
    assert_eq!(logs(&srv).len(), 3);

    // A new claim of the task starts again from offset 0.
    reconcile_all(&srv);
    requeue(&srv, id);
    let (again, token) = w.claim_one();
    assert_eq!(again, id);
    w.report(id, &token, at("second run\n", 0)).ok();
    assert_eq!(logs(&srv).len(), 4, "{:?}", logs(&srv));
}

/// Health's worker list follows every heartbeat and every forgotten worker
/// (the server keeps the heartbeats parsed between calls), a worker turns
/// stale in it by the clock alone, and `?workers=false` leaves the list out
/// but counts the workers all the same.
#[test]
fn health_worker_list_follows_heartbeats_and_can_be_left_out() {
    let srv = Server::start();
    let svc = srv.service();
    let beat = |id: &str, busy: i64, draining: bool| {
        let w = Worker::new(&srv, id);
        let report = HeartbeatReport {
            host: format!("{id}.example"),
            slots_total: 2,
            slots_busy: busy,
            draining,
            ..w.heartbeat_of(&["codex"], &[])
        };
        w.beat(&report).ok();
    };
    let health = |query: &str| svc.health(query).ok();
    let ids = |h: &Health| -> Vec<String> { workers(h).into_iter().map(|w| w.worker_id).collect() };
    beat("w1", 0, false);
    srv.advance_clock(1);
    beat("w2", 0, false);
    let h = health("");
    assert_eq!(ids(&h), ["w2", "w1"], "most recently seen first: {h:?}");
    assert_eq!(workers(&h)[1].slots_busy, 0);
    assert_eq!(h.agent_slugs, ["codex"], "two workers, one slug: {h:?}");

    // A new heartbeat of w1 replaces what the list showed of it.
    srv.advance_clock(1);
    beat("w1", 2, true);
    let h = health("");
    assert_eq!(ids(&h), ["w1", "w2"], "{h:?}");
    let w1 = &workers(&h)[0];
    assert_eq!((w1.slots_busy, w1.draining, w1.fresh), (2, true, true));
    assert_eq!(h.worker_summary.slots_busy, 2);
    assert_eq!(h.agent_slugs, ["codex"], "w2 still runs codex");

    // Without the list: the same counts and warnings, no worker named.
    let r = svc.health("?workers=false");
    let short = r.ok();
    assert!(short.workers.is_empty());
    assert!(!r.text.contains("w1.example"), "{}", r.text);
    assert_eq!(short.worker_summary, h.worker_summary);
    assert_eq!(short.queue, h.queue);
    assert_eq!(short.agent_slugs, h.agent_slugs);
    assert_eq!(short.warnings, h.warnings);
    assert_eq!(short.settings, h.settings);
    assert_eq!(health("?workers=true"), health(""));

    svc.forget_worker("w2").ok();
    let h = health("");
    assert_eq!(ids(&h), ["w1"], "{h:?}");
    assert_eq!(h.worker_summary.total, 1);

    // Stale by the clock, with no heartbeat in between.
    srv.advance_clock(3600);
    let h = health("");
    assert!(!workers(&h)[0].fresh, "{h:?}");
    assert_eq!(h.worker_summary.stale, 1);
    assert_eq!(h.worker_summary.fresh, 0);

    svc.health("?workers=maybe").refused(400, "invalid_query");
}

/// `POST /api/tasks/:id/retry` lifts a failed run's block and queues the
/// task in one step, with `task.unblocked` then `task.dispatched`; when
/// the dispatch part is refused nothing changes, the block included; the
/// Human Gate holds as for a dispatch.
#[test]
fn retry_unblocks_and_dispatches_in_one_step() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let id = queued_task(&srv, "codex");
    let (claimed, token) = w.claim_one();
    assert_eq!(claimed, id);
    w.report(id, &token, started(Some(7))).ok();
    let t = w
        .report(id, &token, failed("boom", "it broke", "boom"))
        .ok();
    assert_eq!((t.status.as_str(), t.blocked), ("waiting", true));
    svc.dispatch(id).refused(409, "task_blocked");

    let r = svc.retry(id);
    let queued = r.ok();
    assert_eq!(queued.task.status, "queued");
    assert!(!queued.task.blocked);
    assert_eq!(queued.task.blocked_reason, None);
    assert!(queued.dispatch_enabled);
    assert_eq!(r.json.get("warning"), None, "{}", r.text);
    let kinds = event_kinds(&srv, id);
    assert_eq!(
        &kinds[kinds.len() - 2..],
        ["task.unblocked", "task.dispatched"]
    );
    let ev = svc
        .events(&format!("?task_id={id}&kind=task.unblocked"))
        .ok();
    assert_eq!(ev.events[0].payload["because"], "retry", "{ev:?}");
    assert_eq!(ev.events[0].payload["reason"], "it broke");
    // The worker takes it again.
    assert_eq!(w.claim_one().0, id);

    // A task that is not blocked: the same as a dispatch, no unblock event.
    let plain = svc.new_task(&task("p").interactive("codex"));
    assert_eq!(svc.retry(plain).ok().task.status, "queued");
    assert!(!event_kinds(&srv, plain).contains(&"task.unblocked".to_string()));

    // Refused dispatches change nothing: a blocked manual task stays
    // blocked, a blocked done task stays as it is, the unapproved gate
    // answers as a dispatch does.
    let manual = svc.new_task(&task("m").agent("codex"));
    svc.edit_task(manual, &blocked_with("x")).ok();
    let queued = queued_task(&srv, "codex");
    // Blocked and in `doing`: the unblock is made, then the status refused,
    // and the unblock is rolled back with it.
    let busy = svc.new_task(&task("b").interactive("codex"));
    let stuck = TaskEdit {
        status: Some("doing".into()),
        ..blocked_with("stuck")
    };
    svc.edit_task(busy, &stuck).ok();
    let before = srv.fingerprint();
    for (refused, code) in [
        (manual, "not_interactive"),
        (queued, "invalid_transition"),
        (busy, "invalid_transition"),
    ] {
        svc.retry(refused).refused(409, code);
    }
    assert_eq!(svc.retry(99999).status, 404);
    assert_eq!(before, srv.fingerprint());
    assert!(svc.task(manual).ok().task.blocked);

    let sensitive = svc.new_task(&task("s").interactive("codex").sensitive());
    svc.retry(sensitive).refused(409, "human_gate");
    let t = svc.task(sensitive).ok().task;
    assert_eq!((t.status.as_str(), t.blocked), ("next", true));
    // Still gated: retrying does not lift the gate's block.
    svc.retry(sensitive).refused(409, "human_gate");
    assert!(svc.task(sensitive).ok().task.blocked);
}

/// With `dispatch_enabled=false` a dispatch (or retry) still queues the
/// task, and its answer says that no worker will take it yet.
#[test]
fn dispatch_answers_a_warning_while_dispatch_is_off() {
    let srv = Server::start();
    let svc = srv.service();
    let id = svc.new_task(&task("d").interactive("codex"));
    let queued = svc.dispatch(id).ok();
    assert_eq!(queued.task.status, "queued");
    assert!(!queued.dispatch_enabled);
    assert_eq!(queued.warning.as_deref(), Some("dispatch_disabled"));
    let other = svc.new_task(&task("r").interactive("codex"));
    let retried = svc.retry(other).ok();
    assert_eq!(retried.warning.as_deref(), Some("dispatch_disabled"));
    enable_dispatch(&srv);
    let third = svc.new_task(&task("e").interactive("codex"));
    let r = svc.dispatch(third);
    assert!(r.ok().dispatch_enabled, "{}", r.text);
    assert_eq!(r.json.get("warning"), None);
}

/// The claim keeps the settings it read until one changes: a setting
/// changed through the API, or written by another process (as `ops-center
/// admin` does), applies to the very next claim.
#[test]
fn a_changed_setting_applies_to_the_next_claim() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let set = |key: &str, value: &str| {
        svc.set_setting(key, value).ok();
    };
    set("dispatch_worker_stale_seconds", "10");
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let first = queued_task(&srv, "codex");
    assert_eq!(w.claim_one().0, first);

    // The heartbeat is now 30 s old: stale for 10 s, fresh for 60 s.
    let second = queued_task(&srv, "codex");
    srv.advance_clock(30);
    assert_eq!(w.no_claim(), "worker_not_fresh");
    set("dispatch_worker_stale_seconds", "60");
    assert_eq!(w.claim_one().0, second);

    // 90 s old; another process allows 120 s, then turns dispatch off.
    let third = queued_task(&srv, "codex");
    srv.advance_clock(60);
    assert_eq!(w.no_claim(), "worker_not_fresh");
    let other_process = srv.sql_write();
    other_process
        .execute(
            "UPDATE ops_settings SET value = '120' WHERE key = 'dispatch_worker_stale_seconds'",
            [],
        )
        .unwrap();
    assert_eq!(w.claim_one().0, third);
    let fourth = queued_task(&srv, "codex");
    other_process
        .execute(
            "UPDATE ops_settings SET value = 'false' WHERE key = 'dispatch_enabled'",
            [],
        )
        .unwrap();
    assert_eq!(w.no_claim(), "dispatch_disabled");
    set("dispatch_enabled", "true");
    assert_eq!(w.claim_one().0, fourth);
}

/// A heartbeat of `w` listing `running`: its `cancel` (task ids, for older
/// launchers) and `cancel_claims` (task and token) as `(id, token)` pairs.
fn cancels_of(srv: &Server, w: &str, running: &[i64]) -> (Vec<i64>, Vec<(i64, String)>) {
    let w = Worker::new(srv, w);
    let report = HeartbeatReport {
        host: "h".into(),
        version: "t".into(),
        slots_busy: 1,
        running_task_ids: running.to_vec(),
        ..w.heartbeat_of(&["codex"], &[])
    };
    let answer = w.beat(&report).ok();
    let mut claims: Vec<(i64, String)> = answer
        .cancel_claims
        .into_iter()
        .map(|c| (c.task_id, c.claim_token))
        .collect();
    claims.sort();
    (answer.cancel, claims)
}

/// A heartbeat of `w` listing `running`; its `cancel` list.
fn cancel_list(srv: &Server, w: &str, running: &[i64]) -> Vec<i64> {
    cancels_of(srv, w, running).0
}

#[test]
fn cancelling_a_queued_task_is_immediate_and_it_can_be_dispatched_again() {
    let srv = Server::start();
    let svc = srv.service();
    let id = queued_task(&srv, "codex");
    let t = svc.cancel(id).ok();
    assert_eq!(t.status, "waiting");
    assert!(!t.blocked);
    let t = svc.task(id).ok();
    assert!(
        t.comments
            .iter()
            .any(|c| c.body.starts_with("cancelled by service while queued")),
        "{t:?}"
    );
    let ev = svc
        .events(&format!("?task_id={id}&kind=task.cancelled"))
        .ok();
    assert_eq!(ev.events[0].actor, "service", "{ev:?}");
    assert_eq!(ev.events[0].payload["from"], "queued");
    assert_eq!(ev.events[0].payload["to"], "waiting");
    // Nothing waits for a launcher: dispatching it again works at once.
    assert_eq!(svc.dispatch(id).ok().task.status, "queued");
}

#[test]
fn only_queued_dispatching_and_doing_tasks_can_be_cancelled() {
    let srv = Server::start();
    let svc = srv.service();
    let id = svc.new_task(&task("manual"));
    for status in ["next", "review", "done", "waiting"] {
        svc.move_task(id, status).ok();
        let r = svc.cancel(id);
        assert_eq!(
            (r.status, r.error()),
            (409, "invalid_transition"),
            "{status}: {}",
            r.text
        );
        assert_eq!(svc.task(id).ok().task.status, status);
    }
    assert!(!event_kinds(&srv, id).contains(&"task.cancelled".to_string()));
    let r = svc.cancel(999999);
    assert_eq!(r.status, 404, "{}", r.text);
    let r = svc.post(&format!("/api/tasks/{id}/cancel"), &json!({"why": 1}));
    assert_eq!(r.status, 400, "{}", r.text);
}

#[test]
fn a_cancelled_claim_is_refused_named_sent_back_by_heartbeat_and_confirmed_once() {
    let srv = Server::start();
    let svc = srv.service();
    let id = queued_task(&srv, "codex");
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let (claimed, token) = w.claim_one();
    assert_eq!(claimed, id);
    w.report(id, &token, started(Some(7))).ok();
    assert_eq!(cancel_list(&srv, "w1", &[id]), NONE);

    let t = svc.cancel(id).ok();
    assert_eq!(t.status, "waiting");
    assert!(!t.blocked);
    assert_eq!(t.claimed_by, None);

    // The worker learns it from its next report or heartbeat.
    w.report(id, &token, output("more\n"))
        .refused(409, "claim_cancelled");
    let other = "0123456789abcdef0123456789abcdef";
    let r = w.report(id, other, output("x"));
    assert_eq!(r.error(), "stale_claim", "another token is just stale");
    assert_eq!(cancel_list(&srv, "w1", &[id]), [id]);
    assert_eq!(
        cancel_list(&srv, "w1", &[]),
        NONE,
        "only runs it still lists"
    );
    assert_eq!(cancel_list(&srv, "w2", &[id]), NONE, "only its own");

    // How it ended, fenced by the cancelled claim.
    let ended = cancel_ended(None, Some("SIGTERM"), 1500);
    w.report(id, other, ended.clone())
        .refused(409, "stale_claim");
    let r = Worker::new(&srv, "w2").report(id, &token, ended.clone());
    assert_eq!(r.error(), "stale_claim", "{}", r.text);
    w.report_raw(id, &token, "cancelled", json!({"elapsed_ms": "soon"}))
        .refused(400, "invalid_field");
    assert_eq!(w.report(id, &token, ended.clone()).ok().status, "waiting");
    // A retry.
    w.report(id, &token, ended).ok();
    let ev = svc
        .events(&format!("?task_id={id}&kind=dispatch.cancel_confirmed"))
        .ok();
    assert_eq!(ev.events.len(), 1, "{ev:?}");
    let p = &ev.events[0].payload;
    assert_eq!(p["ended"], "signal SIGTERM");
    assert_eq!(p["elapsed_ms"], 1500);
    assert_eq!(ev.events[0].actor, "worker:w1");
    let t = svc.task(id).ok();
    assert!(
        t.comments.iter().any(|c| c
            .body
            .contains("the cancelled agent ended on worker w1 with signal SIGTERM")),
        "{t:?}"
    );
    assert_eq!(
        cancel_list(&srv, "w1", &[id]),
        NONE,
        "confirmed: no longer asked"
    );

    // Dispatched and claimed again, the new claim works; the old one stays refused.
    svc.dispatch(id).ok();
    let (_, fresh) = w.claim_one();
    w.report(id, &fresh, started(Some(8))).ok();
    assert_eq!(w.report(id, &token, output("x")).error(), "claim_cancelled");
    assert_eq!(cancel_list(&srv, "w1", &[id]), NONE);
}

/// The task's row as the claim and the reports write it: equal before and
/// after a report means the report changed nothing of the task.
fn task_row(srv: &Server, id: i64) -> String {
    srv.sql()
        .query_row(
            "SELECT status, blocked, blocked_reason, claimed_by, claim_token, claimed_at,
                    dispatch_attempts, dispatch_started_at, dispatch_finished_at, exit_code,
                    dispatch_output, updated_at
             FROM tasks WHERE id = ?1",
            [id],
            |r| {
                Ok((0..12)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            },
        )
        .unwrap()
}

/// Cancel, then dispatch again to the same worker before it confirmed:
/// the cancellation belongs to the old claim. The heartbeat names the old
/// claims only (never the new one: its task-id list leaves the task out,
/// since this worker holds a newer claim), the old tokens are refused
/// `claim_cancelled` while the new one reports, a second cancellation does
/// not forget the first, each old confirmation is accepted and changes
/// nothing of the task, and the newest run ends in `review`.
#[test]
fn a_cancellation_belongs_to_its_claim_not_to_a_new_claim_of_the_same_task() {
    let srv = Server::start();
    let svc = srv.service();
    let id = queued_task(&srv, "codex");
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let (_, first) = w.claim_one();
    w.report(id, &first, started(Some(7))).ok();

    // Cancelled, and at once dispatched again and claimed by the same worker.
    assert_eq!(svc.cancel(id).ok().status, "waiting");
    svc.dispatch(id).ok();
    let (again, second) = w.claim_one();
    assert_eq!(again, id);
    assert_ne!(first, second);
    w.report(id, &second, started(Some(8))).ok();

    let (ids, claims) = cancels_of(&srv, "w1", &[id]);
    assert_eq!(ids, NONE, "the task-id list must not end the new run");
    assert_eq!(claims, [(id, first.clone())]);
    // The old run is told, the new one reports.
    w.report(id, &first, output("old\n"))
        .refused(409, "claim_cancelled");
    w.report(id, &second, output("new\n")).ok();

    // Cancelled again before the first run confirmed, and claimed a third
    // time: both old claims are remembered, each by its token.
    svc.cancel(id).ok();
    svc.dispatch(id).ok();
    let (_, third) = w.claim_one();
    w.report(id, &third, started(Some(9))).ok();
    let (ids, claims) = cancels_of(&srv, "w1", &[id]);
    assert_eq!(ids, NONE);
    let mut want = vec![(id, first.clone()), (id, second.clone())];
    want.sort();
    assert_eq!(claims, want);
    for old in [&first, &second] {
        w.report(id, old, finished(Some(0), "late"))
            .refused(409, "claim_cancelled");
    }
    // Another worker is told nothing; a worker no longer listing the task
    // neither.
    assert_eq!(cancels_of(&srv, "w2", &[id]).1, []);
    assert_eq!(cancels_of(&srv, "w1", &[]).1, []);

    // The old confirmations: accepted (and again), the task untouched, the
    // run's end stored on its claim.
    let before = task_row(&srv, id);
    let t = w
        .report(id, &first, cancel_ended(None, Some("SIGTERM"), 300))
        .ok();
    assert_eq!(
        (t.status.as_str(), t.claimed_by.as_deref()),
        ("doing", Some("w1"))
    );
    w.report(id, &second, cancel_ended(Some(143), None, 20))
        .ok();
    w.report(id, &first, cancel_ended(None, None, 1)).ok();
    assert_eq!(
        task_row(&srv, id),
        before,
        "an old confirmation changed the task"
    );
    let stored: Vec<(String, Option<i64>, Option<String>, bool)> = srv
        .sql()
        .prepare("SELECT claim_token, exit_code, signal, confirmed_at IS NOT NULL FROM claim_cancels WHERE task_id = ?1")
        .unwrap()
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
    for (token, code, signal, confirmed) in stored {
        assert!(confirmed);
        if token == first {
            assert_eq!((code, signal.as_deref()), (None, Some("SIGTERM")));
        } else {
            assert_eq!((token, code, signal), (second.clone(), Some(143), None));
        }
    }
    let confirmed = svc
        .events(&format!("?task_id={id}&kind=dispatch.cancel_confirmed"))
        .ok();
    assert_eq!(confirmed.total, 2, "{confirmed:?}");
    assert_eq!(
        cancels_of(&srv, "w1", &[id]).1,
        [],
        "confirmed: no longer named"
    );

    // The newest run finishes in review, as if nothing happened.
    let t = w.report(id, &third, finished(Some(0), "deliverable")).ok();
    assert_eq!(t.status, "review");
    assert_eq!(t.dispatch_attempts, 3);
    // A confirmation after the end changes nothing either.
    let before = task_row(&srv, id);
    w.report(id, &second, cancel_ended(None, None, 5)).ok();
    assert_eq!(task_row(&srv, id), before);
    // A token that was never cancelled is no proof.
    w.report(id, &third, cancel_ended(None, None, 5))
        .refused(409, "stale_claim");
}

/// What `blocked_reason` says of a run that changed nothing.
const NO_CHANGE: &str = "sin cambios: el agente terminó sin modificar el repositorio";

/// How a run ended is stored for every run: a failed run's exit code and
/// signal as a finished one's (from the report's fields, or, from an older
/// launcher that sends neither, from its signature); a new claim clears
/// them with the rest of the last run's results. A run in a clone that
/// left its branch where it found it is blocked "sin cambios" unless the
/// task expects no change; from a launcher that does not say where the
/// run started, an empty patch means no change. Bad values are refused
/// and change nothing.
#[test]
fn every_run_says_how_it_ended_and_a_run_without_a_change_is_not_reviewable() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let task_of = |id: i64| svc.task(id).ok().task;
    let run = |fields: NewTask| -> (i64, String) {
        let id = queued_task(&srv, fields);
        let (claimed, token) = w.claim_one();
        assert_eq!(claimed, id);
        w.report(id, &token, started(None)).ok();
        (id, token)
    };

    // Failed, with the fields.
    let (id, token) = run(dispatchable("codex"));
    let timed_out = Failed {
        exit_code: None,
        signal: Some("SIGKILL".into()),
        ..failed(
            "agent timed out after 2 h",
            "agent timed out after 2 h",
            "…",
        )
    };
    let t = w.report(id, &token, timed_out).ok();
    assert_eq!(
        (t.exit_code, t.exit_signal.as_deref()),
        (None, Some("SIGKILL"))
    );
    // Failed, from an older launcher: read from the signature.
    let (old, token) = run(dispatchable("codex"));
    let early = failed(
        "launcher process exited early (code=1, signal=null)",
        "exited early",
        "boom",
    );
    let t = w.report(old, &token, early).ok();
    assert_eq!((t.exit_code, t.exit_signal), (Some(1), None));
    // A new claim clears them.
    svc.retry(old).ok();
    let (_, token) = w.claim_one();
    let t = task_of(old);
    assert_eq!((t.exit_code, &t.exit_signal), (None, &None), "{t:?}");
    let t = w.report(old, &token, finished(Some(0), "done")).ok();
    assert_eq!((t.status.as_str(), t.exit_code), ("review", Some(0)));

    // A run in a clone that left its branch where it found it.
    let change = |start: Option<&str>, head: &str, patch: &str| RunChange {
        branch: "ops/task-x".into(),
        base: Some("aaaa1111".into()),
        head: Some(head.into()),
        start: start.map(str::to_string),
        patch: patch.into(),
        ..RunChange::default()
    };
    let with_change = |c: RunChange| Finished {
        change: Some(c),
        ..finished(Some(0), "I looked, all is fine")
    };
    let finish = |id: i64, token: &str, c: RunChange| w.report(id, token, with_change(c)).ok();
    let (id, token) = run(dispatchable("codex"));
    // The branch holds an earlier run's work (a non-empty patch), but this
    // run started at its head and left it there.
    let t = finish(
        id,
        &token,
        change(
            Some("bbbb2222"),
            "bbbb2222",
            "diff --git a/x b/x\n+earlier\n",
        ),
    );
    assert_eq!((t.status.as_str(), t.blocked), ("waiting", true));
    assert_eq!(t.blocked_reason.as_deref(), Some(NO_CHANGE));
    assert_eq!(t.dispatch_output.as_deref(), Some("I looked, all is fine"));
    // A retried report answers the task as it is.
    let again = finish(id, &token, change(Some("bbbb2222"), "bbbb2222", ""));
    assert_eq!(again.status, "waiting");
    // It moved the branch: review.
    let (id, token) = run(dispatchable("codex"));
    let t = finish(
        id,
        &token,
        change(Some("bbbb2222"), "cccc3333", "diff --git a/x b/x\n+new\n"),
    );
    assert_eq!(t.status, "review", "{t:?}");
    // An older launcher (no `start`): an empty patch is no change.
    let (id, token) = run(dispatchable("codex"));
    let t = finish(id, &token, change(None, "aaaa1111", ""));
    assert_eq!(t.blocked_reason.as_deref(), Some(NO_CHANGE), "{t:?}");
    // A task that expects no change reaches review on its output.
    let (id, token) = run(dispatchable("codex").expects_changes(false));
    assert!(!task_of(id).expects_changes);
    let t = finish(id, &token, change(Some("bbbb2222"), "bbbb2222", ""));
    assert_eq!((t.status.as_str(), t.blocked), ("review", false), "{t:?}");
    // No change reported (no clone): judged by its output as before.
    let (id, token) = run(dispatchable("codex"));
    let t = w.report(id, &token, finished(Some(0), "done")).ok();
    assert_eq!(t.status, "review", "{t:?}");

    // Bad values: refused, named, nothing changed.
    let before = srv.fingerprint();
    let r = svc.post(
        "/api/tasks",
        &json!({"title": "x", "expects_changes": "no"}),
    );
    let e = r.refused(400, "invalid_field");
    assert!(e.message.contains("expects_changes"), "{}", r.text);
    let r = svc.patch(&format!("/api/tasks/{id}"), &json!({"expects_changes": 0}));
    r.refused(400, "invalid_field");
    let (id, token) = {
        let id = queued_task(&srv, "codex");
        let (_, token) = w.claim_one();
        (id, token)
    };
    let before_reports = srv.fingerprint();
    for body in [
        json!({"signature": "s", "exit_code": "one"}),
        json!({"signature": "s", "signal": ["TERM"]}),
        json!({"signature": "s", "exit_code": 1.5}),
    ] {
        let r = w.report_raw(id, &token, "failed", body.clone());
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_field"),
            "{body}: {}",
            r.text
        );
    }
    for start in [json!("not-a-commit"), json!(12)] {
        let mut body = serde_json::to_value(with_change(change(None, "aaaa1111", ""))).unwrap();
        body["start"] = start.clone();
        let r = w.report_raw(id, &token, "finished", body);
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_field"),
            "{start}: {}",
            r.text
        );
    }
    let r = w.report_raw(
        id,
        &token,
        "finished",
        json!({"exit_code": 0, "output": "", "start": "aaaa1111"}),
    );
    assert_eq!(
        (r.status, r.error()),
        (400, "invalid_field"),
        "start needs branch: {}",
        r.text
    );
    assert_eq!(before_reports, srv.fingerprint());
    assert_ne!(
        before, before_reports,
        "the claim in between changed things"
    );
}
