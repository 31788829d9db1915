//! Long-poll claims: `POST /api/dispatch/next?wait=N` parks a claim that
//! finds nothing and answers it as soon as a task for that worker is
//! queued, without holding a handler thread.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::*;

/// A claim with `wait`, in its own thread: (answer, seconds it took).
fn parked_claim(srv: &Server, worker: &str, wait: u64) -> std::thread::JoinHandle<(Res, f64)> {
    let client = srv.service();
    let body = json!({ "worker_id": worker });
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = client.post(&format!("/api/dispatch/next?wait={wait}"), &body);
        (r, t.elapsed().as_secs_f64())
    })
}

#[test]
fn a_parked_claim_gets_the_next_matching_task_at_once() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let parked = parked_claim(&srv, "w1", 10);
    std::thread::sleep(Duration::from_millis(500));
    // A task this worker cannot run does not answer it.
    queued_task(&srv, "hermes");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !parked.is_finished(),
        "a non-matching task answered the parked claim"
    );
    let queued_at = Instant::now();
    let id = queued_task(&srv, "codex");
    let (r, _) = parked.join().unwrap();
    let latency = queued_at.elapsed();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["task"]["id"], id, "{}", r.text);
    assert!(r.json["claim_token"].is_string());
    assert!(
        latency < Duration::from_millis(250),
        "answered {latency:?} after the dispatch"
    );
    assert_eq!(
        srv.service().get(&format!("/api/tasks/{id}")).json["status"],
        "dispatching"
    );

    // Nothing queued for the whole wait: `no_task` at its end.
    let (r, took) = parked_claim(&srv, "w1", 2).join().unwrap();
    assert_eq!(r.json["reason"], "no_task", "{}", r.text);
    assert!((1.8..5.0).contains(&took), "took {took} s");

    // Out of range.
    for bad in ["61", "-1", "soon"] {
        let r = srv.service().post(
            &format!("/api/dispatch/next?wait={bad}"),
            &json!({"worker_id": "w1"}),
        );
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.text.contains("wait"), "{}", r.text);
    }
}

