//! Agent runs over the dispatch protocol: the transcript and session a
//! launcher reports with its output, follow-ups that resume the session,
//! tokens and cost, workspace budgets, and rate-limited runs.

use ops_center::protocol::accounts::WorkspaceChange;
use ops_center::protocol::dispatch::{Failed, Finished, Output, RateLimited, RunChange};
use ops_center::protocol::runs::RunEvent;

use crate::client::{failed, finished, started, TaskSpec};
use crate::util::{dispatchable, enable_dispatch, event_kinds, queued_task, Server, Worker};

/// A chunk of output at `offset` carrying `events`.
fn chunk(text: &str, offset: i64, events: Vec<RunEvent>) -> Output {
    Output {
        chunk: text.into(),
        offset: Some(offset),
        events,
    }
}

fn usage(tokens_in: i64, tokens_out: i64, cost_usd: Option<f64>) -> RunEvent {
    RunEvent::Usage {
        tokens_in,
        tokens_out,
        cost_usd,
        session_total: false,
    }
}

fn session(id: &str) -> RunEvent {
    RunEvent::Session { id: id.into() }
}

/// A worker that runs `agent`, and the task it claimed and started; the
/// claim token.
fn running(srv: &Server, w: &Worker, agent: &str) -> (i64, String) {
    let id = queued_task(srv, dispatchable(agent));
    w.heartbeat(&[agent], &[]);
    let (claimed, token) = w.claim_one();
    assert_eq!(claimed, id);
    w.report(id, &token, started(Some(1))).ok();
    (id, token)
}

#[test]
fn a_run_keeps_its_transcript_session_tokens_and_cost() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let w = Worker::new(&srv, "w1");
    let (id, token) = running(&srv, &w, "claudecode");

    let events = vec![
        session("sess-1"),
        RunEvent::ToolCall {
            name: "Write".into(),
            summary: "Write hello.txt".into(),
            detail: "{\"file_path\":\"hello.txt\"}".into(),
        },
        RunEvent::ToolResult {
            name: "Write".into(),
            text: "File created".into(),
            error: false,
        },
        RunEvent::Message {
            text: "Done: hello.txt written.".into(),
        },
        usage(1200, 80, Some(0.0123)),
    ];
    w.report(id, &token, chunk("{…}\n", 0, events.clone())).ok();
    // The same chunk again (a lost answer): nothing is taken twice.
    w.report(id, &token, chunk("{…}\n", 0, events)).ok();
    w.report(id, &token, finished(Some(0), "Done: hello.txt written."))
        .ok();

    let runs = svc.runs(id).ok();
    assert_eq!(runs.runs.len(), 1);
    let run = &runs.runs[0];
    assert_eq!(
        (run.number, run.outcome.as_str(), run.agent.as_str()),
        (1, "finished", "claudecode")
    );
    assert_eq!(run.session_id.as_deref(), Some("sess-1"));
    assert_eq!((run.tokens_in, run.tokens_out), (1200, 80));
    assert_eq!(run.cost_usd, Some(0.0123));
    assert_eq!(run.cost_source.as_deref(), Some("cli"));
    assert_eq!(run.exit_code, Some(0));
    assert!(runs.can_resume);
    assert_eq!((runs.tokens_in, runs.cost_usd), (1200, 0.0123));

    let t = svc.transcript(id, 0).ok();
    let kinds: Vec<&str> = t.events.iter().map(|e| e.event.kind()).collect();
    assert_eq!(
        kinds,
        ["session", "tool_call", "tool_result", "message", "usage"]
    );
    assert!(t.events.iter().all(|e| e.run == 1));
    let after = t.events[2].seq;
    let rest = svc.transcript(id, after).ok();
    assert_eq!(rest.events.len(), 2);
    assert!(!rest.more);

    let metrics = svc.get("/metrics").text;
    assert!(
        metrics.contains(r#"ops_agent_tokens_total{agent="claudecode",direction="in"} 1200"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"ops_agent_cost_usd_total{agent="claudecode"} 0.0123"#),
        "{metrics}"
    );
}

