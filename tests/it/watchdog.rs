//! Stale reconciliation, the watchdog's alerts and follow-up tasks, and
//! health.

use serde_json::json;

use crate::util::{enable_dispatch, event_kinds, queued_task, Server, Worker};

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

#[test]
fn stale_dispatches_are_reconciled_with_context_and_one_alert() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let id = queued_task(&srv, "codex", json!({}));
    let fresh = queued_task(&srv, "codex", json!({}));
    assert_eq!(w.claim_one().0, id);
    assert_eq!(w.claim_one().0, fresh);

    // Younger than the setting (20 min): untouched.
    age_claim(&srv, id, 19);
    let r = svc.post("/api/dispatch/reconcile-stale", &json!({}));
    assert_eq!(
        r.json,
        json!({"stale_minutes": 20, "reconciled": 0, "task_ids": []}),
        "{}",
        r.text
    );

    age_claim(&srv, id, 2);
    let health = svc.get("/api/dispatch/health").json;
    assert_eq!(health["queue"]["stale_dispatching"], 1);
    assert!(
        health["warnings"]
            .to_string()
            .contains("stuck in dispatching"),
        "{}",
        health["warnings"]
    );
    let stale = svc.get("/api/dispatch/stale").json;
    assert_eq!(stale["total"], 1);
    assert_eq!(stale["tasks"][0]["id"], id);

    let r = svc.post("/api/dispatch/reconcile-stale", &json!({"minutes": 20}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"stale_minutes": 20, "reconciled": 1, "task_ids": [id]})
    );
    let t = svc.get(&format!("/api/tasks/{id}")).json;
    assert_eq!(t["status"], "waiting");
    assert_eq!(t["blocked"], true);
    assert_eq!(t["claimed_by"], serde_json::Value::Null);
    assert_eq!(t["claimed_at"], serde_json::Value::Null);
    let (token,): (Option<String>,) = srv
        .sql()
        .query_row("SELECT claim_token FROM tasks WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?,))
        })
        .unwrap();
    assert_eq!(token, None);
    let blocker = t["comments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "blocker")
        .unwrap();
    assert!(
        blocker["body"].as_str().unwrap().contains("w1"),
        "{}",
        blocker["body"]
    );
    assert!(
        blocker["body"].as_str().unwrap().contains("21 min"),
        "{}",
        blocker["body"]
    );
    assert!(event_kinds(&srv, id).contains(&"dispatch.reconciled_stale".to_string()));

    let alerts = svc.get("/api/alerts?status=open").json;
    assert_eq!(alerts["total"], 1);
    let alert = &alerts["alerts"][0];
    assert_eq!(alert["kind"], "dispatch.stale");
    assert_eq!(alert["task_id"], id);
    assert_eq!(alert["occurrences"], 1);
    let alert_id = alert["id"].as_i64().unwrap();

    // Resolved, then stale again: the same alert reopens with a second
    // occurrence. And the claim path reconciles by itself.
    assert_eq!(
        svc.post(&format!("/api/alerts/{alert_id}/resolve"), &json!({}))
            .json["status"],
        "resolved"
    );
    svc.patch(&format!("/api/tasks/{id}"), &json!({"blocked": false}));
    svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(w.claim_one().0, id);
    age_claim(&srv, id, 30);
    // The claim path scans at most once a second (of the clock the test
    // moves), and the claim just made scanned.
    srv.advance_clock(1);
    let r = w.claim();
    assert_eq!(r.json["reconciled"], 1, "{}", r.text);
    let alerts = svc.get("/api/alerts").json;
    assert_eq!(alerts["total"], 1, "{}", alerts);
    assert_eq!(alerts["alerts"][0]["id"], alert_id);
    assert_eq!(alerts["alerts"][0]["status"], "open");
    assert_eq!(alerts["alerts"][0]["occurrences"], 2);

    // task_ids limits it to the tasks named.
    let r = svc.post(
        "/api/dispatch/reconcile-stale",
        &json!({"minutes": 0, "task_ids": [id]}),
    );
    assert_eq!(r.json["task_ids"], json!([]), "{}", r.text);
    assert_eq!(
        svc.get(&format!("/api/tasks/{fresh}")).json["status"],
        "dispatching"
    );
    let bad = svc.post("/api/dispatch/reconcile-stale", &json!({"task_ids": "all"}));
    assert_eq!(bad.status, 400);
    // minutes=0 reconciles every dispatching task.
    let r = svc.post("/api/dispatch/reconcile-stale", &json!({"minutes": 0}));
    assert_eq!(r.json["task_ids"], json!([fresh]), "{}", r.text);
    let bad = svc.post("/api/dispatch/reconcile-stale", &json!({"minutes": -1}));
    assert_eq!(bad.status, 400);
}

