//! Stale reconciliation, the watchdog's alerts and follow-up tasks, and
//! health.

use serde_json::json;

use ops_center::protocol::admin::{SettingValue, SettingsView};
use ops_center::protocol::dispatch::{
    AgentCapability, HeartbeatReport, ReconcileRequest, Reconciled,
};
use ops_center::protocol::events::AlertView;
use ops_center::protocol::health::WorkerSummary;

use crate::client::{failed, logged_out, started, unblocked, usable, workers};
use crate::util::{enable_dispatch, event_kinds, queued_task, Client, Server, Worker};

/// No task ids.
const NONE: [i64; 0] = [];

/// Moves one task's claim `minutes` into the past while another claim
/// stays young: the one place where the clock, which ages everything
/// together, cannot serve.
fn age_claim(srv: &Server, task: i64, minutes: i64) {
    srv.sql_write()
        .execute(
            "UPDATE tasks SET claimed_at = claimed_at - ?2 * 60000 WHERE id = ?1",
            [task, minutes],
        )
        .unwrap();
}

/// `POST /api/dispatch/reconcile-stale` with `minutes` and `task_ids`.
fn reconcile(svc: &Client, minutes: Option<i64>, task_ids: Option<Vec<i64>>) -> Reconciled {
    svc.reconcile(&ReconcileRequest { minutes, task_ids }).ok()
}

/// The open alerts of `kind`.
fn open_alerts(svc: &Client, kind: &str) -> Vec<AlertView> {
    let open = svc.alerts("?status=open&limit=100").ok();
    open.alerts.into_iter().filter(|a| a.kind == kind).collect()
}

/// Lifts the block of task `id` and queues it again.
fn requeue(svc: &Client, id: i64) {
    svc.edit_task(id, &unblocked()).ok();
    svc.dispatch(id).ok();
}

#[test]
fn stale_dispatches_are_reconciled_with_context_and_one_alert() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let id = queued_task(&srv, "codex");
    let fresh = queued_task(&srv, "codex");
    assert_eq!(w.claim_one().0, id);
    assert_eq!(w.claim_one().0, fresh);

    // Younger than the setting (20 min): untouched.
    age_claim(&srv, id, 19);
    let none = Reconciled {
        stale_minutes: 20,
        reconciled: 0,
        task_ids: vec![],
    };
    assert_eq!(reconcile(&svc, None, None), none);

    age_claim(&srv, id, 2);
    let health = svc.health("").ok();
    assert_eq!(health.queue.stale_dispatching, 1);
    assert!(
        health
            .warnings
            .iter()
            .any(|w| w.contains("stuck in dispatching")),
        "{:?}",
        health.warnings
    );
    let stale = svc.stale().ok();
    assert_eq!(stale.total, 1);
    assert_eq!(stale.tasks[0].id, id);

    let one = Reconciled {
        stale_minutes: 20,
        reconciled: 1,
        task_ids: vec![id],
    };
    assert_eq!(reconcile(&svc, Some(20), None), one);
    let t = svc.task(id).ok();
    assert_eq!(t.task.status, "waiting");
    assert!(t.task.blocked);
    assert_eq!(t.task.claimed_by, None);
    assert_eq!(t.task.claimed_at, None);
    let (token,): (Option<String>,) = srv
        .sql()
        .query_row("SELECT claim_token FROM tasks WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?,))
        })
        .unwrap();
    assert_eq!(token, None);
    let blocker = t.comments.iter().find(|c| c.kind == "blocker").unwrap();
    assert!(blocker.body.contains("w1"), "{}", blocker.body);
    assert!(blocker.body.contains("21 min"), "{}", blocker.body);
    assert!(event_kinds(&srv, id).contains(&"dispatch.reconciled_stale".to_string()));

    let alerts = svc.alerts("?status=open").ok();
    assert_eq!(alerts.total, 1);
    let alert = &alerts.alerts[0];
    assert_eq!(alert.kind, "dispatch.stale");
    assert_eq!(alert.task_id, Some(id));
    assert_eq!(alert.occurrences, 1);
    let alert_id = alert.id;

    // Resolved, then stale again: the same alert reopens with a second
    // occurrence. And the claim path reconciles by itself.
    assert_eq!(svc.resolve_alert(alert_id).ok().status, "resolved");
    requeue(&svc, id);
    assert_eq!(w.claim_one().0, id);
    age_claim(&srv, id, 30);
    // The claim path scans at most once a second (of the clock the test
    // moves), and the claim just made scanned.
    srv.advance_clock(1);
    let r = w.claim();
    assert_eq!(r.reconciled, 1, "{r:?}");
    let alerts = svc.alerts("").ok();
    assert_eq!(alerts.total, 1, "{alerts:?}");
    assert_eq!(alerts.alerts[0].id, alert_id);
    assert_eq!(alerts.alerts[0].status, "open");
    assert_eq!(alerts.alerts[0].occurrences, 2);

    // task_ids limits it to the tasks named.
    assert_eq!(reconcile(&svc, Some(0), Some(vec![id])).task_ids, NONE);
    assert_eq!(svc.task(fresh).ok().task.status, "dispatching");
    let bad = svc.post("/api/dispatch/reconcile-stale", &json!({"task_ids": "all"}));
    assert_eq!(bad.status, 400);
    // minutes=0 reconciles every dispatching task.
    assert_eq!(reconcile(&svc, Some(0), None).task_ids, [fresh]);
    let bad = svc.reconcile(&ReconcileRequest {
        minutes: Some(-1),
        task_ids: None,
    });
    assert_eq!(bad.status, 400);
}

