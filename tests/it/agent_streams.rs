//! The launcher reading a built-in CLI's machine-readable stream, with the
//! fake Claude Code of examples/agents/fake-streams installed as `claude`:
//! the transcript, the session, tokens and cost reach the task's run; a
//! follow-up resumes the session; a provider's 429 sends the task back to
//! the queue; a slow model's streaming keeps the run alive past the
//! silence limit.

use crate::launcher::{log_comments, queued_task, wait_status};
use crate::util::{enable_dispatch, event_kinds, wait_for, Launcher, Server};

fn fake_streams_path() -> String {
    format!(
        "{}/examples/agents/fake-streams:{}",
        env!("CARGO_MANIFEST_DIR"),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn claude_launcher(srv: &Server, extra: &[(&str, &str)]) -> Launcher {
    let path = fake_streams_path();
    let mut env = vec![
        ("SUPPORTED_AGENT_SLUGS", "claudecode"),
        ("PATH", path.as_str()),
    ];
    env.extend_from_slice(extra);
    Launcher::start(srv, &srv.dir.path().join("launcher-logs"), &env)
}

#[test]
fn a_claude_run_reports_its_transcript_and_a_follow_up_resumes_its_session() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let mut l = claude_launcher(&srv, &[]);
    let id = queued_task(&srv, "claudecode", "Write hello.txt");
    let t = wait_status(&srv, id, "review", 30);
    // The output is the agent's last message, not the stream's JSON.
    assert_eq!(
        t.task.dispatch_output.as_deref(),
        Some("Done: hello.txt is written.")
    );
    let runs = svc.runs(id).ok();
    let first = &runs.runs[0];
    let session = first.session_id.clone().expect("the stream's session id");
    assert!(session.starts_with("fake-"), "{session}");
    assert_eq!((first.tokens_in, first.tokens_out), (20, 10));
    assert_eq!(first.cost_usd, Some(0.00035));
    assert_eq!(first.cost_source.as_deref(), Some("cli"));
    assert!(runs.can_resume);
    let transcript = svc.transcript(id, 0).ok();
    let kinds: Vec<&str> = transcript.events.iter().map(|e| e.event.kind()).collect();
    for kind in ["session", "tool_call", "tool_result", "message", "usage"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let call = transcript
        .events
        .iter()
        .find_map(|e| match &e.event {
            ops_center::protocol::runs::RunEvent::ToolCall { name, summary, .. } => {
                Some((name.clone(), summary.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(call.0, "Write");
    assert!(call.1.contains("hello.txt"), "{call:?}");

    svc.follow_up(id, "Now add a test for it.").ok();
    let t = wait_for(30, "the follow-up's run to end", || {
        let runs = svc.runs(id).ok();
        (runs.runs.len() == 2 && runs.runs[1].outcome == "finished").then_some(runs)
    });
    let second = &t.runs[1];
    assert_eq!(second.resumed_session.as_deref(), Some(session.as_str()));
    assert_eq!(second.session_id.as_deref(), Some(session.as_str()));
    assert_eq!(second.follow_up.as_deref(), Some("Now add a test for it."));
    let task = wait_status(&srv, id, "review", 10);
    assert_eq!(
        task.task.dispatch_output.as_deref(),
        Some(format!("Resumed {session}: Now add a test for it.").as_str()),
        "the resumed CLI was given the session and the message"
    );
    l.kill9();
}

#[test]
fn a_provider_rate_limit_sends_the_task_back_to_the_queue() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let mut l = claude_launcher(&srv, &[]);
    let id = queued_task(&srv, "claudecode", "RATE-LIMIT: this provider refuses");
    let runs = wait_for(30, "the rate-limited run", || {
        let runs = svc.runs(id).ok().runs;
        runs.first()
            .is_some_and(|r| r.outcome == "rate_limited")
            .then_some(runs)
    });
    assert_eq!(runs.len(), 1);
    let t = svc.task(id).ok().task;
    assert_eq!(t.status, "queued", "{t:?}");
    assert!(!t.blocked);
    assert!(t.not_before.is_some());
    let kinds = event_kinds(&srv, id);
    assert!(kinds.contains(&"dispatch.rate_limited".to_string()));
    assert!(!kinds.contains(&"dispatch.failed".to_string()), "{kinds:?}");
    l.kill9();
}

#[test]
fn a_slow_models_streaming_keeps_a_claude_run_alive_past_the_silence_limit() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let mut l = claude_launcher(&srv, &[("AGENT_SILENCE_MINUTES", "3s")]);
    // Six seconds of streamed deltas, one a second, then the answer.
    let id = queued_task(&srv, "claudecode", "SLOW=6 write hello.txt");
    let t = wait_status(&srv, id, "review", 40);
    // The deltas were activity, not transcript: no log line holds one.
    assert!(
        log_comments(&t)
            .iter()
            .all(|c| !c.contains("content_block_delta")),
        "{:?}",
        log_comments(&t)
    );
    l.kill9();
}

/// opencode retries a rate limit without end: once the provider has still
/// refused for `AGENT_RATE_LIMIT_GRACE`, the run is ended as rate limited
/// and its task queued again, not before the wait the provider named.
#[test]
fn a_cli_retrying_a_rate_limit_without_end_is_stopped_and_its_task_queued() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let path = fake_streams_path();
    let mut l = Launcher::start(
        &srv,
        &srv.dir.path().join("launcher-logs"),
        &[
            ("SUPPORTED_AGENT_SLUGS", "opencode"),
            ("PATH", path.as_str()),
            ("AGENT_AUTH_CHECK_OPENCODE", "true"),
            ("AGENT_RATE_LIMIT_GRACE", "3s"),
        ],
    );
    let id = queued_task(&srv, "opencode", "anything");
    let runs = wait_for(40, "the run ended for the rate limit", || {
        let runs = svc.runs(id).ok().runs;
        runs.first()
            .is_some_and(|r| r.outcome == "rate_limited")
            .then_some(runs)
    });
    assert!(runs[0].session_id.is_some(), "{runs:?}");
    let t = svc.task(id).ok().task;
    assert_eq!(t.status, "queued", "{t:?}");
    let events = svc
        .events(&format!("?task_id={id}&kind=dispatch.rate_limited"))
        .ok()
        .events;
    assert_eq!(
        events[0].payload["retry_after_seconds"], 20,
        "the wait the provider named: {:?}",
        events[0].payload
    );
    assert!(
        l.log()
            .contains("still refused 3 s after the first refusal"),
        "{}",
        l.log()
    );
    l.kill9();
}
