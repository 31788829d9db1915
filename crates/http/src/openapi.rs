//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the API, built from
//! the protocol types (JSON Schemas derived by `schemars`, draft 2020-12 as
//! OpenAPI 3.1 uses) and the table [`OPS`] below, one entry per route of
//! `router::ROUTES`; a unit test fails when the two disagree.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::auth::TOKEN_HEADER;
use super::router;
use ops_protocol::accounts::*;
use ops_protocol::admin::*;
use ops_protocol::dispatch::*;
use ops_protocol::errors::ErrorBody;
use ops_protocol::events::*;
use ops_protocol::health::Health;
use ops_protocol::review::*;
use ops_protocol::runs::*;
use ops_protocol::tasks::*;
use ops_protocol::watchdog::WatchdogReport;
use ops_protocol::Deleted;

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn s<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// Who may call an operation, as the document's security requirement.
#[derive(Clone, Copy)]
enum Auth {
    /// Anyone.
    Public,
    /// The service token or a session (the handler decides further).
    Any,
}

/// What an operation answers on success.
#[derive(Clone, Copy)]
enum Body {
    Json(SchemaFn),
    /// `text/plain` (the metrics).
    Text,
    /// `text/event-stream` (the event stream).
    Events,
}

/// One operation of the document.
struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    /// Query parameters: name, JSON type (or a whole JSON Schema, as JSON
    /// text), description.
    query: &'static [(&'static str, &'static str, &'static str)],
    request: Option<SchemaFn>,
    status: u16,
    response: Body,
}

const PAGE: [(&str, &str, &str); 2] = [
    (
        "limit",
        r#"{"type":"integer","minimum":1,"maximum":1000}"#,
        "page size, 1 to 1000 (default 50)",
    ),
    (
        "offset",
        r#"{"type":"integer","minimum":0}"#,
        "rows to skip (default 0)",
    ),
];
const TASK_LIST_QUERY: &[(&str, &str, &str)] = &[
    PAGE[0],
    PAGE[1],
    ("workspace_id", "integer", "only this workspace"),
    ("workspace", "integer", "same as workspace_id"),
    (
        "status",
        r#"{"enum":["next","queued","dispatching","doing","review","done","waiting"]}"#,
        "only this status",
    ),
    ("agent", "string", "only tasks of this agent slug"),
    (
        "blocked",
        "boolean",
        "only blocked (true) or unblocked (false) tasks",
    ),
    ("archived", "boolean", "archived tasks instead of live ones"),
    (
        "priority",
        r#"{"type":"integer","minimum":-1000,"maximum":1000}"#,
        "only tasks of this priority",
    ),
    (
        "q",
        r#"{"type":"string","maxLength":500}"#,
        "text: `42` is task 42 or a title containing 42, `#42` task 42 only, other text a title containing it (case-insensitive for ASCII letters)",
    ),
];
/// A claim's `wait`: up to `waiting::MAX_WAIT_SECONDS` (a unit test keeps
/// the two equal).
const WAIT_SCHEMA: &str = r#"{"type":"integer","minimum":0,"maximum":60}"#;
const HEALTH_QUERY: &[(&str, &str, &str)] = &[(
    "workers",
    "boolean",
    "false leaves the list of workers out (default true)",
)];
const FORCE: &[(&str, &str, &str)] = &[(
    "force",
    "boolean",
    "a global admin overriding the done guard",
)];

const REVIEW_QUERY: &[(&str, &str, &str)] = &[(
    "run",
    r#"{"type":"integer","minimum":1}"#,
    "the run whose change to show (default: the last run that reported one)",
)];

macro_rules! op {
    ($m:literal $p:literal, $sum:literal, $auth:ident, query $q:expr, body $req:expr, $st:literal $resp:expr) => {
        Op {
            method: $m,
            path: $p,
            summary: $sum,
            auth: Auth::$auth,
            query: $q,
            request: $req,
            status: $st,
            response: $resp,
        }
    };
    ($m:literal $p:literal, $sum:literal, $auth:ident, body $req:expr, $st:literal $resp:expr) => {
        op!($m $p, $sum, $auth, query &[], body $req, $st $resp)
    };
}

const NONE: Option<SchemaFn> = None;