#[test]
fn watchdog_raises_alerts_with_one_followup_each() {
    let srv = Server::start();
    let svc = srv.service();
    enable_dispatch(&srv);

    // No fresh worker while dispatch is enabled.
    let report = svc.post("/api/watchdog/run", &json!({}));
    assert_eq!(report.status, 200, "{}", report.text);
    let kinds: Vec<&str> = report.json["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["dispatch.no_fresh_worker"], "{}", report.text);
    assert_eq!(
        report.json["followup_task_ids"].as_array().unwrap().len(),
        1
    );

    // Recurring failures of one task (threshold 3) and so of its agent.
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["hermes"], &[]);
    let id = queued_task(&srv, "hermes", json!({}));
    for attempt in 0..3 {
        if attempt > 0 {
            svc.patch(&format!("/api/tasks/{id}"), &json!({"blocked": false}));
            svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
        }
        let (tid, token) = w.claim_one();
        w.report(tid, &token, "failed", json!({"signature": "launcher process exited early (code=1, signal=none)", "reason": "exited early", "evidence": "boom"}));
    }
    // A task left doing on a worker that went silent.
    let doing = queued_task(&srv, "hermes", json!({}));
    let (tid, token) = w.claim_one();
    assert_eq!(tid, doing);
    w.report(tid, &token, "started", json!({}));
    // Ten minutes without a heartbeat.
    srv.advance_clock(600);

    let report = svc.post("/api/watchdog/run", &json!({})).json;
    let mut subjects: Vec<String> = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["kind"].as_str().unwrap(),
                a["subject"].as_str().unwrap()
            )
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "dispatch.no_fresh_worker dispatch".to_string(),
            "dispatch.recurring_failure agent:hermes".to_string(),
            format!("dispatch.recurring_failure task:{id}"),
        ],
        "{report}"
    );
    // The running task was taken back from its silent worker (an
    // incident, like a stale dispatch: no follow-up task of its own).
    assert_eq!(report["task_ids"], json!([doing]), "{report}");
    assert_eq!(
        report["followup_task_ids"].as_array().unwrap().len(),
        2,
        "only the new alerts get a follow-up: {report}"
    );

    // Running again creates nothing new: one follow-up per alert.
    let again = svc.post("/api/watchdog/run", &json!({})).json;
    assert_eq!(again["followup_task_ids"], json!([]));
    let alerts = svc.get("/api/alerts?status=open").json;
    assert_eq!(alerts["total"], 4);
    for a in alerts["alerts"].as_array().unwrap() {
        if a["kind"] == "dispatch.stale_running" {
            assert_eq!(a["task_id"], doing);
            continue;
        }
        let f = a["followup_task_id"]
            .as_i64()
            .expect("linked follow-up task");
        let t = svc.get(&format!("/api/tasks/{f}")).json;
        assert_eq!(t["execution"], "manual");
        assert!(t["title"].as_str().unwrap().starts_with("[watchdog]"));
        assert!(t["description"]
            .as_str()
            .unwrap()
            .contains(&format!("/api/alerts/{}/resolve", a["id"])));
    }
    let followups = svc.get("/api/tasks?limit=100").json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["title"].as_str().unwrap().starts_with("[watchdog]"))
        .count();
    assert_eq!(followups, 3);

    // A resolved recurring-failure alert stays resolved until failures recur.
    let task_alert = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["subject"] == format!("task:{id}"))
        .unwrap();
    svc.post(
        &format!("/api/alerts/{}/resolve", task_alert["id"]),
        &json!({}),
    );
    svc.post("/api/watchdog/run", &json!({}));
    let a = svc.get("/api/alerts?status=resolved").json;
    assert_eq!(a["total"], 1, "{a}");

    // Health lists what an operator must act on.
    let h = svc.get("/api/dispatch/health").json;
    let warnings = h["warnings"].to_string();
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
    let id = queued_task(&srv, "codex", json!({}));
    w.claim_one();
    srv.advance_clock(25 * 60);
    // The shortest period the setting allows; the thread re-reads it.
    svc.put(
        "/api/settings/watchdog_interval_seconds",
        &json!({"value": "5"}),
    );
    crate::util::wait_for(90, "the watchdog to reconcile the stale task", || {
        (svc.get(&format!("/api/tasks/{id}")).json["status"] == "waiting").then_some(())
    });
    let e = svc.get("/api/events?kind=dispatch.reconciled_stale").json;
    assert_eq!(e["events"][0]["actor"], "watchdog");
}

