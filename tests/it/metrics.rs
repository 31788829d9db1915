//! `GET /metrics`: who may read it, and that what it says parses with a
//! real Prometheus parser (`prometheus_client`, Python) and moves with what
//! the server does. The parser is needed: CI installs it and sets
//! OPS_REQUIRE_PROMETHEUS_CLIENT=1, which turns the skip into a failure.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::client::failed;
use crate::util::{enable_dispatch, queued_task, Server, Worker};

/// The samples of `text` as (name, labels, value), or `None` when the
/// parser is not installed.
fn parse(text: &str) -> Option<Vec<(String, Value, f64)>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/prom_parse.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.code() == Some(3) {
        assert!(
            std::env::var("OPS_REQUIRE_PROMETHEUS_CLIENT").as_deref() != Ok("1"),
            "OPS_REQUIRE_PROMETHEUS_CLIENT=1 but prometheus_client is not installed"
        );
        eprintln!("SKIPPED: prometheus_client is not installed (pip install prometheus_client)");
        return None;
    }
    assert!(
        out.status.success(),
        "the metrics do not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, Value, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    Some(rows)
}

/// The value of the sample `name` whose labels include `labels`; 0 when
/// absent (a counter not yet moved).
fn value(samples: &[(String, Value, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
        .map_or(0.0, |(_, _, v)| *v)
}

fn scrape(srv: &Server) -> Option<Vec<(String, Value, f64)>> {
    let r = srv.service().get("/metrics");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    parse(&r.text)
}

#[test]
fn service_token_and_global_admin_only() {
    let srv = Server::start();
    assert_eq!(srv.service().get("/metrics").status, 200);
    let admin = srv.admin().get("/metrics");
    assert_eq!(admin.status, 200, "{}", admin.text);
    assert!(admin.text.contains("# TYPE ops_tasks gauge"));

    let anonymous = srv.client().get("/metrics");
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
    assert_eq!(anonymous.error(), "unauthorized");
    let (_, member) = srv.user("ana", Some((1, "admin")));
    let r = member.get("/metrics");
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.error(), "forbidden");
    assert!(!r.text.contains("ops_tasks"));

    // What Prometheus sends: the token as a bearer credential.
    let token = crate::util::TOKEN;
    let bearer = srv
        .client()
        .header("Authorization", &format!("Bearer {token}"))
        .get("/metrics");
    assert_eq!(bearer.status, 200, "{}", bearer.text);
    let wrong = srv
        .client()
        .header("Authorization", "Bearer not-the-token")
        .get("/metrics");
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert_eq!(wrong.error(), "unauthorized");
    // Only /metrics takes it.
    let elsewhere = srv
        .client()
        .header("Authorization", &format!("Bearer {token}"))
        .get("/api/tasks");
    assert_eq!(elsewhere.status, 401, "{}", elsewhere.text);

    let r = srv.service().post("/metrics", &json!({}));
    assert_eq!(r.status, 405);
    assert_eq!(r.error(), "method_not_allowed");
}

#[test]
fn counters_and_gauges_follow_the_server() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let Some(before) = scrape(&srv) else {
        return;
    };
    for name in [
        "ops_tasks_stale_dispatching",
        "ops_workers_fresh",
        "ops_alerts_open",
        "ops_db_wal_bytes",
        "ops_dispatch_claims_total",
        "ops_http_request_seconds_count",
        "ops_db_commit_seconds_count",
    ] {
        assert!(
            before.iter().any(|(n, _, _)| n == name),
            "{name} missing from the scrape"
        );
    }
    assert_eq!(value(&before, "ops_workers_fresh", &[]), 0.0);
    assert_eq!(value(&before, "ops_tasks", &[("status", "queued")]), 0.0);

    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    queued_task(&srv, "codex");
    queued_task(&srv, "codex");
    let mid = scrape(&srv).unwrap();
    assert_eq!(value(&mid, "ops_tasks", &[("status", "queued")]), 2.0);
    assert_eq!(value(&mid, "ops_workers_fresh", &[]), 1.0);
    assert_eq!(value(&mid, "ops_dispatch_enabled", &[]), 1.0);

    let (id, token) = w.claim_one();
    let r = w.report(id, &token, failed("quote \" and \\ backslash", "r", "e"));
    assert_eq!(r.status, 200, "{}", r.text);
    // An error response: an unknown task.
    let missing = srv.service().get("/api/tasks/999999");
    assert_eq!(missing.status, 404);

    let after = scrape(&srv).unwrap();
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(moved("ops_dispatch_claims_total", &[]), 1.0);
    assert_eq!(
        value(
            &after,
            "ops_dispatch_failures_total",
            &[("signature", "quote \" and \\ backslash")]
        ),
        1.0
    );
    assert_eq!(moved("ops_http_requests_total", &[("code", "404")]), 1.0);
    assert!(moved("ops_http_requests_total", &[("code", "200")]) >= 6.0);
    assert!(moved("ops_http_request_seconds_count", &[]) >= 8.0);
    assert!(moved("ops_db_commit_seconds_count", &[]) >= 4.0);
    assert_eq!(value(&after, "ops_tasks", &[("status", "queued")]), 1.0);
    assert_eq!(value(&after, "ops_tasks", &[("status", "waiting")]), 1.0);
    assert_eq!(value(&after, "ops_tasks_blocked", &[]), 1.0);
    assert!(value(&after, "ops_db_wal_bytes", &[]) > 0.0);
}

/// The worker gauges come from the heartbeat cache health reads: a new
/// worker, a forgotten one and one turned stale by the clock show in the
/// scrape as in health, whichever of the two read the cache first.
#[test]
fn worker_gauges_follow_heartbeats_like_health() {
    let srv = Server::start();
    let svc = srv.service();
    let Some(_) = scrape(&srv) else {
        return;
    };
    let gauges = || {
        let s = scrape(&srv).unwrap();
        let summary = svc.get("/api/dispatch/health?workers=false").json["worker_summary"].clone();
        let (fresh, all) = (
            value(&s, "ops_workers_fresh", &[]),
            value(&s, "ops_workers", &[]),
        );
        assert_eq!(fresh, summary["fresh"].as_f64().unwrap(), "{summary}");
        assert_eq!(all, summary["total"].as_f64().unwrap(), "{summary}");
        (fresh, all)
    };
    assert_eq!(gauges(), (0.0, 0.0));
    Worker::new(&srv, "w1").heartbeat(&["codex"], &[]);
    Worker::new(&srv, "w2").heartbeat(&["codex"], &[]);
    assert_eq!(gauges(), (2.0, 2.0));
    let r = svc.delete("/api/dispatch/workers/w2");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(gauges(), (1.0, 1.0));
    srv.advance_clock(3600);
    assert_eq!(gauges(), (0.0, 1.0));
    Worker::new(&srv, "w1").heartbeat(&["codex"], &[]);
    assert_eq!(gauges(), (1.0, 1.0));
}
