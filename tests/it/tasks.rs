//! The task API: create, read, list, edit, comment, archive, delete, the
//! done guard, and an event for every change.

use serde_json::json;

use crate::util::Server;

#[test]
fn task_crud_and_events() {
    let srv = Server::start();
    let svc = srv.service();
    let r = svc.post(
        "/api/tasks",
        &json!({"title": "Write docs", "description": "the prompt", "execution": "interactive",
                "agent": "opencode", "model": "qwen3.6", "priority": 5, "sensitive": true}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let t = &r.json;
    let id = t["id"].as_i64().unwrap();
    assert_eq!(t["status"], "next");
    assert_eq!(t["workspace_id"], 1);
    assert_eq!(t["agent"], "opencode");
    assert_eq!(t["model"], "qwen3.6");
    assert_eq!(t["priority"], 5);
    assert_eq!(t["sensitive"], true);
    assert_eq!(t["blocked"], false);
    assert!(t["created_at"].as_str().unwrap().ends_with('Z'));

    let r = svc.patch(
        &format!("/api/tasks/{id}"),
        &json!({"title": "Write more docs", "priority": 7, "model": null}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["title"], "Write more docs");
    assert_eq!(r.json["model"], serde_json::Value::Null);

    let r = svc.post(
        &format!("/api/tasks/{id}/comments"),
        &json!({"body": "looks good"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["author"], "service");
    assert_eq!(r.json["kind"], "note");
    let r = svc.post(
        &format!("/api/tasks/{id}/comments"),
        &json!({"body": "needs a key", "kind": "blocker"}),
    );
    assert_eq!(r.status, 201);

    let got = svc.get(&format!("/api/tasks/{id}"));
    assert_eq!(got.json["comments"].as_array().unwrap().len(), 2);
    assert_eq!(got.json["comments"][1]["kind"], "blocker");

    let r = svc.patch(
        &format!("/api/tasks/{id}"),
        &json!({"blocked": true, "blocked_reason": "waiting for key"}),
    );
    assert_eq!(r.json["blocked"], true);
    let r = svc.patch(&format!("/api/tasks/{id}"), &json!({"blocked": false}));
    assert_eq!(
        r.json["blocked_reason"],
        serde_json::Value::Null,
        "unblocking clears the reason"
    );

    let r = svc.post(&format!("/api/tasks/{id}/archive"), &json!({}));
    assert_eq!(r.status, 200);
    assert!(r.json["archived_at"].is_string());
    assert_eq!(r.json["status"], "next", "archived tasks keep their status");
    assert_eq!(
        svc.get("/api/tasks").json["total"],
        0,
        "lists hide archived tasks"
    );
    assert_eq!(svc.get("/api/tasks?archived=true").json["total"], 1);
    let r = svc.patch(&format!("/api/tasks/{id}"), &json!({"title": "x"}));
    assert_eq!((r.status, r.error()), (409, "task_archived"));

    let r = svc.delete(&format!("/api/tasks/{id}"));
    assert_eq!(r.status, 200);
    assert_eq!(svc.get(&format!("/api/tasks/{id}")).status, 404);

    // Every change left its event, and the history outlives the task.
    let events = svc.get(&format!("/api/events?task_id={id}&limit=100"));
    let kinds: Vec<&str> = events.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
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
        let id = svc.new_task(&json!({"title": format!("t{i}"), "agent": agent}));
        if i < 3 {
            svc.patch(
                &format!("/api/tasks/{id}/status"),
                &json!({"status": "doing"}),
            );
        }
        if i == 6 {
            svc.patch(&format!("/api/tasks/{id}"), &json!({"blocked": true}));
        }
    }
    let all = svc.get("/api/tasks");
    assert_eq!(all.json["total"], 7);
    assert_eq!(all.json["tasks"][0]["title"], "t6", "newest first");
    assert_eq!(svc.get("/api/tasks?status=doing").json["total"], 3);
    assert_eq!(svc.get("/api/tasks?agent=codex").json["total"], 4);
    assert_eq!(
        svc.get("/api/tasks?agent=codex&status=doing").json["total"],
        2
    );
    assert_eq!(svc.get("/api/tasks?blocked=true").json["total"], 1);
    assert_eq!(svc.get("/api/tasks?workspace_id=1").json["total"], 7);
    let page = svc.get("/api/tasks?limit=3&offset=3");
    assert_eq!(page.json["total"], 7);
    let titles: Vec<&str> = page.json["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["t3", "t2", "t1"]);
    let agents = svc.get("/api/agents");
    let slugs: Vec<&str> = agents.json["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["slug"].as_str().unwrap())
        .collect();
    assert_eq!(
        slugs,
        ["opencode", "claudecode", "codex", "hermes"],
        "first start seeds the four agents"
    );
    assert_eq!(agents.json["total"], 4);
}

#[test]
fn done_guard_refuses_ai_tasks_without_evidence() {
    let srv = Server::start();
    let svc = srv.service();
    let (_, member) = srv.user("member", Some((1, "member")));
    let ai = svc.new_task(&json!({"title": "ai", "execution": "interactive", "agent": "codex"}));
    let agent_only = svc.new_task(&json!({"title": "agent", "agent": "hermes"}));
    let manual = svc.new_task(&json!({"title": "manual"}));

    let before = srv.fingerprint();
    for (path, body) in [
        (format!("/api/tasks/{ai}/status"), json!({"status": "done"})),
        (format!("/api/tasks/{ai}"), json!({"status": "done"})),
        (
            format!("/api/tasks/{agent_only}/status"),
            json!({"status": "done"}),
        ),
    ] {
        let r = member.patch(&path, &body);
        assert_eq!(
            (r.status, r.error()),
            (409, "done_guard"),
            "{path}: {}",
            r.text
        );
        assert!(r.json["message"].as_str().unwrap().contains("evidence"));
    }
    // A comment from a person is not evidence.
    let r = member.post(
        &format!("/api/tasks/{ai}/comments"),
        &json!({"body": "I checked it, trust me"}),
    );
    assert_eq!(r.status, 201);
    let r = member.patch(
        &format!("/api/tasks/{ai}/status"),
        &json!({"status": "done"}),
    );
    assert_eq!(r.error(), "done_guard");
    // force=true is for admin/service only.
    let r = member.patch(
        &format!("/api/tasks/{ai}/status?force=true"),
        &json!({"status": "done"}),
    );
    assert_eq!(r.status, 403, "{}", r.text);
    // Nothing but the comment (and its event) changed.
    let conn = srv.sql();
    let status: String = conn
        .query_row("SELECT status FROM tasks WHERE id = ?1", [ai], |r| r.get(0))
        .unwrap();
    assert_eq!(status, "next");
    drop(before);

    // A manual task without an agent is not guarded.
    let r = member.patch(
        &format!("/api/tasks/{manual}/status"),
        &json!({"status": "done"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);

    // Forced by an admin and by the service: allowed, with its event.
    let r = srv.admin().patch(
        &format!("/api/tasks/{ai}/status?force=true"),
        &json!({"status": "done"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "done");
    let r = svc.patch(
        &format!("/api/tasks/{agent_only}?force=true"),
        &json!({"status": "done"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let forced = svc.get("/api/events?kind=task.done_forced");
    assert_eq!(forced.json["total"], 2, "{}", forced.text);
    let actors: Vec<&str> = forced.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert!(
        actors.contains(&"service") && actors.contains(&"user:root"),
        "{actors:?}"
    );
}

#[test]
fn done_guard_accepts_dispatch_output_evidence() {
    let srv = Server::start();
    let svc = srv.service();
    let id = svc.new_task(&json!({"title": "ai", "execution": "interactive", "agent": "codex"}));
    // Evidence left by a worker's run: only `dispatch_output` (the
    // `finished` report's output), no streamed log comment.
    crate::util::enable_dispatch(&srv);
    let w = crate::util::Worker::new(&srv, "w1");
    w.heartbeat(&["codex"], &[]);
    let r = svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let (claimed, token) = w.claim_one();
    assert_eq!(claimed, id);
    w.report(id, &token, "started", json!({}));
    let r = w.report(
        id,
        &token,
        "finished",
        json!({"exit_code": 0, "output": "built the thing"}),
    );
    assert_eq!(r.json["dispatch_output"], "built the thing", "{}", r.text);
    let r = svc.patch(
        &format!("/api/tasks/{id}/status"),
        &json!({"status": "done"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        svc.get("/api/events?kind=task.done_forced").json["total"],
        0
    );
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

    let unblocked = |id: i64| -> Vec<serde_json::Value> {
        let r = svc.get(&format!("/api/events?task_id={id}&kind=task.unblocked"));
        r.json["events"].as_array().unwrap().clone()
    };
    let blocked_of = |id: i64| -> (String, bool, Option<String>) {
        let t = svc.get(&format!("/api/tasks/{id}")).json;
        (
            t["status"].as_str().unwrap().to_string(),
            t["blocked"].as_bool().unwrap(),
            t["blocked_reason"].as_str().map(str::to_string),
        )
    };

    // A failed dispatch without any output: waiting + blocked, no evidence.
    let bare = queued_task(&srv, "codex", json!({}));
    let (id, token) = w.claim_one();
    assert_eq!(id, bare);
    let r = w.report(
        id,
        &token,
        "failed",
        json!({"signature": "cli_crashed", "reason": "the CLI crashed", "evidence": "core dumped"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (status, blocked, reason) = blocked_of(bare);
    assert_eq!((status.as_str(), blocked), ("waiting", true));
    let reason = reason.expect("a reason");

    // The done guard refuses it, blocked or not, and changes nothing.
    let before = srv.fingerprint();
    let r = member.patch(
        &format!("/api/tasks/{bare}/status"),
        &json!({"status": "done"}),
    );
    assert_eq!((r.status, r.error()), (409, "done_guard"), "{}", r.text);
    assert_eq!(srv.fingerprint(), before);

    // Forced done by an admin: done, no longer blocked, both events.
    let r = srv.admin().patch(
        &format!("/api/tasks/{bare}/status?force=true"),
        &json!({"status": "done"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["status"], "done");
    assert_eq!(r.json["blocked"], false, "{}", r.text);
    assert!(r.json["blocked_reason"].is_null(), "{}", r.text);
    let ev = unblocked(bare);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["actor"], "user:root");
    assert_eq!(ev[0]["payload"]["reason"], reason.as_str());
    assert_eq!(ev[0]["payload"]["because"], "done");
    let kinds = crate::util::event_kinds(&srv, bare);
    assert!(kinds.contains(&"task.done_forced".to_string()), "{kinds:?}");
    let updated = svc.get(&format!(
        "/api/events?task_id={bare}&kind=task.updated&limit=1"
    ));
    let changed = &updated.json["events"][0]["payload"]["changed"];
    assert_eq!(changed, &json!(["status", "blocked"]), "{}", updated.text);

    // A failed dispatch whose agent had printed a line: the output is
    // evidence, so a member may move it to done without force; the block
    // goes with it.
    let printed = queued_task(&srv, "codex", json!({}));
    let (id, token) = w.claim_one();
    assert_eq!(id, printed);
    assert_eq!(
        w.report(id, &token, "started", json!({"pid": 42})).status,
        200
    );
    let r = w.report(
        id,
        &token,
        "output",
        json!({"chunk": "preparing workspace\n"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = w.report(
        id,
        &token,
        "failed",
        json!({"signature": "exit_1", "reason": "exit code 1", "evidence": "preparing workspace"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(blocked_of(printed).1);
    let r = member.patch(
        &format!("/api/tasks/{printed}/status"),
        &json!({"status": "done"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json["status"].as_str(), r.json["blocked"].as_bool()),
        (Some("done"), Some(false))
    );
    assert_eq!(unblocked(printed).len(), 1);
    assert_eq!(unblocked(printed)[0]["actor"], "user:member");

    // A task blocked by hand, moved to done through the general edit.
    let manual = member.new_task(&json!({"title": "manual"}));
    let r = member.patch(
        &format!("/api/tasks/{manual}"),
        &json!({"blocked": true, "blocked_reason": "waiting on a key"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = member.patch(&format!("/api/tasks/{manual}"), &json!({"status": "done"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["blocked"], false);
    assert_eq!(
        unblocked(manual)[0]["payload"]["reason"],
        "waiting on a key"
    );

    // A done task cannot be blocked, nor a task moved to done and blocked
    // in one edit; neither changes anything.
    let next = member.new_task(&json!({"title": "other"}));
    let before = srv.fingerprint();
    for (id, body) in [
        (manual, json!({"blocked": true, "blocked_reason": "again"})),
        (manual, json!({"blocked": true})),
        (next, json!({"status": "done", "blocked": true})),
    ] {
        let r = member.patch(&format!("/api/tasks/{id}"), &body);
        assert_eq!(
            (r.status, r.error()),
            (409, "task_done"),
            "{body}: {}",
            r.text
        );
        assert!(r.json["message"].as_str().unwrap().contains("done"));
    }
    assert_eq!(srv.fingerprint(), before);
    // Moved back out of done, it may be blocked again.
    let r = member.patch(
        &format!("/api/tasks/{manual}"),
        &json!({"status": "next", "blocked": true, "blocked_reason": "again"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["blocked"], true);

    // A done sensitive task is not parked at the Human Gate by a dispatch.
    let gated = svc.new_task(
        &json!({"title": "g", "execution": "interactive", "agent": "codex", "sensitive": true}),
    );
    let r = svc.patch(
        &format!("/api/tasks/{gated}/status?force=true"),
        &json!({"status": "done"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = svc.post(&format!("/api/tasks/{gated}/dispatch"), &json!({}));
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
    let mk =
        |title: &str, priority: i64| svc.new_task(&json!({"title": title, "priority": priority}));
    let deploy = mk("Deploy the API", 5);
    let redeploy = mk("redeploy staging", 0);
    let percent = mk("all% done_check", 5);
    let other = mk("Write docs", -3);
    let numbered = mk(&format!("follow-up of {deploy}"), 0);

    let ids = |path: &str| -> (Vec<i64>, i64) {
        let r = svc.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let ids = r.json["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect();
        (ids, r.json["total"].as_i64().unwrap())
    };
    assert_eq!(ids("/api/tasks?q=DEPLOY"), (vec![redeploy, deploy], 2));
    assert_eq!(ids("/api/tasks?q=deploy&limit=1"), (vec![redeploy], 2));
    // A number: that task, and titles containing the number.
    assert_eq!(
        ids(&format!("/api/tasks?q={deploy}")),
        (vec![numbered, deploy], 2)
    );
    // `#N` (sent as %23N): that task only.
    assert_eq!(ids(&format!("/api/tasks?q=%23{deploy}")), (vec![deploy], 1));
    assert_eq!(ids("/api/tasks?q=%23999999"), (vec![], 0));
    // LIKE's wildcards are plain characters.
    assert_eq!(ids("/api/tasks?q=%25"), (vec![percent], 1));
    assert_eq!(ids("/api/tasks?q=e_c"), (vec![percent], 1));
    assert_eq!(ids("/api/tasks?q=o%25d"), (vec![], 0));
    // Spaces around the text do not count; only spaces is no search.
    assert_eq!(ids("/api/tasks?q=%20docs%20"), (vec![other], 1));
    assert_eq!(ids("/api/tasks?q=%20%20").1, 5);
    // Priority, alone and with the others.
    assert_eq!(ids("/api/tasks?priority=5"), (vec![percent, deploy], 2));
    assert_eq!(ids("/api/tasks?priority=-3"), (vec![other], 1));
    assert_eq!(ids("/api/tasks?priority=5&q=api"), (vec![deploy], 1));
    assert_eq!(ids("/api/tasks?priority=5&status=done"), (vec![], 0));
    // Archived tasks are found only among the archived.
    assert_eq!(
        svc.post(&format!("/api/tasks/{other}/archive"), &json!({}))
            .status,
        200
    );
    assert_eq!(ids("/api/tasks?q=docs"), (vec![], 0));
    assert_eq!(ids("/api/tasks?q=docs&archived=true"), (vec![other], 1));

    for (path, param) in [
        ("/api/tasks?priority=high", "`priority`"),
        ("/api/tasks?priority=1001", "`priority`"),
        ("/api/tasks?priority=-1001", "`priority`"),
    ] {
        let r = svc.get(path);
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert_eq!(r.error(), "invalid_query", "{path}");
        assert!(
            r.json["message"].as_str().unwrap().contains(param),
            "{path}: {}",
            r.text
        );
    }
    let long = "x".repeat(501);
    let r = svc.get(&format!("/api/tasks?q={long}"));
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.error(), "invalid_query");
    assert!(r.json["message"].as_str().unwrap().contains("`q`"));

    // A member of workspace 2 finds its own task, never workspace 1's.
    let r = srv.admin().post("/api/workspaces", &json!({"name": "two"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let ws2 = r.json["id"].as_i64().unwrap();
    let mine = svc.new_task(&json!({"title": "Deploy two", "workspace_id": ws2}));
    let (_, member) = srv.user("searcher", Some((ws2, "member")));
    let found = member.get(&format!("/api/tasks?q={deploy}"));
    assert_eq!(found.status, 200, "{}", found.text);
    assert_eq!(found.json["total"], 0, "{}", found.text);
    let found = member.get(&format!("/api/tasks?q=%23{deploy}"));
    assert_eq!(found.json["total"], 0, "{}", found.text);
    let found = member.get("/api/tasks?q=deploy");
    assert_eq!(found.json["total"], 1, "{}", found.text);
    assert_eq!(found.json["tasks"][0]["id"], mine);
}

/// Unarchiving brings a task back in the status it kept, with its event;
/// a task that is not archived is answered unchanged.
#[test]
fn unarchive_restores_a_task_and_is_idempotent() {
    let srv = Server::start();
    let svc = srv.service();
    let id = svc.new_task(&json!({"title": "old work"}));
    let r = svc.patch(
        &format!("/api/tasks/{id}/status"),
        &json!({"status": "review"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = svc.post(&format!("/api/tasks/{id}/unarchive"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["archived_at"], serde_json::Value::Null);
    assert!(!crate::util::event_kinds(&srv, id).contains(&"task.unarchived".to_string()));

    assert_eq!(
        svc.post(&format!("/api/tasks/{id}/archive"), &json!({}))
            .status,
        200
    );
    assert_eq!(svc.get("/api/tasks").json["total"], 0);
    let r = svc.post(&format!("/api/tasks/{id}/unarchive"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["archived_at"], serde_json::Value::Null);
    assert_eq!(r.json["status"], "review");
    assert_eq!(svc.get("/api/tasks").json["total"], 1);
    assert_eq!(svc.get("/api/tasks?archived=true").json["total"], 0);
    let kinds = crate::util::event_kinds(&srv, id);
    assert_eq!(kinds.last().map(String::as_str), Some("task.unarchived"));
    // Editable again.
    let r = svc.patch(&format!("/api/tasks/{id}"), &json!({"title": "new work"}));
    assert_eq!(r.status, 200, "{}", r.text);

    let r = svc.post(&format!("/api/tasks/{id}/unarchive"), &json!({"x": 1}));
    assert_eq!(r.status, 400, "{}", r.text);
    let r = svc.post("/api/tasks/999999/unarchive", &json!({}));
    assert_eq!(r.status, 404, "{}", r.text);
}

/// The kinds of the events recorded for task `id`, oldest first.
fn event_kinds(svc: &crate::util::Client, id: i64) -> Vec<String> {
    let r = svc.get(&format!("/api/events?task_id={id}&limit=100"));
    assert_eq!(r.status, 200, "{}", r.text);
    let mut kinds: Vec<(i64, String)> = r.json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["task_id"], id, "{e}");
            (
                e["id"].as_i64().unwrap(),
                e["kind"].as_str().unwrap().to_string(),
            )
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
        .map(|i| svc.new_task(&json!({"title": format!("t{i}")})))
        .collect();
    let newest = ids[2];
    assert_eq!(svc.delete(&format!("/api/tasks/{newest}")).status, 200);
    assert_eq!(event_kinds(&svc, newest), ["task.created", "task.deleted"]);

    // The next task does not take the deleted one's id, and its history is
    // its own: the deleted task's events stay under the old id alone.
    let next = svc.new_task(&json!({"title": "after the delete"}));
    assert!(next > newest, "{next} reuses or precedes {newest}");
    assert_eq!(event_kinds(&svc, next), ["task.created"]);
    assert_eq!(event_kinds(&svc, newest), ["task.created", "task.deleted"]);
    let r = svc.get(&format!("/api/tasks/{next}"));
    assert_eq!(r.json["title"], "after the delete");

    // The mark is in the file: a restart does not hand the newest deleted
    // id out again either.
    assert_eq!(svc.delete(&format!("/api/tasks/{next}")).status, 200);
    srv.restart();
    let svc = srv.service();
    let again = svc.new_task(&json!({"title": "after the restart"}));
    assert!(again > next, "{again} reuses or precedes {next}");
    assert_eq!(event_kinds(&svc, again), ["task.created"]);
    assert_eq!(event_kinds(&svc, next), ["task.created", "task.deleted"]);
    // The older tasks are untouched.
    for &id in &ids[..2] {
        assert_eq!(svc.get(&format!("/api/tasks/{id}")).status, 200);
    }
}
