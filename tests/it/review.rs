//! Reviewing a task's change file by file: the files and hunks of each
//! run's reported patch, comments on their lines kept with their hunk, and
//! the comments sent to the agent as a follow-up that resumes its session.

use ops_center::protocol::dispatch::{Finished, Output, RunChange};
use ops_center::protocol::review::NewReviewComment;
use ops_center::protocol::runs::RunEvent;

use crate::client::{finished, started};
use crate::util::{
    dispatchable, enable_dispatch, event_kinds, queued_task, Client, Server, Worker,
};

/// A change with an added, a modified, a deleted, a renamed and a binary
/// file, as `git diff --binary base..head` prints it.
const PATCH: &str = r#"diff --git a/src/new.rs b/src/new.rs
new file mode 100644
index 0000000..1111111
--- /dev/null
+++ b/src/new.rs
@@ -0,0 +1,3 @@
+pub fn added() -> u32 {
+    42
+}
diff --git a/src/lib.rs b/src/lib.rs
index 2222222..3333333 100644
--- a/src/lib.rs
+++ b/src/lib.rs
@@ -1,5 +1,6 @@
 mod a;
 mod b;
-mod old;
+mod new;
+mod extra;
 pub fn f() {}
 pub fn g() {}
@@ -20,2 +21,2 @@ pub fn h() {
 let x = 1;
-let y = 2;
+let y = 3;
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index 4444444..0000000
--- a/gone.txt
+++ /dev/null
@@ -1,2 +0,0 @@
-first
-second
diff --git a/docs/old.md b/docs/new.md
similarity index 90%
rename from docs/old.md
rename to docs/new.md
index 5555555..6666666 100644
--- a/docs/old.md
+++ b/docs/new.md
@@ -1,3 +1,3 @@
 # Title
-Old text.
+New text.
 End.
diff --git a/logo.png b/logo.png
new file mode 100644
index 0000000000000000000000000000000000000000..a1b06a7ca1882a2bdc645e0db361376a6386e412
GIT binary patch
literal 7
OcmWIWb7x>=Vg>*OcmV7G

literal 0
HcmV?d00001

"#;

/// What a follow-up run changed on top: one more line.
const PATCH_2: &str = "diff --git a/src/new.rs b/src/new.rs
new file mode 100644
index 0000000..8888888
--- /dev/null
+++ b/src/new.rs
@@ -0,0 +1,4 @@
+/// The answer.
+pub fn added() -> u32 {
+    42
+}
";

fn change(id: i64, head: &str, patch: &str) -> RunChange {
    RunChange {
        branch: format!("ops/task-{id}"),
        head: Some(head.into()),
        base: Some("aaaa".into()),
        start: Some("aaaa".into()),
        diff_stat: " 5 files changed\n".into(),
        patch: patch.into(),
        ..RunChange::default()
    }
}

/// An output chunk naming the CLI's session.
fn session_output(id: &str) -> Output {
    Output {
        chunk: "{}\n".into(),
        offset: Some(0),
        events: vec![RunEvent::Session { id: id.into() }],
    }
}

/// A task whose first run (in session `sess-1`) finished with [`PATCH`]
/// and is in review.
fn in_review(srv: &Server, w: &Worker) -> i64 {
    let id = queued_task(srv, dispatchable("codex"));
    w.heartbeat(&["codex"], &[]);
    let (claimed, token) = w.claim_one();
    assert_eq!(claimed, id);
    w.report(id, &token, started(Some(1))).ok();
    w.report(id, &token, session_output("sess-1")).ok();
    let done = Finished {
        change: Some(change(id, "bbbb", PATCH)),
        ..finished(Some(0), "done")
    };
    assert_eq!(w.report(id, &token, done).ok().status, "review");
    id
}

fn on(file: &str, line: i64, body: &str) -> NewReviewComment {
    NewReviewComment {
        file: file.into(),
        line,
        body: body.into(),
        ..NewReviewComment::default()
    }
}

#[test]
fn a_runs_change_is_served_as_files_and_numbered_hunks() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    let id = in_review(&srv, &w);
    let (_, member) = srv.user("ana", Some((1, "member")));

    let r = member.review(id, "").ok();
    assert_eq!(r.run, Some(1));
    assert_eq!(r.branch, Some(format!("ops/task-{id}")));
    assert_eq!(
        (r.base.as_deref(), r.head.as_deref()),
        (Some("aaaa"), Some("bbbb"))
    );
    assert!(!r.truncated && r.comments.is_empty());
    let files: Vec<_> = r
        .files
        .iter()
        .map(|f| {
            (
                f.index,
                f.old_path.as_deref(),
                f.new_path.as_deref(),
                f.status.as_str(),
                f.additions,
                f.deletions,
                f.binary,
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            (0, None, Some("src/new.rs"), "added", 3, 0, false),
            (
                1,
                Some("src/lib.rs"),
                Some("src/lib.rs"),
                "modified",
                3,
                2,
                false
            ),
            (2, Some("gone.txt"), None, "deleted", 0, 2, false),
            (
                3,
                Some("docs/old.md"),
                Some("docs/new.md"),
                "renamed",
                1,
                1,
                false
            ),
            (4, None, Some("logo.png"), "added", 0, 0, true),
        ]
    );
    assert_eq!(r.files[3].similarity, Some(90));
    assert!(r.files.iter().all(|f| !f.incomplete));

    let f = member.review_file(id, 1, "").ok();
    assert_eq!(
        (f.run, f.file.index, f.file.status.as_str()),
        (1, 1, "modified")
    );
    assert_eq!(f.hunks.len(), 2);
    let h = &f.hunks[0];
    assert_eq!(h.header, "@@ -1,5 +1,6 @@");
    assert_eq!(
        (h.old_start, h.old_lines, h.new_start, h.new_lines),
        (1, 5, 1, 6)
    );
    let lines: Vec<_> = h
        .lines
        .iter()
        .map(|l| (l.kind.as_str(), l.old, l.new, l.text.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            ("context", Some(1), Some(1), "mod a;"),
            ("context", Some(2), Some(2), "mod b;"),
            ("del", Some(3), None, "mod old;"),
            ("add", None, Some(3), "mod new;"),
            ("add", None, Some(4), "mod extra;"),
            ("context", Some(4), Some(5), "pub fn f() {}"),
            ("context", Some(5), Some(6), "pub fn g() {}"),
        ]
    );
    assert_eq!(f.hunks[1].header, "@@ -20,2 +21,2 @@ pub fn h() {");
    let binary = member.review_file(id, 4, "").ok();
    assert!(binary.file.binary && binary.hunks.is_empty());
    // The same as JSON, field by field, as the UI reads it.
    let raw = member.get(&format!("/api/tasks/{id}/review/files/2"));
    assert_eq!(raw.json["old_path"], "gone.txt");
    assert_eq!(raw.json["new_path"], serde_json::Value::Null);
    assert_eq!(raw.json["hunks"][0]["lines"][1]["kind"], "del");
    assert_eq!(raw.json["hunks"][0]["lines"][1]["old"], 2);

    member.review_file(id, 5, "").refused(404, "not_found");
    let r = member.get(&format!("/api/tasks/{id}/review/files/x"));
    assert_eq!((r.status, r.error()), (400, "invalid_id"), "{}", r.text);
    let r = member.get(&format!("/api/tasks/{id}/review/files/-1"));
    assert_eq!((r.status, r.error()), (400, "invalid_id"), "{}", r.text);
    member.review(id, "?run=2").refused(404, "not_found");
    member
        .review_file(id, 0, "?run=2")
        .refused(404, "not_found");
    member.review(id, "?run=0").refused(400, "invalid_query");
    member.review(id, "?run=one").refused(400, "invalid_query");
    member.review(id + 100, "").refused(404, "not_found");

    // A task no run of which reported a change has nothing to show yet.
    let other = queued_task(&srv, dispatchable("codex"));
    let r = member.review(other, "").ok();
    assert_eq!((r.run, r.branch, r.files.len()), (None, None, 0));
    member.review_file(other, 0, "").refused(404, "not_found");
}

#[test]
fn a_comment_is_kept_with_its_hunk_and_lines_outside_the_diff_are_refused() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    let id = in_review(&srv, &w);
    let (_, ana) = srv.user("ana", Some((1, "member")));

    let c = ana
        .review_comment(id, &on("src/lib.rs", 3, "Why rename it?"))
        .ok();
    assert_eq!(
        (c.run, c.file.as_str(), c.line, c.end_line, c.side.as_str()),
        (1, "src/lib.rs", 3, 3, "new")
    );
    assert_eq!(
        (c.author.as_str(), c.body.as_str()),
        ("user:ana", "Why rename it?")
    );
    assert_eq!((c.sent_at.as_deref(), c.sent_in_run), (None, None));
    assert_eq!(
        c.hunk,
        "@@ -1,5 +1,6 @@\n mod a;\n mod b;\n-mod old;\n+mod new;\n+mod extra;\n pub fn f() {}\n pub fn g() {}"
    );
    // A range, on the old side, in the second hunk.
    let range = NewReviewComment {
        end_line: Some(21),
        side: Some("old".into()),
        ..on("src/lib.rs", 20, "Keep y at 2.")
    };
    let c2 = ana.review_comment(id, &range).ok();
    assert_eq!((c2.line, c2.end_line, c2.side.as_str()), (20, 21, "old"));
    assert!(
        c2.hunk
            .starts_with("@@ -20,2 +21,2 @@ pub fn h() {\n let x = 1;\n-let y = 2;"),
        "{}",
        c2.hunk
    );
    // A deleted file is named by its old path; its lines are old ones.
    let c3 = ana
        .review_comment(id, &on("gone.txt", 2, "Still used?"))
        .ok();
    assert_eq!((c3.file.as_str(), c3.side.as_str()), ("gone.txt", "old"));
    assert!(c3.hunk.ends_with("-second"), "{}", c3.hunk);
    // A renamed file by its new path, with the run named.
    let renamed = NewReviewComment {
        run: Some(1),
        ..on("docs/new.md", 2, "Better.")
    };
    ana.review_comment(id, &renamed).ok();

    let before = ana.review(id, "").ok().comments;
    assert_eq!(before.len(), 4);
    let refusals = [
        (on("src/lib.rs", 7, "x"), "line"),
        (on("src/lib.rs", 10, "x"), "line"),
        (
            NewReviewComment {
                end_line: Some(21),
                ..on("src/lib.rs", 5, "across two hunks")
            },
            "line",
        ),
        (
            NewReviewComment {
                side: Some("old".into()),
                ..on("src/new.rs", 1, "an added file has no old side")
            },
            "line",
        ),
        (on("src/nope.rs", 1, "x"), "file"),
        (on("logo.png", 1, "binary"), "file"),
        (
            NewReviewComment {
                end_line: Some(2),
                ..on("src/lib.rs", 3, "x")
            },
            "end_line",
        ),
        (
            NewReviewComment {
                side: Some("both".into()),
                ..on("src/lib.rs", 3, "x")
            },
            "side",
        ),
        (on("src/lib.rs", 0, "x"), "line"),
        (on("src/lib.rs", 3, "   "), "body"),
        (on("src/lib.rs", 3, &"x".repeat(10_001)), "body"),
        (on("", 3, "x"), "file"),
    ];
    for (bad, field) in refusals {
        let e = ana
            .review_comment(id, &bad)
            .context(format!("{field} {}:{}", bad.file, bad.line))
            .refused(400, "invalid_field");
        assert!(e.message.contains(&format!("`{field}`")), "{}", e.message);
    }
    let r = ana.post(
        &format!("/api/tasks/{id}/review/comments"),
        &serde_json::json!({"file": "src/lib.rs", "body": "no line"}),
    );
    assert_eq!((r.status, r.error()), (400, "invalid_field"), "{}", r.text);
    let r = ana.post(
        &format!("/api/tasks/{id}/review/comments"),
        &serde_json::json!({"file": "src/lib.rs", "line": 3, "body": "x", "colour": "red"}),
    );
    assert_eq!((r.status, r.error()), (400, "unknown_field"), "{}", r.text);
    let r = ana.post(
        &format!("/api/tasks/{id}/review/comments"),
        &serde_json::json!({"file": "src/lib.rs", "line": "3", "body": "x"}),
    );
    assert_eq!((r.status, r.error()), (400, "invalid_field"), "{}", r.text);
    let later = NewReviewComment {
        run: Some(2),
        ..on("src/lib.rs", 3, "x")
    };
    ana.review_comment(id, &later).refused(404, "not_found");
    assert_eq!(
        ana.review(id, "").ok().comments,
        before,
        "nothing stored on refusal"
    );
    let kinds = event_kinds(&srv, id);
    assert_eq!(kinds.iter().filter(|k| *k == "review.comment").count(), 4);
}

