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
    queued_task(&srv, "hermes", json!({}));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !parked.is_finished(),
        "a non-matching task answered the parked claim"
    );
    let queued_at = Instant::now();
    let id = queued_task(&srv, "codex", json!({}));
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
        queued.insert(queued_task(&srv, "codex", json!({})));
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