#[test]
fn watchdog_raises_alerts_with_one_followup_each() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);

    // No fresh worker while dispatch is enabled.
    let report = svc.watchdog().ok();
    let kinds: Vec<&str> = report
        .alerts
        .iter()
        .map(|a| a.alert.kind.as_str())
        .collect();
    assert_eq!(kinds, ["dispatch.no_fresh_worker"], "{report:?}");
    assert_eq!(report.followup_task_ids.len(), 1);

    // Recurring failures of one task (threshold 3) and so of its agent.
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["hermes"], &[]);
    let id = queued_task(&srv, "hermes");
    for attempt in 0..3 {
        if attempt > 0 {
            requeue(&svc, id);
        }
        let (tid, token) = w.claim_one();
        let early = failed(
            "launcher process exited early (code=1, signal=none)",
            "exited early",
            "boom",
        );
        w.report(tid, &token, early).ok();
    }
    // A task left doing on a worker that went silent.
    let doing = queued_task(&srv, "hermes");
    let (tid, token) = w.claim_one();
    assert_eq!(tid, doing);
    w.report(tid, &token, started(None)).ok();
    // Ten minutes without a heartbeat.
    srv.advance_clock(600);

    let report = svc.watchdog().ok();
    let mut subjects: Vec<String> = report
        .alerts
        .iter()
        .map(|a| format!("{} {}", a.alert.kind, a.alert.subject))
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "dispatch.no_fresh_worker dispatch".to_string(),
            "dispatch.recurring_failure agent:hermes".to_string(),
            format!("dispatch.recurring_failure task:{id}"),
        ],
        "{report:?}"
    );
    // The running task was taken back from its silent worker (an
    // incident, like a stale dispatch: no follow-up task of its own).
    assert_eq!(report.task_ids, [doing], "{report:?}");
    assert_eq!(
        report.followup_task_ids.len(),
        2,
        "only the new alerts get a follow-up: {report:?}"
    );

    // Running again creates nothing new: one follow-up per alert.
    let again = svc.watchdog().ok();
    assert_eq!(again.followup_task_ids, NONE);
    let alerts = svc.alerts("?status=open").ok();
    assert_eq!(alerts.total, 4);
    for a in &alerts.alerts {
        if a.kind == "dispatch.stale_running" {
            assert_eq!(a.task_id, Some(doing));
            continue;
        }
        let f = a.followup_task_id.expect("linked follow-up task");
        let t = svc.task(f).ok().task;
        assert_eq!(t.execution, "manual");
        assert!(t.title.starts_with("[watchdog]"));
        assert!(t
            .description
            .contains(&format!("/api/alerts/{}/resolve", a.id)));
    }
    let followups = svc
        .tasks("?limit=100")
        .ok()
        .tasks
        .iter()
        .filter(|t| t.title.starts_with("[watchdog]"))
        .count();
    assert_eq!(followups, 3);

    // A resolved recurring-failure alert stays resolved until failures recur.
    let task_alert = alerts
        .alerts
        .iter()
        .find(|a| a.subject == format!("task:{id}"))
        .unwrap();
    svc.resolve_alert(task_alert.id).ok();
    svc.watchdog().ok();
    let a = svc.alerts("?status=resolved").ok();
    assert_eq!(a.total, 1, "{a:?}");

    // Health lists what an operator must act on.
    let warnings = svc.health("").ok().warnings.join("\n");
    assert!(
        warnings.contains("no worker has sent a heartbeat"),
        "{warnings}"
    );
    assert!(warnings.contains("open alert"), "{warnings}");
    assert!(
        !warnings.contains("never rotated"),
        "the test token was configured, not generated: {warnings}"
    );
}

