//! The task API: create, read, list, edit, comment, archive, delete, the
//! done guard, and an event for every change.

use serde_json::{json, Value};

use ops_center::protocol::errors::ErrorBody;
use ops_center::protocol::tasks::TaskEdit;

use crate::client::{blocked_with, failed, finished, output, started, task, TaskSpec};
use crate::util::{Client, Server};

/// The edit that moves a task to `status` (through `PATCH /api/tasks/:id`).
fn to(status: &str) -> TaskEdit {
    TaskEdit {
        status: Some(status.into()),
        ..TaskEdit::default()
    }
}

#[test]
fn task_crud_and_events() {
    let srv = Server::start();
    let svc = srv.service();
    let new = task("Write docs")
        .description("the prompt")
        .interactive("opencode")
        .model("qwen3.6")
        .priority(5)
        .sensitive();
    let t = svc.create_task(&new).ok();
    let id = t.id;
    assert_eq!(t.status, "next");
    assert_eq!(t.workspace_id, 1);
    assert_eq!(t.agent.as_deref(), Some("opencode"));
    assert_eq!(t.model.as_deref(), Some("qwen3.6"));
    assert_eq!(t.priority, 5);
    assert!(t.sensitive);
    assert!(!t.blocked);
    assert!(t.created_at.ends_with('Z'));

    let edit = TaskEdit {
        title: Some("Write more docs".into()),
        priority: Some(7),
        model: Some(None),
        ..TaskEdit::default()
    };
    let t = svc.edit_task(id, &edit).ok();
    assert_eq!(t.title, "Write more docs");
    assert_eq!(t.model, None);

    let c = svc.comment(id, "looks good", None).ok();
    assert_eq!(c.author, "service");
    assert_eq!(c.kind, "note");
    svc.comment(id, "needs a key", Some("blocker")).ok();

    let got = svc.task(id).ok();
    assert_eq!(got.comments.len(), 2);
    assert_eq!(got.comments[1].kind, "blocker");

    assert!(
        svc.edit_task(id, &blocked_with("waiting for key"))
            .ok()
            .blocked
    );
    let unblock = TaskEdit {
        blocked: Some(false),
        ..TaskEdit::default()
    };
    assert_eq!(
        svc.edit_task(id, &unblock).ok().blocked_reason,
        None,
        "unblocking clears the reason"
    );

    let t = svc.archive(id).ok();
    assert!(t.archived_at.is_some());
    assert_eq!(t.status, "next", "archived tasks keep their status");
    assert_eq!(svc.tasks("").ok().total, 0, "lists hide archived tasks");
    assert_eq!(svc.tasks("?archived=true").ok().total, 1);
    let retitle = TaskEdit {
        title: Some("x".into()),
        ..TaskEdit::default()
    };
    svc.edit_task(id, &retitle).refused(409, "task_archived");

    svc.delete_task(id).ok();
    assert_eq!(svc.task(id).status, 404);

    // Every change left its event, and the history outlives the task.
    let events = svc.events(&format!("?task_id={id}&limit=100")).ok();
    let kinds: Vec<&str> = events.events.iter().map(|e| e.kind.as_str()).collect();
    for k in [
        "task.created",
        "task.updated",
        "task.commented",
        "task.archived",
        "task.deleted",
    ] {
        assert!(kinds.contains(&k), "missing event {k} in {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "task.commented").count(), 2);
    assert_eq!(kinds.iter().filter(|k| **k == "task.updated").count(), 3);
}

#[test]
fn lists_filter_and_paginate() {
    let srv = Server::start();
    let svc = srv.service();
    for i in 0..7 {
        let agent = if i % 2 == 0 { "codex" } else { "hermes" };
        let id = svc.new_task(&task(&format!("t{i}")).agent(agent));
        if i < 3 {
            svc.move_task(id, "doing").ok();
        }
        if i == 6 {
            let block = TaskEdit {
                blocked: Some(true),
                ..TaskEdit::default()
            };
            svc.edit_task(id, &block).ok();
        }
    }
    let total = |query: &str| svc.tasks(query).ok().total;
    let all = svc.tasks("").ok();
    assert_eq!(all.total, 7);
    assert_eq!(all.tasks[0].title, "t6", "newest first");
    assert_eq!(total("?status=doing"), 3);
    assert_eq!(total("?agent=codex"), 4);
    assert_eq!(total("?agent=codex&status=doing"), 2);
    assert_eq!(total("?blocked=true"), 1);
    assert_eq!(total("?workspace_id=1"), 7);
    let page = svc.tasks("?limit=3&offset=3").ok();
    assert_eq!(page.total, 7);
    let titles: Vec<&str> = page.tasks.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles, ["t3", "t2", "t1"]);
    let agents = svc.agents().ok();
    let slugs: Vec<&str> = agents.agents.iter().map(|a| a.slug.as_str()).collect();
    assert_eq!(
        slugs,
        ["opencode", "claudecode", "codex", "hermes"],
        "first start seeds the four agents"
    );
    assert_eq!(agents.total, 4);
}

#[test]
fn done_guard_refuses_ai_tasks_without_evidence() {
    let srv = Server::start();
    let svc = srv.service();
    let (_, member) = srv.user("member", Some((1, "member")));
    let ai = svc.new_task(&task("ai").interactive("codex"));
    let agent_only = svc.new_task(&task("agent").agent("hermes"));
    let manual = svc.new_task(&task("manual"));

    let before = srv.fingerprint();
    for (what, r) in [
        ("the status of ai", member.move_task(ai, "done")),
        ("an edit of ai", member.edit_task(ai, &to("done"))),
        (
            "the status of agent_only",
            member.move_task(agent_only, "done"),
        ),
    ] {
        assert_eq!(
            (r.status, r.error()),
            (409, "done_guard"),
            "{what}: {}",
            r.text
        );
        let e: ErrorBody = r.body();
        assert!(e.message.contains("evidence"));
    }
    // A comment from a person is not evidence.
    member.comment(ai, "I checked it, trust me", None).ok();
    member.move_task(ai, "done").refused(409, "done_guard");
    // force=true is for admin/service only.
    let r = member.force_task(ai, "done");
    assert_eq!(r.status, 403, "{}", r.text);
    // Nothing but the comment (and its event) changed.
    let conn = srv.sql();
    let status: String = conn
        .query_row("SELECT status FROM tasks WHERE id = ?1", [ai], |r| r.get(0))
        .unwrap();
    assert_eq!(status, "next");
    drop(before);

    // A manual task without an agent is not guarded.
    member.move_task(manual, "done").ok();

    // Forced by an admin and by the service: allowed, with its event.
    assert_eq!(srv.admin().force_task(ai, "done").ok().status, "done");
    svc.force_edit(agent_only, &to("done")).ok();
    let forced = svc.events("?kind=task.done_forced").ok();
    assert_eq!(forced.total, 2, "{forced:?}");
    let actors: Vec<&str> = forced.events.iter().map(|e| e.actor.as_str()).collect();
    assert!(
        actors.contains(&"service") && actors.contains(&"user:root"),
        "{actors:?}"
    );
}

#[test]
fn done_guard_accepts_dispatch_output_evidence() {
    let srv = Server::start();
    let svc = srv.service();
    let id = svc.new_task(&task("ai").interactive("codex"));
    // Evidence left by a worker's run: only `dispatch_output` (the
    // `finished` report's output), no streamed log comment.
    crate::util::enable_dispatch(&srv);
    let w = crate::util::Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    svc.dispatch(id).ok();
    let (claimed, token) = w.claim_one();
    assert_eq!(claimed, id);
    w.report(id, &token, started(None)).ok();
    let t = w
        .report(id, &token, finished(Some(0), "built the thing"))
        .ok();
    assert_eq!(t.dispatch_output.as_deref(), Some("built the thing"));
    svc.move_task(id, "done").ok();
    assert_eq!(svc.events("?kind=task.done_forced").ok().total, 0);
}

/// A task is never done and blocked at once: reaching `done` lifts the
/// block with a `task.unblocked` event naming the reason it had, and a done
/// task cannot be blocked. The done guard still applies to blocked tasks.
#[test]
fn done_lifts_the_block() {
    use crate::util::{enable_dispatch, queued_task, Worker};
    let srv = Server::start();
    let svc = srv.service();
    let (_, member) = srv.user("member", Some((1, "member")));
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);

    let unblocked = |id: i64| {
        svc.events(&format!("?task_id={id}&kind=task.unblocked"))
            .ok()
            .events
    };
    let blocked_of = |id: i64| -> (String, bool, Option<String>) {
        let t = svc.task(id).ok().task;
        (t.status, t.blocked, t.blocked_reason)
    };

    // A failed dispatch without any output: waiting + blocked, no evidence.
    let bare = queued_task(&srv, "codex");
    let (id, token) = w.claim_one();
    assert_eq!(id, bare);
    let crashed = failed("cli_crashed", "the CLI crashed", "core dumped");
    w.report(id, &token, crashed).ok();
    let (status, blocked, reason) = blocked_of(bare);
    assert_eq!((status.as_str(), blocked), ("waiting", true));
    let reason = reason.expect("a reason");

    // The done guard refuses it, blocked or not, and changes nothing.
    let before = srv.fingerprint();
    member.move_task(bare, "done").refused(409, "done_guard");
    assert_eq!(srv.fingerprint(), before);

    // Forced done by an admin: done, no longer blocked, both events.
    let t = srv.admin().force_task(bare, "done").ok();
    assert_eq!(t.status, "done");
    assert!(!t.blocked, "{t:?}");
    assert_eq!(t.blocked_reason, None, "{t:?}");
    let ev = unblocked(bare);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].actor, "user:root");
    assert_eq!(ev[0].payload["reason"], reason.as_str());
    assert_eq!(ev[0].payload["because"], "done");
    let kinds = crate::util::event_kinds(&srv, bare);
    assert!(kinds.contains(&"task.done_forced".to_string()), "{kinds:?}");
    let updated = svc
        .events(&format!("?task_id={bare}&kind=task.updated&limit=1"))
        .ok();
    let changed = &updated.events[0].payload["changed"];
    assert_eq!(
        changed,
        &Value::from(vec!["status", "blocked"]),
        "{updated:?}"
    );

    // A failed dispatch whose agent had printed a line: the output is
    // evidence, so a member may move it to done without force; the block
    // goes with it.
    let printed = queued_task(&srv, "codex");
    let (id, token) = w.claim_one();
    assert_eq!(id, printed);
    w.report(id, &token, started(Some(42))).ok();
    w.report(id, &token, output("preparing workspace\n")).ok();
    let exit_1 = failed("exit_1", "exit code 1", "preparing workspace");
    w.report(id, &token, exit_1).ok();
    assert!(blocked_of(printed).1);
    let t = member.move_task(printed, "done").ok();
    assert_eq!((t.status.as_str(), t.blocked), ("done", false));
    assert_eq!(unblocked(printed).len(), 1);
    assert_eq!(unblocked(printed)[0].actor, "user:member");

    // A task blocked by hand, moved to done through the general edit.
    let manual = member.new_task(&task("manual"));
    member
        .edit_task(manual, &blocked_with("waiting on a key"))
        .ok();
    assert!(!member.edit_task(manual, &to("done")).ok().blocked);
    assert_eq!(unblocked(manual)[0].payload["reason"], "waiting on a key");

    // A done task cannot be blocked, nor a task moved to done and blocked
    // in one edit; neither changes anything.
    let next = member.new_task(&task("other"));
    let before = srv.fingerprint();
    let block = TaskEdit {
        blocked: Some(true),
        ..TaskEdit::default()
    };
    let done_and_blocked = TaskEdit {
        blocked: Some(true),
        ..to("done")
    };
    for (id, edit) in [
        (manual, blocked_with("again")),
        (manual, block),
        (next, done_and_blocked),
    ] {
        let r = member.edit_task(id, &edit);
        assert_eq!(
            (r.status, r.error()),
            (409, "task_done"),
            "{edit:?}: {}",
            r.text
        );
        let e: ErrorBody = r.body();
        assert!(e.message.contains("done"));
    }
    assert_eq!(srv.fingerprint(), before);
    // Moved back out of done, it may be blocked again.
    let reopen = TaskEdit {
        status: Some("next".into()),
        ..blocked_with("again")
    };
    assert!(member.edit_task(manual, &reopen).ok().blocked);

    // A done sensitive task is not parked at the Human Gate by a dispatch.
    let gated = svc.new_task(&task("g").interactive("codex").sensitive());
    svc.force_task(gated, "done").ok();
    let r = svc.dispatch(gated);
    assert_eq!(r.status, 409, "{}", r.text);
    let (status, blocked, _) = blocked_of(gated);
    assert_eq!((status.as_str(), blocked), ("done", false));
}