#[test]
fn health_reports_workers_queue_and_warnings() {
    let srv = Server::start_with(&[("OPS_SERVICE_TOKEN", "")]);
    // The generated token is printed; read it back to authenticate.
    let token = srv.printed("generated service token: ");
    let svc = srv.client().header("X-OPS-Service-Token", &token);
    let h = svc.get("/api/dispatch/health");
    assert_eq!(h.status, 200, "{}", h.text);
    let h = h.json;
    assert_eq!(h["ok"], true);
    assert_eq!(h["dispatch_enabled"], false);
    for k in ["total", "fresh", "stale", "slots_total", "slots_busy"] {
        assert_eq!(h["worker_summary"][k], 0, "{k}");
    }
    for k in [
        "next",
        "queued",
        "dispatching",
        "doing",
        "review",
        "waiting",
        "blocked",
        "stale_dispatching",
    ] {
        assert_eq!(h["queue"][k], 0, "{k}");
    }
    assert_eq!(h["agent_slugs"], json!([]));
    assert_eq!(h["settings"]["dispatch_stale_minutes"], 20);
    assert_eq!(h["settings"]["dispatch_worker_stale_seconds"], 90);
    assert_eq!(h["settings"]["service_api_token"], "[redacted]");
    assert!(
        h["warnings"].to_string().contains("never rotated"),
        "{}",
        h["warnings"]
    );

    svc.put("/api/settings/dispatch_enabled", &json!({"value": "true"}));
    svc.post("/api/dispatch/heartbeat", &json!({"worker_id": "a", "agents": [
        {"slug": "opencode", "cli": "opencode", "available": true, "authenticated": true},
        {"slug": "claudecode", "cli": "claude", "available": true, "authenticated": false, "reason": "no login"},
        {"slug": "codex", "cli": "codex", "available": false, "authenticated": true}], "slots_total": 2, "slots_busy": 1}));
    svc.post("/api/dispatch/heartbeat", &json!({"worker_id": "b", "agents": [
        {"slug": "hermes", "cli": "hermes", "available": true, "authenticated": true}], "slots_total": 3}));
    svc.post("/api/dispatch/heartbeat", &json!({"worker_id": "gone", "agents": [
        {"slug": "codex", "cli": "codex", "available": true, "authenticated": true}], "slots_total": 5}));
    // Two minutes pass; a and b beat again, `gone` does not.
    // (This server's token is the generated one.)
    let r = svc.post("/api/test/clock", &json!({"advance_seconds": 120}));
    assert_eq!(r.status, 200, "{}", r.text);
    svc.post("/api/dispatch/heartbeat", &json!({"worker_id": "a", "agents": [
        {"slug": "opencode", "cli": "opencode", "available": true, "authenticated": true},
        {"slug": "claudecode", "cli": "claude", "available": true, "authenticated": false, "reason": "no login"},
        {"slug": "codex", "cli": "codex", "available": false, "authenticated": true}], "slots_total": 2, "slots_busy": 1}));
    svc.post("/api/dispatch/heartbeat", &json!({"worker_id": "b", "agents": [
        {"slug": "hermes", "cli": "hermes", "available": true, "authenticated": true}], "slots_total": 3}));
    let h = svc.get("/api/dispatch/health").json;
    assert_eq!(
        h["worker_summary"],
        json!({"total": 3, "fresh": 2, "stale": 1, "slots_total": 5, "slots_busy": 1})
    );
    assert_eq!(
        h["agent_slugs"],
        json!(["hermes", "opencode"]),
        "only usable agents of fresh workers"
    );
    let warnings = h["warnings"].to_string();
    assert!(
        warnings.contains("claudecode (no login), codex cannot run"),
        "each with the reason its worker gives: {warnings}"
    );
    assert!(!warnings.contains("no worker has sent"), "{warnings}");
    let gone = h["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == "gone")
        .unwrap();
    assert_eq!(gone["fresh"], false);

    // Forgetting a worker removes its heartbeat.
    assert_eq!(svc.delete("/api/dispatch/workers/gone").status, 200);
    assert_eq!(svc.delete("/api/dispatch/workers/gone").status, 404);
    assert_eq!(
        svc.get("/api/dispatch/health").json["worker_summary"]["total"],
        2
    );
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
    let stuck = queued_task(&srv, "codex", json!({}));
    let (tid, _) = w.claim_one();
    assert_eq!(tid, stuck);
    age_claim(&srv, stuck, 25);
    let doing = queued_task(&srv, "codex", json!({}));
    let (tid, token) = w.claim_one();
    assert_eq!(tid, doing);
    assert_eq!(w.report(tid, &token, "started", json!({})).status, 200);
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

    let report = svc.post("/api/watchdog/run", &json!({}));
    assert_eq!(report.status, 200, "{}", report.text);
    let open = |kind: &str| -> Vec<serde_json::Value> {
        let r = svc.get("/api/alerts?status=open&limit=100").json;
        r["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == kind)
            .cloned()
            .collect()
    };
    let resolved: Vec<&str> = report.json["resolved_alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(resolved, ["dispatch.worker_stale"], "{}", report.text);
    let no_worker = open("dispatch.no_fresh_worker");
    assert_eq!(
        (
            no_worker.len(),
            open("dispatch.stale").len(),
            open("dispatch.stale_running").len(),
            open("dispatch.worker_stale").len()
        ),
        (1, 1, 1, 0),
        "{}",
        report.text
    );
    // Still true on the next pass: nothing resolves.
    let again = svc.post("/api/watchdog/run", &json!({})).json;
    assert_eq!(again["resolved_alerts"], json!([]), "{again}");

    // The launcher's heartbeat (service token) makes the worker fresh; the
    // next pass resolves the condition, and only it.
    w.heartbeat(&["codex"], &[]);
    let report = svc.post("/api/watchdog/run", &json!({}));
    assert_eq!(report.status, 200, "{}", report.text);
    let resolved: Vec<i64> = report.json["resolved_alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["status"], "resolved", "{a}");
            assert!(a["resolved_at"].is_string(), "{a}");
            a["id"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(
        resolved,
        [no_worker[0]["id"].as_i64().unwrap()],
        "{}",
        report.text
    );
    assert!(open("dispatch.no_fresh_worker").is_empty());
    assert_eq!(open("dispatch.stale").len(), 1, "an incident stays open");
    assert_eq!(
        open("dispatch.stale_running").len(),
        1,
        "an incident stays open"
    );
    let events = svc.get("/api/events?kind=alert.resolved").json;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    for e in events {
        assert_eq!(e["actor"], "service");
        assert_eq!(e["payload"]["automatic"], true, "{e}");
        let reason = e["payload"]["reason"].as_str().unwrap();
        if e["payload"]["kind"] == "dispatch.no_fresh_worker" {
            assert_eq!(reason, "a worker is fresh");
            assert!(e["task_id"].is_null());
        } else {
            assert_eq!(e["payload"]["kind"], "dispatch.worker_stale");
            assert_eq!(reason, "the task no longer runs on a stale worker");
            assert_eq!(e["task_id"], doing);
        }
    }
    // Resolved once: a further pass writes nothing more.
    let again = svc.post("/api/watchdog/run", &json!({})).json;
    assert_eq!(again["resolved_alerts"], json!([]), "{again}");
    assert_eq!(svc.get("/api/events?kind=alert.resolved").json["total"], 2);

    // The condition returns: the alert reopens; disabling dispatch ends it.
    srv.advance_clock(600);
    svc.post("/api/watchdog/run", &json!({}));
    assert_eq!(open("dispatch.no_fresh_worker").len(), 1);
    assert_eq!(svc.get("/api/events?kind=alert.reopened").json["total"], 1);
    let r = svc.put("/api/settings/dispatch_enabled", &json!({"value": "false"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let report = svc.post("/api/watchdog/run", &json!({})).json;
    let kinds: Vec<&str> = report["resolved_alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["dispatch.no_fresh_worker"], "{report}");
    let last = svc.get("/api/events?kind=alert.resolved&limit=1").json;
    assert_eq!(
        last["events"][0]["payload"]["reason"],
        "dispatch is disabled"
    );
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
            let r = svc.put("/api/settings/ui_language", &json!({"value": "en"}));
            assert_eq!(r.status, 200, "{}", r.text);
        }
        enable_dispatch(&srv);
        // A task failing three times (threshold 3), and one left claimed
        // and made stale.
        let w = Worker::new(&srv, "w1");
        w.heartbeat(&["hermes"], &[]);
        let failing = queued_task(&srv, "hermes", json!({}));
        for attempt in 0..3 {
            if attempt > 0 {
                let r = svc.post(&format!("/api/tasks/{failing}/retry"), &json!({}));
                assert_eq!(r.status, 200, "{}", r.text);
            }
            let (tid, token) = w.claim_one();
            w.report(
                tid,
                &token,
                "failed",
                json!({"signature": "boom", "reason": "boom", "evidence": "boom"}),
            );
        }
        let stuck = queued_task(&srv, "hermes", json!({}));
        assert_eq!(w.claim_one().0, stuck);
        let r = svc.post("/api/dispatch/reconcile-stale", &json!({"minutes": 0}));
        assert_eq!(r.json["task_ids"], json!([stuck]), "{}", r.text);
        // No worker fresh any more.
        srv.advance_clock(600);
        let r = svc.post("/api/watchdog/run", &json!({}));
        assert_eq!(r.status, 200, "{}", r.text);

        let alerts = svc.get("/api/alerts?status=open").json;
        let mut titles: Vec<(String, String)> = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let key = format!(
                    "{} {}",
                    a["kind"].as_str().unwrap(),
                    a["subject"].as_str().unwrap()
                );
                (key, a["title"].as_str().unwrap().to_string())
            })
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
        for a in alerts["alerts"].as_array().unwrap() {
            let Some(f) = a["followup_task_id"].as_i64() else {
                continue;
            };
            let t = svc.get(&format!("/api/tasks/{f}")).json;
            assert_eq!(
                t["title"],
                format!("[watchdog] {}", a["title"].as_str().unwrap())
            );
        }
        let settings = svc.get("/api/settings").json;
        assert_eq!(
            settings["ui_language"],
            if lang == "en" { "en" } else { "es" }
        );
    }
}

/// `ui_language` takes `es` or `en` (any case, trimmed); anything else is
/// refused and changes nothing.
#[test]
fn ui_language_is_validated() {
    let srv = Server::start();
    let svc = srv.service();
    assert_eq!(svc.get("/api/settings/ui_language").json["value"], "es");
    let before = srv.fingerprint();
    for bad in ["fr", "", "español", "e n"] {
        let r = svc.put("/api/settings/ui_language", &json!({"value": bad}));
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_setting"),
            "{bad:?}: {}",
            r.text
        );
    }
    assert_eq!(before, srv.fingerprint());
    let r = svc.put("/api/settings/ui_language", &json!({"value": " EN "}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(svc.get("/api/settings/ui_language").json["value"], "en");
    // A member may read it, not change it.
    let (_, member) = srv.user("reader", Some((1, "member")));
    assert_eq!(member.get("/api/settings/ui_language").json["value"], "en");
    let r = member.put("/api/settings/ui_language", &json!({"value": "es"}));
    assert_eq!(r.status, 403, "{}", r.text);
}