#[test]
fn bad_run_events_are_refused_and_change_nothing() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    let (id, token) = running(&srv, &w, "codex");
    let proof = |extra: serde_json::Value| {
        let mut body = serde_json::json!({"worker_id": "w1", "claim_token": token, "chunk": "x\n", "offset": 0});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for bad in [
        serde_json::json!({"events": [{"kind": "telepathy"}]}),
        serde_json::json!({"events": [{"kind": "usage", "tokens_in": "many", "tokens_out": 1}]}),
        serde_json::json!({"events": {"kind": "message", "text": "x"}}),
    ] {
        let r = w.client.post(
            &format!("/api/dispatch/tasks/{id}/output"),
            &proof(bad.clone()),
        );
        assert_eq!(
            (r.status, r.error()),
            (400, "invalid_field"),
            "{bad}: {}",
            r.text
        );
    }
    assert!(srv.service().transcript(id, 0).ok().events.is_empty());
    // A failed report's rate limit must be an object.
    let r = w.client.post(
        &format!("/api/dispatch/tasks/{id}/failed"),
        &serde_json::json!({"worker_id": "w1", "claim_token": token, "signature": "x",
                            "rate_limited": {"retry_after_seconds": "soon"}}),
    );
    assert_eq!((r.status, r.error()), (400, "invalid_field"), "{}", r.text);
    assert_eq!(srv.service().task(id).ok().task.status, "doing");
}

#[test]
fn a_follow_up_resumes_the_last_runs_session() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let w = Worker::new(&srv, "w1");
    let (id, token) = running(&srv, &w, "codex");
    // Before any session, and while running: refused.
    svc.follow_up(id, "and the tests")
        .refused(409, "invalid_transition");
    w.report(id, &token, chunk("a\n", 0, vec![session("thread-7")]))
        .ok();
    w.report(id, &token, finished(Some(0), "first answer")).ok();
    assert_eq!(svc.task(id).ok().task.status, "review");

    svc.follow_up(id, "   ").refused(400, "invalid_field");
    let big = "x".repeat(20_001);
    svc.follow_up(id, &big).refused(400, "invalid_field");
    let queued = svc.follow_up(id, "Now add a test for it.").ok();
    assert_eq!(queued.task.status, "queued");
    assert_eq!(
        queued.task.follow_up.as_deref(),
        Some("Now add a test for it.")
    );

    let claim = w.claim();
    let f = claim.follow_up.expect("the claim hands out the follow-up");
    assert_eq!(
        (f.session_id.as_str(), f.message.as_str()),
        ("thread-7", "Now add a test for it.")
    );
    let token2 = claim.claim_token.unwrap();
    let t = w.report(id, &token2, started(Some(2))).ok();
    assert_eq!(t.follow_up, None, "taken by the run that started");
    w.report(id, &token2, finished(Some(0), "second answer"))
        .ok();

    let runs = svc.runs(id).ok().runs;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].number, 2);
    assert_eq!(runs[1].follow_up.as_deref(), Some("Now add a test for it."));
    assert_eq!(runs[1].resumed_session.as_deref(), Some("thread-7"));
    assert!(event_kinds(&srv, id).contains(&"task.dispatched".to_string()));
    let note = svc.task(id).ok().comments;
    assert!(note
        .iter()
        .any(|c| c.body.ends_with("Now add a test for it.")));
}

#[test]
fn a_follow_up_needs_a_session_and_the_rights_of_a_dispatch() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let w = Worker::new(&srv, "w1");
    let (id, token) = running(&srv, &w, "hermes");
    // Plain-text output: no session.
    w.report(id, &token, chunk("hello\n", 0, vec![])).ok();
    w.report(id, &token, finished(Some(0), "hello")).ok();
    svc.follow_up(id, "more").refused(409, "no_session");
    assert!(!svc.runs(id).ok().can_resume);

    let (id2, token2) = running(&srv, &w, "codex");
    w.report(id2, &token2, chunk("a\n", 0, vec![session("s")]))
        .ok();
    w.report(id2, &token2, finished(Some(0), "ok")).ok();
    // A viewer may not; the task's workspace member may; no one else.
    let (_, viewer) = srv.user("viewer", None);
    viewer.follow_up(id2, "more").refused(403, "forbidden");
    let anon = srv.client();
    anon.follow_up(id2, "more").refused(401, "unauthorized");
    let (_, member) = srv.user("member", Some((1, "member")));
    member.follow_up(id2, "more").ok();
}