/// `?q=` and `?priority=` on `GET /api/tasks`: a number names a task, text
/// matches titles case-insensitively (wildcards literal), the total counts
/// the filtered rows, bad values are refused naming the parameter, and a
/// member finds nothing of another workspace, not even by number.
#[test]
fn search_by_number_and_title_and_filter_by_priority() {
    let srv = Server::start();
    let svc = srv.service();
    let mk = |title: &str, priority: i64| svc.new_task(&task(title).priority(priority));
    let deploy = mk("Deploy the API", 5);
    let redeploy = mk("redeploy staging", 0);
    let percent = mk("all% done_check", 5);
    let other = mk("Write docs", -3);
    let numbered = mk(&format!("follow-up of {deploy}"), 0);

    let ids = |query: &str| -> (Vec<i64>, i64) {
        let list = svc.tasks(query).ok();
        (list.tasks.iter().map(|t| t.id).collect(), list.total)
    };
    assert_eq!(ids("?q=DEPLOY"), (vec![redeploy, deploy], 2));
    assert_eq!(ids("?q=deploy&limit=1"), (vec![redeploy], 2));
    // A number: that task, and titles containing the number.
    assert_eq!(ids(&format!("?q={deploy}")), (vec![numbered, deploy], 2));
    // `#N` (sent as %23N): that task only.
    assert_eq!(ids(&format!("?q=%23{deploy}")), (vec![deploy], 1));
    assert_eq!(ids("?q=%23999999"), (vec![], 0));
    // LIKE's wildcards are plain characters.
    assert_eq!(ids("?q=%25"), (vec![percent], 1));
    assert_eq!(ids("?q=e_c"), (vec![percent], 1));
    assert_eq!(ids("?q=o%25d"), (vec![], 0));
    // Spaces around the text do not count; only spaces is no search.
    assert_eq!(ids("?q=%20docs%20"), (vec![other], 1));
    assert_eq!(ids("?q=%20%20").1, 5);
    // Priority, alone and with the others.
    assert_eq!(ids("?priority=5"), (vec![percent, deploy], 2));
    assert_eq!(ids("?priority=-3"), (vec![other], 1));
    assert_eq!(ids("?priority=5&q=api"), (vec![deploy], 1));
    assert_eq!(ids("?priority=5&status=done"), (vec![], 0));
    // Archived tasks are found only among the archived.
    svc.archive(other).ok();
    assert_eq!(ids("?q=docs"), (vec![], 0));
    assert_eq!(ids("?q=docs&archived=true"), (vec![other], 1));

    for (query, param) in [
        ("?priority=high", "`priority`"),
        ("?priority=1001", "`priority`"),
        ("?priority=-1001", "`priority`"),
    ] {
        let e = svc.tasks(query).refused(400, "invalid_query");
        assert!(e.message.contains(param), "{query}: {e:?}");
    }
    let long = "x".repeat(501);
    let e = svc
        .tasks(&format!("?q={long}"))
        .refused(400, "invalid_query");
    assert!(e.message.contains("`q`"));

    // A member of workspace 2 finds its own task, never workspace 1's.
    let ws2 = srv.admin().create_workspace("two").ok().id;
    let mine = svc.new_task(&task("Deploy two").workspace(ws2));
    let (_, member) = srv.user("searcher", Some((ws2, "member")));
    let found = member.tasks(&format!("?q={deploy}")).ok();
    assert_eq!(found.total, 0, "{found:?}");
    let found = member.tasks(&format!("?q=%23{deploy}")).ok();
    assert_eq!(found.total, 0, "{found:?}");
    let found = member.tasks("?q=deploy").ok();
    assert_eq!(found.total, 1, "{found:?}");
    assert_eq!(found.tasks[0].id, mine);
}