#[test]
fn disabling_dispatch_draining_and_shutdown_answer_parked_claims() {
    let mut srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let parked = parked_claim(&srv, "w1", 20);
    std::thread::sleep(Duration::from_millis(500));
    let r = srv
        .service()
        .put("/api/settings/dispatch_enabled", &json!({"value": "false"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let (r, took) = parked.join().unwrap();
    assert_eq!(r.json["reason"], "dispatch_disabled", "{}", r.text);
    assert!(took < 3.0, "took {took} s");

    enable_dispatch(&srv);
    let parked = parked_claim(&srv, "w1", 20);
    std::thread::sleep(Duration::from_millis(500));
    let r = w.client.post(
        "/api/dispatch/heartbeat",
        &json!({"worker_id": "w1", "draining": true,
                "agents": [{"slug": "codex", "cli": "codex", "available": true, "authenticated": true}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (r, took) = parked.join().unwrap();
    assert_eq!(r.json["reason"], "worker_draining", "{}", r.text);
    assert!(took < 3.0, "took {took} s");

    w.heartbeat(&["codex"], &[]);
    let parked: Vec<_> = (0..4).map(|_| parked_claim(&srv, "w1", 30)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let status = srv.signal_and_wait("TERM");
    assert!(status.success(), "{status}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    for p in parked {
        let (r, _) = p.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json["reason"], "no_task", "{}", r.text);
    }
}

#[test]
fn parked_workers_share_a_stream_of_dispatches_each_task_once() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let workers: Vec<String> = (0..16).map(|i| format!("lp{i}")).collect();
    for w in &workers {
        Worker::new(&srv, w).heartbeat(&["codex"], &[]);
    }
    const TASKS: usize = 2_000;
    let handles: Vec<_> = workers
        .iter()
        .map(|w| {
            let client = srv.service();
            let body = json!({ "worker_id": w });
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut idle = 0;
                // Until three waits in a row bring nothing.
                while idle < 3 {
                    let r = client.post("/api/dispatch/next?wait=1", &body);
                    assert_eq!(r.status, 200, "{}", r.text);
                    match r.json["task"]["id"].as_i64() {
                        Some(id) => {
                            got.push(id);
                            idle = 0;
                        }
                        None => idle += 1,
                    }
                }
                got
            })
        })
        .collect();
    let svc = srv.service();
    let mut queued = HashSet::new();
    for _ in 0..TASKS {
        queued.insert(queued_task(&srv, "codex"));
    }
    drop(svc);
    let mut claimed = Vec::new();
    for h in handles {
        claimed.extend(h.join().unwrap());
    }
    let unique: HashSet<i64> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), unique.len(), "a task was handed out twice");
    assert_eq!(unique, queued, "every task was claimed");
}

/// `POST /api/test/hold-park` for `worker`; whether a claim is held.
fn hold(srv: &Server, worker: &str, action: &str) -> bool {
    let r = srv.service().post(
        "/api/test/hold-park",
        &json!({"worker_id": worker, "action": action}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["held"].as_bool().unwrap()
}

#[test]
fn a_task_queued_between_a_claims_search_and_its_park_wakes_it() {
    let srv = Server::start();
    enable_dispatch(&srv);
    Worker::new(&srv, "w1").heartbeat(&["codex"], &[]);
    // The claim finds nothing, then is held before it reaches the waiting
    // room: the dispatch's wake finds nobody parked.
    hold(&srv, "w1", "arm");
    let parked = parked_claim(&srv, "w1", 30);
    assert!(hold(&srv, "w1", "wait"), "the claim never reached the hook");
    let id = queued_task(&srv, "codex");
    let released = Instant::now();
    hold(&srv, "w1", "release");
    let (r, _) = parked.join().unwrap();
    assert_eq!(r.json["task"]["id"], id, "{}", r.text);
    let latency = released.elapsed();
    assert!(
        latency < Duration::from_secs(1),
        "the parked claim got the task {latency:?} after it parked"
    );
}

/// A claim parked on a raw connection that the test can drop, as a
/// launcher killed with `kill -9` would.
fn raw_parked_claim(srv: &Server, worker: &str) -> std::net::TcpStream {
    use std::io::Write;
    let body = json!({ "worker_id": worker }).to_string();
    let mut s = std::net::TcpStream::connect(&srv.addr).unwrap();
    s.write_all(
        format!(
            "POST /api/dispatch/next?wait=30 HTTP/1.1\r\nHost: x\r\nX-OPS-Service-Token: {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s
}

#[test]
fn a_claim_whose_launcher_died_while_parked_gets_no_task() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "host-a");
    w.heartbeat(&["codex"], &[]);
    // The old launcher's claim is parked, then the launcher dies.
    hold(&srv, "host-a", "arm");
    let dead = raw_parked_claim(&srv, "host-a");
    assert!(
        hold(&srv, "host-a", "wait"),
        "the claim never reached the hook"
    );
    hold(&srv, "host-a", "release");
    // The restarted launcher (same worker id) heartbeats and parks.
    w.heartbeat(&["codex"], &[]);
    let live = parked_claim(&srv, "host-a", 30);
    drop(dead);
    let queued_at = Instant::now();
    let id = queued_task(&srv, "codex");
    let (r, _) = live.join().unwrap();
    assert_eq!(r.json["task"]["id"], id, "{}", r.text);
    assert!(
        queued_at.elapsed() < Duration::from_secs(1),
        "claimed {:?} after the dispatch",
        queued_at.elapsed()
    );
    // Handed out once: the dead connection's claim never held it, or held
    // it and gave it back at once (`dispatch.claim_undelivered`).
    let kinds = event_kinds(&srv, id);
    let claims = kinds.iter().filter(|k| *k == "dispatch.claimed").count();
    let undelivered = kinds
        .iter()
        .filter(|k| *k == "dispatch.claim_undelivered")
        .count();
    assert_eq!(claims, 1 + undelivered, "{kinds:?}");
}

#[test]
fn a_restarted_launchers_first_heartbeat_requeues_its_unlisted_claims_at_once() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "host-b");
    w.heartbeat(&["codex"], &[]);
    let held = queued_task(&srv, "codex");
    let (id, _) = w.claim_one();
    assert_eq!(id, held);
    // A regular heartbeat within the grace leaves the claim alone: its
    // answer may still be on its way.
    w.heartbeat(&["codex"], &[]);
    assert_eq!(
        srv.service().get(&format!("/api/tasks/{id}")).json["status"],
        "dispatching"
    );
    // The launcher restarted: its first heartbeat lists what it adopted,
    // and this claim is not among them.
    let r = w.client.post(
        "/api/dispatch/heartbeat",
        &json!({"worker_id": "host-b", "starting": true, "running_task_ids": [],
                "agents": [{"slug": "codex", "cli": "codex", "available": true, "authenticated": true}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["requeued"], json!([id]), "{}", r.text);
    let task = srv.service().get(&format!("/api/tasks/{id}")).json;
    assert_eq!(task["status"], "queued", "{task}");
    assert_eq!(task["blocked"], false, "{task}");
    assert_eq!(event_kinds(&srv, id).last().unwrap(), "dispatch.claim_lost");
    // A claim it lists is kept.
    let (again, _) = w.claim_one();
    let r = w.client.post(
        "/api/dispatch/heartbeat",
        &json!({"worker_id": "host-b", "starting": true, "running_task_ids": [again],
                "agents": [{"slug": "codex", "cli": "codex", "available": true, "authenticated": true}]}),
    );
    assert_eq!(r.json["requeued"], json!([]), "{}", r.text);
}