#[test]
fn a_sensitive_tasks_follow_up_waits_at_the_gate() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let admin = srv.admin();
    let w = Worker::new(&srv, "w1");
    let id = queued_task(&srv, dispatchable("codex"));
    w.heartbeat(&["codex"], &[]);
    let (_, token) = w.claim_one();
    w.report(id, &token, started(Some(1))).ok();
    w.report(id, &token, chunk("a\n", 0, vec![session("s")]))
        .ok();
    w.report(id, &token, finished(Some(0), "ok")).ok();
    let sensitive = ops_center::protocol::tasks::TaskEdit {
        sensitive: Some(true),
        ..Default::default()
    };
    admin.edit_task(id, &sensitive).ok();
    svc.follow_up(id, "more").refused(409, "human_gate");
    admin.approve(id).ok();
    svc.follow_up(id, "more").ok();
}

#[test]
fn model_prices_price_what_the_cli_does_not() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    svc.set_setting("model_prices", "[1, 2]")
        .refused(400, "invalid_setting");
    svc.set_setting(
        "model_prices",
        r#"{"gpt-5": {"input": 1.25, "output": 10}, "gpt-5-mini": {"input": 0.25, "output": 2}}"#,
    )
    .ok();
    let w = Worker::new(&srv, "w1");
    let id = queued_task(&srv, dispatchable("codex").model("gpt-5-mini"));
    w.heartbeat(&["codex"], &[]);
    let (_, token) = w.claim_one();
    w.report(id, &token, started(Some(1))).ok();
    w.report(id, &token, chunk("a\n", 0, vec![usage(1_000_000, 0, None)]))
        .ok();
    w.report(id, &token, chunk("b\n", 2, vec![usage(0, 500_000, None)]))
        .ok();
    let run = &svc.runs(id).ok().runs[0];
    assert_eq!(run.model.as_deref(), Some("gpt-5-mini"));
    assert_eq!(run.cost_source.as_deref(), Some("model_prices"));
    assert!((run.cost_usd.unwrap() - 1.25).abs() < 1e-9, "{run:?}");

    // A model no family covers: tokens, no cost.
    let id2 = queued_task(&srv, dispatchable("codex").model("llama-3"));
    let (_, token2) = w.claim_one();
    w.report(id2, &token2, started(Some(2))).ok();
    w.report(id2, &token2, chunk("a\n", 0, vec![usage(10, 10, None)]))
        .ok();
    let run = &svc.runs(id2).ok().runs[0];
    assert_eq!((run.tokens_in, run.cost_usd), (10, None));
}

