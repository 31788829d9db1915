//! The role matrix of SPEC §3: every route, allowed and refused, for no
//! credentials, a bad token, a member, a workspace admin, a global admin,
//! the service token, and a member and an admin of another workspace (who
//! must neither touch workspace 1's tasks nor see them in any list).

use serde_json::{json, Value};

use ops_center::protocol::dispatch::HeartbeatReport;

use crate::client::{failed, TaskSpec};
use crate::util::{dispatchable, Client, Server};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Nobody,
    BadToken,
    Member,
    WsAdmin,
    Admin,
    Service,
    /// Member of workspace 2 only.
    OtherMember,
    /// Admin of workspace 2 only.
    OtherAdmin,
}

const ALL: [Who; 8] = [
    Who::Nobody,
    Who::BadToken,
    Who::Member,
    Who::WsAdmin,
    Who::Admin,
    Who::Service,
    Who::OtherMember,
    Who::OtherAdmin,
];

/// Which callers a route allows (the others get 403; unauthenticated
/// callers always get 401).
#[derive(Clone, Copy)]
enum Rule {
    AnyUser,
    OpsAdmin,
    Operator,
    GlobalAdmin,
    WorkspaceAdmin,
    /// A human admin (global, or of the task's workspace), never the token.
    GateApprover,
    /// Worker endpoints: the service token only.
    ServiceOnly,
}

/// How a route treats callers of another workspace (every task, alert
/// and member list the matrix touches belongs to workspace 1).
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// Acts on a workspace-1 resource: 403 for them.
    Workspace1,
    /// A list or summary: answered as for a caller of their role, showing
    /// nothing of workspace 1.
    Listed,
    /// Holds no task data: as for a caller of their role.
    Global,
}

fn scope(route: &str) -> Scope {
    match route {
        "create task"
        | "get task"
        | "edit task"
        | "move task"
        | "comment"
        | "archive"
        | "delete task"
        | "force done"
        | "set member"
        | "remove member"
        | "dispatch"
        | "retry"
        | "cancel"
        | "unarchive"
        | "set workspace repository"
        | "set workspace repository roots"
        | "approve"
        | "resolve alert" => Scope::Workspace1,
        "list tasks" | "list workspaces" | "events" | "alerts" | "health" | "stale tasks"
        | "watchdog" => Scope::Listed,
        _ => Scope::Global,
    }
}

/// What a list shows a caller of workspace 2 that belongs to workspace 1
/// (or to no workspace), if anything.
fn leak(route: &str, v: &Value) -> Option<String> {
    let empty = |key: &str| v[key].as_array().is_some_and(|a| a.is_empty());
    let ok = match route {
        "list tasks" => v["total"] == 0 && empty("tasks"),
        "list workspaces" => v["workspaces"]
            .as_array()
            .is_some_and(|a| a.iter().all(|w| w["id"] != 1)),
        "events" => v["events"].as_array().is_some_and(|a| {
            a.iter()
                .all(|e| e["workspace_id"].as_i64().is_some_and(|w| w != 1))
        }),
        "alerts" => v["total"] == 0 && empty("alerts"),
        "stale tasks" => v["total"] == 0 && empty("tasks"),
        "health" => {
            empty("workers")
                && v["queue"]
                    .as_object()
                    .is_some_and(|q| q.values().all(|n| *n == 0))
        }
        "watchdog" => empty("alerts") && empty("task_ids") && empty("followup_task_ids"),
        _ => true,
    };
    (!ok).then(|| v.to_string())
}

fn allowed(rule: Rule, who: Who) -> bool {
    match rule {
        Rule::AnyUser => true,
        Rule::OpsAdmin => matches!(who, Who::WsAdmin | Who::Admin | Who::Service),
        Rule::Operator => matches!(who, Who::Admin | Who::Service),
        Rule::GlobalAdmin => matches!(who, Who::Admin),
        Rule::WorkspaceAdmin | Rule::GateApprover => matches!(who, Who::WsAdmin | Who::Admin),
        Rule::ServiceOnly => matches!(who, Who::Service),
    }
}