#[test]
fn the_watchdog_thread_runs_on_its_own() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let id = queued_task(&srv, "codex");
    w.claim_one();
    srv.advance_clock(25 * 60);
    // The shortest period the setting allows; the thread re-reads it.
    svc.set_setting("watchdog_interval_seconds", "5").ok();
    crate::util::wait_for(90, "the watchdog to reconcile the stale task", || {
        (svc.task(id).ok().task.status == "waiting").then_some(())
    });
    let e = svc.events("?kind=dispatch.reconciled_stale").ok();
    assert_eq!(e.events[0].actor, "watchdog");
}

#[test]
fn health_reports_workers_queue_and_warnings() {
    let srv = Server::start_with(&[("OPS_SERVICE_TOKEN", "")]);
    // The generated token is printed; read it back to authenticate.
    let token = srv.printed("generated service token: ");
    let svc = srv.client().header("X-OPS-Service-Token", &token);
    let h = svc.health("").ok();
    assert!(h.ok);
    assert!(!h.dispatch_enabled);
    let nobody = WorkerSummary {
        total: 0,
        fresh: 0,
        stale: 0,
        slots_total: 0,
        slots_busy: 0,
    };
    assert_eq!(h.worker_summary, nobody);
    let q = &h.queue;
    assert_eq!(
        [
            q.next,
            q.queued,
            q.dispatching,
            q.doing,
            q.review,
            q.waiting,
            q.blocked,
        ],
        [0; 7],
        "{q:?}"
    );
    assert_eq!(q.stale_dispatching, 0);
    assert!(h.agent_slugs.is_empty());
    assert_eq!(h.settings.dispatch_stale_minutes, 20);
    assert_eq!(h.settings.dispatch_worker_stale_seconds, 90);
    assert_eq!(h.settings.service_api_token.as_deref(), Some("[redacted]"));
    assert!(
        h.warnings.iter().any(|w| w.contains("never rotated")),
        "{:?}",
        h.warnings
    );

    // The heartbeats of three workers (this server's token is the
    // generated one).
    svc.set_setting("dispatch_enabled", "true").ok();
    let worker = |id: &str| Worker {
        id: id.to_string(),
        client: svc.clone(),
    };
    let beat = |id: &str, agents: Vec<AgentCapability>, slots_total: i64, slots_busy: i64| {
        let w = worker(id);
        let report = HeartbeatReport {
            agents,
            slots_total,
            slots_busy,
            ..w.heartbeat_of(&[], &[])
        };
        w.beat(&report).ok();
    };
    let cannot_run = AgentCapability {
        available: false,
        ..usable("codex")
    };
    let a = || {
        beat(
            "a",
            vec![
                usable("opencode"),
                logged_out("claudecode", "claude", "no login"),
                cannot_run.clone(),
            ],
            2,
            1,
        )
    };
    let b = || beat("b", vec![usable("hermes")], 3, 0);
    a();
    b();
    beat("gone", vec![usable("codex")], 5, 0);
    // Two minutes pass; a and b beat again, `gone` does not.
    let r = svc.send(
        "POST",
        "/api/test/clock",
        &ops_center::protocol::admin::ClockAdvance {
            advance_seconds: 120,
        },
    );
    assert_eq!(r.status, 200, "{}", r.text);
    a();
    b();
    let h = svc.health("").ok();
    let summary = WorkerSummary {
        total: 3,
        fresh: 2,
        stale: 1,
        slots_total: 5,
        slots_busy: 1,
    };
    assert_eq!(h.worker_summary, summary);
    assert_eq!(
        h.agent_slugs,
        ["hermes", "opencode"],
        "only usable agents of fresh workers"
    );
    let warnings = h.warnings.join("\n");
    assert!(
        warnings.contains("claudecode (no login), codex cannot run"),
        "each with the reason its worker gives: {warnings}"
    );
    assert!(!warnings.contains("no worker has sent"), "{warnings}");
    let gone = workers(&h)
        .into_iter()
        .find(|w| w.worker_id == "gone")
        .unwrap();
    assert!(!gone.fresh);

    // Forgetting a worker removes its heartbeat.
    svc.forget_worker("gone").ok();
    assert_eq!(svc.forget_worker("gone").status, 404);
    assert_eq!(svc.health("").ok().worker_summary.total, 2);
}

