//! A git worktree per task: real git in a temp dir, real launchers running
//! the fake coding agent of examples/agents/fake-agent-edit.sh.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use ops_center::protocol::accounts::WorkspaceChange;
use ops_center::protocol::dispatch::ClaimRepo;
use ops_center::protocol::errors::ErrorBody;
use ops_center::protocol::tasks::{NewTask, TaskChange, TaskDetail, TaskEdit};

use crate::client::{self, TaskSpec};
use crate::launcher::{alive, blockers, create_agent, example, started_pid, task, wait_status};
use crate::util::{
    enable_dispatch, event_kinds, set_repo_roots, wait_for, wait_until, AgentGuard, Launcher,
    Server,
};

/// `git -C dir ARGS` with an author, which must succeed; its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .expect("git");
    assert!(o.status.success(), "git {args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A checkout on `main` with `shared.txt` = "base\n", committed.
fn repo(dir: &Path) -> PathBuf {
    let r = dir.join("repo");
    std::fs::create_dir_all(&r).unwrap();
    git(&r, &["init", "-q", "-b", "main"]);
    std::fs::write(r.join("shared.txt"), "base\n").unwrap();
    git(&r, &["add", "shared.txt"]);
    git(&r, &["commit", "-q", "-m", "base"]);
    r
}

fn edit_agent(file: &str, secs: u32, mode: &str) -> String {
    format!(
        "{} {file} {{task_id}} {secs} {mode} {{workdir}}",
        example("fake-agent-edit.sh")
    )
}

fn launcher(srv: &Server, cmd: &str, extra: &[(&str, &str)]) -> Launcher {
    let logs = srv.dir.path().join("launcher-logs");
    let mut vars = vec![
        ("SUPPORTED_AGENT_SLUGS", "codex"),
        ("AGENT_CMD_CODEX", cmd),
        ("OPS_LAUNCHER_SLOTS", "2"),
    ];
    vars.extend_from_slice(extra);
    Launcher::start(srv, &logs, &vars)
}

/// A server whose workspace 1 lets tasks name repositories in its temp
/// dir, where the tests make them.
fn server_with_repos() -> Server {
    let srv = Server::start();
    set_repo_roots(&srv, 1, &[&srv.dir.path().display().to_string()]);
    srv
}

/// An interactive task for `agent`.
fn edit_task(agent: &str) -> NewTask {
    client::task("edit").interactive(agent)
}

/// An interactive codex task in the repository at `path`.
fn in_repo(path: &Path) -> NewTask {
    edit_task("codex").repo(&path.display().to_string())
}

/// `t`, created and dispatched; its id.
fn queued(srv: &Server, t: NewTask) -> i64 {
    let svc = srv.service();
    let id = svc.new_task(&t);
    svc.dispatch(id).ok();
    id
}

/// The change a task's last run reported.
fn changes(t: &TaskDetail) -> &TaskChange {
    t.changes.as_ref().expect("a reported change")
}

/// The edit that moves a task to `done`.
fn to_done() -> TaskEdit {
    TaskEdit {
        status: Some("done".into()),
        ..TaskEdit::default()
    }
}

/// The workspace change that sets its repository and base ref (`None`:
/// left as it is).
fn repo_change(path: Option<&str>, base: Option<&str>) -> WorkspaceChange {
    WorkspaceChange {
        repo_path: path.map(|p| Some(p.to_string())),
        base_ref: base.map(|b| Some(b.to_string())),
        ..WorkspaceChange::default()
    }
}

fn worktree_of(srv: &Server, id: i64) -> PathBuf {
    srv.dir
        .path()
        .join("launcher-logs/worktrees")
        .join(format!("task-{id}"))
}

#[test]
fn two_tasks_on_one_repository_each_change_only_their_own_branch() {
    let srv = Server::start();
    enable_dispatch(&srv);
    let repo = repo(srv.dir.path());
    let ws = srv
        .admin()
        .edit_workspace(1, &repo_change(Some(&repo.display().to_string()), None))
        .ok();
    assert_eq!(ws.repo_path, Some(repo.display().to_string()));
    assert_eq!(ws.base_ref, None);
    let l = launcher(&srv, &edit_agent("shared.txt", 3, "loud"), &[]);
    let a = queued(&srv, edit_task("codex"));
    let b = queued(&srv, edit_task("codex"));
    // Both run at once.
    wait_until(30, "both tasks doing", || {
        task(&srv, a).task.status == "doing" && task(&srv, b).task.status == "doing"
    });
    let _guards = [
        AgentGuard(started_pid(&srv, a)),
        AgentGuard(started_pid(&srv, b)),
    ];
    for (id, other) in [(a, b), (b, a)] {
        let t = wait_status(&srv, id, "review", 30);
        let c = changes(&t);
        let branch = format!("ops/task-{id}");
        assert_eq!(c.branch, branch, "{t:?}");
        let patch = &c.patch;
        assert!(patch.contains(&format!("+change of task {id}")), "{patch}");
        assert!(!patch.contains(&format!("task {other}")), "{patch}");
        assert!(c.diff_stat.contains("1 file changed"), "{c:?}");
        assert!(c.status.contains("shared.txt"), "{c:?}");
        assert!(!c.patch_truncated);
        // The agent ran in its worktree ({workdir} and its cwd agree).
        let out = t.task.dispatch_output.as_deref().unwrap();
        let wt = worktree_of(&srv, id).canonicalize().unwrap();
        assert!(
            out.contains(&format!("in {} on {branch}", wt.display())),
            "{out}"
        );
        // The branch holds the change, committed.
        assert_eq!(
            git(&repo, &["show", &format!("{branch}:shared.txt")]),
            format!("change of task {id}\n")
        );
        assert_eq!(
            git(&repo, &["rev-parse", &branch]).trim(),
            c.head.as_deref().unwrap()
        );
        assert_eq!(
            git(&repo, &["rev-list", "--count", &format!("main..{branch}")]).trim(),
            "1"
        );
    }
    // The main checkout is untouched.
    assert_eq!(
        std::fs::read_to_string(repo.join("shared.txt")).unwrap(),
        "base\n"
    );
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    assert_eq!(
        git(&repo, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
        "main"
    );

    // Clean-up: a done task's worktree goes on the launcher's next pass,
    // its branch stays.
    srv.service().edit_task(a, &to_done()).ok();
    wait_for(30, "task a's worktree removed", || {
        (!worktree_of(&srv, a).exists()).then_some(())
    });
    assert!(git(&repo, &["branch", "--list", &format!("ops/task-{a}")]).contains("ops/task-"));
    assert!(
        worktree_of(&srv, b).exists(),
        "a task in review keeps its worktree"
    );
    // An archived task's too; what was left uncommitted in it is saved
    // first, on a branch of its own (the task's is what was reviewed).
    std::fs::write(worktree_of(&srv, b).join("left.txt"), "by hand\n").unwrap();
    srv.service().archive(b).ok();
    wait_for(30, "task b's worktree removed", || {
        (!worktree_of(&srv, b).exists()).then_some(())
    });
    assert_eq!(
        git(
            &repo,
            &["show", &format!("ops/task-{b}-leftovers:left.txt")]
        ),
        "by hand\n"
    );
    assert!(git(&repo, &["worktree", "list"]).lines().count() == 1);
    drop(l);
}

#[test]
fn an_unusable_repository_blocks_the_task_with_evidence_and_launches_nothing() {
    let srv = server_with_repos();
    enable_dispatch(&srv);
    let dir = srv.dir.path();
    let plain = dir.join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let dirty = dir.join("dirty");
    std::fs::create_dir_all(&dirty).unwrap();
    let dirty = repo(&dirty);
    std::fs::write(dirty.join("shared.txt"), "edited, not committed\n").unwrap();
    let good_dir = dir.join("good");
    std::fs::create_dir_all(&good_dir).unwrap();
    let good = repo(&good_dir);
    let marker = dir.join("agent-ran");
    // One failure of the CLI would hold it back: a repository's are not
    // the CLI's.
    let _l = launcher(
        &srv,
        &format!("sh -c 'touch {}'", marker.display()),
        &[("AGENT_BREAKER_FAILURES", "1")],
    );
    let cases = [
        (
            in_repo(&dir.join("missing")),
            "repository not usable: missing",
            "No such file or directory",
        ),
        (
            in_repo(&plain),
            "repository not usable: not a git checkout",
            "not a git repository",
        ),
        (
            in_repo(&dirty),
            "repository not usable: uncommitted changes",
            "M shared.txt",
        ),
        (
            in_repo(&good).base_ref("no-such-branch"),
            "repository not usable: unknown base_ref",
            "fatal",
        ),
    ];
    for (fields, signature, evidence) in cases {
        let id = queued(&srv, fields.clone());
        let t = wait_status(&srv, id, "waiting", 30);
        assert!(t.task.blocked, "{t:?}");
        let reason = t.task.blocked_reason.as_deref().unwrap();
        assert!(reason.starts_with(signature), "{fields:?}: {reason}");
        let b = blockers(&t).join("\n");
        assert!(
            b.contains(signature) && b.contains(evidence),
            "{fields:?}: {b}"
        );
        assert!(
            !event_kinds(&srv, id).contains(&"dispatch.started".to_string()),
            "{fields:?}: no agent is started"
        );
        assert_eq!(t.changes, None);
    }
    assert!(!marker.exists(), "no agent ran anywhere");
    let id = queued(&srv, in_repo(&good));
    wait_for(30, "the agent started for a usable repository", || {
        marker.exists().then_some(())
    });
    // The agent may write its marker before its `started` report lands.
    wait_for(30, "the agent's run reported started", || {
        event_kinds(&srv, id)
            .contains(&"dispatch.started".to_string())
            .then_some(())
    });
    // The dirty checkout was left as it was.
    assert_eq!(
        std::fs::read_to_string(dirty.join("shared.txt")).unwrap(),
        "edited, not committed\n"
    );
}

#[test]
fn a_launcher_killed_mid_task_reports_the_worktrees_diff_after_restart() {
    let srv = server_with_repos();
    enable_dispatch(&srv);
    let repo = repo(srv.dir.path());
    let mut l = launcher(&srv, &edit_agent("shared.txt", 4, "loud"), &[]);
    let id = queued(&srv, in_repo(&repo).base_ref("main"));
    wait_status(&srv, id, "doing", 30);
    let pid = started_pid(&srv, id);
    let _guard = AgentGuard(pid);
    l.kill9();
    assert!(alive(pid), "the agent survives its launcher");
    let state = std::fs::read_to_string(&l.state_files()[0]).unwrap();
    assert!(
        state.contains("ops/task-"),
        "the state file records the worktree: {state}"
    );
    l.start_again();
    let t = wait_status(&srv, id, "review", 30);
    let c = changes(&t);
    assert_eq!(c.branch, format!("ops/task-{id}"), "{t:?}");
    assert!(c.patch.contains(&format!("+change of task {id}")));
    assert_eq!(
        git(&repo, &["show", &format!("ops/task-{id}:shared.txt")]),
        format!("change of task {id}\n")
    );
    assert!(
        l.log().contains(&format!("task {id}: adopted")),
        "{}",
        l.log()
    );
}

#[test]
fn the_done_guard_takes_a_diff_as_evidence() {
    let srv = server_with_repos();
    enable_dispatch(&srv);
    let repo = repo(srv.dir.path());
    // Changed a file, printed nothing: reviewable, and may become done.
    let mut l = launcher(&srv, &edit_agent("shared.txt", 1, "quiet"), &[]);
    let id = queued(&srv, in_repo(&repo));
    let t = wait_status(&srv, id, "review", 30);
    assert_eq!(t.task.dispatch_output, None, "{t:?}");
    assert!(changes(&t).patch.contains("+change of task"));
    srv.service().edit_task(id, &to_done()).ok();
    // Stopped as a service would be, so that no claim of it is left waiting.
    assert!(l.signal_and_wait("TERM").success());

    // Changed nothing, printed nothing: blocked, and may not become done.
    let _l = launcher(&srv, &edit_agent("none", 1, "quiet"), &[]);
    let id = queued(&srv, in_repo(&repo));
    let t = wait_status(&srv, id, "waiting", 30);
    assert!(t.task.blocked, "{t:?}");
    assert_eq!(changes(&t).patch, "", "{t:?}");
    srv.service()
        .edit_task(id, &to_done())
        .refused(409, "done_guard");
}

#[test]
fn repository_settings_are_validated_and_approved_tasks_lose_their_approval() {
    let srv = Server::start();
    let admin = srv.admin();
    for (body, field) in [
        (json!({"repo_path": "relative/path"}), "repo_path"),
        (json!({"repo_path": "/srv/../etc"}), "repo_path"),
        (json!({"repo_path": 5}), "repo_path"),
        (json!({"base_ref": "-x"}), "base_ref"),
        (json!({"base_ref": "a b"}), "base_ref"),
        (json!({"base_ref": "a..b"}), "base_ref"),
        (json!({"other": 1}), "other"),
    ] {
        let r = admin.patch("/api/workspaces/1", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(r.body::<ErrorBody>().message.contains(field), "{}", r.text);
        let r = admin.post("/api/tasks", &{
            let mut b = body.clone();
            b["title"] = json!("t");
            b
        });
        assert_eq!(r.status, 400, "{body}: {}", r.text);
    }
    let r = admin.edit_workspace(99, &repo_change(Some("/srv/x"), None));
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(
        admin.workspaces().ok().workspaces[0].repo_path,
        None,
        "nothing changed"
    );
    let ws = admin
        .edit_workspace(1, &repo_change(Some("/srv/app"), Some("release/1.2")))
        .ok();
    assert_eq!(ws.base_ref.as_deref(), Some("release/1.2"));
    // `""` or null clears.
    let ws = admin.edit_workspace(1, &repo_change(None, Some(""))).ok();
    assert_eq!(ws.base_ref, None, "{ws:?}");
    assert_eq!(ws.repo_path.as_deref(), Some("/srv/app"));

    // A sensitive task approved for one repository is not approved for another.
    create_agent(&srv, "coder");
    let id = admin.new_task(&crate::client::task("s").interactive("coder").sensitive());
    assert!(admin.approve(id).ok().gate_approved_at.is_some());
    admin
        .edit_workspace(1, &repo_change(Some("/srv/other"), None))
        .ok();
    let t = admin.task(id).ok().task;
    assert_eq!(t.gate_approved_at, None, "{t:?}");
    admin.approve(id).ok();
    // Allowing a root changes no task's repository: the approval stays.
    set_repo_roots(&srv, 1, &["/srv/mine"]);
    let t = admin.task(id).ok().task;
    assert!(t.gate_approved_at.is_some(), "{t:?}");
    let moved = TaskEdit {
        repo_path: Some(Some("/srv/mine".into())),
        ..TaskEdit::default()
    };
    let t = admin.edit_task(id, &moved).ok();
    assert_eq!(t.gate_approved_at, None, "{t:?}");
    assert_eq!(t.repo_path.as_deref(), Some("/srv/mine"));
}

#[test]
fn a_reported_change_is_validated() {
    let srv = Server::start();
    enable_dispatch(&srv);
    create_agent(&srv, "coder");
    let w = crate::util::Worker::new(&srv, "w1");
    w.heartbeat(&["coder"], &[]);
    let id = queued(&srv, edit_task("coder"));
    let c = w.claim();
    assert_eq!(c.task.as_ref().map(|t| t.id), Some(id), "{c:?}");
    assert_eq!(c.repo, None, "no repository: {c:?}");
    let token = c.claim_token.unwrap();
    let svc = srv.service();
    let base = json!({"worker_id": "w1", "claim_token": token, "exit_code": 0, "output": ""});
    for (extra, field) in [
        (json!({"patch": "x"}), "patch"),
        (json!({"branch": "ops/task-1", "head": "zz"}), "head"),
        (
            json!({"branch": "ops/task-1", "patch": "x".repeat(300 * 1024)}),
            "patch",
        ),
        (json!({"branch": ""}), "branch"),
    ] {
        let mut b = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        let r = svc.post(&format!("/api/dispatch/tasks/{id}/finished"), &b);
        assert_eq!(r.status, 400, "{extra}: {}", r.text);
        assert!(r.body::<ErrorBody>().message.contains(field), "{}", r.text);
    }
    assert_eq!(task(&srv, id).task.status, "dispatching", "nothing changed");
}

#[test]
fn the_claim_names_the_tasks_repository_its_own_before_its_workspaces() {
    let srv = Server::start();
    enable_dispatch(&srv);
    create_agent(&srv, "coder");
    let set = WorkspaceChange {
        repo_roots: Some(vec!["/srv/own".into()]),
        ..repo_change(Some("/srv/ws"), Some("develop"))
    };
    srv.admin().edit_workspace(1, &set).ok();
    let w = crate::util::Worker::new(&srv, "w1");
    w.heartbeat(&["coder"], &[]);
    let a = queued(&srv, edit_task("coder").priority(3));
    let b = queued(&srv, edit_task("coder").priority(2).repo("/srv/own"));
    let c = queued(&srv, edit_task("coder").priority(1).base_ref("v2"));
    let repo = |path: &str, base_ref: Option<&str>| ClaimRepo {
        path: path.into(),
        base_ref: base_ref.map(str::to_string),
    };
    for (id, want) in [
        (a, repo("/srv/ws", Some("develop"))),
        (b, repo("/srv/own", None)),
        (c, repo("/srv/ws", Some("v2"))),
    ] {
        let r = w.claim();
        assert_eq!(r.task.as_ref().map(|t| t.id), Some(id), "{r:?}");
        assert_eq!(r.repo, Some(want), "{r:?}");
    }
}

#[test]
fn prune_worktrees_removes_idle_ones_after_saving_them() {
    let srv = server_with_repos();
    enable_dispatch(&srv);
    let repo = repo(srv.dir.path());
    let mut l = launcher(&srv, &edit_agent("shared.txt", 1, "quiet"), &[]);
    let id = queued(&srv, in_repo(&repo));
    wait_status(&srv, id, "review", 30);
    assert!(l.signal_and_wait("TERM").success());
    let wt = worktree_of(&srv, id);
    assert!(wt.exists(), "a task in review keeps its worktree");
    std::fs::write(wt.join("notes.txt"), "left by hand\n").unwrap();
    let prune = |args: &[&str]| {
        let o = Command::new(crate::util::bin())
            .args(["launcher", "prune-worktrees"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("OPS_API_BASE", format!("http://{}/api", srv.addr))
            .env("OPS_SERVICE_TOKEN", crate::util::TOKEN)
            .env("SUPPORTED_AGENT_SLUGS", "codex")
            .env("OPS_AGENT_USER", crate::util::own_user())
            .env("OPS_LAUNCHER_LOG_DIR", srv.dir.path().join("launcher-logs"))
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    // Recent, and its task is in review: kept.
    let (ok, out) = prune(&[]);
    assert!(ok && out.contains("no worktree to remove"), "{out}");
    assert!(wt.exists());
    let (ok, out) = prune(&["--older-than-days", "x"]);
    assert!(!ok, "{out}");
    let (ok, out) = prune(&["--older-than-days", "0"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("task {id}: worktree")) && out.contains("removed"),
        "{out}"
    );
    assert!(!wt.exists());
    assert_eq!(
        git(
            &repo,
            &["show", &format!("ops/task-{id}-leftovers:notes.txt")]
        ),
        "left by hand\n",
        "what was uncommitted is on a branch of its own"
    );
    assert!(
        !git(
            &repo,
            &["ls-tree", "--name-only", &format!("ops/task-{id}")]
        )
        .contains("notes.txt"),
        "the task's reviewed branch is as it was"
    );
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
}

/// No deliverable, no review: a run of a task with a repository that ends
/// with exit 0 but leaves its branch where it found it is blocked "sin
/// cambios", its output kept — also when the branch holds an earlier run's
/// work. A task that says it expects no change (`expects_changes=false`)
/// reaches review on its output.
#[test]
fn a_run_that_changes_nothing_reaches_review_only_when_its_task_expects_no_change() {
    let srv = server_with_repos();
    enable_dispatch(&srv);
    let repo = repo(srv.dir.path());
    // Writes "change of task N" into shared.txt: a change the first time,
    // the same bytes (no change) every time after.
    let _l = launcher(&srv, &edit_agent("shared.txt", 0, "loud"), &[]);
    let svc = srv.service();
    let id = queued(&srv, in_repo(&repo));
    let t = wait_status(&srv, id, "review", 30);
    assert!(t.task.expects_changes, "the default");
    let first_head = changes(&t).head.clone();

    // Run again: it prints its line and exits 0, but changes nothing.
    svc.dispatch(id).ok();
    let t = wait_for(30, "the second run's end", || {
        let t = task(&srv, id);
        (t.task.dispatch_attempts == 2 && t.task.status == "waiting").then_some(t)
    });
    assert!(t.task.blocked, "{t:?}");
    assert_eq!(
        t.task.blocked_reason.as_deref(),
        Some("sin cambios: el agente terminó sin modificar el repositorio")
    );
    assert_eq!((t.task.exit_code, &t.task.exit_signal), (Some(0), &None));
    assert!(
        t.task
            .dispatch_output
            .as_deref()
            .unwrap()
            .contains("wrote shared.txt"),
        "its output is kept: {t:?}"
    );
    // The branch still holds the first run's work, and is where it was.
    assert_eq!(changes(&t).head, first_head, "{t:?}");
    assert!(!changes(&t).patch.is_empty());
    let b = blockers(&t);
    assert!(
        b.iter().any(|b| b.starts_with(
            "sin cambios: el agente terminó sin modificar el repositorio: branch ops/task-"
        ) && b.contains("expects_changes=false")),
        "{b:#?}"
    );
    let ev = svc
        .events(&format!("?task_id={id}&kind=dispatch.finished"))
        .ok();
    let p = &ev.events[0].payload;
    assert_eq!(
        (p["changed"].as_bool(), p["to"].as_str()),
        (Some(false), Some("waiting")),
        "{p}"
    );

    // A task that expects no change says so, and its run reaches review.
    let no_change = TaskEdit {
        expects_changes: Some(false),
        ..TaskEdit::default()
    };
    assert!(!svc.edit_task(id, &no_change).ok().expects_changes);
    svc.retry(id).ok();
    let t = wait_for(30, "the third run's end", || {
        let t = task(&srv, id);
        (t.task.dispatch_attempts == 3 && t.task.status == "review").then_some(t)
    });
    assert!(!t.task.blocked, "{t:?}");
    assert_eq!(t.task.exit_code, Some(0));
}
