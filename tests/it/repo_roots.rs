//! Repositories are a workspace's decision: its admins set `repo_roots`,
//! and a task's own `repo_path` must be the workspace's or lie under one
//! of them, whoever sets it; a task whose repository is no longer allowed
//! is not handed to a launcher. Paths and refs refuse the characters that
//! would show a person something else than what runs.

use serde_json::{json, Value};

use ops_center::protocol::accounts::{Workspace, WorkspaceChange};
use ops_center::protocol::dispatch::ClaimRepo;
use ops_center::protocol::errors::ErrorBody;
use ops_center::protocol::tasks::{TaskEdit, TaskView};

use crate::client::{task, TaskSpec};
use crate::util::{
    dispatchable, enable_dispatch, event_kinds, queued_task, set_repo_roots, Res, Server, Worker,
};

fn task_of(srv: &Server, id: i64) -> TaskView {
    srv.service().task(id).ok().task
}

/// The payloads of workspace 1's `workspace.repo_set` events, oldest first.
fn repo_set_events(srv: &Server) -> Vec<Value> {
    let list = srv
        .service()
        .events("?kind=workspace.repo_set&limit=100")
        .ok();
    let mut payloads: Vec<Value> = list.events.into_iter().map(|e| e.payload).collect();
    payloads.reverse();
    payloads
}

/// The workspace change that sets `repo_roots`.
fn roots(paths: &[&str]) -> WorkspaceChange {
    WorkspaceChange {
        repo_roots: Some(paths.iter().map(|p| p.to_string()).collect()),
        ..WorkspaceChange::default()
    }
}

/// The task edit that sets (`Some`) or clears (`None`) `repo_path`.
fn repo_edit(path: Option<&str>) -> TaskEdit {
    TaskEdit {
        repo_path: Some(path.map(str::to_string)),
        ..TaskEdit::default()
    }
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
    let m = member
        .create_task(&task("t").repo("/srv/repos/app"))
        .refused(400, "invalid_field")
        .message;
    assert!(
        m.contains("field `repo_path`")
            && m.contains("\"/srv/repos/app\" is not allowed in workspace 1")
            && m.contains("allows none")
            && m.contains("a workspace admin must set repo_roots first"),
        "{m}"
    );
    assert_eq!(srv.fingerprint(), before, "a refusal changed something");

    // A member may not set the roots; a workspace admin may.
    member
        .edit_workspace(1, &roots(&["/"]))
        .refused(403, "forbidden");
    assert_eq!(srv.fingerprint(), before, "a refusal changed something");
    let set = WorkspaceChange {
        repo_path: Some(Some("/srv/main".into())),
        ..roots(&["/srv/repos", "/opt/work/", "/srv/repos"])
    };
    let ws = ws_admin.edit_workspace(1, &set).ok();
    assert_eq!(ws.repo_roots, ["/opt/work/", "/srv/repos"]);
    assert_eq!(ws.repo_path.as_deref(), Some("/srv/main"));
    let listed = member.workspaces().ok();
    assert_eq!(
        listed.workspaces[0].repo_roots,
        ["/opt/work/", "/srv/repos"]
    );
    let events = repo_set_events(&srv);
    assert_eq!(
        events.last().unwrap()["repo_roots"],
        Value::from(vec!["/opt/work/", "/srv/repos"]),
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
            let t = c
                .create_task(&task("t").repo(path))
                .context(format!("{who} {path}"))
                .ok();
            assert_eq!(t.repo_path.as_deref(), Some(path));
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
            let m = c
                .create_task(&task("t").repo(path))
                .context(format!("{who} {path}"))
                .refused(400, "invalid_field")
                .message;
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
    let moved = TaskEdit {
        title: Some("moved".into()),
        ..repo_edit(Some("/srv/reposX/app"))
    };
    member.edit_task(id, &moved).refused(400, "invalid_field");
    assert_eq!(srv.fingerprint(), before, "a refused edit changed nothing");
    let t = member
        .edit_task(id, &repo_edit(Some("/srv/repos/other")))
        .ok();
    assert_eq!(t.repo_path.as_deref(), Some("/srv/repos/other"));
    // Clearing it (the workspace's repository then) is always allowed.
    let t = member.edit_task(id, &repo_edit(None)).ok();
    assert_eq!(t.effective_repo_path.as_deref(), Some("/srv/main"));

    // Roots are the workspace's own: another workspace allows nothing yet.
    let two = admin.create_workspace("two").ok();
    assert!(two.repo_roots.is_empty());
    let e = admin
        .create_task(&task("t").workspace(two.id).repo("/srv/repos/app"))
        .refused(400, "invalid_field");
    assert!(e.message.contains("workspace 2"), "{e:?}");

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
        let e: ErrorBody = r.body();
        assert!(
            e.message.contains(&format!("`{field}`")),
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
    assert!(r.body::<Workspace>().repo_roots.is_empty(), "{}", r.text);
    let r = member.create_task(&task("t").repo("/srv/repos/app"));
    assert_eq!(r.status, 400, "{}", r.text);
    member
        .create_task(&task("t").repo("/srv/main"))
        .context("the workspace's own repository stays allowed")
        .ok();
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
        let task_ref = |r: &str| TaskEdit {
            base_ref: Some(Some(r.to_string())),
            ..TaskEdit::default()
        };
        let ws_path = WorkspaceChange {
            repo_path: Some(Some(path.clone())),
            ..WorkspaceChange::default()
        };
        let ws_ref = WorkspaceChange {
            base_ref: Some(Some(reference.clone())),
            ..WorkspaceChange::default()
        };
        type Attempt<'a> = (&'a str, &'a str, Box<dyn Fn() -> Res + 'a>);
        let attempts: Vec<Attempt> = vec![
            (
                "new task",
                "repo_path",
                Box::new(|| admin.create_task(&task("t").repo(&path)).res()),
            ),
            (
                "new task",
                "base_ref",
                Box::new(|| admin.create_task(&task("t").base_ref(&reference)).res()),
            ),
            (
                "task edit",
                "repo_path",
                Box::new(|| admin.edit_task(id, &repo_edit(Some(&path))).res()),
            ),
            (
                "task edit",
                "base_ref",
                Box::new(|| admin.edit_task(id, &task_ref(&reference)).res()),
            ),
            (
                "workspace edit",
                "repo_path",
                Box::new(|| admin.edit_workspace(1, &ws_path).res()),
            ),
            (
                "workspace edit",
                "base_ref",
                Box::new(|| admin.edit_workspace(1, &ws_ref).res()),
            ),
            (
                "workspace edit",
                "repo_roots[1]",
                Box::new(|| admin.edit_workspace(1, &roots(&["/srv", &path])).res()),
            ),
            // Alone, the character is not read as a blank that clears.
            (
                "task edit",
                "base_ref",
                Box::new(|| admin.edit_task(id, &task_ref(&c.to_string())).res()),
            ),
        ];
        for (what, field, attempt) in attempts {
            let before = srv.fingerprint();
            let r = attempt();
            assert_eq!(
                (r.status, r.error()),
                (400, "invalid_field"),
                "{what} {field} {code}: {}",
                r.text
            );
            let m = r.body::<ErrorBody>().message;
            assert!(
                m.contains(&format!("field `{field}`")) && m.contains(code),
                "{what} {field} {code}: {m}"
            );
            assert_eq!(
                srv.fingerprint(),
                before,
                "{what} {field} {code}: a refusal changed something"
            );
        }
    }
    // Visible non-ASCII is fine.
    admin
        .create_task(&task("t").repo("/srv/código").base_ref("versión"))
        .ok();
}