#[test]
fn an_unsent_comment_is_deleted_by_its_author_or_an_admin() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    let id = in_review(&srv, &w);
    let (_, ana) = srv.user("ana", Some((1, "member")));
    let (_, bea) = srv.user("bea", Some((1, "member")));
    let (_, boss) = srv.user("boss", Some((1, "admin")));

    let a1 = ana.review_comment(id, &on("src/lib.rs", 3, "one")).ok().id;
    let a2 = ana.review_comment(id, &on("src/lib.rs", 4, "two")).ok().id;
    let a3 = ana
        .review_comment(id, &on("src/new.rs", 2, "three"))
        .ok()
        .id;
    bea.delete_review_comment(id, a1).refused(403, "forbidden");
    ana.delete_review_comment(id, a1).ok();
    boss.delete_review_comment(id, a2).ok();
    ana.delete_review_comment(id, a1).refused(404, "not_found");
    ana.delete_review_comment(id + 1, a3)
        .refused(404, "not_found");
    let r = ana.delete(&format!("/api/tasks/{id}/review/comments/zero"));
    assert_eq!((r.status, r.error()), (400, "invalid_id"), "{}", r.text);
    let left: Vec<i64> = ana
        .review(id, "")
        .ok()
        .comments
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, [a3]);

    // Once sent, it stays, whoever asks.
    ana.send_review(id, None).ok();
    ana.delete_review_comment(id, a3)
        .refused(409, "comment_sent");
    boss.delete_review_comment(id, a3)
        .refused(409, "comment_sent");
    assert!(event_kinds(&srv, id).contains(&"review.comment_deleted".to_string()));
}

