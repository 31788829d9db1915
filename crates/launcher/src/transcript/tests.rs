//! Every fixture is a real transcript of a CLI run against
//! `packaging/tests/scripted-model.py` (see `clis::KNOWN` for the releases):
//! each must yield the events the launcher relies on.

use super::*;
use crate::rate_limit::rate_limited;

fn events(stream: Stream, text: &str) -> Vec<RunEvent> {
    text.lines().flat_map(|l| parse_line(stream, l)).collect()
}

fn sessions(ev: &[RunEvent]) -> Vec<&str> {
    ev.iter()
        .filter_map(|e| match e {
            RunEvent::Session { id } => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

fn calls(ev: &[RunEvent]) -> Vec<(&str, &str)> {
    ev.iter()
        .filter_map(|e| match e {
            RunEvent::ToolCall { name, summary, .. } => Some((name.as_str(), summary.as_str())),
            _ => None,
        })
        .collect()
}

fn results(ev: &[RunEvent]) -> Vec<(&str, bool)> {
    ev.iter()
        .filter_map(|e| match e {
            RunEvent::ToolResult { text, error, .. } => Some((text.as_str(), *error)),
            _ => None,
        })
        .collect()
}

fn messages(ev: &[RunEvent]) -> Vec<&str> {
    ev.iter()
        .filter_map(|e| match e {
            RunEvent::Message { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn errors(ev: &[RunEvent]) -> Vec<&str> {
    ev.iter()
        .filter_map(|e| match e {
            RunEvent::Error { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The usage events summed: (in, out, cost, how many events).
fn usage_sum(ev: &[RunEvent]) -> (i64, i64, Option<f64>, usize) {
    let mut sum = (0, 0, None, 0);
    for e in ev {
        if let RunEvent::Usage {
            tokens_in,
            tokens_out,
            cost_usd,
            ..
        } = e
        {
            sum.0 += tokens_in;
            sum.1 += tokens_out;
            if let Some(c) = cost_usd {
                sum.2 = Some(sum.2.unwrap_or(0.0) + c);
            }
            sum.3 += 1;
        }
    }
    sum
}

const DONE: &str = "Done: the file is written.";

#[test]
fn claude_edit() {
    let ev = events(Stream::Claude, include_str!("fixtures/claude-edit.jsonl"));
    assert_eq!(sessions(&ev), ["777e9e93-4e1d-40d8-8b47-ba451e5300ef"]);
    assert_eq!(
        calls(&ev),
        [("Write", "Write /tmp/clis/w/claude/hello.txt")]
    );
    let r = results(&ev);
    assert_eq!(r.len(), 1);
    assert!(r[0].0.starts_with("File created successfully") && !r[0].1);
    assert_eq!(messages(&ev), [DONE]);
    // One usage: the final result's, with its cost; not the messages'.
    assert_eq!(usage_sum(&ev), (20, 10, Some(0.00035), 1));
    assert!(errors(&ev).is_empty());
    match ev.iter().find(|e| e.kind() == "tool_call").unwrap() {
        RunEvent::ToolCall { detail, .. } => {
            assert!(detail.contains("hello from the scripted model"))
        }
        _ => unreachable!(),
    }
}

#[test]
fn claude_resume_keeps_the_session() {
    let ev = events(Stream::Claude, include_str!("fixtures/claude-resume.jsonl"));
    assert_eq!(sessions(&ev), ["777e9e93-4e1d-40d8-8b47-ba451e5300ef"]);
    assert_eq!(messages(&ev), [DONE]);
    assert_eq!(usage_sum(&ev), (10, 5, Some(0.000175), 1));
}

#[test]
fn claude_partial_messages_are_activity_only() {
    let text = include_str!("fixtures/claude-partial.jsonl");
    let activity: Vec<&str> = text
        .lines()
        .filter(|l| is_activity_only(Stream::Claude, l))
        .collect();
    assert!(activity.len() >= 10, "{}", activity.len());
    for l in &activity {
        assert!(parse_line(Stream::Claude, l).is_empty(), "{l}");
    }
    // The lines kept tell the same story as without the deltas.
    let ev = events(Stream::Claude, text);
    assert_eq!(sessions(&ev).len(), 1);
    assert_eq!(calls(&ev).len(), 1);
    assert_eq!(messages(&ev), [DONE]);
    assert_eq!(usage_sum(&ev).3, 1);
    for l in text
        .lines()
        .filter(|l| l.contains("\"type\":\"assistant\""))
    {
        assert!(!is_activity_only(Stream::Claude, l));
    }
}

#[test]
fn claude_rate_limited_and_unauthorized() {
    let ev = events(Stream::Claude, include_str!("fixtures/claude-429.jsonl"));
    let e = errors(&ev);
    assert_eq!(e.len(), 2, "{e:?}"); // the retry, then the result
    assert!(e[1].contains("Request rejected (429)"), "{e:?}");
    assert_eq!(rate_limited(e[1]), Some(Some(30)));
    assert_eq!(rate_limited(e[0]), Some(Some(30)));
    assert_eq!(usage_sum(&ev).3, 0);

    let ev = events(Stream::Claude, include_str!("fixtures/claude-401.jsonl"));
    let e = errors(&ev);
    assert!(
        e.last().unwrap().starts_with("HTTP 401: Invalid API key"),
        "{e:?}"
    );
    assert!(e.iter().all(|t| rate_limited(t).is_none()));
    assert!(crate::clis::logged_out_in("claudecode", e.last().unwrap()));
}

#[test]
fn codex_edit() {
    let ev = events(Stream::Codex, include_str!("fixtures/codex-edit.jsonl"));
    assert_eq!(sessions(&ev), ["01a252aa-99f2-7b61-8b03-6a253744ba84"]);
    assert_eq!(
        calls(&ev),
        [("bash", "bash: printf '%s' 'hello from the scripted model …")]
    );
    assert_eq!(results(&ev), [("", false)]);
    assert_eq!(messages(&ev), [DONE]);
    assert_eq!(usage_sum(&ev), (20, 10, None, 1));
    // Its warning about an unknown model is an error item.
    assert_eq!(errors(&ev).len(), 1);
}

#[test]
fn codex_resume_keeps_the_session() {
    let ev = events(Stream::Codex, include_str!("fixtures/codex-resume.jsonl"));
    assert_eq!(sessions(&ev), ["01a252aa-99f2-7b61-8b03-6a253744ba84"]);
    assert_eq!(messages(&ev), [DONE]);
    // codex counts the whole session, the first run's 20/10 included.
    assert_eq!(usage_sum(&ev), (30, 15, None, 1));
}

#[test]
fn codex_rate_limited_and_unauthorized() {
    let ev = events(Stream::Codex, include_str!("fixtures/codex-429.jsonl"));
    let e = errors(&ev);
    assert!(e
        .last()
        .unwrap()
        .contains("exceeded retry limit, last status: 429"));
    assert_eq!(rate_limited(e.last().unwrap()), Some(None));
    assert_eq!(usage_sum(&ev).3, 0);

    let ev = events(Stream::Codex, include_str!("fixtures/codex-401.jsonl"));
    let e = errors(&ev);
    assert!(e.last().unwrap().contains("401 Unauthorized"));
    assert!(e.iter().all(|t| rate_limited(t).is_none()));
}

#[test]
fn opencode_edit() {
    let ev = events(
        Stream::Opencode,
        include_str!("fixtures/opencode-edit.jsonl"),
    );
    let s = sessions(&ev);
    assert!(!s.is_empty() && s.iter().all(|id| *id == "ses_dad504826ffejUQozODHd9qcmf"));
    assert_eq!(calls(&ev), [("write", "write hello.txt")]);
    assert_eq!(results(&ev), [("Wrote file successfully.", false)]);
    assert_eq!(messages(&ev), [DONE]);
    // One usage per model call (two steps); no price known, so no cost.
    assert_eq!(usage_sum(&ev), (20, 10, None, 2));
}

#[test]
fn opencode_resume_keeps_the_session() {
    let ev = events(
        Stream::Opencode,
        include_str!("fixtures/opencode-resume.jsonl"),
    );
    assert_eq!(sessions(&ev), ["ses_dad504826ffejUQozODHd9qcmf"]);
    assert_eq!(messages(&ev), [DONE]);
    assert_eq!(usage_sum(&ev), (10, 5, None, 1));
}

#[test]
fn opencode_rate_limited_and_unauthorized() {
    let ev = events(
        Stream::Opencode,
        include_str!("fixtures/opencode-401.jsonl"),
    );
    assert_eq!(errors(&ev), ["HTTP 401: Incorrect API key provided."]);
    assert_eq!(rate_limited(errors(&ev)[0]), None);
    // While it waits out a 429 its stream is silent: the provider's words
    // are on stderr (--print-logs).
    let stderr = include_str!("fixtures/opencode-429.stderr");
    assert!(events(Stream::Opencode, stderr).is_empty());
    assert_eq!(rate_limited(stderr), Some(Some(30)));
}

#[test]
fn hermes_edit_and_resume() {
    let ev = events(Stream::Hermes, include_str!("fixtures/hermes-edit.txt"));
    assert_eq!(calls(&ev), [("edit", "edit hello.txt")]);
    assert_eq!(messages(&ev), [DONE]);
    assert!(errors(&ev).is_empty());
    // Its session id is on stderr.
    let ev = events(Stream::Hermes, include_str!("fixtures/hermes-edit.stderr"));
    assert_eq!(sessions(&ev), ["20261207_225014_355a77"]);
    let ev = events(Stream::Hermes, include_str!("fixtures/hermes-resume.txt"));
    assert_eq!(messages(&ev), [DONE]);
    let ev = events(
        Stream::Hermes,
        include_str!("fixtures/hermes-resume.stderr"),
    );
    assert_eq!(sessions(&ev), ["20261207_225014_355a77"]);
}

#[test]
fn hermes_rate_limited_and_unauthorized() {
    let ev = events(Stream::Hermes, include_str!("fixtures/hermes-429.txt"));
    let e = errors(&ev);
    assert_eq!(e.len(), 1);
    assert_eq!(rate_limited(e[0]), Some(Some(30)));
    assert!(messages(&ev).is_empty());
    let ev = events(Stream::Hermes, include_str!("fixtures/hermes-401.txt"));
    assert_eq!(errors(&ev), ["HTTP 401: Incorrect API key provided."]);
    assert_eq!(rate_limited(errors(&ev)[0]), None);
}

#[test]
fn anything_else_gives_nothing() {
    for stream in [
        Stream::Claude,
        Stream::Codex,
        Stream::Opencode,
        Stream::Plain,
    ] {
        for line in [
            "",
            "not json",
            "{",
            "{\"type\":",
            "[1,2]",
            "null",
            "{\"type\":\"something_new\"}",
            "{\"type\":42}",
            "{\"type\":\"assistant\",\"message\":{\"content\":\"text\"}}",
            "{\"type\":\"item.completed\",\"item\":null}",
            "{\"type\":\"tool_use\",\"part\":7}",
            "\u{feff}\u{0}é",
        ] {
            let _ = parse_line(stream, line);
            assert!(!is_activity_only(stream, line) || stream == Stream::Claude);
        }
        assert!(parse_line(stream, "not json").is_empty());
    }
    assert!(parse_line(Stream::Plain, "session_id: x").is_empty());
    assert!(parse_line(Stream::Hermes, "   ").is_empty());
    assert!(parse_line(Stream::Hermes, "http").len() == 1); // a message
}

#[test]
fn summaries_are_one_short_line_and_details_are_cut() {
    let long = "x".repeat(500);
    let s = summarize(
        "Bash",
        &serde_json::json!({ "command": format!("cargo test\n{long}") }),
    );
    assert_eq!(s, "bash: cargo test …");
    let s = summarize("Grep", &serde_json::json!({ "pattern": long }));
    assert_eq!(s.chars().count(), SUMMARY_CHARS);
    assert!(s.ends_with('…'));
    assert_eq!(
        summarize(
            "shell",
            &serde_json::json!({ "command": ["bash", "-lc", "ls -la"] })
        ),
        "bash: ls -la"
    );
    assert_eq!(
        summarize("TodoWrite", &serde_json::json!({ "todos": [] })),
        "TodoWrite"
    );
    assert_eq!(
        summarize(
            "exec_command",
            &serde_json::json!({ "cmd": "/bin/bash -lc \"cargo test\"" })
        ),
        "bash: cargo test"
    );
    // Cut at a char boundary, never past the limit.
    let text = "é".repeat(3000);
    let c = cut(&text, DETAIL_BYTES);
    assert!(c.len() <= DETAIL_BYTES && c.ends_with('…'));
    let line = format!(
        r#"{{"type":"user","message":{{"content":[{{"type":"tool_result","content":"{text}"}}]}}}}"#
    );
    match &parse_line(Stream::Claude, &line)[..] {
        [RunEvent::ToolResult { text, .. }] => assert!(text.len() <= DETAIL_BYTES),
        other => panic!("{other:?}"),
    }
}