/// Unarchiving brings a task back in the status it kept, with its event;
/// a task that is not archived is answered unchanged.
#[test]
fn unarchive_restores_a_task_and_is_idempotent() {
    let srv = Server::start();
    let svc = srv.service();
    let id = svc.new_task(&task("old work"));
    svc.move_task(id, "review").ok();
    assert_eq!(svc.unarchive(id).ok().archived_at, None);
    assert!(!crate::util::event_kinds(&srv, id).contains(&"task.unarchived".to_string()));

    svc.archive(id).ok();
    assert_eq!(svc.tasks("").ok().total, 0);
    let t = svc.unarchive(id).ok();
    assert_eq!(t.archived_at, None);
    assert_eq!(t.status, "review");
    assert_eq!(svc.tasks("").ok().total, 1);
    assert_eq!(svc.tasks("?archived=true").ok().total, 0);
    let kinds = crate::util::event_kinds(&srv, id);
    assert_eq!(kinds.last().map(String::as_str), Some("task.unarchived"));
    // Editable again.
    let retitle = TaskEdit {
        title: Some("new work".into()),
        ..TaskEdit::default()
    };
    svc.edit_task(id, &retitle).ok();

    let r = svc.post(&format!("/api/tasks/{id}/unarchive"), &json!({"x": 1}));
    assert_eq!(r.status, 400, "{}", r.text);
    let r = svc.unarchive(999999);
    assert_eq!(r.status, 404, "{}", r.text);
}