struct Ctx {
    srv: Server,
    member: Client,
    ws_admin: Client,
    admin: Client,
    other_member: Client,
    other_admin: Client,
}

impl Ctx {
    fn client(&self, who: Who) -> Client {
        match who {
            Who::Nobody => self.srv.client(),
            Who::BadToken => self
                .srv
                .client()
                .header("X-OPS-Service-Token", "wrong-token-wrong-token-wrong-token"),
            Who::Member => self.member.clone(),
            Who::WsAdmin => self.ws_admin.clone(),
            Who::Admin => self.admin.clone(),
            Who::Service => self.srv.service(),
            Who::OtherMember => self.other_member.clone(),
            Who::OtherAdmin => self.other_admin.clone(),
        }
    }

    /// A workspace-1 task stuck in `dispatching` past the stale limit, on
    /// a worker of its own (whose next heartbeat would take it back).
    fn stale(&self, worker: &str) -> i64 {
        let (id, _) = self.claimed(worker);
        self.srv.advance_clock(30 * 60);
        id
    }

    fn task(&self, body: Value) -> i64 {
        let r = self.srv.service().post("/api/tasks", &body);
        assert_eq!(r.status, 201, "{}", r.text);
        r.json["id"].as_i64().unwrap()
    }

    /// A task claimed by worker `w` (as the service): (task id, token).
    fn claimed(&self, w: &str) -> (i64, String) {
        let id = crate::util::queued_task(&self.srv, dispatchable("codex").priority(1000));
        let worker = crate::util::Worker::new(&self.srv, w);
        worker.heartbeat(&["codex"], &[]);
        let (claimed, token) = worker.claim_one();
        assert_eq!(claimed, id);
        (id, token)
    }

