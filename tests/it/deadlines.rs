//! Every state a task can be in has an owner and a deadline (README,
//! "Who owns a task, and until when"): one test per row of that table,
//! with time moved by the test clock. The rows of `dispatching` are
//! `dispatch::a_claim_whose_answer_was_lost_is_requeued_by_the_next_heartbeats`
//! and `watchdog::stale_dispatches_are_reconciled_with_context_and_one_alert`;
//! the launcher's own limits on a running agent are
//! `launcher::silent_and_overdue_agents_are_ended_and_their_slots_freed`.

use ops_center::protocol::dispatch::{CancelledClaim, HeartbeatAnswer, HeartbeatReport};
use ops_center::protocol::events::AlertView;
use ops_center::protocol::health::Health;
use ops_center::protocol::tasks::{TaskEdit, TaskView};

use crate::client::{cancel_ended, finished, started, task, workers, TaskSpec};
use crate::util::{dispatchable, enable_dispatch, event_kinds, queued_task, Server, Worker};

/// No task ids.
const NONE: [i64; 0] = [];

/// A heartbeat of `worker` (usable: codex) listing `running`.
fn beat(srv: &Server, worker: &str, running: &[i64]) -> HeartbeatAnswer {
    let w = Worker::new(srv, worker);
    let report = HeartbeatReport {
        host: format!("{worker}.example"),
        version: "t".into(),
        slots_busy: running.len() as i64,
        running_task_ids: running.to_vec(),
        ..w.heartbeat_of(&["codex"], &[])
    };
    w.beat(&report).ok()
}

fn task_of(srv: &Server, id: i64) -> TaskView {
    srv.service().task(id).ok().task
}

fn health(srv: &Server) -> Health {
    srv.service().health("").ok()
}

fn open_alerts(srv: &Server, kind: &str) -> Vec<AlertView> {
    let open = srv.service().alerts("?status=open&limit=100").ok();
    open.alerts.into_iter().filter(|a| a.kind == kind).collect()
}