/// The kinds of the events recorded for task `id`, oldest first.
fn event_kinds(svc: &Client, id: i64) -> Vec<String> {
    let list = svc.events(&format!("?task_id={id}&limit=100")).ok();
    let mut kinds: Vec<(i64, String)> = list
        .events
        .into_iter()
        .map(|e| {
            assert_eq!(e.task_id, Some(id), "{e:?}");
            (e.id, e.kind)
        })
        .collect();
    kinds.sort();
    kinds.into_iter().map(|(_, k)| k).collect()
}

#[test]
fn a_deleted_tasks_id_is_never_given_again() {
    let mut srv = Server::start();
    let svc = srv.service();
    let ids: Vec<i64> = (0..3)
        .map(|i| svc.new_task(&task(&format!("t{i}"))))
        .collect();
    let newest = ids[2];
    svc.delete_task(newest).ok();
    assert_eq!(event_kinds(&svc, newest), ["task.created", "task.deleted"]);

    // The next task does not take the deleted one's id, and its history is
    // its own: the deleted task's events stay under the old id alone.
    let next = svc.new_task(&task("after the delete"));
    assert!(next > newest, "{next} reuses or precedes {newest}");
    assert_eq!(event_kinds(&svc, next), ["task.created"]);
    assert_eq!(event_kinds(&svc, newest), ["task.created", "task.deleted"]);
    assert_eq!(svc.task(next).ok().task.title, "after the delete");

    // The mark is in the file: a restart does not hand the newest deleted
    // id out again either.
    svc.delete_task(next).ok();
    srv.restart();
    let svc = srv.service();
    let again = svc.new_task(&task("after the restart"));
    assert!(again > next, "{again} reuses or precedes {next}");
    assert_eq!(event_kinds(&svc, again), ["task.created"]);
    assert_eq!(event_kinds(&svc, next), ["task.created", "task.deleted"]);
    // The older tasks are untouched.
    for &id in &ids[..2] {
        svc.task(id).ok();
    }
}