#[test]
fn a_task_whose_repository_is_no_longer_allowed_is_blocked_at_its_claim() {
    let srv = Server::start();
    enable_dispatch(&srv);
    set_repo_roots(&srv, 1, &["/srv/repos"]);
    let admin = srv.admin();
    let svc = srv.service();
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
    admin.approve(s).ok();
    // T: sensitive, approved, in a repository that stays allowed.
    let t = admin.new_task(
        &task("t")
            .interactive("codex")
            .sensitive()
            .repo("/srv/repos/keep"),
    );
    admin.approve(t).ok();

    // The roots narrow: A's and S's repository is no longer allowed.
    set_repo_roots(&srv, 1, &["/srv/other", "/srv/repos/keep"]);
    assert_eq!(
        task_of(&srv, s).gate_approved_at,
        None,
        "S's approval is withdrawn"
    );
    assert!(task_of(&srv, t).gate_approved_at.is_some(), "T's stays");
    let last = repo_set_events(&srv).pop().unwrap();
    assert_eq!(last["approvals_withdrawn"], Value::from(vec![s]), "{last}");

    // The claim passes over A, blocking it with the reason, and hands out B.
    let r = w.claim();
    assert_eq!(r.task.as_ref().map(|t| t.id), Some(b), "{r:?}");
    assert_eq!(r.repo, None, "{r:?}");
    let ta = task_of(&srv, a);
    assert_eq!(ta.status, "waiting", "{ta:?}");
    assert!(ta.blocked, "{ta:?}");
    let reason = ta.blocked_reason.unwrap();
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
    let e = svc.retry(a).refused(409, "repo_not_allowed");
    assert!(e.message.contains("/srv/repos/app"), "{e:?}");
    let ta = task_of(&srv, a);
    assert_eq!((ta.status.as_str(), ta.blocked), ("waiting", true));

    // Allowed again: retried, claimed, with its repository.
    set_repo_roots(&srv, 1, &["/srv/repos"]);
    svc.retry(a).ok();
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
    assert_eq!(t.effective_repo_path, None, "{t:?}");
    assert_eq!(t.effective_base_ref, None, "no repository, no ref: {t:?}");

    let set = WorkspaceChange {
        repo_path: Some(Some("/srv/ws".into())),
        base_ref: Some(Some("develop".into())),
        ..roots(&["/srv/own"])
    };
    admin.edit_workspace(1, &set).ok();
    let ws = admin.new_task(&task("ws"));
    let own = admin.new_task(&task("own").repo("/srv/own/x"));
    let effective = |t: &TaskView| (t.effective_repo_path.clone(), t.effective_base_ref.clone());
    for (id, path, base) in [
        (none, "/srv/ws", Some("v1")),
        (ws, "/srv/ws", Some("develop")),
        (own, "/srv/own/x", None),
    ] {
        let want = (Some(path.to_string()), base.map(str::to_string));
        let t = task_of(&srv, id);
        assert_eq!(effective(&t), want, "{t:?}");
        // The list shows it too.
        let list = admin.tasks("?limit=10").ok();
        let listed = list.tasks.iter().find(|x| x.id == id).unwrap();
        assert_eq!(effective(listed), want, "{listed:?}");
    }
    // The task's own fields stay what it names.
    let t = task_of(&srv, ws);
    assert_eq!((t.repo_path, t.base_ref), (None, None));
}
