//! Bad input: every mistake is a JSON error with the right status, names
//! what is wrong, and changes nothing in the database.

use serde_json::json;

use crate::client::task;
use crate::util::Server;

#[test]
fn bad_requests_are_clear_and_change_nothing() {
    let srv = Server::start();
    let svc = srv.service();
    let id = svc.new_task(&task("target"));
    let before = srv.fingerprint();

    // method, path, body, status, error code, text the message must hold
    type Case = (
        &'static str,
        String,
        Vec<u8>,
        u16,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        // method, path, body, status, error code, text the message must hold
        (
            "POST",
            "/api/tasks".into(),
            b"{\"title\": ".to_vec(),
            400,
            "invalid_json",
            "not valid JSON",
        ),
        (
            "POST",
            "/api/tasks".into(),
            b"[1,2]".to_vec(),
            400,
            "invalid_json",
            "JSON object",
        ),
        (
            "POST",
            "/api/tasks".into(),
            br#"{"title": 5}"#.to_vec(),
            400,
            "invalid_field",
            "`title`",
        ),
        (
            "POST",
            "/api/tasks".into(),
            br#"{"title": "  "}"#.to_vec(),
            400,
            "invalid_field",
            "`title`",
        ),
        (
            "POST",
            "/api/tasks".into(),
            br#"{}"#.to_vec(),
            400,
            "invalid_field",
            "`title`",
        ),
        (
            "POST",
            "/api/tasks".into(),
            br#"{"title": "x", "priority": "high"}"#.to_vec(),
            400,
            "invalid_field",
            "`priority`",
        ),
        (
            "POST",
            "/api/tasks".into(),
            br#"{"title": "x", "priority": 5000}"#.to_vec(),
            400,
            "invalid_field",
            "`priority`",
        ),
        (
            "POST",
            "/api/tasks".into(),
            br#"{"title": "x", "sensitive": "yes"}"#.to_vec(),
            400,
            "invalid_field",
            "`sensitive`",
        ),
        (
            "POST",
            "/api/tasks".into(),
            br#"{"title": "x", "execution": "auto"}"#.to_vec(),
            400,
            "invalid_field",
            "`execution`",
        ),
        (
            "POST",
            "/api/tasks".into(),
            br#"{"title": "x", "agent": "nobody"}"#.to_vec(),
            400,
            "invalid_field",
            "`agent`",
        ),
        (
            "POST",
            "/api/tasks".into(),
            br#"{"title": "x", "workspace_id": 99}"#.to_vec(),
            400,
            "invalid_field",
            "`workspace_id`",
        ),
        (
            "POST",
            "/api/tasks".into(),
            br#"{"title": "x", "colour": "red"}"#.to_vec(),
            400,
            "unknown_field",
            "`colour`",
        ),
        (
            "PATCH",
            format!("/api/tasks/{id}"),
            br#"{"status": "finished"}"#.to_vec(),
            400,
            "invalid_field",
            "`status`",
        ),
        (
            "PATCH",
            format!("/api/tasks/{id}"),
            br#"{"status": "dispatching"}"#.to_vec(),
            409,
            "invalid_transition",
            "claim",
        ),
        (
            "PATCH",
            format!("/api/tasks/{id}/status"),
            br#"{"status": "queued"}"#.to_vec(),
            409,
            "invalid_transition",
            "dispatch",
        ),
        (
            "PATCH",
            format!("/api/tasks/{id}/status"),
            br#"{}"#.to_vec(),
            400,
            "invalid_field",
            "`status`",
        ),
        (
            "PATCH",
            format!("/api/tasks/{id}"),
            br#"{"id": 7}"#.to_vec(),
            400,
            "unknown_field",
            "`id`",
        ),
        (
            "PATCH",
            format!("/api/tasks/{id}?force=maybe"),
            br#"{"status": "done"}"#.to_vec(),
            400,
            "invalid_query",
            "force",
        ),
        (
            "POST",
            format!("/api/tasks/{id}/comments"),
            br#"{"body": "x", "kind": "log"}"#.to_vec(),
            400,
            "invalid_field",
            "`kind`",
        ),
        (
            "POST",
            format!("/api/tasks/{id}/comments"),
            br#"{"body": ""}"#.to_vec(),
            400,
            "invalid_field",
            "`body`",
        ),
        (
            "GET",
            "/api/tasks/abc".into(),
            vec![],
            400,
            "invalid_id",
            "task id",
        ),
        (
            "GET",
            "/api/tasks/0".into(),
            vec![],
            400,
            "invalid_id",
            "task id",
        ),
        (
            "GET",
            "/api/tasks/999999".into(),
            vec![],
            404,
            "not_found",
            "task 999999",
        ),
        (
            "PATCH",
            "/api/tasks/999999".into(),
            br#"{"title": "x"}"#.to_vec(),
            404,
            "not_found",
            "task 999999",
        ),
        (
            "GET",
            "/api/tasks?status=bogus".into(),
            vec![],
            400,
            "invalid_query",
            "status",
        ),
        (
            "GET",
            "/api/tasks?limit=0".into(),
            vec![],
            400,
            "invalid_query",
            "limit",
        ),
        (
            "GET",
            "/api/tasks?limit=ten".into(),
            vec![],
            400,
            "invalid_query",
            "limit",
        ),
        (
            "GET",
            "/api/tasks?blocked=perhaps".into(),
            vec![],
            400,
            "invalid_query",
            "blocked",
        ),
        (
            "PUT",
            "/api/settings/dispatch_enabled".into(),
            br#"{"value": "yes"}"#.to_vec(),
            400,
            "invalid_setting",
            "true or false",
        ),
        (
            "PUT",
            "/api/settings/dispatch_stale_minutes".into(),
            br#"{"value": "-5"}"#.to_vec(),
            400,
            "invalid_setting",
            "outside",
        ),
        (
            "PUT",
            "/api/settings/dispatch_stale_minutes".into(),
            br#"{"value": "soon"}"#.to_vec(),
            400,
            "invalid_setting",
            "whole number",
        ),
        (
            "PUT",
            "/api/settings/watchdog_failure_threshold".into(),
            br#"{"value": "0"}"#.to_vec(),
            400,
            "invalid_setting",
            "outside",
        ),
        (
            "PUT",
            "/api/settings/dispatch_enabled".into(),
            br#"{"value": ["true"]}"#.to_vec(),
            400,
            "invalid_field",
            "`value`",
        ),
        (
            "PUT",
            "/api/settings/dispatch_enabled".into(),
            br#"{}"#.to_vec(),
            400,
            "invalid_field",
            "`value`",
        ),
        (
            "PUT",
            "/api/settings/colour".into(),
            br#"{"value": "red"}"#.to_vec(),
            400,
            "unknown_setting",
            "dispatch_enabled",
        ),
        (
            "GET",
            "/api/settings/colour".into(),
            vec![],
            404,
            "not_found",
            "colour",
        ),
        (
            "POST",
            "/api/agents".into(),
            br#"{"slug": "Bad Slug"}"#.to_vec(),
            400,
            "invalid_field",
            "`slug`",
        ),
        (
            "POST",
            "/api/agents".into(),
            br#"{"slug": "codex"}"#.to_vec(),
            409,
            "duplicate",
            "codex",
        ),
        (
            "GET",
            "/api/nothing-here".into(),
            vec![],
            404,
            "not_found",
            "no route",
        ),
        (
            "GET",
            "/nothing".into(),
            vec![],
            404,
            "not_found",
            "no route",
        ),
        (
            "DELETE",
            "/api/settings".into(),
            vec![],
            405,
            "method_not_allowed",
            "GET",
        ),
        (
            "PUT",
            "/api/tasks".into(),
            br#"{}"#.to_vec(),
            405,
            "method_not_allowed",
            "GET, POST",
        ),
    ];
    for (method, path, body, status, code, needle) in cases {
        let r = svc.raw(method, &path, &body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text);
        assert_eq!(r.error(), code, "{method} {path}: {}", r.text);
        let message = r.json["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{method} {path}: message {message:?} lacks {needle:?}"
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
    }
    assert_eq!(
        before,
        srv.fingerprint(),
        "a refused request changed the database"
    );
}

#[test]
fn oversize_bodies_are_refused_with_413() {
    let srv = Server::start();
    let before = srv.fingerprint();
    let big = format!("{{\"title\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let r = srv.service().raw("POST", "/api/tasks", big.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.error(), "payload_too_large");
    // Just under the limit is read (and refused for its content, not size).
    let fits = format!("{{\"title\": \"{}\"}}", "x".repeat(1000 * 1000));
    let r = srv.service().raw("POST", "/api/tasks", fits.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json["message"].as_str().unwrap().contains("`title`"));
    assert_eq!(before, srv.fingerprint());
    // The server is still healthy afterwards.
    assert_eq!(srv.service().get("/api/tasks").status, 200);
}

#[test]
fn agent_in_use_is_not_deleted() {
    let srv = Server::start();
    let svc = srv.service();
    svc.post(
        "/api/tasks",
        &json!({"title": "uses codex", "agent": "codex"}),
    );
    let codex = svc.get("/api/agents").json["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["slug"] == "codex")
        .unwrap()["id"]
        .clone();
    let before = srv.fingerprint();
    let r = svc.delete(&format!("/api/agents/{codex}"));
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.error(), "agent_in_use");
    assert_eq!(before, srv.fingerprint());
    let r = svc.patch(&format!("/api/agents/{codex}"), &json!({"active": false}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json["active"], false);
}

#[test]
fn users_validation() {
    let srv = Server::start();
    let admin = srv.admin();
    let before = srv.fingerprint();
    for (body, code) in [
        (
            json!({"username": "bob", "password": "short"}),
            "invalid_field",
        ),
        (
            json!({"username": "bad name", "password": "long-enough-pass"}),
            "invalid_field",
        ),
        (json!({"username": "bob"}), "invalid_field"),
        (
            json!({"username": "bob", "password": "long-enough-pass", "role": "x"}),
            "unknown_field",
        ),
        (
            json!({"username": "root", "password": "long-enough-pass"}),
            "duplicate",
        ),
    ] {
        let r = admin.post("/api/users", &body);
        assert!(r.status == 400 || r.status == 409, "{body}: {}", r.text);
        assert_eq!(r.error(), code, "{body}: {}", r.text);
    }
    let root_id = admin.get("/api/auth/me").json["id"].clone();
    let r = admin.patch(
        &format!("/api/users/{root_id}"),
        &json!({"is_admin": false}),
    );
    assert_eq!((r.status, r.error()), (409, "last_admin"), "{}", r.text);
    let r = admin.delete(&format!("/api/users/{root_id}"));
    assert_eq!((r.status, r.error()), (409, "last_admin"));
    let r = admin.put(
        &format!("/api/workspaces/1/members/{root_id}"),
        &json!({"role": "owner"}),
    );
    assert_eq!((r.status, r.error()), (400, "invalid_field"));
    assert_eq!(before, srv.fingerprint());
}

#[test]
fn internal_errors_are_500_without_details_and_roll_back() {
    let srv = Server::start();
    let svc = srv.service();
    // Break the audit log behind the server's back: every write that must
    // append an event now fails inside its transaction.
    srv.sql_write().execute_batch("DROP TABLE events").unwrap();
    let r = svc.post("/api/tasks", &json!({"title": "lost"}));
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(r.error(), "internal");
    assert!(
        !r.text.contains("events") && !r.text.contains("table"),
        "internals leaked: {}",
        r.text
    );
    let n: i64 = srv
        .sql()
        .query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0, "the failed request's insert was rolled back with it");
    assert!(
        srv.log().contains("no such table: events"),
        "the detail goes to the log"
    );
    // Reads still work.
    assert_eq!(svc.get("/api/tasks").status, 200);
}

/// `POST /api/test/clock` moves the server's time, on a server started
/// with `OPS_TEST_CLOCK=1` only, for operators only.
#[test]
fn the_test_clock_exists_only_on_test_servers_and_for_operators() {
    let plain = Server::start_with(&[("OPS_TEST_CLOCK", "")]);
    let r = plain
        .service()
        .post("/api/test/clock", &json!({"advance_seconds": 60}));
    assert_eq!((r.status, r.error()), (404, "not_found"), "{}", r.text);

    let srv = Server::start();
    let (_, member) = srv.user("clockwatcher", Some((1, "admin")));
    let r = member.post("/api/test/clock", &json!({"advance_seconds": 60}));
    assert_eq!(r.status, 403, "{}", r.text);
    for bad in [
        json!({}),
        json!({"advance_seconds": -1}),
        json!({"advance_seconds": "1"}),
    ] {
        let r = srv.service().post("/api/test/clock", &bad);
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_field"),
            "{bad}: {}",
            r.text
        );
    }

    // A fresh worker goes stale when 91 s pass (the limit is 90 s).
    crate::util::enable_dispatch(&srv);
    let w = crate::util::Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    assert_eq!(w.no_claim(), "no_task");
    let r = srv
        .admin()
        .post("/api/test/clock", &json!({"advance_seconds": 91}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["now"].is_string(), "{}", r.text);
    assert_eq!(w.no_claim(), "worker_not_fresh");
}