#[test]
fn sending_the_review_resumes_the_session_with_the_comments() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let svc = srv.service();
    let w = Worker::new(&srv, "w1");
    let id = in_review(&srv, &w);
    let (_, ana) = srv.user("ana", Some((1, "member")));

    ana.send_review(id, None).refused(409, "no_comments");
    ana.review_comment(id, &on("src/lib.rs", 3, "Call it `fresh`, not `new`."))
        .ok();
    ana.review_comment(id, &on("gone.txt", 1, "Keep this file."))
        .ok();
    let r = ana.post(
        &format!("/api/tasks/{id}/review/send"),
        &serde_json::json!({"message": "x".repeat(20_001)}),
    );
    assert_eq!((r.status, r.error()), (400, "invalid_field"), "{}", r.text);

    let sent = ana.send_review(id, Some("Two things, please.")).ok();
    assert_eq!(sent.task.status, "queued");
    let comments = ana.review(id, "").ok().comments;
    assert!(comments
        .iter()
        .all(|c| c.sent_at.is_some() && c.sent_in_run.is_none()));
    ana.send_review(id, None).refused(409, "no_comments");

    let claim = w.claim();
    let f = claim.follow_up.expect("the claim hands out the follow-up");
    assert_eq!(f.session_id, "sess-1");
    let m = &f.message;
    assert!(m.starts_with("Two things, please.\n"), "{m}");
    for part in [
        "1. src/lib.rs:3\n```diff\n@@ -1,5 +1,6 @@\n mod a;\n mod b;\n-mod old;\n+mod new;\n",
        "```\nCall it `fresh`, not `new`.\n",
        "2. gone.txt:1 (old)\n```diff\n@@ -1,2 +0,0 @@\n-first\n-second\n```\nKeep this file.\n",
    ] {
        assert!(m.contains(part), "{part:?} not in {m}");
    }
    let token = claim.claim_token.unwrap();
    w.report(id, &token, started(Some(2))).ok();
    let comments = ana.review(id, "").ok().comments;
    assert!(
        comments.iter().all(|c| c.sent_in_run == Some(2)),
        "{comments:?}"
    );
    w.report(id, &token, session_output("sess-1")).ok();
    let done = Finished {
        change: Some(change(id, "cccc", PATCH_2)),
        ..finished(Some(0), "renamed")
    };
    w.report(id, &token, done).ok();

    // Each run keeps its change: the review shows the last by default.
    let r = ana.review(id, "").ok();
    assert_eq!(
        (r.run, r.head.as_deref(), r.files.len()),
        (Some(2), Some("cccc"), 1)
    );
    let first = ana.review(id, "?run=1").ok();
    assert_eq!((first.run, first.files.len()), (Some(1), 5));
    assert_eq!(
        ana.review_file(id, 1, "?run=1")
            .ok()
            .file
            .new_path
            .as_deref(),
        Some("src/lib.rs")
    );
    assert_eq!(
        svc.task(id).ok().changes.unwrap().head.as_deref(),
        Some("cccc")
    );
    // Comments on the earlier run's change stay tied to it.
    assert!(r.comments.iter().all(|c| c.run == 1));
    let late = ana
        .review_comment(id, &on("src/new.rs", 1, "Doc comment: good."))
        .ok();
    assert_eq!(late.run, 2);

    let runs = svc.runs(id).ok().runs;
    assert_eq!(runs[1].follow_up.as_deref(), Some(m.as_str()));
    let kinds = event_kinds(&srv, id);
    assert!(kinds.contains(&"review.sent".to_string()), "{kinds:?}");
    let events = svc
        .events(&format!("?task_id={id}&kind=review.sent"))
        .ok()
        .events;
    assert_eq!(events[0].payload["count"], 2);

    // A message alone is a follow-up too.
    let t = ana.send_review(id, Some("And a test.")).ok();
    assert_eq!(t.task.status, "queued");
    assert_eq!(w.claim().follow_up.unwrap().message, "And a test.\n\nReview comments on your change (1). Each names a file and line of the diff of your branch against its base, quotes that part of the diff, then says what to do:\n\n1. src/new.rs:1\n```diff\n@@ -0,0 +1,4 @@\n+/// The answer.\n+pub fn added() -> u32 {\n+    42\n+}\n```\nDoc comment: good.\n");
}