#[test]
fn a_spent_budget_warns_once_then_stops_and_refuses() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let admin = srv.admin();
    let budget = |usd: Option<f64>| WorkspaceChange {
        repo_path: None,
        base_ref: None,
        repo_roots: None,
        budget_usd_month: Some(usd),
    };
    // Only a workspace admin sets it, and only to a sane figure.
    let (_, member) = srv.user("member", Some((1, "member")));
    member
        .edit_workspace(1, &budget(Some(1.0)))
        .refused(403, "forbidden");
    admin
        .edit_workspace(1, &budget(Some(-1.0)))
        .refused(400, "invalid_field");
    let ws = admin.edit_workspace(1, &budget(Some(1.0))).ok();
    assert_eq!(ws.budget_usd_month, Some(1.0));

    let w = Worker::new(&srv, "w1");
    let (id, token) = running(&srv, &w, "claudecode");
    let waiting = queued_task(&srv, dispatchable("codex"));
    w.report(id, &token, chunk("a\n", 0, vec![usage(1, 1, Some(0.85))]))
        .ok();
    let open = |kind: &str| {
        svc.alerts("?status=open&limit=100")
            .ok()
            .alerts
            .into_iter()
            .filter(|a| a.kind == kind)
            .count()
    };
    assert_eq!(open("budget.warning"), 1);
    w.report(id, &token, chunk("b\n", 2, vec![usage(1, 1, Some(0.05))]))
        .ok();
    let warned = svc.alerts("?status=open&limit=100").ok();
    let warning = warned
        .alerts
        .iter()
        .find(|a| a.kind == "budget.warning")
        .unwrap();
    assert_eq!(warning.occurrences, 1, "the warning fires once");
    let usage_now = svc.usage(1, "").ok();
    assert!((usage_now.cost_usd - 0.9).abs() < 1e-9);
    assert!((usage_now.budget_used_percent.unwrap() - 90.0).abs() < 1e-6);

    // Past 100 %: the running agent is stopped like a cancel, the queued
    // task parked, and new dispatches and follow-ups refused.
    w.report(id, &token, chunk("c\n", 4, vec![usage(1, 1, Some(0.2))]))
        .ok();
    assert_eq!(open("budget.exhausted"), 1);
    let t = svc.task(id).ok();
    assert_eq!(t.task.status, "waiting");
    assert!(t
        .comments
        .iter()
        .any(|c| c.body.starts_with("presupuesto agotado")));
    let parked = svc.task(waiting).ok().task;
    assert_eq!(parked.status, "waiting");
    assert!(parked.blocked);
    let fresh = svc.new_task(&dispatchable("codex"));
    svc.dispatch(fresh).refused(409, "budget_exhausted");
    svc.retry(waiting).refused(409, "budget_exhausted");
    assert_eq!(svc.runs(id).ok().runs[0].outcome, "cancelled");

    // A larger budget lets work go on.
    admin.edit_workspace(1, &budget(Some(5.0))).ok();
    svc.dispatch(fresh).ok();
    admin.edit_workspace(1, &budget(None)).ok();
    assert_eq!(svc.usage(1, "").ok().budget_used_percent, None);
    svc.usage(1, "?month=2026-13").refused(400, "invalid_query");
}

#[test]
fn a_rate_limited_run_goes_back_to_the_queue_without_counting_as_a_failure() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let w = Worker::new(&srv, "w1");
    let (id, token) = running(&srv, &w, "codex");
    let limited = |after: Option<i64>| Failed {
        rate_limited: Some(RateLimited {
            retry_after_seconds: after,
        }),
        ..failed(
            "rate_limited",
            "429 Too Many Requests: rate_limit_exceeded",
            "…",
        )
    };
    let t = w.report(id, &token, limited(Some(30))).ok();
    assert_eq!(t.status, "queued");
    assert!(!t.blocked);
    let not_before = t.not_before.clone().expect("a not_before");
    // No claim takes it before its time.
    assert_eq!(w.no_claim(), "no_task");
    let kinds = event_kinds(&srv, id);
    assert!(kinds.contains(&"dispatch.rate_limited".to_string()));
    assert!(!kinds.contains(&"dispatch.failed".to_string()));
    assert_eq!(svc.runs(id).ok().runs[0].outcome, "rate_limited");
    // Not a failure for the watchdog.
    svc.watchdog().ok();
    let alerts = svc.alerts("?status=open").ok();
    assert!(
        alerts
            .alerts
            .iter()
            .all(|a| a.kind != "dispatch.recurring_failure"),
        "{alerts:?}"
    );

    // Its time come, it is claimed again; four more in a row block it.
    srv.advance_clock(31);
    let mut token = {
        let (claimed, token) = w.claim_one();
        assert_eq!(claimed, id, "not before {not_before}");
        token
    };
    for n in 2..=5 {
        w.report(id, &token, started(Some(n))).ok();
        let t = w.report(id, &token, limited(None)).ok();
        if n < 5 {
            assert_eq!(t.status, "queued", "run {n}");
            // Backoff from a minute, doubling: 60, 120, 240 s.
            srv.advance_clock(60 << (n - 1));
            w.heartbeat(&["codex"], &[]);
            token = w.claim_one().1;
        } else {
            assert_eq!(t.status, "waiting");
            assert!(t.blocked);
            assert!(t
                .blocked_reason
                .unwrap()
                .starts_with("límite de uso del proveedor: 5"));
        }
    }
    // A person's retry starts the count again.
    let t = svc.retry(id).ok().task;
    assert_eq!((t.status.as_str(), t.not_before), ("queued", None));
}

