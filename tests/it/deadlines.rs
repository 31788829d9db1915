//! Every state a task can be in has an owner and a deadline (README,
//! "Who owns a task, and until when"): one test per row of that table,
//! with time moved by the test clock. The rows of `dispatching` are
//! `dispatch::a_claim_whose_answer_was_lost_is_requeued_by_the_next_heartbeats`
//! and `watchdog::stale_dispatches_are_reconciled_with_context_and_one_alert`;
//! the launcher's own limits on a running agent are
//! `launcher::silent_and_overdue_agents_are_ended_and_their_slots_freed`.

use serde_json::{json, Value};

use crate::util::{enable_dispatch, event_kinds, queued_task, Server, Worker};

/// A heartbeat of `worker` (usable: codex) listing `running`.
fn beat(srv: &Server, worker: &str, running: &[i64]) -> Value {
    let r = srv.service().post(
        "/api/dispatch/heartbeat",
        &json!({"worker_id": worker, "host": format!("{worker}.example"), "version": "t",
                "agents": [{"slug": "codex", "cli": "codex", "available": true, "authenticated": true}],
                "models": [], "slots_total": 2, "slots_busy": running.len(),
                "running_task_ids": running, "draining": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

fn task(srv: &Server, id: i64) -> Value {
    let r = srv.service().get(&format!("/api/tasks/{id}"));
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

fn health(srv: &Server) -> Value {
    srv.service().get("/api/dispatch/health").json
}

/// The value of an unlabelled gauge in `GET /metrics`.
fn gauge(srv: &Server, name: &str) -> f64 {
    let text = srv.service().get("/metrics").text;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn open_alerts(srv: &Server, kind: &str) -> Vec<Value> {
    let r = srv.service().get("/api/alerts?status=open&limit=100").json;
    r["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .cloned()
        .collect()
}

/// A task `w1` claimed and started: `doing` on it. Returns (id, token).
fn running_on_w1(srv: &Server) -> (i64, String) {
    let w = Worker::new(srv, "w1");
    beat(srv, "w1", &[]);
    let id = queued_task(srv, "codex", json!({}));
    let (claimed, token) = w.claim_one();
    assert_eq!(claimed, id);
    let r = w.report(id, &token, "started", json!({"pid": 4242}));
    assert_eq!(r.status, 200, "{}", r.text);
    beat(srv, "w1", &[id]);
    (id, token)
}

/// `next`, `review`, `waiting` (blocked or not) and a `doing` task a
/// person moved there by hand are a person's: no deadline. A week later,
/// with the watchdog, claims and heartbeats going on, none has moved; and
/// `done` is where tasks end.
#[test]
fn tasks_a_person_holds_have_no_deadline() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let mut ids = Vec::new();
    for (status, blocked) in [
        ("next", false),
        ("review", false),
        ("waiting", false),
        ("waiting", true),
        ("doing", false),
        ("done", false),
    ] {
        let id = svc.new_task(&json!({"title": format!("{status} by hand"), "execution": "interactive", "agent": "codex"}));
        if status != "next" {
            let r = svc.patch(
                &format!("/api/tasks/{id}"),
                &json!({"status": status, "blocked": blocked}),
            );
            let r = if r.status == 409 && status == "done" {
                svc.patch(
                    &format!("/api/tasks/{id}/status?force=true"),
                    &json!({"status": "done"}),
                )
            } else {
                r
            };
            assert_eq!(r.status, 200, "{status}: {}", r.text);
        }
        ids.push((id, task(&srv, id)));
    }
    for _ in 0..7 {
        srv.advance_clock(24 * 3600);
        beat(&srv, "w1", &[]);
        let r = svc.post("/api/watchdog/run", &json!({}));
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["task_ids"], json!([]), "{}", r.text);
        Worker::new(&srv, "w1").claim();
    }
    for (id, before) in ids {
        let after = task(&srv, id);
        for k in ["status", "blocked", "blocked_reason", "claimed_by"] {
            assert_eq!(after[k], before[k], "task {id}: {k}");
        }
    }
    let q = &health(&srv)["queue"];
    assert_eq!(
        (
            q["stale_dispatching"].clone(),
            q["stale_running"].clone(),
            q["stale_queued"].clone()
        ),
        (json!(0), json!(0), json!(0)),
        "{q}"
    );
}

/// `queued` is the fleet's: any fresh worker that can run it takes it. One
/// that no worker takes for `dispatch_stale_minutes` while dispatch is on
/// (here: its model passes no worker's filter) is not left to wait unseen:
/// health counts and names it, `/metrics` counts it, and the watchdog
/// raises `dispatch.queued_unclaimed`, which resolves itself once a worker
/// took it.
#[test]
fn a_queued_task_no_worker_takes_is_named_after_the_stale_window() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &["qwen*"]);
    let id = queued_task(&srv, "codex", json!({"model": "gpt-5"}));
    assert_eq!(w.claim().json["reason"], "no_task");

    // Within the window (20 min): nothing to say.
    srv.advance_clock(19 * 60);
    w.heartbeat(&["codex"], &["qwen*"]);
    assert_eq!(health(&srv)["queue"]["stale_queued"], 0);
    let r = svc.post("/api/watchdog/run", &json!({})).json;
    assert_eq!(r["alerts"], json!([]), "{r}");

    srv.advance_clock(2 * 60);
    w.heartbeat(&["codex"], &["qwen*"]);
    let h = health(&srv);
    assert_eq!(h["queue"]["stale_queued"], 1, "{h}");
    let warnings = h["warnings"].to_string();
    assert!(
        warnings.contains(&format!(
            "1 queued task(s) no worker has taken for more than 20 min: #{id} (codex, model gpt-5, workspace 1, 21 min)"
        )),
        "{warnings}"
    );
    assert_eq!(gauge(&srv, "ops_tasks_stale_queued"), 1.0);
    let r = svc.post("/api/watchdog/run", &json!({})).json;
    let kinds: Vec<&str> = r["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["dispatch.queued_unclaimed"], "{r}");
    let alert = &r["alerts"][0];
    assert_eq!(alert["title"], "Tareas en cola que ningún worker toma");
    assert!(
        alert["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("#{id} (codex, model gpt-5")),
        "{alert}"
    );
    // The task itself is left alone: it may still be taken.
    let t = task(&srv, id);
    assert_eq!(
        (t["status"].clone(), t["blocked"].clone()),
        (json!("queued"), json!(false))
    );

    // A worker that runs it takes it; the condition is over.
    let gpt = Worker::new(&srv, "w2");
    gpt.heartbeat(&["codex"], &["gpt-*"]);
    assert_eq!(gpt.claim_one().0, id);
    let r = svc.post("/api/watchdog/run", &json!({})).json;
    assert_eq!(
        r["resolved_alerts"][0]["kind"], "dispatch.queued_unclaimed",
        "{r}"
    );
    assert_eq!(health(&srv)["queue"]["stale_queued"], 0);
    assert!(open_alerts(&srv, "dispatch.queued_unclaimed").is_empty());

    // With dispatch off, a queue that waits is the operator's choice.
    let r = svc.put("/api/settings/dispatch_enabled", &json!({"value": "false"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let other = queued_task(&srv, "codex", json!({"model": "gpt-5"}));
    srv.advance_clock(30 * 60);
    let r = svc.post("/api/watchdog/run", &json!({})).json;
    assert_eq!(r["alerts"], json!([]), "{r}");
    assert_eq!(health(&srv)["queue"]["stale_queued"], 1, "still counted");
    assert_eq!(task(&srv, other)["status"], "queued");
}

/// `doing` is its worker's while the worker's heartbeat is fresh. A worker
/// that goes silent for `dispatch_worker_stale_seconds` (host lost) no
/// longer runs it: health and `/metrics` count it, and the next stale scan
/// (here the claim path's) takes it back — `waiting`, blocked with a
/// reason naming the worker and when it was last seen, a blocker comment,
/// a `dispatch.stale_running` alert and an event. If the launcher comes
/// back, its heartbeat names the withdrawn claim so it ends the agent, its
/// reports are refused `claim_cancelled`, and its confirmation is taken.
#[test]
fn a_running_task_whose_worker_goes_silent_is_taken_back_after_the_stale_window() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let (id, token) = running_on_w1(&srv);
    let seen = health(&srv)["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == "w1")
        .expect("w1 listed")["last_seen_at"]
        .clone();
    let other = Worker::new(&srv, "w2");

    // Silent for less than the window (90 s): nothing moves.
    srv.advance_clock(89);
    other.heartbeat(&["codex"], &[]);
    assert_eq!(health(&srv)["queue"]["stale_running"], 0);
    assert_eq!(other.claim().json["reconciled"], 0);
    let r = svc.post("/api/watchdog/run", &json!({})).json;
    assert_eq!(r["task_ids"], json!([]), "{r}");
    assert_eq!(task(&srv, id)["status"], "doing");

    srv.advance_clock(2);
    other.heartbeat(&["codex"], &[]);
    let h = health(&srv);
    assert_eq!(h["queue"]["stale_running"], 1, "{h}");
    assert!(
        h["warnings"]
            .to_string()
            .contains("1 running task(s) whose worker no longer runs them"),
        "{}",
        h["warnings"]
    );
    assert_eq!(gauge(&srv, "ops_tasks_stale_running"), 1.0);
    // Counted in the caller's workspaces only.
    let r = srv
        .admin()
        .post("/api/workspaces", &json!({"name": "elsewhere"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let other_ws = r.json["id"].as_i64().unwrap();
    let (_, inside) = srv.user("inside", Some((1, "member")));
    let (_, outside) = srv.user("outside", Some((other_ws, "member")));
    assert_eq!(
        inside.get("/api/dispatch/health").json["queue"]["stale_running"],
        1
    );
    assert_eq!(
        outside.get("/api/dispatch/health").json["queue"]["stale_running"],
        0
    );
    // The claim path's stale scan takes it back.
    let r = other.claim();
    assert_eq!(r.json["reconciled"], 1, "{}", r.text);

    let t = task(&srv, id);
    assert_eq!(t["status"], "waiting");
    assert_eq!(t["blocked"], true);
    assert_eq!(t["claimed_by"], Value::Null);
    let reason = t["blocked_reason"].as_str().unwrap();
    let seen = seen.as_str().unwrap();
    // 91 s of the test clock, and what real time the test took.
    assert!(
        reason.starts_with(&format!("stale run: worker w1 was last seen at {seen} (9"))
            && reason.contains(
                " s ago; a worker is stale after 90 s): its launcher or its host is gone"
            ),
        "{reason}"
    );
    let blocker = t["comments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "blocker")
        .expect("a blocker comment");
    assert!(
        blocker["body"].as_str().unwrap().starts_with(reason),
        "{blocker}"
    );
    let alert = open_alerts(&srv, "dispatch.stale_running");
    assert_eq!(alert.len(), 1);
    assert_eq!(alert[0]["task_id"], id);
    assert_eq!(
        alert[0]["title"],
        format!("Tarea {id} en curso sin su worker")
    );
    assert_eq!(alert[0]["detail"], reason);
    let ev = svc.get(&format!(
        "/api/events?task_id={id}&kind=dispatch.reconciled_stale_running"
    ));
    let p = &ev.json["events"][0]["payload"];
    assert_eq!(
        (
            p["why"].clone(),
            p["worker_id"].clone(),
            p["last_seen_at"].clone(),
            p["from"].clone()
        ),
        (
            json!("worker_stale"),
            json!("w1"),
            json!(seen),
            json!("doing")
        ),
        "{}",
        ev.text
    );
    assert_eq!(ev.json["events"][0]["actor"], "dispatcher");
    assert_eq!(health(&srv)["queue"]["stale_running"], 0);
    assert_eq!(gauge(&srv, "ops_tasks_stale_running"), 0.0);

    // The launcher comes back, its agent still running: told to end it.
    let back = beat(&srv, "w1", &[id]);
    assert_eq!(back["cancel"], json!([id]), "{back}");
    assert_eq!(
        back["cancel_claims"],
        json!([{"task_id": id, "claim_token": token}])
    );
    let w1 = Worker::new(&srv, "w1");
    let r = w1.report(
        id,
        &token,
        "finished",
        json!({"exit_code": 0, "output": "late"}),
    );
    assert_eq!(
        (r.status, r.error()),
        (409, "claim_cancelled"),
        "{}",
        r.text
    );
    let r = w1.report(
        id,
        &token,
        "cancelled",
        json!({"signal": "SIGTERM", "elapsed_ms": 40}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "waiting");
    assert_eq!(beat(&srv, "w1", &[id])["cancel_claims"], json!([]));
    // Retried, it runs again like any task.
    assert_eq!(
        svc.post(&format!("/api/tasks/{id}/retry"), &json!({}))
            .status,
        200
    );
    assert_eq!(other.claim_one().0, id);
}

/// A server that was down does not take running tasks back for the time
/// it was away: workers are judged stale only once they have had the
/// stale window to send this process a heartbeat.
#[test]
fn a_restarted_server_gives_workers_the_stale_window_before_judging_them() {
    let mut srv = Server::start();
    enable_dispatch(&srv);
    let (id, _) = running_on_w1(&srv);
    srv.signal_and_wait("TERM");
    // Ten minutes of outage, as the file would show them.
    srv.sql_write()
        .execute(
            "UPDATE worker_heartbeats SET last_seen_at = last_seen_at - 600000",
            [],
        )
        .unwrap();
    srv.start_again();
    let svc = srv.service();
    let r = svc.post("/api/watchdog/run", &json!({})).json;
    assert_eq!(r["task_ids"], json!([]), "{r}");
    assert_eq!(health(&srv)["queue"]["stale_running"], 0);
    // Its launcher reconnects: the task stays its.
    beat(&srv, "w1", &[id]);
    srv.advance_clock(60);
    beat(&srv, "w1", &[id]);
    srv.advance_clock(60);
    let r = svc.post("/api/watchdog/run", &json!({})).json;
    assert_eq!(r["task_ids"], json!([]), "{r}");
    assert_eq!(task(&srv, id)["status"], "doing");
    // Silent from here on: taken back after the window.
    srv.advance_clock(91);
    let r = svc.post("/api/watchdog/run", &json!({})).json;
    assert_eq!(r["task_ids"], json!([id]), "{r}");
    assert_eq!(task(&srv, id)["status"], "waiting");
}

/// A fresh worker whose heartbeats stop listing a running task (its
/// launcher lost the run: state file gone, a report refused for good) no
/// longer runs it: after `dispatch_claim_grace_seconds` of heartbeats that
/// leave it out, the heartbeat takes it back (`released`), as above. A
/// heartbeat that lists it again in time starts the count over.
#[test]
fn a_running_task_its_worker_stops_listing_is_taken_back_after_the_grace() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let (id, _) = running_on_w1(&srv);

    // Left out, then listed again: the count starts over.
    assert_eq!(beat(&srv, "w1", &[])["released"], json!([]));
    srv.advance_clock(50);
    assert_eq!(beat(&srv, "w1", &[id])["released"], json!([]));
    srv.advance_clock(20);
    assert_eq!(beat(&srv, "w1", &[])["released"], json!([]));
    srv.advance_clock(30);
    let r = beat(&srv, "w1", &[]);
    assert_eq!(r["released"], json!([]), "30 s of the 60 s grace: {r}");
    assert_eq!(task(&srv, id)["status"], "doing");
    srv.advance_clock(31);
    let r = beat(&srv, "w1", &[]);
    assert_eq!(r["released"], json!([id]), "{r}");

    let t = task(&srv, id);
    assert_eq!(
        (t["status"].clone(), t["blocked"].clone()),
        (json!("waiting"), json!(true))
    );
    let reason = t["blocked_reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "stale run: worker w1 stopped listing the task among the tasks it runs at "
        ) && reason.contains(" s ago; grace 60 s); it was last seen at "),
        "{reason}"
    );
    assert_eq!(open_alerts(&srv, "dispatch.stale_running").len(), 1);
    let ev = svc.get(&format!(
        "/api/events?task_id={id}&kind=dispatch.reconciled_stale_running"
    ));
    assert_eq!(
        ev.json["events"][0]["payload"]["why"], "unlisted",
        "{}",
        ev.text
    );
    assert_eq!(ev.json["events"][0]["actor"], "worker:w1");
    assert!(event_kinds(&srv, id).contains(&"alert.opened".to_string()));
    // Taken back once: later heartbeats change nothing.
    srv.advance_clock(120);
    assert_eq!(beat(&srv, "w1", &[])["released"], json!([]));
}
