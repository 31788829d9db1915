//! What an agent did, read from its CLI's machine-readable stream: one
//! stdout line in, the `RunEvent`s it holds out, with no state kept between
//! lines. A line that is not understood gives nothing, never a panic.
//!
//! Each CLI's stream, as its release in `clis::KNOWN` prints it (the
//! `fixtures/` beside this file are real transcripts of them):
//!
//! - **Claude Code** (`-p --output-format stream-json --verbose`): the
//!   session id in `system`/`init`; `assistant` messages holding text and
//!   `tool_use` blocks; `user` messages holding `tool_result` blocks;
//!   `system`/`api_retry` when a request failed and is retried; one
//!   `result` at the end with the run's usage and `total_cost_usd` (the one
//!   usage source: the messages' own usage is the stream's first count,
//!   not the final one); with `--include-partial-messages`, a `stream_event`
//!   line per streamed delta.
//! - **codex** (`exec --json`): the session id in `thread.started`; items
//!   (`agent_message`, `command_execution` started then completed,
//!   `file_change`, `mcp_tool_call`, `web_search`, `error`); `error` and
//!   `turn.failed`; usage in `turn.completed` (the one usage source; on a
//!   resumed session codex counts the whole session there, the earlier runs
//!   included).
//! - **opencode** (`run --format json`): every line names its `sessionID`
//!   (taken from `step_start`); `text`, `tool_use` (a finished call, its
//!   input and output), `error`; usage and cost in `step_finish` (the one
//!   usage source, one per model call).
//! - **Hermes** (`chat -Q`): no JSON; the final answer as plain text, diffs
//!   of the files it edited, errors such as `HTTP 401: …`, and
//!   `session_id: …` (on stderr).

use ops_protocol::runs::RunEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which stream a CLI prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Claude,
    Codex,
    Opencode,
    Hermes,
    /// A custom command's plain text: no events.
    #[default]
    Plain,
}

/// Longest one-line summary of a tool call, in characters.
pub const SUMMARY_CHARS: usize = 120;
/// Longest tool input or result text kept, in bytes.
pub const DETAIL_BYTES: usize = 4096;

/// The events one stdout line of `stream` holds (none for a line that is
/// not understood).
pub fn parse_line(stream: Stream, line: &str) -> Vec<RunEvent> {
    let line = line.trim_end_matches(['\r', '\n']);
    match stream {
        Stream::Claude => json(line).map(|v| claude(&v)).unwrap_or_default(),
        Stream::Codex => json(line).map(|v| codex(&v)).unwrap_or_default(),
        Stream::Opencode => json(line).map(|v| opencode(&v)).unwrap_or_default(),
        Stream::Hermes => hermes(line),
        Stream::Plain => Vec::new(),
    }
}

/// Whether the line only says the CLI is busy (a streamed delta, a
/// "requesting" status): counted as activity, not stored.
pub fn is_activity_only(stream: Stream, line: &str) -> bool {
    if stream != Stream::Claude || !line.contains("\"type\"") {
        return false;
    }
    let Some(v) = json(line) else {
        return false;
    };
    match str_at(&v, &["type"]) {
        "stream_event" => true,
        "system" => str_at(&v, &["subtype"]) == "status",
        _ => false,
    }
}

fn json(line: &str) -> Option<Value> {
    let t = line.trim();
    if !t.starts_with('{') {
        return None;
    }
    serde_json::from_str(t).ok()
}

/// The string at `path` in `v`, or "".
fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

fn int_at(v: &Value, path: &[&str]) -> i64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return 0,
        }
    }
    cur.as_i64()
        .or_else(|| cur.as_f64().map(|f| f as i64))
        .unwrap_or(0)
}

/// `text` cut to at most `max` bytes at a char boundary, with "…" when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// One line of at most `SUMMARY_CHARS` characters: the first line of
/// `text`, "…" marking what was left out.
pub fn one_line(text: &str) -> String {
    let text = text.trim();
    let first = text.lines().next().unwrap_or("").trim();
    let more = first.len() < text.len();
    let chars: Vec<char> = first.chars().collect();
    if chars.len() > SUMMARY_CHARS || (more && chars.len() >= SUMMARY_CHARS) {
        let kept: String = chars[..SUMMARY_CHARS - 1].iter().collect();
        format!("{kept}…")
    } else if more {
        format!("{first} …")
    } else {
        first.to_string()
    }
}