#[test]
fn a_review_without_a_session_to_resume_marks_nothing_sent() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    let id = queued_task(&srv, dispatchable("hermes"));
    w.heartbeat(&["hermes"], &[]);
    let (_, token) = w.claim_one();
    w.report(id, &token, started(Some(1))).ok();
    let done = Finished {
        change: Some(change(id, "bbbb", PATCH)),
        ..finished(Some(0), "plain text, no session")
    };
    w.report(id, &token, done).ok();
    let (_, ana) = srv.user("ana", Some((1, "member")));
    ana.review_comment(id, &on("src/lib.rs", 3, "x")).ok();
    ana.send_review(id, None).refused(409, "no_session");
    let r = ana.review(id, "").ok();
    assert!(r.comments.iter().all(|c| c.sent_at.is_none()));
    assert!(!event_kinds(&srv, id).contains(&"review.sent".to_string()));
    assert_eq!(srv.service().task(id).ok().task.status, "review");
}

#[test]
fn only_the_tasks_workspace_reviews_it() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let w = Worker::new(&srv, "w1");
    let id = in_review(&srv, &w);
    let (_, ana) = srv.user("ana", Some((1, "member")));
    let cid = ana.review_comment(id, &on("src/lib.rs", 3, "mine")).ok().id;
    let other = srv.admin().create_workspace("other").ok().id;
    let (_, outsider) = srv.user("olga", Some((other, "member")));
    let anon: Client = srv.client();
    for (who, status, code) in [(&outsider, 403, "forbidden"), (&anon, 401, "unauthorized")] {
        who.review(id, "").refused(status, code);
        who.review_file(id, 0, "").refused(status, code);
        who.review_comment(id, &on("src/lib.rs", 3, "x"))
            .refused(status, code);
        who.delete_review_comment(id, cid).refused(status, code);
        who.send_review(id, None).refused(status, code);
    }
    let r = ana.review(id, "").ok();
    assert_eq!(r.comments.len(), 1);
    assert!(r.comments[0].sent_at.is_none());
    // The service token is an operator: it may read and write.
    srv.service().review(id, "").ok();
}