    /// An open alert (from reconciling a claimed task); its id.
    fn alert(&self) -> i64 {
        let (id, _) = self.claimed("alerting");
        let r = self
            .srv
            .service()
            .post("/api/dispatch/reconcile-stale", &json!({"minutes": 0}));
        assert_eq!(r.status, 200);
        let alerts = self
            .srv
            .service()
            .get("/api/alerts?status=open&limit=1000")
            .json;
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["task_id"] == id)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    }

    fn new_user(&self, name: &str) -> i64 {
        let r = self.admin.post(
            "/api/users",
            &json!({"username": name, "password": "some-password-1234"}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        r.json["id"].as_i64().unwrap()
    }
}

/// A request to make: method, path and body, built fresh for each caller
/// (so that a delete has something to delete).
type Make = Box<dyn Fn(&Ctx, Who) -> (&'static str, String, Value)>;

fn routes() -> Vec<(&'static str, Rule, Make)> {
    let t = |c: &Ctx| c.task(json!({"title": "matrix"}));
    vec![
        (
            "list tasks",
            Rule::AnyUser,
            Box::new(|_, _| ("GET", "/api/tasks".into(), Value::Null)),
        ),
        (
            "create task",
            Rule::AnyUser,
            Box::new(|_, _| ("POST", "/api/tasks".into(), json!({"title": "x"}))),
        ),
        (
            "get task",
            Rule::AnyUser,
            Box::new(move |c, _| ("GET", format!("/api/tasks/{}", t(c)), Value::Null)),
        ),
        (
            "edit task",
            Rule::AnyUser,
            Box::new(move |c, _| {
                (
                    "PATCH",
                    format!("/api/tasks/{}", t(c)),
                    json!({"title": "y"}),
                )
            }),
        ),
        (
            "move task",
            Rule::AnyUser,
            Box::new(move |c, _| {
                (
                    "PATCH",
                    format!("/api/tasks/{}/status", t(c)),
                    json!({"status": "doing"}),
                )
            }),
        ),
        (
            "comment",
            Rule::AnyUser,
            Box::new(move |c, _| {
                (
                    "POST",
                    format!("/api/tasks/{}/comments", t(c)),
                    json!({"body": "hi"}),
                )
            }),
        ),
        (
            "archive",
            Rule::AnyUser,
            Box::new(move |c, _| ("POST", format!("/api/tasks/{}/archive", t(c)), Value::Null)),
        ),
        (
            "delete task",
            Rule::AnyUser,
            Box::new(move |c, _| ("DELETE", format!("/api/tasks/{}", t(c)), Value::Null)),
        ),
        (
            "force done",
            Rule::Operator,
            Box::new(|c, _| {
                let id =
                    c.task(json!({"title": "ai", "execution": "interactive", "agent": "codex"}));
                (
                    "PATCH",
                    format!("/api/tasks/{id}/status?force=true"),
                    json!({"status": "done"}),
                )
            }),
        ),
        (
            "read settings",
            Rule::AnyUser,
            Box::new(|_, _| ("GET", "/api/settings".into(), Value::Null)),
        ),
        (
            "read one setting",
            Rule::AnyUser,
            Box::new(|_, _| ("GET", "/api/settings/dispatch_enabled".into(), Value::Null)),
        ),
        (
            "change setting",
            Rule::Operator,
            Box::new(|_, _| {
                (
                    "PUT",
                    "/api/settings/dispatch_stale_minutes".into(),
                    json!({"value": "25"}),
                )
            }),
        ),
        (
            "toggle dispatch",
            Rule::OpsAdmin,
            Box::new(|_, _| {
                (
                    "PUT",
                    "/api/settings/dispatch_enabled".into(),
                    json!({"value": "true"}),
                )
            }),
        ),
        (
            "list users",
            Rule::GlobalAdmin,
            Box::new(|_, _| ("GET", "/api/users".into(), Value::Null)),
        ),
        (
            "create user",
            Rule::GlobalAdmin,
            Box::new(|_, w| {
                (
                    "POST",
                    "/api/users".into(),
                    json!({"username": format!("new-{w:?}"), "password": "another-password-1"}),
                )
            }),
        ),
        (
            "edit user",
            Rule::GlobalAdmin,
            Box::new(|c, w| {
                (
                    "PATCH",
                    format!("/api/users/{}", c.new_user(&format!("e-{w:?}"))),
                    json!({"password": "changed-password-1"}),
                )
            }),
        ),
        (
            "delete user",
            Rule::GlobalAdmin,
            Box::new(|c, w| {
                (
                    "DELETE",
                    format!("/api/users/{}", c.new_user(&format!("d-{w:?}"))),
                    Value::Null,
                )
            }),
        ),
        (
            "list workspaces",
            Rule::AnyUser,
            Box::new(|_, _| ("GET", "/api/workspaces".into(), Value::Null)),
        ),
        (
            "create workspace",
            Rule::GlobalAdmin,
            Box::new(|_, w| {
                (
                    "POST",
                    "/api/workspaces".into(),
                    json!({"name": format!("ws-{w:?}")}),
                )
            }),
        ),
        (
            "set workspace repository",
            Rule::WorkspaceAdmin,
            Box::new(|_, w| {
                (
                    "PATCH",
                    "/api/workspaces/1".into(),
                    json!({"repo_path": format!("/srv/repo-{w:?}")}),
                )
            }),
        ),
        (
            "set workspace repository roots",
            Rule::WorkspaceAdmin,
            Box::new(|_, w| {
                (
                    "PATCH",
                    "/api/workspaces/1".into(),
                    json!({"repo_roots": [format!("/srv/roots-{w:?}")]}),
                )
            }),
        ),
        (
            "set member",
            Rule::WorkspaceAdmin,
            Box::new(|c, w| {
                (
                    "PUT",
                    format!(
                        "/api/workspaces/1/members/{}",
                        c.new_user(&format!("m-{w:?}"))
                    ),
                    json!({"role": "member"}),
                )
            }),
        ),
        (
            "remove member",
            Rule::WorkspaceAdmin,
            Box::new(|c, w| {
                let id = c.new_user(&format!("r-{w:?}"));
                let r = c.admin.put(
                    &format!("/api/workspaces/1/members/{id}"),
                    &json!({"role": "member"}),
                );
                assert_eq!(r.status, 200);
                (
                    "DELETE",
                    format!("/api/workspaces/1/members/{id}"),
                    Value::Null,
                )
            }),
        ),
        (
            "list agents",
            Rule::AnyUser,
            Box::new(|_, _| ("GET", "/api/agents".into(), Value::Null)),
        ),
        (
            "get agent",
            Rule::AnyUser,
            Box::new(|_, _| ("GET", "/api/agents/1".into(), Value::Null)),
        ),
        (
            "create agent",
            Rule::Operator,
            Box::new(|_, w| {
                (
                    "POST",
                    "/api/agents".into(),
                    json!({"slug": format!("a-{w:?}").to_lowercase()}),
                )
            }),
        ),
        (
            "edit agent",
            Rule::Operator,
            Box::new(|_, _| ("PATCH", "/api/agents/2".into(), json!({"model": "gpt-5"}))),
        ),
        (
            "delete agent",
            Rule::Operator,
            Box::new(|c, w| {
                let r = c.srv.service().post(
                    "/api/agents",
                    &json!({"slug": format!("del-{w:?}").to_lowercase()}),
                );
                assert_eq!(r.status, 201, "{}", r.text);
                (
                    "DELETE",
                    format!("/api/agents/{}", r.json["id"]),
                    Value::Null,
                )
            }),
        ),
        (
            "events",
            Rule::AnyUser,
            Box::new(|_, _| ("GET", "/api/events".into(), Value::Null)),
        ),
        (
            "alerts",
            Rule::AnyUser,
            Box::new(|c, _| {
                c.alert();
                ("GET", "/api/alerts".into(), Value::Null)
            }),
        ),
        (
            "me",
            Rule::AnyUser,
            Box::new(|_, _| ("GET", "/api/auth/me".into(), Value::Null)),
        ),
        (
            "dispatch",
            Rule::AnyUser,
            Box::new(|c, _| {
                let id =
                    c.task(json!({"title": "d", "execution": "interactive", "agent": "codex"}));
                ("POST", format!("/api/tasks/{id}/dispatch"), Value::Null)
            }),
        ),
        (
            "retry",
            Rule::AnyUser,
            Box::new(|c, _| {
                let id =
                    c.task(json!({"title": "r", "execution": "interactive", "agent": "codex"}));
                let r = c.srv.service().patch(
                    &format!("/api/tasks/{id}"),
                    &json!({"blocked": true, "blocked_reason": "failed"}),
                );
                assert_eq!(r.status, 200, "{}", r.text);
                ("POST", format!("/api/tasks/{id}/retry"), Value::Null)
            }),
        ),
        (
            "cancel",
            Rule::AnyUser,
            Box::new(|c, w| {
                let (id, _) = c.claimed(&format!("cancelled-{w:?}"));
                ("POST", format!("/api/tasks/{id}/cancel"), Value::Null)
            }),
        ),
        (
            "unarchive",
            Rule::AnyUser,
            Box::new(move |c, _| {
                let id = t(c);
                let r = c
                    .srv
                    .service()
                    .post(&format!("/api/tasks/{id}/archive"), &json!({}));
                assert_eq!(r.status, 200, "{}", r.text);
                ("POST", format!("/api/tasks/{id}/unarchive"), Value::Null)
            }),
        ),
        (
            "approve",
            Rule::GateApprover,
            Box::new(|c, _| {
                let id = c.task(json!({"title": "s", "execution": "interactive", "agent": "codex", "sensitive": true}));
                ("POST", format!("/api/tasks/{id}/approve"), Value::Null)
            }),
        ),
        (
            "heartbeat",
            Rule::ServiceOnly,
            Box::new(|_, _| {
                (
                    "POST",
                    "/api/dispatch/heartbeat".into(),
                    json!({"worker_id": "m"}),
                )
            }),
        ),
        (
            "claim",
            Rule::ServiceOnly,
            Box::new(|_, _| {
                (
                    "POST",
                    "/api/dispatch/next".into(),
                    json!({"worker_id": "m"}),
                )
            }),
        ),
        (
            "claim (GET)",
            Rule::ServiceOnly,
            Box::new(|_, _| ("GET", "/api/dispatch/next?worker_id=m".into(), Value::Null)),
        ),
        (
            "report",
            Rule::ServiceOnly,
            Box::new(|c, who| {
                let (id, token) = if who == Who::Service {
                    c.claimed("reporter")
                } else {
                    (1, "bogus".to_string())
                };
                (
                    "POST",
                    format!("/api/dispatch/tasks/{id}/started"),
                    json!({"worker_id": "reporter", "claim_token": token}),
                )
            }),
        ),
        (
            "cancel report",
            Rule::ServiceOnly,
            Box::new(|c, who| {
                let (id, token) = if who == Who::Service {
                    let (id, token) = c.claimed("cancel-reporter");
                    let r = c
                        .srv
                        .service()
                        .post(&format!("/api/tasks/{id}/cancel"), &json!({}));
                    assert_eq!(r.status, 200, "{}", r.text);
                    (id, token)
                } else {
                    (1, "bogus".to_string())
                };
                (
                    "POST",
                    format!("/api/dispatch/tasks/{id}/cancelled"),
                    json!({"worker_id": "cancel-reporter", "claim_token": token, "exit_code": null, "signal": "TERM", "elapsed_ms": 5}),
                )
            }),
        ),
        (
            "health",
            Rule::AnyUser,
            Box::new(|_, _| ("GET", "/api/dispatch/health".into(), Value::Null)),
        ),
        (
            "stale tasks",
            Rule::OpsAdmin,
            Box::new(|c, w| {
                c.stale(&format!("stale-list-{w:?}"));
                ("GET", "/api/dispatch/stale".into(), Value::Null)
            }),
        ),
        (
            "reconcile",
            Rule::Operator,
            Box::new(|_, _| {
                (
                    "POST",
                    "/api/dispatch/reconcile-stale".into(),
                    json!({"minutes": 20}),
                )
            }),
        ),
        (
            "watchdog",
            Rule::OpsAdmin,
            Box::new(|c, w| {
                c.stale(&format!("stale-watchdog-{w:?}"));
                ("POST", "/api/watchdog/run".into(), Value::Null)
            }),
        ),
        (
            "forget worker",
            Rule::Operator,
            Box::new(|c, w| {
                let name = format!("gone-{w:?}");
                crate::util::Worker::new(&c.srv, &name).heartbeat(&[], &[]);
                (
                    "DELETE",
                    format!("/api/dispatch/workers/{name}"),
                    Value::Null,
                )
            }),
        ),
        (
            "resolve alert",
            Rule::OpsAdmin,
            Box::new(|c, _| {
                (
                    "POST",
                    format!("/api/alerts/{}/resolve", c.alert()),
                    Value::Null,
                )
            }),
        ),
        (
            "delete alert",
            Rule::Operator,
            Box::new(|c, _| ("DELETE", format!("/api/alerts/{}", c.alert()), Value::Null)),
        ),
    ]
}

#[test]
fn role_matrix() {
    let srv = Server::start();
    let (_, member) = srv.user("member", Some((1, "member")));
    let (_, ws_admin) = srv.user("wsadmin", Some((1, "admin")));
    let admin = srv.admin();
    let r = admin.post("/api/workspaces", &json!({"name": "second"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let ws2 = r.json["id"].as_i64().unwrap();
    let (_, other_member) = srv.user("othermember", Some((ws2, "member")));
    let (_, other_admin) = srv.user("otheradmin", Some((ws2, "admin")));
    crate::util::enable_dispatch(&srv);
    let ctx = Ctx {
        srv,
        member,
        ws_admin,
        admin,
        other_member,
        other_admin,
    };
    let mut failures = Vec::new();
    for (name, rule, make) in routes() {
        for who in ALL {
            let (method, path, body) = make(&ctx, who);
            let body = if body.is_null() {
                Vec::new()
            } else {
                body.to_string().into_bytes()
            };
            let r = ctx.client(who).raw(method, &path, &body);
            let other = matches!(who, Who::OtherMember | Who::OtherAdmin);
            // A caller of another workspace has the rights of their role
            // there, and none in workspace 1.
            let role = match who {
                Who::OtherMember => Who::Member,
                Who::OtherAdmin => Who::WsAdmin,
                w => w,
            };
            let want = match who {
                Who::Nobody | Who::BadToken => "401",
                _ if other && scope(name) == Scope::Workspace1 => "403",
                _ if allowed(rule, role) => "2xx",
                _ => "403",
            };
            if other && scope(name) == Scope::Listed && (200..300).contains(&r.status) {
                if let Some(shown) = leak(name, &r.json) {
                    failures.push(format!("{name} as {who:?} shows workspace 1: {shown}"));
                }
            }
            let ok = match want {
                "401" => r.status == 401 && r.error() == "unauthorized",
                "403" => r.status == 403 && r.error() == "forbidden",
                _ => (200..300).contains(&r.status),
            };
            if !ok {
                failures.push(format!(
                    "{name} as {who:?}: {method} {path} wanted {want}, got {} {}",
                    r.status, r.text
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "role matrix failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn workspaces_fence_members() {
    let srv = Server::start();
    let r = srv
        .admin()
        .post("/api/workspaces", &json!({"name": "second"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let ws2 = r.json["id"].as_i64().unwrap();
    let (_, outsider) = srv.user("outsider", Some((ws2, "admin")));
    let (_, member) = srv.user("member", Some((1, "member")));

    let t1 = srv.service().new_task(&crate::client::task("in ws1"));
    let t2 = srv
        .service()
        .new_task(&crate::client::task("in ws2").workspace(ws2));

    // Each sees only its own workspace's tasks and workspaces.
    let list = outsider.get("/api/tasks");
    assert_eq!(list.json["total"], 1, "{}", list.text);
    assert_eq!(list.json["tasks"][0]["id"], t2);
    assert_eq!(member.get("/api/tasks").json["total"], 1);
    assert_eq!(
        outsider.get("/api/workspaces").json["workspaces"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(srv.admin().get("/api/tasks").json["total"], 2);

    // Events too: a member sees its workspace's, not the other's, nor the
    // global ones (users, settings).
    let events = member.get("/api/events?limit=1000").json;
    let events = events["events"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["workspace_id"] == 1), "{events:?}");

    // And cannot touch the other's.
    for r in [
        outsider.get(&format!("/api/tasks/{t1}")),
        outsider.patch(&format!("/api/tasks/{t1}"), &json!({"title": "x"})),
        outsider.post("/api/tasks", &json!({"title": "x", "workspace_id": 1})),
        outsider.get("/api/tasks?workspace_id=1"),
        member.post(&format!("/api/tasks/{t2}/comments"), &json!({"body": "x"})),
    ] {
        assert_eq!(r.status, 403, "{}", r.text);
    }
    // A workspace admin manages only its own workspace's members.
    let (uid, _) = srv.user("someone", None);
    assert_eq!(
        outsider
            .put(
                &format!("/api/workspaces/1/members/{uid}"),
                &json!({"role": "member"})
            )
            .status,
        403
    );
    assert_eq!(
        outsider
            .put(
                &format!("/api/workspaces/{ws2}/members/{uid}"),
                &json!({"role": "member"})
            )
            .status,
        200
    );
}

#[test]
fn lists_and_summaries_show_only_the_callers_workspaces() {
    use crate::util::{queued_task, Worker};
    let srv = Server::start();
    crate::util::enable_dispatch(&srv);
    let admin = srv.admin();
    let r = admin.post("/api/workspaces", &json!({"name": "second"}));
    let ws2 = r.json["id"].as_i64().unwrap();
    let (_, m1) = srv.user("m1", Some((1, "member")));
    let (_, a1) = srv.user("a1", Some((1, "admin")));
    let (_, m2) = srv.user("m2", Some((ws2, "member")));
    let (_, a2) = srv.user("a2", Some((ws2, "admin")));
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);

    // Three failed runs of codex (an alert about the agent: no task), then
    // one stale claim in workspace 1.
    for _ in 0..3 {
        queued_task(
            &srv,
            dispatchable("codex").description("secret prompt of ws1"),
        );
        let (id, token) = w.claim_one();
        w.report(id, &token, failed("boom", "r", "")).ok();
    }
    let stale = queued_task(
        &srv,
        dispatchable("codex").description("secret prompt of ws1"),
    );
    assert_eq!(w.claim_one().0, stale);
    // Half an hour passes; the worker goes on beating, holding the task
    // (a launcher that never started it).
    srv.advance_clock(30 * 60);
    let holding = HeartbeatReport {
        running_task_ids: vec![stale],
        ..w.heartbeat_of(&["codex"], &[])
    };
    w.beat(&holding).ok();

    let stale_ids = |c: &Client| -> Vec<i64> {
        let r = c.get("/api/dispatch/stale");
        assert_eq!(r.status, 200, "{}", r.text);
        r.json["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(stale_ids(&a1), vec![stale]);
    assert_eq!(stale_ids(&admin), vec![stale]);
    assert_eq!(stale_ids(&a2), Vec::<i64>::new());
    assert!(!a2.get("/api/dispatch/stale").text.contains("secret prompt"));

    let health = |c: &Client| c.get("/api/dispatch/health").json;
    let h = health(&m1);
    assert_eq!(h["queue"]["dispatching"], 1, "{h}");
    assert_eq!(h["queue"]["stale_dispatching"], 1);
    assert_eq!(h["workers"], json!([]), "worker details are for operators");
    assert_eq!(h["worker_summary"]["fresh"], 1);
    let h = health(&m2);
    assert!(
        h["queue"].as_object().unwrap().values().all(|n| *n == 0),
        "{h}"
    );
    assert_eq!(h["workers"], json!([]));
    assert!(!h.to_string().contains("w1"));
    assert_eq!(health(&admin)["workers"][0]["worker_id"], "w1");

    // The watchdog turns the stale claim into an alert about the task and
    // the failures into one about the agent.
    let r = srv.service().post("/api/watchdog/run", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let alerts = |c: &Client| -> Vec<(i64, Value)> {
        let r = c.get("/api/alerts?limit=100");
        assert_eq!(r.status, 200, "{}", r.text);
        r.json["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["id"].as_i64().unwrap(), a["task_id"].clone()))
            .collect()
    };
    let all = alerts(&admin);
    let on_task = all
        .iter()
        .find(|(_, t)| *t == json!(stale))
        .expect("stale alert")
        .0;
    let on_agent = all
        .iter()
        .find(|(_, t)| t.is_null())
        .expect("agent alert")
        .0;
    assert_eq!(alerts(&m1), vec![(on_task, json!(stale))]);
    assert_eq!(alerts(&a1), vec![(on_task, json!(stale))]);
    assert!(alerts(&m2).is_empty());
    assert!(alerts(&a2).is_empty());
    assert_eq!(m1.get("/api/dispatch/health").json["queue"]["waiting"], 4);

    // Resolving is for the admins of the alert's workspace (a member of
    // workspace 1 who administers workspace 2 is not one).
    let (mixed_id, mixed) = srv.user("mixed", Some((1, "member")));
    let r = admin.put(
        &format!("/api/workspaces/{ws2}/members/{mixed_id}"),
        &json!({"role": "admin"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(alerts(&mixed), vec![(on_task, json!(stale))]);
    for (c, id) in [(&a2, on_task), (&a1, on_agent), (&mixed, on_task)] {
        let r = c.post(&format!("/api/alerts/{id}/resolve"), &json!({}));
        assert_eq!((r.status, r.error()), (403, "forbidden"), "{}", r.text);
    }
    let r = a1.post(&format!("/api/alerts/{on_task}/resolve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);

    // A workspace admin's watchdog report holds only their tasks.
    let admin = srv.admin();
    for a in admin.get("/api/alerts?status=open&limit=1000").json["alerts"]
        .as_array()
        .unwrap()
    {
        let r = admin.post(&format!("/api/alerts/{}/resolve", a["id"]), &json!({}));
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let report = a2.post("/api/watchdog/run", &json!({})).json;
    assert_eq!(report["alerts"], json!([]), "{report}");
    assert_eq!(report["followup_task_ids"], json!([]));

    // Events: none of workspace 1, none of no workspace.
    let ev = m2.get("/api/events?limit=1000").json;
    assert!(
        ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["workspace_id"] == ws2),
        "{ev}"
    );
    assert_eq!(
        m2.get(&format!("/api/events?task_id={stale}")).json["total"],
        0
    );
}