/// The one-line summary of a call of tool `name` with `input`: the file,
/// the command, the pattern, the address… whatever names what it does.
pub fn summarize(name: &str, input: &Value) -> String {
    let s = |k: &str| {
        input
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let lower = name.to_ascii_lowercase();
    let command = s("command")
        .or_else(|| s("cmd"))
        .map(str::to_string)
        .or_else(|| {
            input.get("command").and_then(Value::as_array).map(|a| {
                let words: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                words.join(" ")
            })
        });
    if let Some(c) = command.filter(|c| !c.is_empty()) {
        let shell = matches!(
            lower.as_str(),
            "bash" | "shell" | "shell_command" | "exec_command" | "local_shell" | "terminal"
        );
        let label = if shell { "bash" } else { name };
        return one_line(&format!("{label}: {}", unwrap_shell(&c)));
    }
    for key in [
        "file_path",
        "filePath",
        "path",
        "notebook_path",
        "pattern",
        "url",
        "query",
        "description",
        "prompt",
    ] {
        if let Some(v) = s(key) {
            return one_line(&format!("{name} {v}"));
        }
    }
    one_line(name)
}

/// `bash -lc "script"` → `script`: the command a shell wrapper runs.
fn unwrap_shell(command: &str) -> String {
    for prefix in [
        "/bin/bash -lc ",
        "bash -lc ",
        "/bin/sh -c ",
        "sh -c ",
        "/bin/zsh -lc ",
    ] {
        if let Some(rest) = command.strip_prefix(prefix) {
            let rest = rest.trim();
            for q in ['"', '\''] {
                if rest.len() >= 2 && rest.starts_with(q) && rest.ends_with(q) {
                    return rest[1..rest.len() - 1].replace("\\\"", "\"");
                }
            }
            return rest.to_string();
        }
    }
    command.to_string()
}

fn tool_call(name: &str, input: &Value) -> RunEvent {
    let detail = match input {
        Value::Null => String::new(),
        Value::String(s) => cut(s, DETAIL_BYTES),
        v => cut(&v.to_string(), DETAIL_BYTES),
    };
    RunEvent::ToolCall {
        name: name.to_string(),
        summary: summarize(name, input),
        detail,
    }
}

fn tool_result(name: &str, text: &str, error: bool) -> RunEvent {
    RunEvent::ToolResult {
        name: name.to_string(),
        text: cut(text, DETAIL_BYTES),
        error,
    }
}

fn message(text: &str) -> Option<RunEvent> {
    let text = text.trim();
    (!text.is_empty()).then(|| RunEvent::Message {
        text: text.to_string(),
    })
}

fn error(text: &str) -> RunEvent {
    RunEvent::Error {
        text: cut(text.trim(), DETAIL_BYTES),
    }
}

/// A usage event, none when there is nothing to count. A zero cost is no
/// figure (a CLI that knows no price says 0).
fn usage(tokens_in: i64, tokens_out: i64, cost: Option<f64>) -> Option<RunEvent> {
    let cost_usd = cost.filter(|c| c.is_finite() && *c > 0.0);
    (tokens_in > 0 || tokens_out > 0 || cost_usd.is_some()).then_some(RunEvent::Usage {
        tokens_in,
        tokens_out,
        cost_usd,
        session_total: false,
    })
}

/// codex's usage: the whole session's so far.
fn session_usage(tokens_in: i64, tokens_out: i64) -> Option<RunEvent> {
    match usage(tokens_in, tokens_out, None)? {
        RunEvent::Usage {
            tokens_in,
            tokens_out,
            cost_usd,
            ..
        } => Some(RunEvent::Usage {
            tokens_in,
            tokens_out,
            cost_usd,
            session_total: true,
        }),
        other => Some(other),
    }
}

/// The text of a content that is a string or a list of `{type: text}`
/// parts.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

// --- Claude Code ---------------------------------------------------------

fn claude(v: &Value) -> Vec<RunEvent> {
    let mut out = Vec::new();
    match str_at(v, &["type"]) {
        "system" => match str_at(v, &["subtype"]) {
            "init" => {
                let id = str_at(v, &["session_id"]);
                if !id.is_empty() {
                    out.push(RunEvent::Session { id: id.to_string() });
                }
            }
            "api_retry" => {
                let status = match v.get("error_status").and_then(Value::as_i64) {
                    Some(s) => format!("HTTP {s} "),
                    None => String::new(),
                };
                let secs = (int_at(v, &["retry_delay_ms"]) + 999) / 1000;
                out.push(error(&format!(
                    "API error: {status}{} (retry {} of {}, retry-after: {secs})",
                    str_at(v, &["error"]),
                    int_at(v, &["attempt"]),
                    int_at(v, &["max_retries"]),
                )));
            }
            _ => {}
        },
        "assistant" => {
            let blocks = v.pointer("/message/content").and_then(Value::as_array);
            for b in blocks.into_iter().flatten() {
                match str_at(b, &["type"]) {
                    "text" => out.extend(message(str_at(b, &["text"]))),
                    "tool_use" | "server_tool_use" => {
                        let input = b.get("input").cloned().unwrap_or(Value::Null);
                        out.push(tool_call(str_at(b, &["name"]), &input));
                    }
                    _ => {}
                }
            }
        }
        "user" => {
            let blocks = v.pointer("/message/content").and_then(Value::as_array);
            for b in blocks.into_iter().flatten() {
                if str_at(b, &["type"]) == "tool_result" {
                    let text = content_text(b.get("content").unwrap_or(&Value::Null));
                    let failed = b.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                    out.push(tool_result("", &text, failed));
                }
            }
        }
        "result" => {
            let failed = v.get("is_error").and_then(Value::as_bool).unwrap_or(false)
                || str_at(v, &["subtype"]).starts_with("error");
            if failed {
                let mut text = str_at(v, &["result"]).to_string();
                if text.is_empty() {
                    let errors = v.get("errors").map(content_text).unwrap_or_default();
                    text = if errors.is_empty() {
                        str_at(v, &["subtype"]).to_string()
                    } else {
                        errors
                    };
                }
                if let Some(s) = v.get("api_error_status").and_then(Value::as_i64) {
                    if !text.contains(&s.to_string()) {
                        text = format!("HTTP {s}: {text}");
                    }
                }
                out.push(error(&text));
            }
            let tokens_in = int_at(v, &["usage", "input_tokens"])
                + int_at(v, &["usage", "cache_creation_input_tokens"])
                + int_at(v, &["usage", "cache_read_input_tokens"]);
            let tokens_out = int_at(v, &["usage", "output_tokens"]);
            let cost = v.get("total_cost_usd").and_then(Value::as_f64);
            out.extend(usage(tokens_in, tokens_out, cost));
        }
        "rate_limit_event" => {
            let info = v.get("rate_limit_info").unwrap_or(&Value::Null);
            if str_at(info, &["status"]) == "rejected" {
                let kind = str_at(info, &["rateLimitType"]);
                let mut text = format!("usage limit reached ({kind})");
                if let Some(at) = info.get("resetsAt").and_then(Value::as_i64) {
                    text.push_str(&format!(", resets at {at}"));
                }
                out.push(error(&text));
            }
        }
        _ => {}
    }
    out
}

// --- codex ---------------------------------------------------------------

fn codex(v: &Value) -> Vec<RunEvent> {
    let mut out = Vec::new();
    let item = v.get("item").unwrap_or(&Value::Null);
    match (str_at(v, &["type"]), str_at(item, &["type"])) {
        ("thread.started", _) => {
            let id = str_at(v, &["thread_id"]);
            if !id.is_empty() {
                out.push(RunEvent::Session { id: id.to_string() });
            }
        }
        ("turn.completed", _) => {
            let u = v.get("usage").unwrap_or(&Value::Null);
            out.extend(session_usage(
                int_at(u, &["input_tokens"]),
                int_at(u, &["output_tokens"]),
            ));
        }
        ("turn.failed", _) => out.push(error(str_at(v, &["error", "message"]))),
        ("error", _) => out.push(error(str_at(v, &["message"]))),
        ("item.started", "command_execution") => {
            let command = Value::String(str_at(item, &["command"]).to_string());
            out.push(tool_call(
                "bash",
                &serde_json::json!({ "command": command }),
            ));
        }
        ("item.started", "mcp_tool_call") => {
            let name = format!("{}.{}", str_at(item, &["server"]), str_at(item, &["tool"]));
            let args = item.get("arguments").cloned().unwrap_or(Value::Null);
            out.push(tool_call(&name, &args));
        }
        ("item.completed", kind) => match kind {
            "agent_message" => out.extend(message(str_at(item, &["text"]))),
            "error" => out.push(error(str_at(item, &["message"]))),
            "command_execution" => {
                let code = item.get("exit_code").and_then(Value::as_i64);
                let failed = code.is_some_and(|c| c != 0) || str_at(item, &["status"]) == "failed";
                let mut text = str_at(item, &["aggregated_output"]).to_string();
                if let Some(c) = code.filter(|c| *c != 0) {
                    text = format!("exit code {c}\n{text}");
                }
                out.push(tool_result("bash", &text, failed));
            }
            "file_change" => {
                let changes = item.get("changes").and_then(Value::as_array);
                let files: Vec<String> = changes
                    .into_iter()
                    .flatten()
                    .map(|c| format!("{} {}", str_at(c, &["kind"]), str_at(c, &["path"])))
                    .collect();
                let summary = one_line(&format!("apply_patch: {}", files.join(", ")));
                out.push(RunEvent::ToolCall {
                    name: "apply_patch".into(),
                    summary,
                    detail: cut(&files.join("\n"), DETAIL_BYTES),
                });
                let failed = str_at(item, &["status"]) == "failed";
                out.push(tool_result(
                    "apply_patch",
                    str_at(item, &["status"]),
                    failed,
                ));
            }
            "mcp_tool_call" => {
                let name = format!("{}.{}", str_at(item, &["server"]), str_at(item, &["tool"]));
                let err = str_at(item, &["error", "message"]);
                let text = if err.is_empty() {
                    item.get("result")
                        .and_then(|r| r.get("content"))
                        .map(content_text)
                        .unwrap_or_default()
                } else {
                    err.to_string()
                };
                let failed = !err.is_empty() || str_at(item, &["status"]) == "failed";
                out.push(tool_result(&name, &text, failed));
            }
            "web_search" => {
                let query = Value::String(str_at(item, &["query"]).to_string());
                out.push(tool_call(
                    "web_search",
                    &serde_json::json!({ "query": query }),
                ));
            }
            _ => {}
        },
        _ => {}
    }
    out
}

// --- opencode ------------------------------------------------------------

fn opencode(v: &Value) -> Vec<RunEvent> {
    let mut out = Vec::new();
    let part = v.get("part").unwrap_or(&Value::Null);
    match str_at(v, &["type"]) {
        "step_start" => {
            let id = str_at(v, &["sessionID"]);
            if !id.is_empty() {
                out.push(RunEvent::Session { id: id.to_string() });
            }
        }
        "text" => out.extend(message(str_at(part, &["text"]))),
        "tool_use" => {
            let name = str_at(part, &["tool"]);
            let state = part.get("state").unwrap_or(&Value::Null);
            let input = state.get("input").cloned().unwrap_or(Value::Null);
            out.push(tool_call(name, &input));
            match str_at(state, &["status"]) {
                "completed" => out.push(tool_result(name, str_at(state, &["output"]), false)),
                "error" => out.push(tool_result(name, str_at(state, &["error"]), true)),
                _ => {}
            }
        }
        "step_finish" => {
            let t = part.get("tokens").unwrap_or(&Value::Null);
            let tokens_in = int_at(t, &["input"])
                + int_at(t, &["cache", "read"])
                + int_at(t, &["cache", "write"]);
            let tokens_out = int_at(t, &["output"]) + int_at(t, &["reasoning"]);
            let cost = part.get("cost").and_then(Value::as_f64);
            out.extend(usage(tokens_in, tokens_out, cost));
        }
        "error" => {
            let e = v.get("error").unwrap_or(&Value::Null);
            let msg = str_at(e, &["data", "message"]);
            let msg = if msg.is_empty() {
                str_at(e, &["name"])
            } else {
                msg
            };
            let text = match e.pointer("/data/statusCode").and_then(Value::as_i64) {
                Some(code) => format!("HTTP {code}: {msg}"),
                None => msg.to_string(),
            };
            out.push(error(&text));
        }
        _ => {}
    }
    out
}

// --- Hermes --------------------------------------------------------------

fn hermes(line: &str) -> Vec<RunEvent> {
    let t = line.trim();
    if t.is_empty() {
        return Vec::new();
    }
    if let Some(id) = t.strip_prefix("session_id:") {
        let id = id.trim();
        return if id.is_empty() {
            Vec::new()
        } else {
            vec![RunEvent::Session { id: id.to_string() }]
        };
    }
    // Decorations and the bodies of the diffs it shows of its edits.
    if t.starts_with(['⚠', '┊', '↻', '+']) || t.starts_with("@@") {
        return Vec::new();
    }
    // A diff's header: `a/hello.txt → b/hello.txt`.
    if let Some((a, b)) = t.split_once(" → ") {
        if let (Some(_), Some(path)) = (a.strip_prefix("a/"), b.strip_prefix("b/")) {
            return vec![RunEvent::ToolCall {
                name: "edit".into(),
                summary: one_line(&format!("edit {path}")),
                detail: String::new(),
            }];
        }
    }
    let lower = t.to_ascii_lowercase();
    let is_error = (lower.starts_with("http ") && t[5..].starts_with(|c: char| c.is_ascii_digit()))
        || lower.starts_with("api call failed")
        || lower.starts_with("error:")
        || lower.starts_with("hermes -z:")
        || t.starts_with('❌');
    if is_error {
        return vec![error(t)];
    }
    message(t).into_iter().collect()
}

#[cfg(test)]
mod tests;