#[test]
fn heartbeat_validation() {
    let srv = Server::start();
    let svc = srv.service();
    let before = srv.fingerprint();
    for body in [
        json!({}),
        json!({"worker_id": ""}),
        json!({"worker_id": "w", "agents": "codex"}),
        json!({"worker_id": "w", "agents": [{"cli": "codex"}]}),
        json!({"worker_id": "w", "agents": [{"slug": "codex", "available": "yes"}]}),
        json!({"worker_id": "w", "agents": [{"slug": "codex", "colour": 1}]}),
        json!({"worker_id": "w", "models": "qwen*"}),
        json!({"worker_id": "w", "slots_total": -1}),
        json!({"worker_id": "w", "running_task_ids": ["x"]}),
        json!({"worker_id": "w", "extra": 1}),
    ] {
        let r = svc.post("/api/dispatch/heartbeat", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text);
    }
    assert_eq!(before, srv.fingerprint());
}

/// Alerts that describe a condition (dispatch enabled without a fresh
/// worker) resolve themselves on the first watchdog pass after the
/// condition ended, with an `alert.resolved` event; incidents (a stale
/// dispatch or a stale run taken back) stay open for a person. A
/// `dispatch.worker_stale` alert left open by an older version resolves
/// too: a running task on a stale worker is now taken back instead.
#[test]
fn condition_alerts_resolve_themselves() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    // One task stuck in dispatching, one doing; then the worker goes silent.
    let stuck = queued_task(&srv, "codex");
    let (tid, _) = w.claim_one();
    assert_eq!(tid, stuck);
    age_claim(&srv, stuck, 25);
    let doing = queued_task(&srv, "codex");
    let (tid, token) = w.claim_one();
    assert_eq!(tid, doing);
    w.report(tid, &token, started(None)).ok();
    // What an older version left: a condition alert on the running task.
    srv.sql_write()
        .execute(
            "INSERT INTO alerts(kind, subject, task_id, status, title, detail, occurrences,
                                first_seen_at, last_seen_at)
             VALUES ('dispatch.worker_stale', ?1, ?2, 'open', 't', 'd', 1, 0, 0)",
            rusqlite::params![format!("task:{doing}"), doing],
        )
        .unwrap();
    srv.advance_clock(600);

    let report = svc.watchdog().ok();
    let open = |kind: &str| open_alerts(&svc, kind);
    let resolved: Vec<&str> = report
        .resolved_alerts
        .iter()
        .map(|a| a.kind.as_str())
        .collect();
    assert_eq!(resolved, ["dispatch.worker_stale"], "{report:?}");
    let no_worker = open("dispatch.no_fresh_worker");
    assert_eq!(
        (
            no_worker.len(),
            open("dispatch.stale").len(),
            open("dispatch.stale_running").len(),
            open("dispatch.worker_stale").len()
        ),
        (1, 1, 1, 0),
        "{report:?}"
    );
    // Still true on the next pass: nothing resolves.
    let again = svc.watchdog().ok();
    assert!(again.resolved_alerts.is_empty(), "{again:?}");

    // The launcher's heartbeat (service token) makes the worker fresh; the
    // next pass resolves the condition, and only it.
    w.heartbeat(&["codex"], &[]);
    let report = svc.watchdog().ok();
    let resolved: Vec<i64> = report
        .resolved_alerts
        .iter()
        .map(|a| {
            assert_eq!(a.status, "resolved", "{a:?}");
            assert!(a.resolved_at.is_some(), "{a:?}");
            a.id
        })
        .collect();
    assert_eq!(resolved, [no_worker[0].id], "{report:?}");
    assert!(open("dispatch.no_fresh_worker").is_empty());
    assert_eq!(open("dispatch.stale").len(), 1, "an incident stays open");
    assert_eq!(
        open("dispatch.stale_running").len(),
        1,
        "an incident stays open"
    );
    let events = svc.events("?kind=alert.resolved").ok().events;
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e.actor, "service");
        assert_eq!(e.payload["automatic"], true, "{e:?}");
        let reason = e.payload["reason"].as_str().unwrap();
        if e.payload["kind"] == "dispatch.no_fresh_worker" {
            assert_eq!(reason, "a worker is fresh");
            assert_eq!(e.task_id, None);
        } else {
            assert_eq!(e.payload["kind"], "dispatch.worker_stale");
            assert_eq!(reason, "the task no longer runs on a stale worker");
            assert_eq!(e.task_id, Some(doing));
        }
    }
    // Resolved once: a further pass writes nothing more.
    let again = svc.watchdog().ok();
    assert!(again.resolved_alerts.is_empty(), "{again:?}");
    assert_eq!(svc.events("?kind=alert.resolved").ok().total, 2);

    // The condition returns: the alert reopens; disabling dispatch ends it.
    srv.advance_clock(600);
    svc.watchdog().ok();
    assert_eq!(open("dispatch.no_fresh_worker").len(), 1);
    assert_eq!(svc.events("?kind=alert.reopened").ok().total, 1);
    svc.set_setting("dispatch_enabled", "false").ok();
    let report = svc.watchdog().ok();
    let kinds: Vec<&str> = report
        .resolved_alerts
        .iter()
        .map(|a| a.kind.as_str())
        .collect();
    assert_eq!(kinds, ["dispatch.no_fresh_worker"], "{report:?}");
    let last = svc.events("?kind=alert.resolved&limit=1").ok();
    assert_eq!(last.events[0].payload["reason"], "dispatch is disabled");
    assert_eq!(open("dispatch.stale").len(), 1);
    assert_eq!(open("dispatch.stale_running").len(), 1);
}

