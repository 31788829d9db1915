//! The role matrix of docs/SPEC.md §4.6: every route, allowed and refused, for no
//! credentials, a bad token, a member, a workspace admin, a global admin,
//! the service token, and a member and an admin of another workspace (who
//! must neither touch workspace 1's tasks nor see them in any list).

use std::cell::Cell;

use serde_json::Value;

use ops_center::protocol::dispatch::HeartbeatReport;
use ops_center::protocol::health::Queue;
use ops_center::protocol::tasks::TaskEdit;

use crate::client::{blocked_with, failed, task, workers, TaskSpec};
use crate::util::{dispatchable, queued_task, Client, Server, Worker};

use Given::{Nothing, OpenAlert, StaleClaim};
use Rule::{AnyUser, GateApprover, GlobalAdmin, Operator, OpsAdmin, ServiceOnly, WorkspaceAdmin};
use Scope::{Global, Listed, Workspace1};

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
#[derive(Clone, Copy, Debug)]
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

/// What must exist before the request, though its path names nothing.
#[derive(Clone, Copy)]
enum Given {
    Nothing,
    /// An open alert on a workspace-1 task.
    OpenAlert,
    /// A workspace-1 task stuck in `dispatching` past the stale limit.
    StaleClaim,
}

/// One route of the matrix: its name; method, path and body (empty: no
/// body), where `{…}` names something made fresh for each caller (see
/// [`Ctx::prepare`]), so that a delete has something to delete and a
/// create a name of its own; who may call it; how it treats callers of
/// another workspace; what must exist first; the status of an allowed
/// call.
type Route = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Rule,
    Scope,
    Given,
    u16,
);

