//! Long-poll claims: `POST /api/dispatch/next?wait=N` parks a claim that
//! finds nothing and answers it as soon as a task for that worker is
//! queued, without holding a handler thread.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ops_center::protocol::dispatch::{ClaimAnswer, ClaimRequest, HeartbeatReport};

use crate::util::*;

/// A claim for any agent.
fn request(worker: &str) -> ClaimRequest {
    ClaimRequest {
        worker_id: worker.into(),
        agent_slugs: None,
        workspace_id: None,
    }
}

/// A claim with `wait`, in its own thread: (answer, seconds it took).
fn parked_claim(srv: &Server, worker: &str, wait: u64) -> std::thread::JoinHandle<(Res, f64)> {
    let client = srv.service();
    let body = request(worker);
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = client.send("POST", &format!("/api/dispatch/next?wait={wait}"), &body);
        (r, t.elapsed().as_secs_f64())
    })
}

/// A long-poll claim's answer, which must be a 200.
fn answer(r: &Res) -> ClaimAnswer {
    assert_eq!(r.status, 200, "{}", r.text);
    r.body()
}

#[test]
fn a_parked_claim_gets_the_next_matching_task_at_once() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let parked = parked_claim(&srv, "w1", 10);
    srv.wait_parked(1);
    // A task this worker cannot run does not answer it. The waiting room
    // takes wakes in order, so the claim is still parked when the next
    // dispatch's wake comes, and that task is what it gets.
    let hermes = queued_task(&srv, "hermes");
    let queued_at = Instant::now();
    let id = queued_task(&srv, "codex");
    let (r, _) = parked.join().unwrap();
    let latency = queued_at.elapsed();
    // Answered, it is no longer counted as parked.
    assert_eq!(srv.gauge("ops_dispatch_claims_parked"), 0.0);
    let got = answer(&r);
    assert_eq!(
        got.task.map(|t| t.id),
        Some(id),
        "a non-matching task answered the parked claim: {}",
        r.text
    );
    assert!(got.claim_token.is_some());
    assert!(
        latency < Duration::from_millis(250),
        "answered {latency:?} after the dispatch"
    );
    assert_eq!(svc.task(id).ok().task.status, "dispatching");
    assert_eq!(svc.task(hermes).ok().task.status, "queued");

    // Nothing queued for the whole wait: `no_task` at its end.
    let (r, took) = parked_claim(&srv, "w1", 2).join().unwrap();
    assert_eq!(answer(&r).reason.as_deref(), Some("no_task"), "{}", r.text);
    assert!((1.8..5.0).contains(&took), "took {took} s");

    // Out of range.
    for bad in ["61", "-1", "soon"] {
        let r = svc.send(
            "POST",
            &format!("/api/dispatch/next?wait={bad}"),
            &request("w1"),
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
    srv.wait_parked(1);
    srv.service().set_setting("dispatch_enabled", "false").ok();
    let (r, took) = parked.join().unwrap();
    let reason = answer(&r).reason;
    assert_eq!(reason.as_deref(), Some("dispatch_disabled"), "{}", r.text);
    assert!(took < 3.0, "took {took} s");

    enable_dispatch(&srv);
    let parked = parked_claim(&srv, "w1", 20);
    srv.wait_parked(1);
    let draining = HeartbeatReport {
        draining: true,
        ..w.heartbeat_of(&["codex"], &[])
    };
    w.beat(&draining).ok();
    let (r, took) = parked.join().unwrap();
    let reason = answer(&r).reason;
    assert_eq!(reason.as_deref(), Some("worker_draining"), "{}", r.text);
    assert!(took < 3.0, "took {took} s");

    w.heartbeat(&["codex"], &[]);
    let parked: Vec<_> = (0..4).map(|_| parked_claim(&srv, "w1", 30)).collect();
    srv.wait_parked(4);
    let t = Instant::now();
    let status = srv.signal_and_wait("TERM");
    assert!(status.success(), "{status}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    for p in parked {
        let (r, _) = p.join().unwrap();
        assert_eq!(answer(&r).reason.as_deref(), Some("no_task"), "{}", r.text);
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
            let body = request(w);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut idle = 0;
                // Until three waits in a row bring nothing.
                while idle < 3 {
                    let r = client.send("POST", "/api/dispatch/next?wait=1", &body);
                    match answer(&r).task {
                        Some(task) => {
                            got.push(task.id);
                            idle = 0;
                        }
                        None => idle += 1,
                    }
                }
                got
            })
        })
        .collect();
    let mut queued = HashSet::new();
    for _ in 0..TASKS {
        queued.insert(queued_task(&srv, "codex"));
    }
    let mut claimed = Vec::new();
    for h in handles {
        claimed.extend(h.join().unwrap());
    }
    let unique: HashSet<i64> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), unique.len(), "a task was handed out twice");
    assert_eq!(unique, queued, "every task was claimed");
}

#[test]
fn a_task_queued_between_a_claims_search_and_its_park_wakes_it() {
    let srv = Server::start();
    enable_dispatch(&srv);
    Worker::new(&srv, "w1").heartbeat(&["codex"], &[]);
    // The claim finds nothing, then is held before it reaches the waiting
    // room: the dispatch's wake finds nobody parked.
    srv.hold_park("w1", "arm");
    let parked = parked_claim(&srv, "w1", 30);
    assert!(
        srv.hold_park("w1", "wait"),
        "the claim never reached the hook"
    );
    let id = queued_task(&srv, "codex");
    let released = Instant::now();
    srv.hold_park("w1", "release");
    let (r, _) = parked.join().unwrap();
    assert_eq!(answer(&r).task.map(|t| t.id), Some(id), "{}", r.text);
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
    let body = serde_json::to_string(&request(worker)).unwrap();
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
    srv.hold_park("host-a", "arm");
    let dead = raw_parked_claim(&srv, "host-a");
    assert!(
        srv.hold_park("host-a", "wait"),
        "the claim never reached the hook"
    );
    srv.hold_park("host-a", "release");
    // The restarted launcher (same worker id) heartbeats and parks.
    w.heartbeat(&["codex"], &[]);
    let live = parked_claim(&srv, "host-a", 30);
    drop(dead);
    let queued_at = Instant::now();
    let id = queued_task(&srv, "codex");
    let (r, _) = live.join().unwrap();
    assert_eq!(answer(&r).task.map(|t| t.id), Some(id), "{}", r.text);
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
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "host-b");
    w.heartbeat(&["codex"], &[]);
    let held = queued_task(&srv, "codex");
    let (id, _) = w.claim_one();
    assert_eq!(id, held);
    // A regular heartbeat within the grace leaves the claim alone: its
    // answer may still be on its way.
    w.heartbeat(&["codex"], &[]);
    assert_eq!(svc.task(id).ok().task.status, "dispatching");
    // The launcher restarted: its first heartbeat lists what it adopted,
    // and this claim is not among them.
    let starting = |running: Vec<i64>| HeartbeatReport {
        starting: true,
        running_task_ids: running,
        ..w.heartbeat_of(&["codex"], &[])
    };
    let r = w.beat(&starting(vec![])).ok();
    assert_eq!(r.requeued, [id], "{r:?}");
    let task = svc.task(id).ok().task;
    assert_eq!(task.status, "queued", "{task:?}");
    assert!(!task.blocked, "{task:?}");
    assert_eq!(event_kinds(&srv, id).last().unwrap(), "dispatch.claim_lost");
    // A claim it lists is kept.
    let (again, _) = w.claim_one();
    let r = w.beat(&starting(vec![again])).ok();
    assert!(r.requeued.is_empty(), "{r:?}");
}
