//! Repositories are a workspace's decision: its admins set `repo_roots`,
//! and a task's own `repo_path` must be the workspace's or lie under one
//! of them, whoever sets it; a task whose repository is no longer allowed
//! is not handed to a launcher. Paths and refs refuse the characters that
//! would show a person something else than what runs.

use serde_json::{json, Value};

use ops_center::protocol::dispatch::ClaimRepo;

use crate::client::{task, TaskSpec};
use crate::util::{
    dispatchable, enable_dispatch, event_kinds, queued_task, set_repo_roots, Server, Worker,
};

fn task_of(srv: &Server, id: i64) -> Value {
    let r = srv.service().get(&format!("/api/tasks/{id}"));
    assert_eq!(r.status, 200, "{}", r.text);
    r.json
}

/// The payloads of workspace 1's `workspace.repo_set` events, oldest first.
fn repo_set_events(srv: &Server) -> Vec<Value> {
    let r = srv
        .service()
        .get("/api/events?kind=workspace.repo_set&limit=100");
    assert_eq!(r.status, 200, "{}", r.text);
    let mut list: Vec<Value> = r.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"].clone())
        .collect();
    list.reverse();
    list
}

#[test]
fn a_tasks_repository_must_be_one_its_workspace_allows_whoever_sets_it() {
    let srv = Server::start();
    let (_, member) = srv.user("member", Some((1, "member")));
    let (_, ws_admin) = srv.user("wsadmin", Some((1, "admin")));
    let admin = srv.admin();
    let svc = srv.service();

    // No roots yet: no task may name a repository of its own.
    let before = srv.fingerprint();
    let r = member.post(
        "/api/tasks",
        &json!({"title": "t", "repo_path": "/srv/repos/app"}),
    );
    assert_eq!((r.status, r.error()), (400, "invalid_field"), "{}", r.text);
    let m = r.json["message"].as_str().unwrap();
    assert!(
        m.contains("field `repo_path`")
            && m.contains("\"/srv/repos/app\" is not allowed in workspace 1")
            && m.contains("allows none")
            && m.contains("a workspace admin must set repo_roots first"),
        "{m}"
    );
    assert_eq!(srv.fingerprint(), before, "a refusal changed something");

    // A member may not set the roots; a workspace admin may.
    let r = member.patch("/api/workspaces/1", &json!({"repo_roots": ["/"]}));
    assert_eq!((r.status, r.error()), (403, "forbidden"), "{}", r.text);
    assert_eq!(srv.fingerprint(), before, "a refusal changed something");
    let r = ws_admin.patch(
        "/api/workspaces/1",
        &json!({"repo_path": "/srv/main", "repo_roots": ["/srv/repos", "/opt/work/", "/srv/repos"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["repo_roots"], json!(["/opt/work/", "/srv/repos"]));
    assert_eq!(r.json["repo_path"], "/srv/main");
    let listed = member.get("/api/workspaces").json;
    assert_eq!(
        listed["workspaces"][0]["repo_roots"],
        json!(["/opt/work/", "/srv/repos"])
    );
    let events = repo_set_events(&srv);
    assert_eq!(
        events.last().unwrap()["repo_roots"],
        json!(["/opt/work/", "/srv/repos"]),
        "{events:?}"
    );

    // Inside a root, or the workspace's own repository: taken, whoever asks.
    for (who, c) in [
        ("member", &member),
        ("workspace admin", &ws_admin),
        ("admin", &admin),
        ("service", &svc),
    ] {
        for path in [
            "/srv/repos/app",
            "/srv/repos/a/b",
            "/opt/work/x",
            "/srv/main",
        ] {
            let r = c.post("/api/tasks", &json!({"title": "t", "repo_path": path}));
            assert_eq!(r.status, 201, "{who} {path}: {}", r.text);
            assert_eq!(r.json["repo_path"], path);
        }
        // Outside: refused, naming what is allowed.
        for path in [
            "/srv/reposX/app",
            "/srv/main/sub",
            "/srv",
            "/etc",
            "/opt/workshop",
        ] {
            let before = srv.fingerprint();
            let r = c.post("/api/tasks", &json!({"title": "t", "repo_path": path}));
            assert_eq!(
                (r.status, r.error()),
                (400, "invalid_field"),
                "{who} {path}: {}",
                r.text
            );
            let m = r.json["message"].as_str().unwrap();
            assert!(
                m.contains(&format!("{path:?} is not allowed in workspace 1"))
                    && m.contains("the workspace's repo_path (/srv/main)")
                    && m.contains("repo_roots: /opt/work/, /srv/repos"),
                "{who} {path}: {m}"
            );
            assert_eq!(
                srv.fingerprint(),
                before,
                "{who} {path}: a refusal changed something"
            );
        }
    }

    // An edit is held to the same rule.
    let id = member.new_task(&task("edited").repo("/srv/repos/app"));
    let before = srv.fingerprint();
    let r = member.patch(
        &format!("/api/tasks/{id}"),
        &json!({"repo_path": "/srv/reposX/app", "title": "moved"}),
    );
    assert_eq!((r.status, r.error()), (400, "invalid_field"), "{}", r.text);
    assert_eq!(srv.fingerprint(), before, "a refused edit changed nothing");
    let r = member.patch(
        &format!("/api/tasks/{id}"),
        &json!({"repo_path": "/srv/repos/other"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["repo_path"], "/srv/repos/other");
    // Clearing it (the workspace's repository then) is always allowed.
    let r = member.patch(&format!("/api/tasks/{id}"), &json!({"repo_path": null}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["effective_repo_path"], "/srv/main");

    // Roots are the workspace's own: another workspace allows nothing yet.
    let r = admin.post("/api/workspaces", &json!({"name": "two"}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["repo_roots"], json!([]));
    let r = admin.post(
        "/api/tasks",
        &json!({"title": "t", "workspace_id": 2, "repo_path": "/srv/repos/app"}),
    );
    assert_eq!((r.status, r.error()), (400, "invalid_field"), "{}", r.text);
    assert!(
        r.json["message"].as_str().unwrap().contains("workspace 2"),
        "{}",
        r.text
    );

    // Roots are validated as paths; `[]` (or null) allows none again.
    for (body, field) in [
        (json!({"repo_roots": ["relative"]}), "repo_roots[0]"),
        (
            json!({"repo_roots": ["/ok", "/srv/../etc"]}),
            "repo_roots[1]",
        ),
        (json!({"repo_roots": "/srv"}), "repo_roots"),
        (json!({"repo_roots": [5]}), "repo_roots"),
        (json!({"repo_roots": vec!["/r"; 65]}), "repo_roots"),
    ] {
        let before = srv.fingerprint();
        let r = ws_admin.patch("/api/workspaces/1", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(
            r.json["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{field}`")),
            "{body}: {}",
            r.text
        );
        assert_eq!(
            srv.fingerprint(),
            before,
            "{body}: a refusal changed something"
        );
    }
    let r = ws_admin.patch("/api/workspaces/1", &json!({"repo_roots": null}));
    assert_eq!(r.json["repo_roots"], json!([]), "{}", r.text);
    let r = member.post(
        "/api/tasks",
        &json!({"title": "t", "repo_path": "/srv/repos/app"}),
    );
    assert_eq!(r.status, 400, "{}", r.text);
    let r = member.post(
        "/api/tasks",
        &json!({"title": "t", "repo_path": "/srv/main"}),
    );
    assert_eq!(
        r.status, 201,
        "the workspace's own repository stays allowed: {}",
        r.text
    );
}

#[test]
fn hidden_characters_are_refused_in_repositories_and_refs_naming_the_code_point() {
    let srv = Server::start();
    set_repo_roots(&srv, 1, &["/srv"]);
    let admin = srv.admin();
    let id = admin.new_task(&task("t"));
    for (c, code) in [
        ('\u{202E}', "U+202E"),
        ('\u{2028}', "U+2028"),
        ('\u{2029}', "U+2029"),
        ('\u{200B}', "U+200B"),
        ('\u{FEFF}', "U+FEFF"),
        ('\u{00AD}', "U+00AD"),
    ] {
        let path = format!("/srv/app{c}gpj.exe");
        let reference = format!("main{c}");
        let attempts = [
            (
                "POST",
                "/api/tasks".to_string(),
                json!({"title": "t", "repo_path": path}),
                "repo_path",
            ),
            (
                "POST",
                "/api/tasks".to_string(),
                json!({"title": "t", "base_ref": reference}),
                "base_ref",
            ),
            (
                "PATCH",
                format!("/api/tasks/{id}"),
                json!({"repo_path": path}),
                "repo_path",
            ),
            (
                "PATCH",
                format!("/api/tasks/{id}"),
                json!({"base_ref": reference}),
                "base_ref",
            ),
            (
                "PATCH",
                "/api/workspaces/1".to_string(),
                json!({"repo_path": path}),
                "repo_path",
            ),
            (
                "PATCH",
                "/api/workspaces/1".to_string(),
                json!({"base_ref": reference}),
                "base_ref",
            ),
            (
                "PATCH",
                "/api/workspaces/1".to_string(),
                json!({"repo_roots": ["/srv", path]}),
                "repo_roots[1]",
            ),
            // Alone, the character is not read as a blank that clears.
            (
                "PATCH",
                format!("/api/tasks/{id}"),
                json!({"base_ref": c.to_string()}),
                "base_ref",
            ),
        ];
        for (method, url, body, field) in attempts {
            let before = srv.fingerprint();
            let r = admin.raw(method, &url, body.to_string().as_bytes());
            assert_eq!(
                (r.status, r.error()),
                (400, "invalid_field"),
                "{method} {url} {code}: {}",
                r.text
            );
            let m = r.json["message"].as_str().unwrap();
            assert!(
                m.contains(&format!("field `{field}`")) && m.contains(code),
                "{method} {url} {field} {code}: {m}"
            );
            assert_eq!(
                srv.fingerprint(),
                before,
                "{method} {url} {code}: a refusal changed something"
            );
        }
    }
    // Visible non-ASCII is fine.
    let r = admin.post(
        "/api/tasks",
        &json!({"title": "t", "repo_path": "/srv/código", "base_ref": "versión"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn a_task_whose_repository_is_no_longer_allowed_is_blocked_at_its_claim() {
    let srv = Server::start();
    enable_dispatch(&srv);
    set_repo_roots(&srv, 1, &["/srv/repos"]);
    let admin = srv.admin();
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    // A: its own repository, first in the queue; B: none, after it.
    let a = queued_task(
        &srv,
        dispatchable("codex").repo("/srv/repos/app").priority(5),
    );
    let b = queued_task(&srv, dispatchable("codex").priority(1));
    // S: sensitive, approved for its repository.
    let s = admin.new_task(
        &task("s")
            .interactive("codex")
            .sensitive()
            .repo("/srv/repos/app"),
    );
    let r = admin.post(&format!("/api/tasks/{s}/approve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    // T: sensitive, approved, in a repository that stays allowed.
    let t = admin.new_task(
        &task("t")
            .interactive("codex")
            .sensitive()
            .repo("/srv/repos/keep"),
    );
    let r = admin.post(&format!("/api/tasks/{t}/approve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);

    // The roots narrow: A's and S's repository is no longer allowed.
    set_repo_roots(&srv, 1, &["/srv/other", "/srv/repos/keep"]);
    assert!(
        task_of(&srv, s)["gate_approved_at"].is_null(),
        "S's approval is withdrawn"
    );
    assert!(!task_of(&srv, t)["gate_approved_at"].is_null(), "T's stays");
    let last = repo_set_events(&srv).pop().unwrap();
    assert_eq!(last["approvals_withdrawn"], json!([s]), "{last}");

    // The claim passes over A, blocking it with the reason, and hands out B.
    let r = w.claim();
    assert_eq!(r.task.as_ref().map(|t| t.id), Some(b), "{r:?}");
    assert_eq!(r.repo, None, "{r:?}");
    let ta = task_of(&srv, a);
    assert_eq!(ta["status"], "waiting", "{ta:#}");
    assert_eq!(ta["blocked"], true, "{ta:#}");
    let reason = ta["blocked_reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "repository not allowed: \"/srv/repos/app\" is not allowed in workspace 1"
        ) && reason.contains("repo_roots: /srv/other, /srv/repos/keep"),
        "{reason}"
    );
    let kinds = event_kinds(&srv, a);
    assert!(
        kinds.contains(&"dispatch.repo_refused".to_string()),
        "{kinds:?}"
    );
    assert!(
        !kinds.contains(&"dispatch.claimed".to_string()),
        "{kinds:?}"
    );
    assert_eq!(w.no_claim(), "no_task", "A is out of the queue");

    // Retrying it is refused while the repository is not allowed, and
    // leaves it blocked.
    let r = srv
        .service()
        .post(&format!("/api/tasks/{a}/retry"), &json!({}));
    assert_eq!(
        (r.status, r.error()),
        (409, "repo_not_allowed"),
        "{}",
        r.text
    );
    assert!(
        r.json["message"]
            .as_str()
            .unwrap()
            .contains("/srv/repos/app"),
        "{}",
        r.text
    );
    let ta = task_of(&srv, a);
    assert_eq!(
        (ta["status"].clone(), ta["blocked"].clone()),
        (json!("waiting"), json!(true))
    );

    // Allowed again: retried, claimed, with its repository.
    set_repo_roots(&srv, 1, &["/srv/repos"]);
    let r = srv
        .service()
        .post(&format!("/api/tasks/{a}/retry"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = w.claim();
    assert_eq!(r.task.as_ref().map(|t| t.id), Some(a), "{r:?}");
    let repo = ClaimRepo {
        path: "/srv/repos/app".into(),
        base_ref: None,
    };
    assert_eq!(r.repo, Some(repo));
}

#[test]
fn the_task_view_carries_the_repository_its_agent_works_in() {
    let srv = Server::start();
    let admin = srv.admin();
    let none = admin.new_task(&task("none").base_ref("v1"));
    let t = task_of(&srv, none);
    assert_eq!(t["effective_repo_path"], Value::Null, "{t:#}");
    assert_eq!(
        t["effective_base_ref"],
        Value::Null,
        "no repository, no ref: {t:#}"
    );

    let r = admin.patch(
        "/api/workspaces/1",
        &json!({"repo_path": "/srv/ws", "base_ref": "develop", "repo_roots": ["/srv/own"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let ws = admin.new_task(&task("ws"));
    let own = admin.new_task(&task("own").repo("/srv/own/x"));
    for (id, path, base) in [
        (none, json!("/srv/ws"), json!("v1")),
        (ws, json!("/srv/ws"), json!("develop")),
        (own, json!("/srv/own/x"), Value::Null),
    ] {
        let t = task_of(&srv, id);
        assert_eq!(
            (&t["effective_repo_path"], &t["effective_base_ref"]),
            (&path, &base),
            "{t:#}"
        );
        // The list shows it too.
        let list = admin.get("/api/tasks?limit=10").json;
        let listed = list["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id)
            .unwrap()
            .clone();
        assert_eq!(listed["effective_repo_path"], path, "{listed:#}");
        assert_eq!(listed["effective_base_ref"], base, "{listed:#}");
    }
    // The task's own fields stay what it names.
    let t = task_of(&srv, ws);
    assert_eq!(
        (&t["repo_path"], &t["base_ref"]),
        (&Value::Null, &Value::Null)
    );
}
