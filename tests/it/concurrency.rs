//! No task is ever handed to two workers, under any concurrency.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::util::{enable_dispatch, Server, Worker};

#[test]
fn sixteen_workers_claim_two_thousand_tasks_exactly_once() {
    const TASKS: usize = 2000;
    const WORKERS: usize = 16;
    let srv = Server::start();
    enable_dispatch(&srv);

    // Queue the tasks from several threads at once, too.
    let created = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for part in 0..8 {
            let (client, created) = (srv.service(), created.clone());
            s.spawn(move || {
                for i in 0..TASKS / 8 {
                    let r = client.post(
                        "/api/tasks",
                        &json!({"title": format!("t{part}-{i}"), "execution": "interactive",
                        "agent": if i % 2 == 0 { "codex" } else { "hermes" }}),
                    );
                    assert_eq!(r.status, 201, "{}", r.text);
                    let id = r.json["id"].as_i64().unwrap();
                    let r = client.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
                    assert_eq!(r.status, 200, "{}", r.text);
                    created.lock().unwrap().push(id);
                }
            });
        }
    });

    let claimed = Arc::new(Mutex::new(Vec::<(i64, String)>::new()));
    std::thread::scope(|s| {
        for n in 0..WORKERS {
            let (w, claimed) = (Worker::new(&srv, &format!("worker-{n}")), claimed.clone());
            s.spawn(move || {
                w.heartbeat(&["codex", "hermes"], &[]);
                loop {
                    let answer = w.claim();
                    match answer.task {
                        Some(task) => claimed.lock().unwrap().push((task.id, w.id.clone())),
                        None => {
                            assert_eq!(answer.reason.as_deref(), Some("no_task"), "{answer:?}");
                            break;
                        }
                    }
                }
            });
        }
    });

    let claimed = claimed.lock().unwrap();
    let ids: HashSet<i64> = claimed.iter().map(|(id, _)| *id).collect();
    assert_eq!(claimed.len(), TASKS, "claims handed out");
    assert_eq!(ids.len(), TASKS, "a task was handed out twice");
    let created: HashSet<i64> = created.lock().unwrap().iter().copied().collect();
    assert_eq!(ids, created);
    let workers: HashSet<&str> = claimed.iter().map(|(_, w)| w.as_str()).collect();
    assert!(workers.len() > 1, "the claims were spread over workers");

    // The database agrees: each task has exactly one claim event, and is
    // held by the worker that got it.
    let conn = srv.sql();
    let (events, distinct): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT task_id) FROM events WHERE kind = 'dispatch.claimed'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((events, distinct), (TASKS as i64, TASKS as i64));
    for (id, worker) in claimed.iter().step_by(97) {
        let holder: String = conn
            .query_row("SELECT claimed_by FROM tasks WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(&holder, worker);
    }
}
