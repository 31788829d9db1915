//! The dispatch protocol: queueing, claims, worker reports, the Human Gate.

use serde_json::{json, Value};

use crate::util::{enable_dispatch, event_kinds, queued_task, Server, Worker};

#[test]
fn a_task_goes_from_next_to_review_through_a_worker() {
    let srv = Server::start();
    let svc = srv.service();
    let id = queued_task(&srv, "codex", json!({}));
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex", "hermes"], &[]);

    let r = w.claim();
    assert_eq!(r.json["task"]["id"], id, "{}", r.text);
    assert_eq!(r.json["task"]["status"], "dispatching");
    assert_eq!(r.json["task"]["claimed_by"], "w1");
    assert_eq!(r.json["task"]["dispatch_attempts"], 1);
    assert_eq!(r.json["agent"]["slug"], "codex");
    assert!(r.json["agent"].get("launch_command").is_some());
    assert_eq!(r.json["reconciled"], 0);
    assert!(
        r.json["task"].get("claim_token").is_none(),
        "the token is not part of the task object"
    );
    let token = r.json["claim_token"].as_str().unwrap().to_string();
    assert!(token.len() >= 32);

    let r = w.report(
        id,
        &token,
        "started",
        json!({"pid": 4242, "log_path": "/tmp/t.log", "err_log_path": "/tmp/t.err.log"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "doing");
    assert_eq!(r.json["log_path"], "/tmp/t.log");
    // A retried report is harmless.
    assert_eq!(
        w.report(id, &token, "started", json!({"pid": 4242})).status,
        200
    );

    let r = w.report(id, &token, "output", json!({"chunk": "compiling...\n"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = w.report(
        id,
        &token,
        "finished",
        json!({"exit_code": 0, "signal": null, "output": "compiling...\nall done\n"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "review");
    assert_eq!(r.json["dispatch_output"], "compiling...\nall done\n");
    assert_eq!(r.json["exit_code"], 0);
    assert_eq!(
        w.report(
            id,
            &token,
            "finished",
            json!({"exit_code": 0, "output": "x"})
        )
        .status,
        200,
        "retry"
    );
    assert_eq!(
        svc.get(&format!("/api/tasks/{id}")).json["dispatch_output"],
        "compiling...\nall done\n",
        "a retry changes nothing"
    );

    let t = svc.get(&format!("/api/tasks/{id}"));
    let logs: Vec<_> = t.json["comments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["author"] == "ai-dispatch" && c["kind"] == "log")
        .collect();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["body"], "compiling...\n");

    // With evidence, the done guard lets it through.
    let r = svc.patch(
        &format!("/api/tasks/{id}/status"),
        &json!({"status": "done"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
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
    let codex = queued_task(&srv, "codex", json!({}));

    // Dispatch disabled (the default) hands out nothing.
    w.heartbeat(&["codex"], &[]);
    assert_eq!(w.claim().json["reason"], "dispatch_disabled");
    enable_dispatch(&srv);

    // No heartbeat, or a stale one: nothing.
    let stranger = Worker::new(&srv, "never-seen");
    let r = stranger.claim();
    assert_eq!(
        (r.json["task"].is_null(), r.json["reason"].as_str()),
        (true, Some("worker_not_fresh"))
    );
    srv.advance_clock(91);
    assert_eq!(w.claim().json["reason"], "worker_not_fresh");

    // An agent it does not report usable: nothing.
    let r = w.client.post(
        "/api/dispatch/heartbeat",
        &json!({"worker_id": "w1", "agents": [{"slug": "codex", "cli": "codex", "available": true, "authenticated": false, "reason": "not logged in"},
                                              {"slug": "hermes", "cli": "hermes", "available": true, "authenticated": true}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["usable_agents"], json!(["hermes"]));
    assert_eq!(w.claim().json["reason"], "no_task");
    // Asking for an agent it cannot run: nothing either.
    let r = w.client.post(
        "/api/dispatch/next",
        &json!({"worker_id": "w1", "agent_slugs": ["codex"]}),
    );
    assert_eq!(r.json["reason"], "no_usable_agents");

    // Usable again: it gets the task (GET works as well as POST).
    w.heartbeat(&["codex"], &[]);
    let r = svc.get("/api/dispatch/next?worker_id=w1&agent_slugs=codex,hermes");
    assert_eq!(r.json["task"]["id"], codex, "{}", r.text);
    assert_eq!(
        w.claim().json["reason"],
        "no_task",
        "never handed out twice"
    );
}

#[test]
fn claims_follow_priority_age_models_and_workspaces() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let low = queued_task(&srv, "codex", json!({"priority": 1}));
    let high_old = queued_task(&srv, "codex", json!({"priority": 5}));
    let high_new = queued_task(&srv, "codex", json!({"priority": 5}));
    let gemma = queued_task(
        &srv,
        "codex",
        json!({"priority": 9, "model": "local-gemma4"}),
    );
    let ws2 = srv
        .admin()
        .post("/api/workspaces", &json!({"name": "two"}))
        .json["id"]
        .as_i64()
        .unwrap();
    let other_ws = queued_task(&srv, "codex", json!({"priority": 9, "workspace_id": ws2}));

    let qwen = Worker::new(&srv, "qwen-box");
    qwen.heartbeat(&["codex"], &["qwen*", "minimax*"]);
    let scoped = |w: &Worker| {
        let r = w.client.post(
            "/api/dispatch/next",
            &json!({"worker_id": w.id, "workspace_id": 1}),
        );
        r.json["task"]["id"].as_i64()
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

    let id = svc.new_task(&json!({"title": "rotate prod keys", "execution": "interactive", "agent": "codex", "sensitive": true}));
    let r = svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!((r.status, r.error()), (409, "human_gate"), "{}", r.text);
    let t = svc.get(&format!("/api/tasks/{id}")).json;
    assert_eq!(t["blocked"], true);
    assert!(t["blocked_reason"].as_str().unwrap().contains("Human Gate"));
    assert_eq!(t["status"], "next");
    assert!(event_kinds(&srv, id).contains(&"dispatch.human_gate_blocked".to_string()));
    assert_eq!(w.claim().json["reason"], "no_task");

    // Never by the service token (an agent cannot approve its own work),
    // nor by a plain member.
    let r = svc.post(&format!("/api/tasks/{id}/approve"), &json!({}));
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(
        member
            .post(&format!("/api/tasks/{id}/approve"), &json!({}))
            .status,
        403
    );
    let r = ws_admin.post(&format!("/api/tasks/{id}/approve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["gate_approved_by"], "wsadmin");
    assert_eq!(r.json["blocked"], false, "the gate's block is lifted");

    let r = svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    // Changing the prompt withdraws the approval: the queued task is not
    // handed out until a human approves again.
    let r = svc.patch(
        &format!("/api/tasks/{id}"),
        &json!({"description": "rotate ALL the keys"}),
    );
    assert_eq!(
        r.json["gate_approved_at"],
        serde_json::Value::Null,
        "{}",
        r.text
    );
    assert_eq!(w.claim().json["reason"], "no_task");
    srv.admin()
        .post(&format!("/api/tasks/{id}/approve"), &json!({}));
    assert_eq!(w.claim_one().0, id);
    // Changing the agent withdraws it too.
    svc.patch(
        &format!("/api/tasks/{id}/status"),
        &json!({"status": "next"}),
    );
    srv.admin()
        .post(&format!("/api/tasks/{id}/approve"), &json!({}));
    let r = svc.patch(&format!("/api/tasks/{id}"), &json!({"agent": "hermes"}));
    assert_eq!(r.json["gate_approved_at"], serde_json::Value::Null);
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

#[test]
fn a_reclaimed_tasks_late_report_is_refused() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let id = queued_task(&srv, "codex", json!({}));
    let old = Worker::new(&srv, "old");
    old.heartbeat(&["codex"], &[]);
    let (_, old_token) = old.claim_one();

    // The claim goes stale and is reconciled; the task is dispatched again
    // and another worker takes it.
    let r = svc.post("/api/dispatch/reconcile-stale", &json!({"minutes": 0}));
    assert_eq!(r.json["task_ids"], json!([id]), "{}", r.text);
    svc.patch(&format!("/api/tasks/{id}"), &json!({"blocked": false}));
    svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    let new = Worker::new(&srv, "new");
    new.heartbeat(&["codex"], &[]);
    let (_, new_token) = new.claim_one();
    assert_ne!(old_token, new_token);

    let before = srv.fingerprint();
    for (kind, body) in [
        ("started", json!({"pid": 1})),
        ("output", json!({"chunk": "late"})),
        ("finished", json!({"exit_code": 0, "output": "late output"})),
        ("failed", json!({"signature": "late", "reason": "late"})),
    ] {
        let r = old.report(id, &old_token, kind, body.clone());
        assert_eq!(
            (r.status, r.error()),
            (409, "stale_claim"),
            "{kind}: {}",
            r.text
        );
        // The new worker's id with the old token is refused as well.
        let r = new.report(id, &old_token, kind, body);
        assert_eq!(r.error(), "stale_claim");
    }
    assert_eq!(
        before,
        srv.fingerprint(),
        "a stale report changed something"
    );
    let r = new.report(id, &new_token, "started", json!({"pid": 2}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json["dispatch_attempts"], 2);
}

#[test]
fn failures_become_blockers_with_evidence() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);

    let failing = queued_task(&srv, "codex", json!({}));
    let (id, token) = w.claim_one();
    assert_eq!(id, failing);
    w.report(id, &token, "started", json!({"pid": 7}));
    let r = w.report(
        id,
        &token,
        "failed",
        json!({
        "signature": "command not found",
        "reason": "command not found in .err.log",
        "evidence": "sh: 1: codex: command not found"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "waiting");
    assert_eq!(r.json["blocked"], true);
    assert_eq!(r.json["blocked_reason"], "command not found in .err.log");
    let t = svc.get(&format!("/api/tasks/{id}")).json;
    let blocker = t["comments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "blocker")
        .expect("a blocker comment");
    assert!(blocker["body"]
        .as_str()
        .unwrap()
        .contains("sh: 1: codex: command not found"));
    assert!(event_kinds(&srv, id).contains(&"dispatch.failed".to_string()));

    // A run that ends without output is parked, not sent to review.
    let silent = queued_task(&srv, "codex", json!({}));
    let (id, token) = w.claim_one();
    assert_eq!(id, silent);
    w.report(id, &token, "started", json!({}));
    let r = w.report(
        id,
        &token,
        "finished",
        json!({"exit_code": null, "output": ""}),
    );
    assert_eq!(r.json["status"], "waiting", "{}", r.text);
    assert_eq!(r.json["blocked"], true);
    assert_eq!(
        r.json["blocked_reason"],
        "finished without deliverable evidence"
    );
    let r = svc.patch(
        &format!("/api/tasks/{id}/status"),
        &json!({"status": "done"}),
    );
    assert_eq!(r.error(), "done_guard");
}

#[test]
fn dispatch_refuses_what_cannot_run() {
    let srv = Server::start();
    let svc = srv.service();
    let manual = svc.new_task(&json!({"title": "m", "agent": "codex"}));
    let no_agent = svc.new_task(&json!({"title": "n", "execution": "interactive"}));
    let blocked =
        svc.new_task(&json!({"title": "b", "execution": "interactive", "agent": "codex"}));
    svc.patch(
        &format!("/api/tasks/{blocked}"),
        &json!({"blocked": true, "blocked_reason": "waiting on a key"}),
    );
    let inactive =
        svc.new_task(&json!({"title": "i", "execution": "interactive", "agent": "claudecode"}));
    svc.patch("/api/agents/2", &json!({"active": false}));
    let queued = queued_task(&srv, "codex", json!({}));
    let before = srv.fingerprint();
    for (id, code) in [
        (manual, "not_interactive"),
        (no_agent, "no_agent"),
        (blocked, "task_blocked"),
        (inactive, "agent_inactive"),
        (queued, "invalid_transition"),
    ] {
        let r = svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
        assert_eq!((r.status, r.error()), (409, code), "{}", r.text);
    }
    assert_eq!(
        svc.post("/api/tasks/99999/dispatch", &json!({})).status,
        404
    );
    assert_eq!(before, srv.fingerprint());
}

#[test]
fn dispatch_output_keeps_the_tail_of_long_output() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let id = queued_task(&srv, "codex", json!({}));
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let (_, token) = w.claim_one();
    w.report(id, &token, "started", json!({}));
    // 100 KiB of numbered lines, then a last line that must survive.
    let mut output: String = (0..10_000).map(|i| format!("line {i:05}\n")).collect();
    output.push_str("THE END\n");
    let r = w.report(
        id,
        &token,
        "finished",
        json!({"exit_code": 0, "output": output}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let kept = r.json["dispatch_output"].as_str().unwrap();
    assert_eq!(kept.len(), 64 * 1024, "bounded to 64 KiB");
    assert!(kept.ends_with("line 09999\nTHE END\n"), "the tail is kept");
    assert!(output.ends_with(kept));
}

#[test]
fn a_claim_whose_answer_was_lost_is_requeued_by_the_next_heartbeats() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    let other = Worker::new(&srv, "w2");
    w.heartbeat(&["codex"], &[]);
    other.heartbeat(&["codex"], &[]);
    let lost = queued_task(&srv, "codex", json!({"priority": 9}));
    let held = queued_task(&srv, "codex", json!({"priority": 8}));
    let elsewhere = queued_task(&srv, "codex", json!({"priority": 7}));
    // w1 claims two tasks but (its answer lost) only knows of one; w2 holds
    // the third and sends no heartbeat.
    let (t, lost_token) = w.claim_one();
    assert_eq!(t, lost);
    assert_eq!(w.claim_one().0, held);
    assert_eq!(other.claim_one().0, elsewhere);
    let beat = |running: &[i64]| {
        let r = srv.service().post(
            "/api/dispatch/heartbeat",
            &json!({"worker_id": "w1", "agents": [{"slug": "codex", "available": true, "authenticated": true}],
                    "running_task_ids": running}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        r
    };
    let status = |id: i64| srv.service().get(&format!("/api/tasks/{id}")).json;
    let age_claims = |secs: i64| srv.advance_clock(secs);

    // Within the grace (60 s by default) the claim answer may still be on
    // its way: nothing moves.
    assert_eq!(beat(&[held]).json["requeued"], json!([]));
    assert_eq!(status(lost)["status"], "dispatching");

    // Past it, the task the worker does not list goes back to the queue.
    age_claims(61);
    let r = beat(&[held]);
    assert_eq!(r.json["requeued"], json!([lost]), "{}", r.text);
    let t = status(lost);
    assert_eq!(t["status"], "queued");
    assert_eq!(t["blocked"], false, "it never started: not blocked");
    assert_eq!(t["claimed_by"], Value::Null);
    assert!(event_kinds(&srv, lost).contains(&"dispatch.claim_lost".to_string()));
    // The listed task and the other worker's stay as they are.
    assert_eq!(status(held)["status"], "dispatching");
    assert_eq!(status(elsewhere)["status"], "dispatching");
    // The lost claim's token is dead; the task is handed out again.
    let r = w.report(lost, &lost_token, "started", json!({"pid": 1}));
    assert_eq!((r.status, r.error()), (409, "stale_claim"));
    assert_eq!(w.claim_one().0, lost);

    // The grace is a setting.
    let r = srv.service().put(
        "/api/settings/dispatch_claim_grace_seconds",
        &json!({"value": "300"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    age_claims(120);
    assert_eq!(beat(&[]).json["requeued"], json!([]));
    age_claims(200);
    let r = beat(&[]);
    let mut requeued: Vec<i64> = serde_json::from_value(r.json["requeued"].clone()).unwrap();
    requeued.sort();
    assert_eq!(requeued, vec![lost, held]);
}

/// Health names what an operator must act on about the runtimes: each
/// active agent no fresh worker can run, with the worker's reason (not
/// logged in, and how to log in), and each task a worker runs whose agent
/// has shown nothing for ten minutes, before the launcher's silence timeout.
#[test]
fn health_names_logged_out_agents_and_silent_running_tasks() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let r = svc.post(
        "/api/dispatch/heartbeat",
        &json!({"worker_id": "w1", "agents": [
            {"slug": "codex", "cli": "codex", "available": true, "authenticated": true},
            {"slug": "claudecode", "cli": "claude", "available": true, "authenticated": false,
             "reason": "not logged in: claude; log in with: claude auth login"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let w = Worker::new(&srv, "w1");
    let id = queued_task(&srv, "codex", json!({}));
    let claim = w.claim();
    let token = claim.json["claim_token"].as_str().unwrap().to_string();
    let r = w.report(id, &token, "started", json!({"pid": 1}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = svc.post(
        "/api/dispatch/heartbeat",
        &json!({"worker_id": "w1", "running_task_ids": [id], "agents": [
            {"slug": "codex", "cli": "codex", "available": true, "authenticated": true},
            {"slug": "claudecode", "cli": "claude", "available": true, "authenticated": false,
             "reason": "not logged in: claude; log in with: claude auth login"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);

    let warnings = |srv: &Server| -> String {
        let h = srv.service().get("/api/dispatch/health");
        h.json["warnings"].to_string()
    };
    let now = warnings(&srv);
    assert!(
        now.contains("claudecode (not logged in: claude; log in with: claude auth login)"),
        "{now}"
    );
    assert!(!now.contains("no output"), "{now}");

    // Eleven minutes without a sign of life from the agent; the worker
    // itself goes on beating.
    srv.advance_clock(660);
    let r = svc.post(
        "/api/dispatch/heartbeat",
        &json!({"worker_id": "w1", "running_task_ids": [id], "agents": [
            {"slug": "codex", "cli": "codex", "available": true, "authenticated": true},
            {"slug": "claudecode", "cli": "claude", "available": true, "authenticated": false,
             "reason": "not logged in: claude; log in with: claude auth login"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let later = warnings(&srv);
    assert!(
        later.contains(&format!(
            "no output for 10 min or more: #{id} (codex, 11 min)"
        )),
        "{later}"
    );
    // Output is a sign of life.
    let r = w.report(id, &token, "output", json!({"chunk": "still working\n"}));
    assert_eq!(r.status, 200, "{}", r.text);
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
    let id = queued_task(&srv, "codex", json!({}));
    let (_, token) = w.claim_one();
    let logs = |srv: &Server| -> Vec<String> {
        srv.service().get(&format!("/api/tasks/{id}")).json["comments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == "log")
            .map(|c| c["body"].as_str().unwrap().to_string())
            .collect()
    };
    for (chunk, offset) in [
        ("one\n", json!(0)),
        ("one\n", json!(0)),
        ("two\n", json!(4)),
        ("two\n", json!(4)),
        ("stale\n", json!(2)),
    ] {
        let r = w.report(
            id,
            &token,
            "output",
            json!({"chunk": chunk, "offset": offset}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(logs(&srv), ["one\n", "two\n"]);
    for bad in [json!(-1), json!("4"), json!(1.5)] {
        let r = w.report(id, &token, "output", json!({"chunk": "x", "offset": bad}));
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.text.contains("offset"), "{}", r.text);
    }
    // Without an offset: taken, as from a launcher that does not send it.
    let r = w.report(id, &token, "output", json!({"chunk": "legacy\n"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(logs(&srv).len(), 3);

    // A new claim of the task starts again from offset 0.
    let r = srv
        .service()
        .post("/api/dispatch/reconcile-stale", &json!({"minutes": 0}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = srv
        .service()
        .patch(&format!("/api/tasks/{id}"), &json!({"blocked": false}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = srv
        .service()
        .post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let (again, token) = w.claim_one();
    assert_eq!(again, id);
    let r = w.report(
        id,
        &token,
        "output",
        json!({"chunk": "second run\n", "offset": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
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
        let r = svc.post(
            "/api/dispatch/heartbeat",
            &json!({"worker_id": id, "host": format!("{id}.example"), "slots_total": 2,
                    "slots_busy": busy, "draining": draining, "agents": [
                {"slug": "codex", "cli": "codex", "available": true, "authenticated": true}]}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    };
    let health = |query: &str| {
        let r = svc.get(&format!("/api/dispatch/health{query}"));
        assert_eq!(r.status, 200, "{}", r.text);
        r.json
    };
    let ids = |h: &Value| -> Vec<String> {
        h["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["worker_id"].as_str().unwrap().to_string())
            .collect()
    };
    beat("w1", 0, false);
    srv.advance_clock(1);
    beat("w2", 0, false);
    let h = health("");
    assert_eq!(ids(&h), ["w2", "w1"], "most recently seen first: {h}");
    assert_eq!(h["workers"][1]["slots_busy"], 0);
    assert_eq!(
        h["agent_slugs"],
        json!(["codex"]),
        "two workers, one slug: {h}"
    );

    // A new heartbeat of w1 replaces what the list showed of it.
    srv.advance_clock(1);
    beat("w1", 2, true);
    let h = health("");
    assert_eq!(ids(&h), ["w1", "w2"], "{h}");
    assert_eq!(h["workers"][0]["slots_busy"], 2);
    assert_eq!(h["workers"][0]["draining"], true);
    assert_eq!(h["workers"][0]["fresh"], true);
    assert_eq!(h["worker_summary"]["slots_busy"], 2);
    assert_eq!(h["agent_slugs"], json!(["codex"]), "w2 still runs codex");

    // Without the list: the same counts and warnings, no worker named.
    let short = health("?workers=false");
    assert_eq!(short["workers"], json!([]));
    assert!(!short.to_string().contains("w1.example"), "{short}");
    for key in [
        "worker_summary",
        "queue",
        "agent_slugs",
        "warnings",
        "settings",
    ] {
        assert_eq!(short[key], h[key], "{key}");
    }
    assert_eq!(health("?workers=true"), health(""));

    let r = svc.delete("/api/dispatch/workers/w2");
    assert_eq!(r.status, 200, "{}", r.text);
    let h = health("");
    assert_eq!(ids(&h), ["w1"], "{h}");
    assert_eq!(h["worker_summary"]["total"], 1);

    // Stale by the clock, with no heartbeat in between.
    srv.advance_clock(3600);
    let h = health("");
    assert_eq!(h["workers"][0]["fresh"], false, "{h}");
    assert_eq!(h["worker_summary"]["stale"], 1);
    assert_eq!(h["worker_summary"]["fresh"], 0);

    let r = svc.get("/api/dispatch/health?workers=maybe");
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["error"], "invalid_query");
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
    let id = queued_task(&srv, "codex", json!({}));
    let (claimed, token) = w.claim_one();
    assert_eq!(claimed, id);
    w.report(id, &token, "started", json!({"pid": 7}));
    let r = w.report(
        id,
        &token,
        "failed",
        json!({"signature": "boom", "reason": "it broke", "evidence": "boom"}),
    );
    assert_eq!(
        (r.json["status"].clone(), r.json["blocked"].clone()),
        (json!("waiting"), json!(true))
    );
    let r = svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.error(), "task_blocked", "{}", r.text);

    let r = svc.post(&format!("/api/tasks/{id}/retry"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "queued");
    assert_eq!(r.json["blocked"], false);
    assert_eq!(r.json["blocked_reason"], Value::Null);
    assert_eq!(r.json["dispatch_enabled"], true);
    assert_eq!(r.json.get("warning"), None, "{}", r.text);
    let kinds = event_kinds(&srv, id);
    assert_eq!(
        &kinds[kinds.len() - 2..],
        ["task.unblocked", "task.dispatched"]
    );
    let r = svc.get(&format!("/api/events?task_id={id}&kind=task.unblocked"));
    assert_eq!(
        r.json["events"][0]["payload"]["because"], "retry",
        "{}",
        r.text
    );
    assert_eq!(r.json["events"][0]["payload"]["reason"], "it broke");
    // The worker takes it again.
    assert_eq!(w.claim_one().0, id);

    // A task that is not blocked: the same as a dispatch, no unblock event.
    let plain = svc.new_task(&json!({"title": "p", "execution": "interactive", "agent": "codex"}));
    let r = svc.post(&format!("/api/tasks/{plain}/retry"), &json!({}));
    assert_eq!(r.json["status"], "queued", "{}", r.text);
    assert!(!event_kinds(&srv, plain).contains(&"task.unblocked".to_string()));

    // Refused dispatches change nothing: a blocked manual task stays
    // blocked, a blocked done task stays as it is, the unapproved gate
    // answers as a dispatch does.
    let manual = svc.new_task(&json!({"title": "m", "agent": "codex"}));
    svc.patch(
        &format!("/api/tasks/{manual}"),
        &json!({"blocked": true, "blocked_reason": "x"}),
    );
    let queued = queued_task(&srv, "codex", json!({}));
    // Blocked and in `doing`: the unblock is made, then the status refused,
    // and the unblock is rolled back with it.
    let busy = svc.new_task(&json!({"title": "b", "execution": "interactive", "agent": "codex"}));
    let r = svc.patch(
        &format!("/api/tasks/{busy}"),
        &json!({"status": "doing", "blocked": true, "blocked_reason": "stuck"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let before = srv.fingerprint();
    for (task, code) in [
        (manual, "not_interactive"),
        (queued, "invalid_transition"),
        (busy, "invalid_transition"),
    ] {
        let r = svc.post(&format!("/api/tasks/{task}/retry"), &json!({}));
        assert_eq!((r.status, r.error()), (409, code), "{}", r.text);
    }
    assert_eq!(svc.post("/api/tasks/99999/retry", &json!({})).status, 404);
    assert_eq!(before, srv.fingerprint());
    assert_eq!(
        svc.get(&format!("/api/tasks/{manual}")).json["blocked"],
        true
    );

    let sensitive = svc.new_task(
        &json!({"title": "s", "execution": "interactive", "agent": "codex", "sensitive": true}),
    );
    let r = svc.post(&format!("/api/tasks/{sensitive}/retry"), &json!({}));
    assert_eq!((r.status, r.error()), (409, "human_gate"), "{}", r.text);
    let t = svc.get(&format!("/api/tasks/{sensitive}")).json;
    assert_eq!(
        (t["status"].clone(), t["blocked"].clone()),
        (json!("next"), json!(true))
    );
    // Still gated: retrying does not lift the gate's block.
    let r = svc.post(&format!("/api/tasks/{sensitive}/retry"), &json!({}));
    assert_eq!(r.error(), "human_gate", "{}", r.text);
    assert_eq!(
        svc.get(&format!("/api/tasks/{sensitive}")).json["blocked"],
        true
    );
}

/// With `dispatch_enabled=false` a dispatch (or retry) still queues the
/// task, and its answer says that no worker will take it yet.
#[test]
fn dispatch_answers_a_warning_while_dispatch_is_off() {
    let srv = Server::start();
    let svc = srv.service();
    let id = svc.new_task(&json!({"title": "d", "execution": "interactive", "agent": "codex"}));
    let r = svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "queued");
    assert_eq!(r.json["dispatch_enabled"], false);
    assert_eq!(r.json["warning"], "dispatch_disabled");
    let other = svc.new_task(&json!({"title": "r", "execution": "interactive", "agent": "codex"}));
    let r = svc.post(&format!("/api/tasks/{other}/retry"), &json!({}));
    assert_eq!(r.json["warning"], "dispatch_disabled", "{}", r.text);
    enable_dispatch(&srv);
    let third = svc.new_task(&json!({"title": "e", "execution": "interactive", "agent": "codex"}));
    let r = svc.post(&format!("/api/tasks/{third}/dispatch"), &json!({}));
    assert_eq!(r.json["dispatch_enabled"], true, "{}", r.text);
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
        let r = svc.put(&format!("/api/settings/{key}"), &json!({ "value": value }));
        assert_eq!(r.status, 200, "{}", r.text);
    };
    set("dispatch_worker_stale_seconds", "10");
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let first = queued_task(&srv, "codex", json!({}));
    assert_eq!(w.claim_one().0, first);

    // The heartbeat is now 30 s old: stale for 10 s, fresh for 60 s.
    let second = queued_task(&srv, "codex", json!({}));
    srv.advance_clock(30);
    assert_eq!(w.claim().json["reason"], "worker_not_fresh");
    set("dispatch_worker_stale_seconds", "60");
    let r = w.claim();
    assert_eq!(r.json["task"]["id"], second, "{}", r.text);

    // 90 s old; another process allows 120 s, then turns dispatch off.
    let third = queued_task(&srv, "codex", json!({}));
    srv.advance_clock(60);
    assert_eq!(w.claim().json["reason"], "worker_not_fresh");
    let other_process = srv.sql_write();
    other_process
        .execute(
            "UPDATE ops_settings SET value = '120' WHERE key = 'dispatch_worker_stale_seconds'",
            [],
        )
        .unwrap();
    let r = w.claim();
    assert_eq!(r.json["task"]["id"], third, "{}", r.text);
    let fourth = queued_task(&srv, "codex", json!({}));
    other_process
        .execute(
            "UPDATE ops_settings SET value = 'false' WHERE key = 'dispatch_enabled'",
            [],
        )
        .unwrap();
    assert_eq!(w.claim().json["reason"], "dispatch_disabled");
    set("dispatch_enabled", "true");
    let r = w.claim();
    assert_eq!(r.json["task"]["id"], fourth, "{}", r.text);
}

/// A heartbeat of `w` listing `running`; its `cancel` list.
fn cancel_list(srv: &Server, w: &str, running: &[i64]) -> Value {
    let r = srv.service().post(
        "/api/dispatch/heartbeat",
        &json!({"worker_id": w, "host": "h", "version": "t", "slots_total": 2, "slots_busy": 1,
                "agents": [{"slug": "codex", "cli": "codex", "available": true, "authenticated": true}],
                "models": [], "running_task_ids": running, "draining": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["cancel"].clone()
}

#[test]
fn cancelling_a_queued_task_is_immediate_and_it_can_be_dispatched_again() {
    let srv = Server::start();
    let svc = srv.service();
    let id = queued_task(&srv, "codex", json!({}));
    let r = svc.post(&format!("/api/tasks/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "waiting");
    assert_eq!(r.json["blocked"], false);
    let t = svc.get(&format!("/api/tasks/{id}"));
    assert!(
        t.json["comments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["body"]
                .as_str()
                .unwrap()
                .starts_with("cancelled by service while queued")),
        "{}",
        t.text
    );
    let ev = svc.get(&format!("/api/events?task_id={id}&kind=task.cancelled"));
    assert_eq!(ev.json["events"][0]["actor"], "service", "{}", ev.text);
    assert_eq!(ev.json["events"][0]["payload"]["from"], "queued");
    assert_eq!(ev.json["events"][0]["payload"]["to"], "waiting");
    // Nothing waits for a launcher: dispatching it again works at once.
    let r = svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "queued");
}

#[test]
fn only_queued_dispatching_and_doing_tasks_can_be_cancelled() {
    let srv = Server::start();
    let svc = srv.service();
    let id = svc.post("/api/tasks", &json!({"title": "manual"})).json["id"]
        .as_i64()
        .unwrap();
    for status in ["next", "review", "done", "waiting"] {
        let r = svc.patch(
            &format!("/api/tasks/{id}/status"),
            &json!({"status": status}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        let r = svc.post(&format!("/api/tasks/{id}/cancel"), &json!({}));
        assert_eq!(r.status, 409, "{status}: {}", r.text);
        assert_eq!(r.json["error"], "invalid_transition");
        assert_eq!(svc.get(&format!("/api/tasks/{id}")).json["status"], status);
    }
    assert!(!event_kinds(&srv, id).contains(&"task.cancelled".to_string()));
    let r = svc.post("/api/tasks/999999/cancel", &json!({}));
    assert_eq!(r.status, 404, "{}", r.text);
    let r = svc.post(&format!("/api/tasks/{id}/cancel"), &json!({"why": 1}));
    assert_eq!(r.status, 400, "{}", r.text);
}

#[test]
fn a_cancelled_claim_is_refused_named_sent_back_by_heartbeat_and_confirmed_once() {
    let srv = Server::start();
    let svc = srv.service();
    let id = queued_task(&srv, "codex", json!({}));
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let (claimed, token) = w.claim_one();
    assert_eq!(claimed, id);
    assert_eq!(
        w.report(id, &token, "started", json!({"pid": 7})).status,
        200
    );
    assert_eq!(cancel_list(&srv, "w1", &[id]), json!([]));

    let r = svc.post(&format!("/api/tasks/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "waiting");
    assert_eq!(r.json["blocked"], false);
    assert_eq!(r.json["claimed_by"], Value::Null);

    // The worker learns it from its next report or heartbeat.
    let r = w.report(id, &token, "output", json!({"chunk": "more\n"}));
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json["error"], "claim_cancelled");
    let r = w.report(
        id,
        "0123456789abcdef0123456789abcdef",
        "output",
        json!({"chunk": "x"}),
    );
    assert_eq!(
        r.json["error"], "stale_claim",
        "another token is just stale"
    );
    assert_eq!(cancel_list(&srv, "w1", &[id]), json!([id]));
    assert_eq!(
        cancel_list(&srv, "w1", &[]),
        json!([]),
        "only runs it still lists"
    );
    assert_eq!(cancel_list(&srv, "w2", &[id]), json!([]), "only its own");

    // How it ended, fenced by the cancelled claim.
    let ended = json!({"exit_code": null, "signal": "SIGTERM", "elapsed_ms": 1500});
    let r = w.report(
        id,
        "0123456789abcdef0123456789abcdef",
        "cancelled",
        ended.clone(),
    );
    assert_eq!(
        (r.status, r.json["error"].clone()),
        (409, json!("stale_claim")),
        "{}",
        r.text
    );
    let r = Worker::new(&srv, "w2").report(id, &token, "cancelled", ended.clone());
    assert_eq!(r.json["error"], "stale_claim", "{}", r.text);
    let r = w.report(id, &token, "cancelled", json!({"elapsed_ms": "soon"}));
    assert_eq!(
        (r.status, r.json["error"].clone()),
        (400, json!("invalid_field")),
        "{}",
        r.text
    );
    let r = w.report(id, &token, "cancelled", ended.clone());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "waiting");
    assert_eq!(
        w.report(id, &token, "cancelled", ended).status,
        200,
        "a retry"
    );
    let ev = svc.get(&format!(
        "/api/events?task_id={id}&kind=dispatch.cancel_confirmed"
    ));
    assert_eq!(
        ev.json["events"].as_array().unwrap().len(),
        1,
        "{}",
        ev.text
    );
    let p = &ev.json["events"][0]["payload"];
    assert_eq!(p["ended"], "signal SIGTERM");
    assert_eq!(p["elapsed_ms"], 1500);
    assert_eq!(ev.json["events"][0]["actor"], "worker:w1");
    let t = svc.get(&format!("/api/tasks/{id}"));
    assert!(
        t.text
            .contains("the cancelled agent ended on worker w1 with signal SIGTERM"),
        "{}",
        t.text
    );
    assert_eq!(
        cancel_list(&srv, "w1", &[id]),
        json!([]),
        "confirmed: no longer asked"
    );

    // Dispatched and claimed again, the new claim works; the old one stays refused.
    assert_eq!(
        svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}))
            .status,
        200
    );
    let (_, fresh) = w.claim_one();
    assert_eq!(
        w.report(id, &fresh, "started", json!({"pid": 8})).status,
        200
    );
    assert_eq!(
        w.report(id, &token, "output", json!({"chunk": "x"})).json["error"],
        "claim_cancelled"
    );
    assert_eq!(cancel_list(&srv, "w1", &[id]), json!([]));
}

/// A heartbeat of `w` listing `running`: its `cancel` (task ids, for older
/// launchers) and `cancel_claims` (task and token) as `(id, token)` pairs.
fn cancels_of(srv: &Server, w: &str, running: &[i64]) -> (Value, Vec<(i64, String)>) {
    let r = srv.service().post(
        "/api/dispatch/heartbeat",
        &json!({"worker_id": w, "host": "h", "version": "t", "slots_total": 2, "slots_busy": 1,
                "agents": [{"slug": "codex", "cli": "codex", "available": true, "authenticated": true}],
                "models": [], "running_task_ids": running, "draining": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let answer: ops_center::protocol::dispatch::HeartbeatAnswer = r.body();
    let mut claims: Vec<(i64, String)> = answer
        .cancel_claims
        .into_iter()
        .map(|c| (c.task_id, c.claim_token))
        .collect();
    claims.sort();
    (r.json["cancel"].clone(), claims)
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
    let id = queued_task(&srv, "codex", json!({}));
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let (_, first) = w.claim_one();
    assert_eq!(
        w.report(id, &first, "started", json!({"pid": 7})).status,
        200
    );

    // Cancelled, and at once dispatched again and claimed by the same worker.
    let r = svc.post(&format!("/api/tasks/{id}/cancel"), &json!({}));
    assert_eq!(
        (r.status, r.json["status"].clone()),
        (200, json!("waiting")),
        "{}",
        r.text
    );
    let r = svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let (again, second) = w.claim_one();
    assert_eq!(again, id);
    assert_ne!(first, second);
    assert_eq!(
        w.report(id, &second, "started", json!({"pid": 8})).status,
        200
    );

    let (ids, claims) = cancels_of(&srv, "w1", &[id]);
    assert_eq!(ids, json!([]), "the task-id list must not end the new run");
    assert_eq!(claims, [(id, first.clone())]);
    // The old run is told, the new one reports.
    let r = w.report(id, &first, "output", json!({"chunk": "old\n"}));
    assert_eq!(
        (r.status, r.error()),
        (409, "claim_cancelled"),
        "{}",
        r.text
    );
    let r = w.report(id, &second, "output", json!({"chunk": "new\n"}));
    assert_eq!(r.status, 200, "{}", r.text);

    // Cancelled again before the first run confirmed, and claimed a third
    // time: both old claims are remembered, each by its token.
    assert_eq!(
        svc.post(&format!("/api/tasks/{id}/cancel"), &json!({}))
            .status,
        200
    );
    assert_eq!(
        svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}))
            .status,
        200
    );
    let (_, third) = w.claim_one();
    assert_eq!(
        w.report(id, &third, "started", json!({"pid": 9})).status,
        200
    );
    let (ids, claims) = cancels_of(&srv, "w1", &[id]);
    assert_eq!(ids, json!([]));
    let mut want = vec![(id, first.clone()), (id, second.clone())];
    want.sort();
    assert_eq!(claims, want);
    for old in [&first, &second] {
        let r = w.report(
            id,
            old,
            "finished",
            json!({"exit_code": 0, "output": "late"}),
        );
        assert_eq!(
            (r.status, r.error()),
            (409, "claim_cancelled"),
            "{}",
            r.text
        );
    }
    // Another worker is told nothing; a worker no longer listing the task
    // neither.
    assert_eq!(cancels_of(&srv, "w2", &[id]).1, []);
    assert_eq!(cancels_of(&srv, "w1", &[]).1, []);

    // The old confirmations: accepted (and again), the task untouched, the
    // run's end stored on its claim.
    let before = task_row(&srv, id);
    let r = w.report(
        id,
        &first,
        "cancelled",
        json!({"exit_code": null, "signal": "SIGTERM", "elapsed_ms": 300}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json["status"].clone(), r.json["claimed_by"].clone()),
        (json!("doing"), json!("w1"))
    );
    let r = w.report(
        id,
        &second,
        "cancelled",
        json!({"exit_code": 143, "signal": null, "elapsed_ms": 20}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        w.report(id, &first, "cancelled", json!({"elapsed_ms": 1}))
            .status,
        200
    );
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
    let confirmed = svc.get(&format!(
        "/api/events?task_id={id}&kind=dispatch.cancel_confirmed"
    ));
    assert_eq!(confirmed.json["total"], 2, "{}", confirmed.text);
    assert_eq!(
        cancels_of(&srv, "w1", &[id]).1,
        [],
        "confirmed: no longer named"
    );

    // The newest run finishes in review, as if nothing happened.
    let r = w.report(
        id,
        &third,
        "finished",
        json!({"exit_code": 0, "output": "deliverable"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "review");
    assert_eq!(r.json["dispatch_attempts"], 3);
    // A confirmation after the end changes nothing either.
    let before = task_row(&srv, id);
    assert_eq!(
        w.report(id, &second, "cancelled", json!({"elapsed_ms": 5}))
            .status,
        200
    );
    assert_eq!(task_row(&srv, id), before);
    // A token that was never cancelled is no proof.
    let r = w.report(id, &third, "cancelled", json!({"elapsed_ms": 5}));
    assert_eq!((r.status, r.error()), (409, "stale_claim"), "{}", r.text);
}

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
    let task = |id: i64| svc.get(&format!("/api/tasks/{id}")).json;
    let run = |fields: Value| -> (i64, String) {
        let id = queued_task(&srv, "codex", fields);
        let (claimed, token) = w.claim_one();
        assert_eq!(claimed, id);
        assert_eq!(w.report(id, &token, "started", json!({})).status, 200);
        (id, token)
    };

    // Failed, with the fields.
    let (id, token) = run(json!({}));
    let r = w.report(id, &token, "failed", json!({"signature": "agent timed out after 2 h",
        "reason": "agent timed out after 2 h", "evidence": "…", "exit_code": null, "signal": "SIGKILL"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json["exit_code"].clone(), r.json["exit_signal"].clone()),
        (Value::Null, json!("SIGKILL"))
    );
    // Failed, from an older launcher: read from the signature.
    let (old, token) = run(json!({}));
    let r = w.report(
        old,
        &token,
        "failed",
        json!({"signature": "launcher process exited early (code=1, signal=null)",
        "reason": "exited early", "evidence": "boom"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json["exit_code"].clone(), r.json["exit_signal"].clone()),
        (json!(1), Value::Null)
    );
    // A new claim clears them.
    assert_eq!(
        svc.post(&format!("/api/tasks/{old}/retry"), &json!({}))
            .status,
        200
    );
    let (_, token) = w.claim_one();
    let t = task(old);
    assert_eq!(
        (t["exit_code"].clone(), t["exit_signal"].clone()),
        (Value::Null, Value::Null),
        "{t}"
    );
    let r = w.report(
        old,
        &token,
        "finished",
        json!({"exit_code": 0, "signal": null, "output": "done"}),
    );
    assert_eq!(
        (r.json["status"].clone(), r.json["exit_code"].clone()),
        (json!("review"), json!(0))
    );

    // A run in a clone that left its branch where it found it.
    let change = |start: Option<&str>, head: &str, patch: &str| {
        let mut c = json!({"branch": "ops/task-x", "base": "aaaa1111", "head": head,
                           "git_status": "", "diff_stat": "", "patch": patch});
        if let Some(s) = start {
            c["start"] = json!(s);
        }
        c
    };
    let finish = |id: i64, token: &str, c: Value| {
        let mut body = json!({"exit_code": 0, "output": "I looked, all is fine"});
        for (k, v) in c.as_object().unwrap() {
            body[k] = v.clone();
        }
        w.report(id, token, "finished", body)
    };
    let (id, token) = run(json!({}));
    // The branch holds an earlier run's work (a non-empty patch), but this
    // run started at its head and left it there.
    let r = finish(
        id,
        &token,
        change(
            Some("bbbb2222"),
            "bbbb2222",
            "diff --git a/x b/x\n+earlier\n",
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json["status"].clone(), r.json["blocked"].clone()),
        (json!("waiting"), json!(true))
    );
    assert_eq!(
        r.json["blocked_reason"],
        "sin cambios: el agente terminó sin modificar el repositorio"
    );
    assert_eq!(r.json["dispatch_output"], "I looked, all is fine");
    // A retried report answers the task as it is.
    let again = finish(id, &token, change(Some("bbbb2222"), "bbbb2222", ""));
    assert_eq!(
        (again.status, again.json["status"].clone()),
        (200, json!("waiting"))
    );
    // It moved the branch: review.
    let (id, token) = run(json!({}));
    let r = finish(
        id,
        &token,
        change(Some("bbbb2222"), "cccc3333", "diff --git a/x b/x\n+new\n"),
    );
    assert_eq!(r.json["status"], "review", "{}", r.text);
    // An older launcher (no `start`): an empty patch is no change.
    let (id, token) = run(json!({}));
    let r = finish(id, &token, change(None, "aaaa1111", ""));
    assert_eq!(
        r.json["blocked_reason"], "sin cambios: el agente terminó sin modificar el repositorio",
        "{}",
        r.text
    );
    // A task that expects no change reaches review on its output.
    let (id, token) = run(json!({"expects_changes": false}));
    assert_eq!(task(id)["expects_changes"], false);
    let r = finish(id, &token, change(Some("bbbb2222"), "bbbb2222", ""));
    assert_eq!(
        (r.json["status"].clone(), r.json["blocked"].clone()),
        (json!("review"), json!(false)),
        "{}",
        r.text
    );
    // No change reported (no clone): judged by its output as before.
    let (id, token) = run(json!({}));
    let r = w.report(
        id,
        &token,
        "finished",
        json!({"exit_code": 0, "output": "done"}),
    );
    assert_eq!(r.json["status"], "review", "{}", r.text);

    // Bad values: refused, named, nothing changed.
    let before = srv.fingerprint();
    let r = svc.post(
        "/api/tasks",
        &json!({"title": "x", "expects_changes": "no"}),
    );
    assert_eq!((r.status, r.error()), (400, "invalid_field"), "{}", r.text);
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("expects_changes"),
        "{}",
        r.text
    );
    let r = svc.patch(&format!("/api/tasks/{id}"), &json!({"expects_changes": 0}));
    assert_eq!((r.status, r.error()), (400, "invalid_field"), "{}", r.text);
    let (id, token) = {
        let id = queued_task(&srv, "codex", json!({}));
        let (_, token) = w.claim_one();
        (id, token)
    };
    let before_reports = srv.fingerprint();
    for body in [
        json!({"signature": "s", "exit_code": "one"}),
        json!({"signature": "s", "signal": ["TERM"]}),
        json!({"signature": "s", "exit_code": 1.5}),
    ] {
        let r = w.report(id, &token, "failed", body.clone());
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_field"),
            "{body}: {}",
            r.text
        );
    }
    for start in [json!("not-a-commit"), json!(12)] {
        let mut c = change(None, "aaaa1111", "");
        c["start"] = start.clone();
        let r = finish(id, &token, c);
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_field"),
            "{start}: {}",
            r.text
        );
    }
    let r = w.report(
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