#[rustfmt::skip]
const ROUTES: &[Route] = &[
    // name                            method    path                                         body                                                                        who may         ws 2        given       ok
    ("list tasks",                     "GET",    "/api/tasks",                                "",                                                                         AnyUser,        Listed,     Nothing,    200),
    ("create task",                    "POST",   "/api/tasks",                                r#"{"title":"x"}"#,                                                         AnyUser,        Workspace1, Nothing,    201),
    ("get task",                       "GET",    "/api/tasks/{task}",                         "",                                                                         AnyUser,        Workspace1, Nothing,    200),
    ("edit task",                      "PATCH",  "/api/tasks/{task}",                         r#"{"title":"y"}"#,                                                         AnyUser,        Workspace1, Nothing,    200),
    ("move task",                      "PATCH",  "/api/tasks/{task}/status",                  r#"{"status":"doing"}"#,                                                    AnyUser,        Workspace1, Nothing,    200),
    ("comment",                        "POST",   "/api/tasks/{task}/comments",                r#"{"body":"hi"}"#,                                                         AnyUser,        Workspace1, Nothing,    201),
    ("archive",                        "POST",   "/api/tasks/{task}/archive",                 "",                                                                         AnyUser,        Workspace1, Nothing,    200),
    ("delete task",                    "DELETE", "/api/tasks/{task}",                         "",                                                                         AnyUser,        Workspace1, Nothing,    200),
    ("force done",                     "PATCH",  "/api/tasks/{ai_task}/status?force=true",    r#"{"status":"done"}"#,                                                     Operator,       Workspace1, Nothing,    200),
    ("read settings",                  "GET",    "/api/settings",                             "",                                                                         AnyUser,        Global,     Nothing,    200),
    ("read one setting",               "GET",    "/api/settings/dispatch_enabled",            "",                                                                         AnyUser,        Global,     Nothing,    200),
    ("change setting",                 "PUT",    "/api/settings/dispatch_stale_minutes",      r#"{"value":"25"}"#,                                                        Operator,       Global,     Nothing,    200),
    ("toggle dispatch",                "PUT",    "/api/settings/dispatch_enabled",            r#"{"value":"true"}"#,                                                      OpsAdmin,       Global,     Nothing,    200),
    ("list users",                     "GET",    "/api/users",                                "",                                                                         GlobalAdmin,    Global,     Nothing,    200),
    ("create user",                    "POST",   "/api/users",                                r#"{"username":"new-{who}","password":"another-password-1"}"#,              GlobalAdmin,    Global,     Nothing,    201),
    ("edit user",                      "PATCH",  "/api/users/{user}",                         r#"{"password":"changed-password-1"}"#,                                     GlobalAdmin,    Global,     Nothing,    200),
    ("delete user",                    "DELETE", "/api/users/{user}",                         "",                                                                         GlobalAdmin,    Global,     Nothing,    200),
    ("list workspaces",                "GET",    "/api/workspaces",                           "",                                                                         AnyUser,        Listed,     Nothing,    200),
    ("create workspace",               "POST",   "/api/workspaces",                           r#"{"name":"ws-{who}"}"#,                                                   GlobalAdmin,    Global,     Nothing,    201),
    ("set workspace repository",       "PATCH",  "/api/workspaces/1",                         r#"{"repo_path":"/srv/repo-{who}"}"#,                                       WorkspaceAdmin, Workspace1, Nothing,    200),
    ("set workspace repository roots", "PATCH",  "/api/workspaces/1",                         r#"{"repo_roots":["/srv/roots-{who}"]}"#,                                   WorkspaceAdmin, Workspace1, Nothing,    200),
    ("set member",                     "PUT",    "/api/workspaces/1/members/{user}",          r#"{"role":"member"}"#,                                                     WorkspaceAdmin, Workspace1, Nothing,    200),
    ("remove member",                  "DELETE", "/api/workspaces/1/members/{member}",        "",                                                                         WorkspaceAdmin, Workspace1, Nothing,    200),
    ("list agents",                    "GET",    "/api/agents",                               "",                                                                         AnyUser,        Global,     Nothing,    200),
    ("get agent",                      "GET",    "/api/agents/1",                             "",                                                                         AnyUser,        Global,     Nothing,    200),
    ("create agent",                   "POST",   "/api/agents",                               r#"{"slug":"a-{who}"}"#,                                                    Operator,       Global,     Nothing,    201),
    ("edit agent",                     "PATCH",  "/api/agents/2",                             r#"{"model":"gpt-5"}"#,                                                     Operator,       Global,     Nothing,    200),
    ("delete agent",                   "DELETE", "/api/agents/{agent}",                       "",                                                                         Operator,       Global,     Nothing,    200),
    ("events",                         "GET",    "/api/events",                               "",                                                                         AnyUser,        Listed,     Nothing,    200),
    ("alerts",                         "GET",    "/api/alerts",                               "",                                                                         AnyUser,        Listed,     OpenAlert,  200),
    ("me",                             "GET",    "/api/auth/me",                              "",                                                                         AnyUser,        Global,     Nothing,    200),
    ("dispatch",                       "POST",   "/api/tasks/{ai_task}/dispatch",             "",                                                                         AnyUser,        Workspace1, Nothing,    200),
    ("retry",                          "POST",   "/api/tasks/{failed_task}/retry",            "",                                                                         AnyUser,        Workspace1, Nothing,    200),
    ("cancel",                         "POST",   "/api/tasks/{running}/cancel",               "",                                                                         AnyUser,        Workspace1, Nothing,    200),
    ("unarchive",                      "POST",   "/api/tasks/{archived}/unarchive",           "",                                                                         AnyUser,        Workspace1, Nothing,    200),
    ("approve",                        "POST",   "/api/tasks/{sensitive}/approve",            "",                                                                         GateApprover,   Workspace1, Nothing,    200),
    ("heartbeat",                      "POST",   "/api/dispatch/heartbeat",                   r#"{"worker_id":"m"}"#,                                                     ServiceOnly,    Global,     Nothing,    200),
    ("claim",                          "POST",   "/api/dispatch/next",                        r#"{"worker_id":"m"}"#,                                                     ServiceOnly,    Global,     Nothing,    200),
    ("claim (GET)",                    "GET",    "/api/dispatch/next?worker_id=m",            "",                                                                         ServiceOnly,    Global,     Nothing,    200),
    ("report",                         "POST",   "/api/dispatch/tasks/{run}/started",         r#"{"worker_id":"{reporter}","claim_token":"{token}"}"#,                    ServiceOnly,    Global,     Nothing,    200),
    ("cancel report",                  "POST",   "/api/dispatch/tasks/{cancelled}/cancelled", r#"{"worker_id":"{reporter}","claim_token":"{token}","exit_code":null,"signal":"TERM","elapsed_ms":5}"#, ServiceOnly,    Global,     Nothing,    200),
    ("health",                         "GET",    "/api/dispatch/health",                      "",                                                                         AnyUser,        Listed,     Nothing,    200),
    ("stale tasks",                    "GET",    "/api/dispatch/stale",                       "",                                                                         OpsAdmin,       Listed,     StaleClaim, 200),
    ("reconcile",                      "POST",   "/api/dispatch/reconcile-stale",             r#"{"minutes":20}"#,                                                        Operator,       Global,     Nothing,    200),
    ("watchdog",                       "POST",   "/api/watchdog/run",                         "",                                                                         OpsAdmin,       Listed,     StaleClaim, 200),
    ("forget worker",                  "DELETE", "/api/dispatch/workers/{worker}",            "",                                                                         Operator,       Global,     Nothing,    200),
    ("resolve alert",                  "POST",   "/api/alerts/{alert}/resolve",               "",                                                                         OpsAdmin,       Workspace1, Nothing,    200),
    ("delete alert",                   "DELETE", "/api/alerts/{alert}",                       "",                                                                         Operator,       Global,     Nothing,    200),
];

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

/// The status `who` must get from a route that allows `rule`, acts in
/// `scope` and answers `ok`.
fn expected(rule: Rule, scope: Scope, ok: u16, who: Who) -> u16 {
    let other = matches!(who, Who::OtherMember | Who::OtherAdmin);
    // A caller of another workspace has the rights of their role there,
    // and none in workspace 1.
    let role = match who {
        Who::OtherMember => Who::Member,
        Who::OtherAdmin => Who::WsAdmin,
        w => w,
    };
    match who {
        Who::Nobody | Who::BadToken => 401,
        _ if other && scope == Workspace1 => 403,
        _ if allowed(rule, role) => ok,
        _ => 403,
    }
}

struct Ctx {
    srv: Server,
    member: Client,
    ws_admin: Client,
    admin: Client,
    other_member: Client,
    other_admin: Client,
    /// For names that must not repeat.
    made: Cell<u32>,
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

    /// `prefix-N`, a name not made before.
    fn unique(&self, prefix: &str) -> String {
        self.made.set(self.made.get() + 1);
        format!("{prefix}-{}", self.made.get())
    }

    /// A workspace-1 task stuck in `dispatching` past the stale limit, on
    /// a worker of its own (whose next heartbeat would take it back).
    fn stale(&self) {
        self.claimed(&self.unique("stale"));
        self.srv.advance_clock(30 * 60);
    }

    fn task(&self, t: &ops_center::protocol::tasks::NewTask) -> i64 {
        self.srv.service().new_task(t)
    }

    /// A task claimed by worker `w` (as the service): (task id, token).
    fn claimed(&self, w: &str) -> (i64, String) {
        let id = queued_task(&self.srv, dispatchable("codex").priority(1000));
        let worker = Worker::new(&self.srv, w);
        worker.heartbeat(&["codex"], &[]);
        let (claimed, token) = worker.claim_one();
        assert_eq!(claimed, id);
        (id, token)
    }

    /// An open alert (from reconciling a claimed task); its id.
    fn alert(&self) -> i64 {
        let (id, _) = self.claimed(&self.unique("alerting"));
        let svc = self.srv.service();
        let all = ops_center::protocol::dispatch::ReconcileRequest {
            minutes: Some(0),
            task_ids: None,
        };
        svc.reconcile(&all).ok();
        let open = svc.alerts("?status=open&limit=1000").ok();
        open.alerts
            .iter()
            .find(|a| a.task_id == Some(id))
            .expect("an alert on the task")
            .id
    }

    fn new_user(&self) -> i64 {
        let user = ops_center::protocol::accounts::NewUser {
            username: self.unique("user"),
            password: "some-password-1234".into(),
            is_admin: None,
        };
        self.admin.create_user(&user).ok().id
    }

    /// `path` and `body` for `who`, with each `{…}` replaced by what it
    /// names, made fresh; and what is `given` made first.
    fn prepare(&self, path: &str, body: &str, given: Given, who: Who) -> (String, String) {
        match given {
            Nothing => {}
            OpenAlert => {
                self.alert();
            }
            StaleClaim => self.stale(),
        }
        let names = |key: &str| path.contains(key) || body.contains(key);
        let (mut path, mut body) = (path.to_string(), body.to_string());
        let mut set = |key: &str, value: String| {
            path = path.replace(key, &value);
            body = body.replace(key, &value);
        };
        let svc = self.srv.service();
        if names("{who}") {
            set("{who}", format!("{who:?}").to_lowercase());
        }
        if names("{task}") {
            set("{task}", self.task(&task("matrix")).to_string());
        }
        if names("{ai_task}") {
            set(
                "{ai_task}",
                self.task(&task("ai").interactive("codex")).to_string(),
            );
        }
        if names("{failed_task}") {
            let id = self.task(&task("r").interactive("codex"));
            svc.edit_task(id, &blocked_with("failed")).ok();
            set("{failed_task}", id.to_string());
        }
        if names("{running}") {
            set(
                "{running}",
                self.claimed(&self.unique("cancelled")).0.to_string(),
            );
        }
        if names("{archived}") {
            let id = self.task(&task("matrix"));
            svc.archive(id).ok();
            set("{archived}", id.to_string());
        }
        if names("{sensitive}") {
            let id = self.task(&task("s").interactive("codex").sensitive());
            set("{sensitive}", id.to_string());
        }
        if names("{user}") {
            set("{user}", self.new_user().to_string());
        }
        if names("{member}") {
            let id = self.new_user();
            self.admin.set_member(1, id, "member").ok();
            set("{member}", id.to_string());
        }
        if names("{agent}") {
            let agent = ops_center::protocol::admin::AgentChange {
                slug: Some(self.unique("del")),
                ..Default::default()
            };
            set("{agent}", svc.create_agent(&agent).ok().id.to_string());
        }
        // A worker's report: a real claim for the service, a made-up one
        // for the others (they are refused before it is looked at).
        if names("{reporter}") {
            let worker = self.unique("reporter");
            let (id, token) = if who == Who::Service {
                self.claimed(&worker)
            } else {
                (1, "bogus".to_string())
            };
            if names("{cancelled}") && who == Who::Service {
                svc.cancel(id).ok();
            }
            set("{run}", id.to_string());
            set("{cancelled}", id.to_string());
            set("{token}", token);
            set("{reporter}", worker);
        }
        if names("{worker}") {
            let name = self.unique("gone");
            Worker::new(&self.srv, &name).heartbeat(&[], &[]);
            set("{worker}", name);
        }
        if names("{alert}") {
            set("{alert}", self.alert().to_string());
        }
        (path, body)
    }
}

#[test]
fn role_matrix() {
    let srv = Server::start();
    let (_, member) = srv.user("member", Some((1, "member")));
    let (_, ws_admin) = srv.user("wsadmin", Some((1, "admin")));
    let admin = srv.admin();
    let ws2 = admin.create_workspace("second").ok().id;
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
        made: Cell::new(0),
    };
    let mut failures = Vec::new();
    for &(name, method, path, body, rule, scope, given, ok) in ROUTES {
        for who in ALL {
            let want = expected(rule, scope, ok, who);
            let (path, body) = ctx.prepare(path, body, given, who);
            let row = format!("{name} as {who:?} ({rule:?}): {method} {path}");
            let r = ctx.client(who).raw(method, &path, body.as_bytes());
            let other = matches!(who, Who::OtherMember | Who::OtherAdmin);
            if other && scope == Listed && r.status == ok {
                if let Some(shown) = leak(name, &r.json) {
                    failures.push(format!("{row} shows workspace 1: {shown}"));
                }
            }
            let ok = r.status == want
                && match want {
                    401 => r.error() == "unauthorized",
                    403 => r.error() == "forbidden",
                    _ => true,
                };
            if !ok {
                failures.push(format!("{row}: wanted {want}, got {} {}", r.status, r.text));
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
    let ws2 = srv.admin().create_workspace("second").ok().id;
    let (_, outsider) = srv.user("outsider", Some((ws2, "admin")));
    let (_, member) = srv.user("member", Some((1, "member")));

    let t1 = srv.service().new_task(&task("in ws1"));
    let t2 = srv.service().new_task(&task("in ws2").workspace(ws2));

    // Each sees only its own workspace's tasks and workspaces.
    let list = outsider.tasks("").ok();
    assert_eq!(list.total, 1, "{list:?}");
    assert_eq!(list.tasks[0].id, t2);
    assert_eq!(member.tasks("").ok().total, 1);
    assert_eq!(outsider.workspaces().ok().workspaces.len(), 1);
    assert_eq!(srv.admin().tasks("").ok().total, 2);

    // Events too: a member sees its workspace's, not the other's, nor the
    // global ones (users, settings).
    let events = member.events("?limit=1000").ok().events;
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e.workspace_id == Some(1)),
        "{events:?}"
    );

    // And cannot touch the other's.
    let retitle = TaskEdit {
        title: Some("x".into()),
        ..TaskEdit::default()
    };
    for r in [
        outsider.task(t1).res(),
        outsider.edit_task(t1, &retitle).res(),
        outsider.create_task(&task("x").workspace(1)).res(),
        outsider.tasks("?workspace_id=1").res(),
        member.comment(t2, "x", None).res(),
    ] {
        assert_eq!(r.status, 403, "{}", r.text);
    }
    // A workspace admin manages only its own workspace's members.
    let (uid, _) = srv.user("someone", None);
    assert_eq!(outsider.set_member(1, uid, "member").status, 403);
    outsider.set_member(ws2, uid, "member").ok();
}

#[test]
fn lists_and_summaries_show_only_the_callers_workspaces() {
    let srv = Server::start();
    crate::util::enable_dispatch(&srv);
    let admin = srv.admin();
    let ws2 = admin.create_workspace("second").ok().id;
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

    let stale_ids =
        |c: &Client| -> Vec<i64> { c.stale().ok().tasks.iter().map(|t| t.id).collect() };
    assert_eq!(stale_ids(&a1), vec![stale]);
    assert_eq!(stale_ids(&admin), vec![stale]);
    assert_eq!(stale_ids(&a2), Vec::<i64>::new());
    assert!(!a2.stale().text.contains("secret prompt"));

    let h = m1.health("").ok();
    assert_eq!(h.queue.dispatching, 1, "{h:?}");
    assert_eq!(h.queue.stale_dispatching, 1);
    assert!(h.workers.is_empty(), "worker details are for operators");
    assert_eq!(h.worker_summary.fresh, 1);
    let r = m2.health("");
    let h = r.ok();
    let nothing = Queue {
        next: 0,
        queued: 0,
        dispatching: 0,
        doing: 0,
        review: 0,
        waiting: 0,
        blocked: 0,
        stale_dispatching: 0,
        stale_running: 0,
        stale_queued: 0,
    };
    assert_eq!(h.queue, nothing, "{h:?}");
    assert!(h.workers.is_empty());
    assert!(!r.text.contains("w1"));
    assert_eq!(workers(&admin.health("").ok())[0].worker_id, "w1");

    // The watchdog turns the stale claim into an alert about the task and
    // the failures into one about the agent.
    srv.service().watchdog().ok();
    let alerts = |c: &Client| -> Vec<(i64, Option<i64>)> {
        let list = c.alerts("?limit=100").ok();
        list.alerts.iter().map(|a| (a.id, a.task_id)).collect()
    };
    let all = alerts(&admin);
    let on_task = all
        .iter()
        .find(|(_, t)| *t == Some(stale))
        .expect("stale alert")
        .0;
    let on_agent = all
        .iter()
        .find(|(_, t)| t.is_none())
        .expect("agent alert")
        .0;
    assert_eq!(alerts(&m1), vec![(on_task, Some(stale))]);
    assert_eq!(alerts(&a1), vec![(on_task, Some(stale))]);
    assert!(alerts(&m2).is_empty());
    assert!(alerts(&a2).is_empty());
    assert_eq!(m1.health("").ok().queue.waiting, 4);

    // Resolving is for the admins of the alert's workspace (a member of
    // workspace 1 who administers workspace 2 is not one).
    let (mixed_id, mixed) = srv.user("mixed", Some((1, "member")));
    admin.set_member(ws2, mixed_id, "admin").ok();
    assert_eq!(alerts(&mixed), vec![(on_task, Some(stale))]);
    for (c, id) in [(&a2, on_task), (&a1, on_agent), (&mixed, on_task)] {
        c.resolve_alert(id).refused(403, "forbidden");
    }
    a1.resolve_alert(on_task).ok();

    // A workspace admin's watchdog report holds only their tasks.
    let admin = srv.admin();
    for a in admin.alerts("?status=open&limit=1000").ok().alerts {
        admin.resolve_alert(a.id).ok();
    }
    let report = a2.watchdog().ok();
    assert!(report.alerts.is_empty(), "{report:?}");
    assert!(report.followup_task_ids.is_empty());

    // Events: none of workspace 1, none of no workspace.
    let ev = m2.events("?limit=1000").ok();
    assert!(
        ev.events.iter().all(|e| e.workspace_id == Some(ws2)),
        "{ev:?}"
    );
    assert_eq!(m2.events(&format!("?task_id={stale}")).ok().total, 0);
}