/// The titles the watchdog writes follow `ui_language` (`es` by default,
/// or `en`); kinds and subjects do not change.
#[test]
fn watchdog_titles_follow_the_ui_language() {
    for lang in ["default", "en"] {
        let srv = Server::start();
        let svc = srv.service();
        if lang == "en" {
            svc.set_setting("ui_language", "en").ok();
        }
        enable_dispatch(&srv);
        // A task failing three times (threshold 3), and one left claimed
        // and made stale.
        let w = Worker::new(&srv, "w1");
        w.heartbeat(&["hermes"], &[]);
        let failing = queued_task(&srv, "hermes");
        for attempt in 0..3 {
            if attempt > 0 {
                svc.retry(failing).ok();
            }
            let (tid, token) = w.claim_one();
            w.report(tid, &token, failed("boom", "boom", "boom")).ok();
        }
        let stuck = queued_task(&srv, "hermes");
        assert_eq!(w.claim_one().0, stuck);
        assert_eq!(reconcile(&svc, Some(0), None).task_ids, [stuck]);
        // No worker fresh any more.
        srv.advance_clock(600);
        svc.watchdog().ok();

        let alerts = svc.alerts("?status=open").ok().alerts;
        let mut titles: Vec<(String, String)> = alerts
            .iter()
            .map(|a| (format!("{} {}", a.kind, a.subject), a.title.clone()))
            .collect();
        titles.sort();
        let expected: Vec<(String, String)> = if lang == "en" {
            vec![
                (
                    "dispatch.no_fresh_worker dispatch".into(),
                    "Dispatch is enabled but no worker is fresh".into(),
                ),
                (
                    "dispatch.recurring_failure agent:hermes".into(),
                    "Recurring dispatch failures on agent:hermes".into(),
                ),
                (
                    format!("dispatch.recurring_failure task:{failing}"),
                    format!("Recurring dispatch failures on task:{failing}"),
                ),
                (
                    format!("dispatch.stale task:{stuck}"),
                    format!("Task {stuck} stuck in dispatching"),
                ),
            ]
        } else {
            vec![
                (
                    "dispatch.no_fresh_worker dispatch".into(),
                    "Dispatch activado sin ningún worker fresco".into(),
                ),
                (
                    "dispatch.recurring_failure agent:hermes".into(),
                    "Fallos de dispatch repetidos en agent:hermes".into(),
                ),
                (
                    format!("dispatch.recurring_failure task:{failing}"),
                    format!("Fallos de dispatch repetidos en task:{failing}"),
                ),
                (
                    format!("dispatch.stale task:{stuck}"),
                    format!("Tarea {stuck} atascada en dispatching"),
                ),
            ]
        };
        assert_eq!(titles, expected, "{lang}");
        // Follow-up tasks carry the alert's title behind the tag.
        for a in &alerts {
            let Some(f) = a.followup_task_id else {
                continue;
            };
            let t = svc.task(f).ok().task;
            assert_eq!(t.title, format!("[watchdog] {}", a.title));
        }
        let settings: SettingsView = svc.settings().ok();
        assert_eq!(settings.ui_language, if lang == "en" { "en" } else { "es" });
    }
}

/// `ui_language` takes `es` or `en` (any case, trimmed); anything else is
/// refused and changes nothing.
#[test]
fn ui_language_is_validated() {
    let srv = Server::start();
    let svc = srv.service();
    let language = |c: &Client| c.setting("ui_language").ok().value;
    let text = |s: &str| Some(SettingValue::Text(s.into()));
    assert_eq!(language(&svc), text("es"));
    let before = srv.fingerprint();
    for bad in ["fr", "", "español", "e n"] {
        let r = svc.set_setting("ui_language", bad);
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_setting"),
            "{bad:?}: {}",
            r.text
        );
    }
    assert_eq!(before, srv.fingerprint());
    svc.set_setting("ui_language", " EN ").ok();
    assert_eq!(language(&svc), text("en"));
    // A member may read it, not change it.
    let (_, member) = srv.user("reader", Some((1, "member")));
    assert_eq!(language(&member), text("en"));
    let r = member.set_setting("ui_language", "es");
    assert_eq!(r.status, 403, "{}", r.text);
}