/// A task `w1` claimed and started: `doing` on it. Returns (id, token).
fn running_on_w1(srv: &Server) -> (i64, String) {
    let w = Worker::new(srv, "w1");
    beat(srv, "w1", &[]);
    let id = queued_task(srv, "codex");
    let (claimed, token) = w.claim_one();
    assert_eq!(claimed, id);
    w.report(id, &token, started(Some(4242))).ok();
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
        let id = svc.new_task(&task(&format!("{status} by hand")).interactive("codex"));
        if status != "next" {
            let edit = TaskEdit {
                status: Some(status.into()),
                blocked: Some(blocked),
                ..TaskEdit::default()
            };
            let r = svc.edit_task(id, &edit).res();
            let r = if r.status == 409 && status == "done" {
                svc.force_task(id, "done").res()
            } else {
                r
            };
            assert_eq!(r.status, 200, "{status}: {}", r.text);
        }
        ids.push((id, task_of(&srv, id)));
    }
    for _ in 0..7 {
        srv.advance_clock(24 * 3600);
        beat(&srv, "w1", &[]);
        assert_eq!(svc.watchdog().ok().task_ids, NONE);
        Worker::new(&srv, "w1").claim();
    }
    for (id, before) in ids {
        let after = task_of(&srv, id);
        let owner = |t: &TaskView| {
            (
                t.status.clone(),
                t.blocked,
                t.blocked_reason.clone(),
                t.claimed_by.clone(),
            )
        };
        assert_eq!(owner(&after), owner(&before), "task {id}");
    }
    let q = health(&srv).queue;
    assert_eq!(
        (q.stale_dispatching, q.stale_running, q.stale_queued),
        (0, 0, 0),
        "{q:?}"
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
    let id = queued_task(&srv, dispatchable("codex").model("gpt-5"));
    assert_eq!(w.no_claim(), "no_task");

    // Within the window (20 min): nothing to say.
    srv.advance_clock(19 * 60);
    w.heartbeat(&["codex"], &["qwen*"]);
    assert_eq!(health(&srv).queue.stale_queued, 0);
    let r = svc.watchdog().ok();
    assert!(r.alerts.is_empty(), "{r:?}");

    srv.advance_clock(2 * 60);
    w.heartbeat(&["codex"], &["qwen*"]);
    let h = health(&srv);
    assert_eq!(h.queue.stale_queued, 1, "{h:?}");
    let warnings = h.warnings.join("\n");
    assert!(
        warnings.contains(&format!(
            "1 queued task(s) no worker has taken for more than 20 min: #{id} (codex, model gpt-5, workspace 1, 21 min)"
        )),
        "{warnings}"
    );
    assert_eq!(srv.gauge("ops_tasks_stale_queued"), 1.0);
    let r = svc.watchdog().ok();
    let kinds: Vec<&str> = r.alerts.iter().map(|a| a.alert.kind.as_str()).collect();
    assert_eq!(kinds, ["dispatch.queued_unclaimed"], "{r:?}");
    let alert = &r.alerts[0].alert;
    assert_eq!(alert.title, "Tareas en cola que ningún worker toma");
    assert!(
        alert.detail.contains(&format!("#{id} (codex, model gpt-5")),
        "{alert:?}"
    );
    // The task itself is left alone: it may still be taken.
    let t = task_of(&srv, id);
    assert_eq!((t.status.as_str(), t.blocked), ("queued", false));

    // A worker that runs it takes it; the condition is over.
    let gpt = Worker::new(&srv, "w2");
    gpt.heartbeat(&["codex"], &["gpt-*"]);
    assert_eq!(gpt.claim_one().0, id);
    let r = svc.watchdog().ok();
    assert_eq!(
        r.resolved_alerts[0].kind, "dispatch.queued_unclaimed",
        "{r:?}"
    );
    assert_eq!(health(&srv).queue.stale_queued, 0);
    assert!(open_alerts(&srv, "dispatch.queued_unclaimed").is_empty());

    // With dispatch off, a queue that waits is the operator's choice.
    svc.set_setting("dispatch_enabled", "false").ok();
    let other = queued_task(&srv, dispatchable("codex").model("gpt-5"));
    srv.advance_clock(30 * 60);
    let r = svc.watchdog().ok();
    assert!(r.alerts.is_empty(), "{r:?}");
    assert_eq!(health(&srv).queue.stale_queued, 1, "still counted");
    assert_eq!(task_of(&srv, other).status, "queued");
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
    let seen = workers(&health(&srv))
        .into_iter()
        .find(|w| w.worker_id == "w1")
        .expect("w1 listed")
        .last_seen_at;
    let other = Worker::new(&srv, "w2");

    // Silent for less than the window (90 s): nothing moves.
    srv.advance_clock(89);
    other.heartbeat(&["codex"], &[]);
    assert_eq!(health(&srv).queue.stale_running, 0);
    assert_eq!(other.claim().reconciled, 0);
    let r = svc.watchdog().ok();
    assert_eq!(r.task_ids, NONE, "{r:?}");
    assert_eq!(task_of(&srv, id).status, "doing");

    srv.advance_clock(2);
    other.heartbeat(&["codex"], &[]);
    let h = health(&srv);
    assert_eq!(h.queue.stale_running, 1, "{h:?}");
    assert!(
        h.warnings
            .iter()
            .any(|w| w.contains("1 running task(s) whose worker no longer runs them")),
        "{:?}",
        h.warnings
    );
    assert_eq!(srv.gauge("ops_tasks_stale_running"), 1.0);
    // Counted in the caller's workspaces only.
    let other_ws = srv.admin().create_workspace("elsewhere").ok().id;
    let (_, inside) = srv.user("inside", Some((1, "member")));
    let (_, outside) = srv.user("outside", Some((other_ws, "member")));
    assert_eq!(inside.health("").ok().queue.stale_running, 1);
    assert_eq!(outside.health("").ok().queue.stale_running, 0);
    // The claim path's stale scan takes it back.
    let r = other.claim();
    assert_eq!(r.reconciled, 1, "{r:?}");

    let t = srv.service().task(id).ok();
    assert_eq!(t.task.status, "waiting");
    assert!(t.task.blocked);
    assert_eq!(t.task.claimed_by, None);
    let reason = t.task.blocked_reason.as_deref().unwrap();
    // 91 s of the test clock, and what real time the test took.
    assert!(
        reason.starts_with(&format!("stale run: worker w1 was last seen at {seen} (9"))
            && reason.contains(
                " s ago; a worker is stale after 90 s): its launcher or its host is gone"
            ),
        "{reason}"
    );
    let blocker = t
        .comments
        .iter()
        .find(|c| c.kind == "blocker")
        .expect("a blocker comment");
    assert!(blocker.body.starts_with(reason), "{blocker:?}");
    let alert = open_alerts(&srv, "dispatch.stale_running");
    assert_eq!(alert.len(), 1);
    assert_eq!(alert[0].task_id, Some(id));
    assert_eq!(alert[0].title, format!("Tarea {id} en curso sin su worker"));
    assert_eq!(alert[0].detail, reason);
    let ev = svc
        .events(&format!(
            "?task_id={id}&kind=dispatch.reconciled_stale_running"
        ))
        .ok();
    let p = &ev.events[0].payload;
    assert_eq!(
        [&p["why"], &p["worker_id"], &p["last_seen_at"], &p["from"]].map(|v| v.as_str()),
        [
            Some("worker_stale"),
            Some("w1"),
            Some(seen.as_str()),
            Some("doing")
        ],
        "{ev:?}"
    );
    assert_eq!(ev.events[0].actor, "dispatcher");
    assert_eq!(health(&srv).queue.stale_running, 0);
    assert_eq!(srv.gauge("ops_tasks_stale_running"), 0.0);

    // The launcher comes back, its agent still running: told to end it.
    let back = beat(&srv, "w1", &[id]);
    assert_eq!(back.cancel, [id], "{back:?}");
    let withdrawn = CancelledClaim {
        task_id: id,
        claim_token: token.clone(),
    };
    assert_eq!(back.cancel_claims, [withdrawn]);
    let w1 = Worker::new(&srv, "w1");
    w1.report(id, &token, finished(Some(0), "late"))
        .refused(409, "claim_cancelled");
    let t = w1
        .report(id, &token, cancel_ended(None, Some("SIGTERM"), 40))
        .ok();
    assert_eq!(t.status, "waiting");
    assert!(beat(&srv, "w1", &[id]).cancel_claims.is_empty());
    // Retried, it runs again like any task.
    svc.retry(id).ok();
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
    assert_eq!(svc.watchdog().ok().task_ids, NONE);
    assert_eq!(health(&srv).queue.stale_running, 0);
    // Its launcher reconnects: the task stays its.
    beat(&srv, "w1", &[id]);
    srv.advance_clock(60);
    beat(&srv, "w1", &[id]);
    srv.advance_clock(60);
    assert_eq!(svc.watchdog().ok().task_ids, NONE);
    assert_eq!(task_of(&srv, id).status, "doing");
    // Silent from here on: taken back after the window.
    srv.advance_clock(91);
    assert_eq!(svc.watchdog().ok().task_ids, [id]);
    assert_eq!(task_of(&srv, id).status, "waiting");
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
    assert_eq!(beat(&srv, "w1", &[]).released, NONE);
    srv.advance_clock(50);
    assert_eq!(beat(&srv, "w1", &[id]).released, NONE);
    srv.advance_clock(20);
    assert_eq!(beat(&srv, "w1", &[]).released, NONE);
    srv.advance_clock(30);
    let r = beat(&srv, "w1", &[]);
    assert_eq!(r.released, NONE, "30 s of the 60 s grace: {r:?}");
    assert_eq!(task_of(&srv, id).status, "doing");
    srv.advance_clock(31);
    let r = beat(&srv, "w1", &[]);
    assert_eq!(r.released, [id], "{r:?}");

    let t = task_of(&srv, id);
    assert_eq!((t.status.as_str(), t.blocked), ("waiting", true));
    let reason = t.blocked_reason.unwrap();
    assert!(
        reason.starts_with(
            "stale run: worker w1 stopped listing the task among the tasks it runs at "
        ) && reason.contains(" s ago; grace 60 s); it was last seen at "),
        "{reason}"
    );
    assert_eq!(open_alerts(&srv, "dispatch.stale_running").len(), 1);
    let ev = svc
        .events(&format!(
            "?task_id={id}&kind=dispatch.reconciled_stale_running"
        ))
        .ok();
    assert_eq!(ev.events[0].payload["why"], "unlisted", "{ev:?}");
    assert_eq!(ev.events[0].actor, "worker:w1");
    assert!(event_kinds(&srv, id).contains(&"alert.opened".to_string()));
    // Taken back once: later heartbeats change nothing.
    srv.advance_clock(120);
    assert_eq!(beat(&srv, "w1", &[]).released, NONE);
}