/// codex counts a resumed session's earlier runs in its usage: each run
/// is charged only what it added. A follow-up a rate limit stopped is
/// still owed to the next run.
#[test]
fn a_resumed_sessions_totals_count_once_and_a_stopped_follow_up_is_owed() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let w = Worker::new(&srv, "w1");
    let (id, token) = running(&srv, &w, "codex");
    let total = |tokens_in, tokens_out| RunEvent::Usage {
        tokens_in,
        tokens_out,
        cost_usd: None,
        session_total: true,
    };
    w.report(
        id,
        &token,
        chunk("a\n", 0, vec![session("thread-1"), total(20, 10)]),
    )
    .ok();
    w.report(id, &token, finished(Some(0), "ok")).ok();
    svc.follow_up(id, "and the tests").ok();
    let (_, token2) = w.claim_one();
    w.report(id, &token2, started(Some(2))).ok();
    let limited = Failed {
        rate_limited: Some(RateLimited {
            retry_after_seconds: Some(5),
        }),
        ..failed("rate_limited", "429", "…")
    };
    let t = w.report(id, &token2, limited).ok();
    assert_eq!(t.status, "queued");
    assert_eq!(t.follow_up.as_deref(), Some("and the tests"), "still owed");
    srv.advance_clock(6);
    let claim = w.claim();
    let f = claim.follow_up.expect("the follow-up is handed out again");
    assert_eq!(f.session_id, "thread-1");
    let token3 = claim.claim_token.unwrap();
    w.report(id, &token3, started(Some(3))).ok();
    w.report(
        id,
        &token3,
        chunk("b\n", 0, vec![session("thread-1"), total(30, 15)]),
    )
    .ok();
    let runs = svc.runs(id).ok();
    let counted: Vec<(i64, i64)> = runs
        .runs
        .iter()
        .map(|r| (r.tokens_in, r.tokens_out))
        .collect();
    assert_eq!(counted, [(20, 10), (0, 0), (10, 5)]);
    assert_eq!((runs.tokens_in, runs.tokens_out), (30, 15));
}

/// A follow-up that only answers the reviewer leaves the branch where it
/// was: the branch still holds the first run's change, so the task is back
/// in review, not blocked "sin cambios" as a fresh run would be.
#[test]
fn a_follow_up_without_an_edit_goes_back_to_review() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let w = Worker::new(&srv, "w1");
    let (id, token) = running(&srv, &w, "codex");
    let change = |start: &str, head: &str| RunChange {
        branch: format!("ops/task-{id}"),
        head: Some(head.into()),
        base: Some("aaaa".into()),
        start: Some(start.into()),
        diff_stat: " hello.txt | 1 +\n".into(),
        patch: "+++ b/hello.txt\n+hello\n".into(),
        ..RunChange::default()
    };
    w.report(id, &token, chunk("a\n", 0, vec![session("s-1")]))
        .ok();
    let done = |c: RunChange| Finished {
        change: Some(c),
        ..finished(Some(0), "done")
    };
    let t = w.report(id, &token, done(change("aaaa", "bbbb"))).ok();
    assert_eq!(t.status, "review");
    svc.follow_up(id, "Why this way?").ok();
    let (_, token2) = w.claim_one();
    w.report(id, &token2, started(Some(2))).ok();
    let t = w.report(id, &token2, done(change("bbbb", "bbbb"))).ok();
    assert_eq!((t.status.as_str(), t.blocked), ("review", false), "{t:?}");
    // A fresh run that changes nothing is still blocked.
    svc.retry(id).ok();
    let (_, token3) = w.claim_one();
    w.report(id, &token3, started(Some(3))).ok();
    let t = w.report(id, &token3, done(change("bbbb", "bbbb"))).ok();
    assert_eq!(t.status, "waiting");
    assert!(t.blocked_reason.unwrap().starts_with("sin cambios"));
}
