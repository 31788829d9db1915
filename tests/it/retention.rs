//! Event retention: old events go, in batches, on the watchdog thread;
//! those of unfinished tasks and of tasks with an open alert stay; the
//! freed pages go back to the file system.

use serde_json::json;

use crate::util::*;

fn event_count(srv: &Server, task: i64) -> usize {
    let r = srv
        .service()
        .get(&format!("/api/events?task_id={task}&limit=1000"));
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["events"].as_array().unwrap().len()
}

#[test]
fn old_events_are_pruned_except_what_is_still_needed() {
    let mut srv = Server::start();
    let svc = srv.service();
    let create = |title: &str| -> i64 {
        let r = svc.post("/api/tasks", &json!({"title": title, "description": "x"}));
        assert_eq!(r.status, 201, "{}", r.text);
        r.json["id"].as_i64().unwrap()
    };
    let finished = create("finished long ago");
    let unfinished = create("still open");
    let alerted = create("finished, with an open alert");
    for id in [finished, alerted] {
        let r = svc.patch(
            &format!("/api/tasks/{id}/status"),
            &json!({"status": "done"}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // Many events, so that the prune frees pages.
    for i in 0..300 {
        let r = svc.post(
            &format!("/api/tasks/{finished}/comments"),
            &json!({"body": format!("note {i} {}", "x".repeat(400))}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let before = [finished, unfinished, alerted].map(|id| event_count(&srv, id));
    assert!(before.iter().all(|n| *n > 0), "{before:?}");

    // Two hundred days pass (written while the server is stopped, as an
    // outside tool would), and the alerted task gets an open alert.
    let status = srv.signal_and_wait("TERM");
    assert!(status.success());
    {
        let conn = srv.sql_write();
        conn.execute("UPDATE events SET at = at - 200 * 86400000", [])
            .unwrap();
        conn.execute(
            "INSERT INTO alerts(kind, subject, task_id, status, title, detail, occurrences, first_seen_at, last_seen_at)
             VALUES ('dispatch.stale', 'task:' || ?1, ?1, 'open', 't', 'd', 1, 0, 0)",
            [alerted],
        )
        .unwrap();
        let mode: i64 = conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, 2, "a new database is in incremental auto-vacuum mode");
    }
    srv.start_again();
    let svc = srv.service();
    let r = svc.put(
        "/api/settings/watchdog_interval_seconds",
        &json!({"value": "5"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    wait_for(30, "the old events of the finished task pruned", || {
        (event_count(&srv, finished) == 0).then_some(())
    });
    assert_eq!(
        event_count(&srv, unfinished),
        before[1],
        "an unfinished task keeps its history"
    );
    assert_eq!(
        event_count(&srv, alerted),
        before[2],
        "a task with an open alert keeps its history"
    );
    let recent = svc.get("/api/events?kind=settings.changed");
    assert_eq!(
        recent.json["total"], 1,
        "recent events stay: {}",
        recent.text
    );
    assert!(srv.log().contains("old event(s) pruned"), "{}", srv.log());
    let free: i64 = srv
        .sql()
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    assert!(
        free < 10,
        "the freed pages went back to the file system: {free} free"
    );

    // 0 turns retention off.
    let r = svc.put(
        "/api/settings/events_retention_days",
        &json!({"value": "0"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = svc.put(
        "/api/settings/events_retention_days",
        &json!({"value": "-1"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
}