const OPS: &[Op] = &[
    op!("GET" "/metrics", "Prometheus metrics (service token or global admin)", Any, body NONE, 200 Body::Text),
    op!("GET" "/api/openapi.json", "This document", Public, body NONE, 200 Body::Json(|_| Schema::default())),
    op!("POST" "/api/auth/login", "Log in; sets the session cookie", Public, body Some(s::<Login>), 200 Body::Json(s::<LoggedIn>)),
    op!("POST" "/api/auth/logout", "Log out; clears the session cookie", Public, body NONE, 200 Body::Json(s::<LoggedOut>)),
    op!("GET" "/api/auth/me", "The caller", Any, body NONE, 200 Body::Json(s::<Me>)),
    op!("GET" "/api/users", "Users (global admin)", Any, body NONE, 200 Body::Json(s::<UserList>)),
    op!("POST" "/api/users", "Create a user (global admin)", Any, body Some(s::<NewUser>), 201 Body::Json(s::<UserView>)),
    op!("PATCH" "/api/users/{id}", "Change a user's password or admin flag", Any, body Some(s::<UserChange>), 200 Body::Json(s::<UserView>)),
    op!("DELETE" "/api/users/{id}", "Delete a user", Any, body NONE, 200 Body::Json(s::<Deleted>)),
    op!("GET" "/api/workspaces", "Workspaces the caller sees", Any, body NONE, 200 Body::Json(s::<WorkspaceList>)),
    op!("POST" "/api/workspaces", "Create a workspace (global admin)", Any, body Some(s::<NewWorkspace>), 201 Body::Json(s::<Workspace>)),
    op!("PATCH" "/api/workspaces/{id}", "Set a workspace's repository, the roots its tasks' own repositories must lie under, and its monthly budget (workspace admin)", Any, body Some(s::<WorkspaceChange>), 200 Body::Json(s::<Workspace>)),
    op!("GET" "/api/workspaces/{id}/usage", "A workspace's runs, tokens and cost in a month, beside its budget", Any, query &[("month", "string", "the month, as 2026-12 (default: this month, UTC)")], body NONE, 200 Body::Json(s::<WorkspaceUsage>)),
    op!("PUT" "/api/workspaces/{id}/members/{user_id}", "Set a member's role", Any, body Some(s::<MemberRole>), 200 Body::Json(s::<MemberSet>)),
    op!("DELETE" "/api/workspaces/{id}/members/{user_id}", "Remove a member", Any, body NONE, 200 Body::Json(s::<MemberRemoved>)),
    op!("GET" "/api/settings", "All settings", Any, body NONE, 200 Body::Json(s::<SettingsView>)),
    op!("GET" "/api/settings/{key}", "One setting", Any, body NONE, 200 Body::Json(s::<Setting>)),
    op!("PUT" "/api/settings/{key}", "Change one setting", Any, body Some(s::<SettingChange>), 200 Body::Json(s::<Setting>)),
    op!("GET" "/api/agents", "Agents", Any, body NONE, 200 Body::Json(s::<AgentList>)),
    op!("POST" "/api/agents", "Create an agent", Any, body Some(s::<AgentChange>), 201 Body::Json(s::<AgentView>)),
    op!("GET" "/api/agents/{id}", "One agent", Any, body NONE, 200 Body::Json(s::<AgentView>)),
    op!("PATCH" "/api/agents/{id}", "Change an agent", Any, body Some(s::<AgentChange>), 200 Body::Json(s::<AgentView>)),
    op!("DELETE" "/api/agents/{id}", "Delete an agent", Any, body NONE, 200 Body::Json(s::<Deleted>)),
    op!("GET" "/api/tasks", "Tasks, filtered and paged", Any, query TASK_LIST_QUERY, body NONE, 200 Body::Json(s::<TaskList>)),
    op!("POST" "/api/tasks", "Create a task", Any, body Some(s::<NewTask>), 201 Body::Json(s::<TaskView>)),
    op!("GET" "/api/tasks/{id}", "A task with its comments and last change", Any, body NONE, 200 Body::Json(s::<TaskDetail>)),
    op!("PATCH" "/api/tasks/{id}", "Edit a task", Any, query FORCE, body Some(s::<TaskEdit>), 200 Body::Json(s::<TaskView>)),
    op!("DELETE" "/api/tasks/{id}", "Delete a task", Any, body NONE, 200 Body::Json(s::<Deleted>)),
    op!("PATCH" "/api/tasks/{id}/status", "Move a task", Any, query FORCE, body Some(s::<StatusChange>), 200 Body::Json(s::<TaskView>)),
    op!("POST" "/api/tasks/{id}/comments", "Comment on a task", Any, body Some(s::<NewComment>), 201 Body::Json(s::<Comment>)),
    op!("POST" "/api/tasks/{id}/archive", "Archive a task", Any, body NONE, 200 Body::Json(s::<TaskView>)),
    op!("POST" "/api/tasks/{id}/unarchive", "Unarchive a task", Any, body NONE, 200 Body::Json(s::<TaskView>)),
    op!("POST" "/api/tasks/{id}/dispatch", "Queue a task for a worker (409 repo_not_allowed when its workspace does not allow its repository)", Any, body NONE, 200 Body::Json(s::<DispatchAnswer>)),
    op!("POST" "/api/tasks/{id}/retry", "Unblock and queue a task", Any, body NONE, 200 Body::Json(s::<DispatchAnswer>)),
    op!("POST" "/api/tasks/{id}/follow-up", "Send a message to the agent: its next run resumes the last run's session (409 no_session, budget_exhausted, human_gate)", Any, body Some(s::<FollowUpRequest>), 200 Body::Json(s::<DispatchAnswer>)),
    op!("GET" "/api/tasks/{id}/runs", "The task's runs: agent, model, outcome, session, tokens and cost", Any, body NONE, 200 Body::Json(s::<TaskRuns>)),
    op!("GET" "/api/tasks/{id}/transcript", "The runs' events, oldest first, a page at a time", Any, query &[("after", "integer", "only events after this seq")], body NONE, 200 Body::Json(s::<Transcript>)),
    op!("GET" "/api/tasks/{id}/review", "A run's change as files (default: the last run that reported one), and the task's review comments", Any, query REVIEW_QUERY, body NONE, 200 Body::Json(s::<Review>)),
    op!("GET" "/api/tasks/{id}/review/files/{index}", "One file of a run's change, with its hunks and numbered lines", Any, query REVIEW_QUERY, body NONE, 200 Body::Json(s::<ReviewFileDiff>)),
    op!("POST" "/api/tasks/{id}/review/comments", "Comment on lines of a file of a run's change (they must be in its diff)", Any, body Some(s::<NewReviewComment>), 201 Body::Json(s::<ReviewComment>)),
    op!("DELETE" "/api/tasks/{id}/review/comments/{cid}", "Delete an unsent review comment (its author or an admin; 409 comment_sent)", Any, body NONE, 200 Body::Json(s::<Deleted>)),
    op!("POST" "/api/tasks/{id}/review/send", "Send the unsent review comments to the agent as a follow-up (409 no_comments, no_session, budget_exhausted, human_gate)", Any, body Some(s::<ReviewSend>), 200 Body::Json(s::<DispatchAnswer>)),
    op!("POST" "/api/tasks/{id}/cancel", "Cancel a queued or running task", Any, body NONE, 200 Body::Json(s::<TaskView>)),
    op!("POST" "/api/tasks/{id}/approve", "Human Gate approval", Any, body NONE, 200 Body::Json(s::<TaskView>)),
    op!("POST" "/api/dispatch/heartbeat", "A worker's heartbeat (service token)", Any, body Some(s::<HeartbeatReport>), 200 Body::Json(s::<HeartbeatAnswer>)),
    op!("GET" "/api/dispatch/health", "Dispatch health", Any, query HEALTH_QUERY, body NONE, 200 Body::Json(s::<Health>)),
    op!("POST" "/api/dispatch/next", "Claim a task (service token)", Any, query &[("wait", WAIT_SCHEMA, "seconds to wait for a task, 0 to 60")], body Some(s::<ClaimRequest>), 200 Body::Json(s::<ClaimAnswer>)),
    op!("GET" "/api/dispatch/next", "Claim a task, fields in the query (service token)", Any, query &[
        ("worker_id", "string", "the worker (required)"),
        ("agent_slugs", "string", "comma-separated slugs"),
        ("workspace_id", "integer", "only this workspace"),
        ("wait", WAIT_SCHEMA, "seconds to wait for a task, 0 to 60"),
    ], body NONE, 200 Body::Json(s::<ClaimAnswer>)),
    op!("POST" "/api/dispatch/tasks/{id}/started", "Report a run started", Any, body Some(s::<ReportBody<Started>>), 200 Body::Json(s::<TaskView>)),
    op!("POST" "/api/dispatch/tasks/{id}/output", "Report output", Any, body Some(s::<ReportBody<Output>>), 200 Body::Json(s::<TaskView>)),
    op!("POST" "/api/dispatch/tasks/{id}/finished", "Report a run finished", Any, body Some(s::<ReportBody<Finished>>), 200 Body::Json(s::<TaskView>)),
    op!("POST" "/api/dispatch/tasks/{id}/failed", "Report a run failed", Any, body Some(s::<ReportBody<Failed>>), 200 Body::Json(s::<TaskView>)),
    op!("POST" "/api/dispatch/tasks/{id}/cancelled", "Report how a cancelled run ended", Any, body Some(s::<ReportBody<CancelEnded>>), 200 Body::Json(s::<TaskView>)),
    op!("POST" "/api/dispatch/reconcile-stale", "Requeue stale dispatching tasks", Any, body Some(s::<ReconcileRequest>), 200 Body::Json(s::<Reconciled>)),
    op!("GET" "/api/dispatch/stale", "Stale dispatching tasks", Any, body NONE, 200 Body::Json(s::<StaleTasks>)),
    op!("DELETE" "/api/dispatch/workers/{worker_id}", "Forget a worker", Any, body NONE, 200 Body::Json(s::<WorkerForgotten>)),
    op!("POST" "/api/test/clock", "Advance the test clock (test servers only)", Any, body Some(s::<ClockAdvance>), 200 Body::Json(s::<Clock>)),
    op!("POST" "/api/test/hold-park", "Hold a long-poll claim before it parks (test servers only)", Any, body Some(s::<TestHold>), 200 Body::Json(s::<TestHoldState>)),
    op!("POST" "/api/watchdog/run", "Run the watchdog now", Any, body NONE, 200 Body::Json(s::<WatchdogReport>)),
    op!("GET" "/api/events", "The audit log", Any, query &[PAGE[0], PAGE[1], ("task_id", "integer", "only this task"), ("kind", "string", "only this kind")], body NONE, 200 Body::Json(s::<EventList>)),
    op!("GET" "/api/stream", "Server-sent events of the audit log", Any, query &[("last_event_id", "string", "resume after this event id")], body NONE, 200 Body::Events),
    op!("GET" "/api/alerts", "Alerts", Any, query &[PAGE[0], PAGE[1], ("status", r#"{"enum":["open","resolved"]}"#, "open or resolved")], body NONE, 200 Body::Json(s::<AlertList>)),
    op!("DELETE" "/api/alerts/{id}", "Delete an alert", Any, body NONE, 200 Body::Json(s::<Deleted>)),
    op!("POST" "/api/alerts/{id}/resolve", "Resolve an alert", Any, body NONE, 200 Body::Json(s::<AlertView>)),
];

/// Error statuses any authenticated operation may answer, each with the
/// codes it carries in `error`.
const ERRORS: &[(u16, &str)] = &[
    (400, "invalid_json, invalid_field, unknown_field, invalid_query, invalid_id and other named causes"),
    (401, "unauthorized: no or a wrong service token, or an expired session"),
    (403, "forbidden, cross_origin: the caller may not do this"),
    (404, "not_found"),
    (405, "method_not_allowed (the Allow header names the accepted methods)"),
    (409, "a conflict with the current state, e.g. stale_claim, claim_cancelled, task_not_running, invalid_transition"),
    (413, "payload_too_large"),
    (415, "unsupported_media_type: a body that is not JSON"),
    (429, "rate_limited (Retry-After) or another cap"),
    (500, "internal: see the server log"),
    (503, "storage_unavailable or busy (Retry-After)"),
];

/// The document for a server with or without the test clock, made once.
pub fn document(test_clock: bool) -> &'static [u8] {
    static DOCS: [OnceLock<Vec<u8>>; 2] = [OnceLock::new(), OnceLock::new()];
    DOCS[usize::from(test_clock)]
        .get_or_init(|| serde_json::to_vec(&build(test_clock)).expect("a JSON value"))
}

fn build(test_clock: bool) -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let error = s::<ErrorBody>(&mut g);
    let served: Vec<(&str, &str)> = router::served(test_clock)
        .map(|r| (r.method, r.path))
        .collect();
    let mut paths = Map::new();
    for op in OPS.iter().filter(|o| served.contains(&(o.method, o.path))) {
        let mut parameters: Vec<Value> = path_params(op.path)
            .map(|name| {
                let schema = if name == "index" {
                    json!({"type": "integer", "minimum": 0})
                } else if name.contains("id") && name != "worker_id" {
                    json!({"type": "integer", "minimum": 1})
                } else {
                    json!({"type": "string", "minLength": 1, "pattern": "^[^/]+$"})
                };
                json!({"name": name, "in": "path", "required": true, "schema": schema})
            })
            .collect();
        parameters.extend(op.query.iter().map(|(name, ty, desc)| {
            json!({"name": name, "in": "query", "required": false,
                   "description": desc, "schema": query_schema(ty)})
        }));
        let mut responses = Map::new();
        let ok = match op.response {
            Body::Json(f) => json!({"application/json": {"schema": f(&mut g)}}),
            Body::Text => json!({"text/plain": {"schema": {"type": "string"}}}),
            Body::Events => json!({"text/event-stream": {"schema": {"type": "string"}}}),
        };
        responses.insert(
            op.status.to_string(),
            json!({"description": "success", "content": ok}),
        );
        for (status, codes) in ERRORS {
            responses.insert(
                status.to_string(),
                json!({"description": codes,
                       "content": {"application/json": {"schema": error.clone()}}}),
            );
        }
        let mut operation = json!({
            "operationId": operation_id(op.method, op.path),
            "summary": op.summary,
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(f) = op.request {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": f(&mut g)}},
            });
        }
        if let Auth::Public = op.auth {
            operation["security"] = json!([]);
        }
        let item = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        item[op.method.to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "OPS Center API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every refusal is {\"error\": code, \"message\": text}.",
        },
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {
                "serviceToken": {"type": "apiKey", "in": "header", "name": TOKEN_HEADER},
                "session": {"type": "apiKey", "in": "cookie", "name": super::SESSION_COOKIE},
            },
        },
        "security": [{"serviceToken": []}, {"session": []}],
    })
}

