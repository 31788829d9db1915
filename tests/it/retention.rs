//! Event retention: old events go, in batches, on the watchdog thread;
//! those of unfinished tasks and of tasks with an open alert stay; the
//! freed pages go back to the file system.

use crate::client::{task, TaskSpec};
use crate::util::*;

fn event_count(srv: &Server, task: i64) -> usize {
    let list = srv
        .service()
        .events(&format!("?task_id={task}&limit=1000"))
        .ok();
    list.events.len()
}

#[test]
fn old_events_are_pruned_except_what_is_still_needed() {
    let mut srv = Server::start();
    let svc = srv.service();
    let create = |title: &str| svc.new_task(&crate::client::task(title).description("x"));
    let finished = create("finished long ago");
    let unfinished = create("still open");
    let alerted = create("finished, with an open alert");
    for id in [finished, alerted] {
        svc.move_task(id, "done").ok();
    }
    // Many events, so that the prune frees pages.
    for i in 0..300 {
        let note = format!("note {i} {}", "x".repeat(400));
        svc.comment(finished, &note, None).ok();
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
    svc.set_setting("watchdog_interval_seconds", "5").ok();
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
    let recent = svc.events("?kind=settings.changed").ok();
    assert_eq!(recent.total, 1, "recent events stay: {recent:?}");
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
    svc.set_setting("events_retention_days", "0").ok();
    let r = svc.set_setting("events_retention_days", "-1");
    assert_eq!(r.status, 400, "{}", r.text);
}

/// A backlog far larger than one batch goes in one run, batch after batch,
/// while requests keep being answered at once; the rate shows in /metrics.
#[test]
fn a_large_backlog_is_pruned_in_one_run_while_writes_go_on() {
    const OLD: i64 = 40_000;
    let mut srv = Server::start();
    let svc = srv.service();
    let done = svc.new_task(&task("finished").description("x"));
    svc.move_task(done, "done").ok();
    let open = svc.new_task(&task("unfinished").description("x"));
    assert!(srv.signal_and_wait("TERM").success());
    {
        // The backlog, written while the server is stopped (as the
        // existing log of a long-running board would be): one event in ten
        // belongs to the unfinished task, whose history stays.
        let conn = srv.sql_write();
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO events(at, workspace_id, task_id, kind, actor, payload)
             SELECT 0, 1, CASE WHEN i % 10 = 0 THEN ?3 ELSE ?2 END, 'test.old', 'test',
                    '{\"n\":' || i || ',\"pad\":\"' || hex(randomblob(40)) || '\"}'
             FROM n",
            rusqlite::params![OLD, done, open],
        )
        .unwrap();
        conn.execute(
            "UPDATE events SET at = CAST(strftime('%s','now') AS INTEGER) * 1000 - 200 * 86400000",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT OR REPLACE INTO ops_settings(key, value, updated_at)
             VALUES ('watchdog_interval_seconds', '5', 0)",
            [],
        )
        .unwrap();
    }
    let count = |srv: &Server, task: i64| -> i64 {
        srv.sql()
            .query_row(
                "SELECT COUNT(*) FROM events WHERE task_id = ?1",
                [task],
                |r| r.get(0),
            )
            .unwrap()
    };
    let kept = count(&srv, open);
    assert!(kept >= OLD / 10, "{kept}");
    srv.start_again();

    // Writes all along, timed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (svc, stop) = (srv.service(), stop.clone());
        std::thread::spawn(move || {
            let mut slowest = std::time::Duration::ZERO;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let t = std::time::Instant::now();
                svc.new_task(&crate::client::task(&format!("during {n}")));
                slowest = slowest.max(t.elapsed());
                n += 1;
            }
            (n, slowest)
        })
    };
    wait_for(90, "the backlog pruned", || {
        (count(&srv, done) == 0).then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (writes, slowest) = writer.join().unwrap();
    assert_eq!(
        count(&srv, open),
        kept,
        "the unfinished task keeps its history"
    );

    // One run took it all, and said how fast.
    let log = srv.log();
    let line = log
        .lines()
        .find(|l| l.contains("old event(s) pruned"))
        .unwrap_or_else(|| panic!("no retention line: {log}"));
    let pruned: i64 = line
        .split("retention: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(pruned >= OLD - OLD / 10, "one run pruned it all: {line}");
    let metrics = srv.service().get("/metrics").text;
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics}"))
    };
    assert!(sample("ops_events_pruned_total") >= pruned as f64);
    let rate = sample("ops_events_prune_per_second");
    eprintln!(
        "retention: {line}; {writes} writes meanwhile, the slowest answered in {slowest:?}; \
         /metrics rate {rate:.0}/s"
    );
    // The old watchdog pass deleted at most 10,000 events a minute.
    assert!(rate > 1000.0, "{rate}");
    assert!(
        slowest < std::time::Duration::from_secs(1),
        "a write waited {slowest:?} behind retention"
    );
}
