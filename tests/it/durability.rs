//! Restarts keep everything, and SIGTERM in the middle of a burst of writes
//! loses no write the server acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ops_center::protocol::tasks::TaskView;

use crate::client::{task, TaskSpec};
use crate::util::Server;

#[test]
fn restart_keeps_all_data() {
    let mut srv = Server::start();
    let svc = srv.service();
    let id = svc.new_task(&task("keep me").agent("codex").priority(3));
    svc.comment(id, "a note", None).ok();
    svc.set_setting("dispatch_stale_minutes", "33").ok();
    let (uid, _) = srv.user("alice", Some((1, "member")));
    let changed = svc.events("?kind=settings.changed").ok();
    let payload = &changed.events[0].payload;
    assert_eq!(payload["key"], "dispatch_stale_minutes", "{changed:?}");
    assert_eq!(payload["to"], "33");
    let before = srv.fingerprint();

    srv.restart();
    assert_eq!(before, srv.fingerprint(), "a restart changed the data");
    let svc = srv.service();
    let t = svc.task(id).ok();
    assert_eq!(t.task.title, "keep me");
    assert_eq!(t.comments[0].body, "a note");
    assert_eq!(svc.settings().ok().dispatch_stale_minutes, 33);
    let alice = srv.login("alice", "alice-password-1234");
    assert_eq!(alice.me().ok().user.map(|u| u.id), Some(uid));
    // A clean stop checkpoints the WAL into the main file.
    let wal = srv.db_path().with_extension("db-wal");
    srv.signal_and_wait("TERM");
    assert!(
        std::fs::metadata(&wal)
            .map(|m| m.len() == 0)
            .unwrap_or(true),
        "WAL left non-empty after a clean stop"
    );
}

#[test]
fn sigterm_during_a_burst_loses_no_acknowledged_write() {
    let mut srv = Server::start();
    let acknowledged = Arc::new(Mutex::new(Vec::<i64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (client, acknowledged, stop) = (srv.service(), acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let body = serde_json::to_vec(&task(&format!("w{w}-{n}"))).unwrap();
                    match client.try_raw("POST", "/api/tasks", &body) {
                        Ok(r) if r.status == 201 => {
                            acknowledged.lock().unwrap().push(r.body::<TaskView>().id)
                        }
                        // Refused or cut off by the shutdown: not acknowledged.
                        Ok(_) | Err(_) => {}
                    }
                }
            })
        })
        .collect();
    // Let the burst build up, then stop the server in the middle of it.
    crate::util::wait_for(30, "a burst of writes", || {
        (acknowledged.lock().unwrap().len() >= 200).then_some(())
    });
    let status = srv.signal_and_wait("TERM");
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap();
    }
    assert!(status.success(), "SIGTERM exit status {status}");
    let acked = acknowledged.lock().unwrap().clone();
    srv.start_again();
    let conn = srv.sql();
    let missing: Vec<i64> = acked
        .iter()
        .copied()
        .filter(|id| {
            conn.query_row("SELECT COUNT(*) FROM tasks WHERE id = ?1", [id], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
                == 0
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost: {missing:?}",
        missing.len()
    );
    let created: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'task.created'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let tasks: i64 = conn
        .query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        created, tasks,
        "every stored task has its event, and no event lacks its task"
    );
    assert!(tasks as usize >= acked.len());
}