fn query_schema(ty: &str) -> Value {
    if ty.starts_with('{') {
        serde_json::from_str(ty).expect("a JSON Schema")
    } else {
        json!({ "type": ty })
    }
}

fn path_params(path: &str) -> impl Iterator<Item = &str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
}

/// `get_api_tasks_id`: method and path in one word.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        id.push('_');
        id.extend(
            seg.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .map(|c| c.to_ascii_lowercase()),
        );
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(
        it: impl Iterator<Item = (&'static str, &'static str)>,
    ) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = it.collect();
        v.sort();
        v
    }

    #[test]
    fn the_documented_wait_is_the_served_one() {
        let schema: serde_json::Value = serde_json::from_str(WAIT_SCHEMA).unwrap();
        assert_eq!(schema["maximum"], crate::waiting::MAX_WAIT_SECONDS);
    }

    #[test]
    fn every_route_is_documented_and_every_operation_routed() {
        let routes = pairs(router::ROUTES.iter().map(|r| (r.method, r.path)));
        let ops = pairs(OPS.iter().map(|o| (o.method, o.path)));
        let undocumented: Vec<_> = routes.iter().filter(|r| !ops.contains(r)).collect();
        let unrouted: Vec<_> = ops.iter().filter(|o| !routes.contains(o)).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the document: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "documented operations the router lacks: {unrouted:?}"
        );
    }

    #[test]
    fn the_document_lists_what_is_served() {
        for test_clock in [false, true] {
            let doc = build(test_clock);
            let mut listed = Vec::new();
            for (path, item) in doc["paths"].as_object().unwrap() {
                for method in item.as_object().unwrap().keys() {
                    listed.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
            listed.sort();
            let mut served: Vec<_> = router::served(test_clock)
                .map(|r| (r.method.to_string(), r.path.to_string()))
                .collect();
            served.sort();
            assert_eq!(listed, served);
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = build(true);
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "unresolved $ref {name}");
        }
        assert!(schemas.contains_key("ErrorBody"));
        assert!(schemas.contains_key("TaskView"));
    }
}
