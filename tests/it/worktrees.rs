//! A git worktree per task: real git in a temp dir, real launchers running
//! the fake coding agent of examples/agents/fake-agent-edit.sh.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use ops_center::protocol::dispatch::ClaimRepo;

use crate::client::TaskSpec;
use crate::launcher::{
    alive, blockers, create_agent, enable_dispatch, example, started_pid, task, wait_status,
};
use crate::util::{event_kinds, set_repo_roots, wait_for, AgentGuard, Launcher, Server};

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

/// An interactive codex task with `fields` added, dispatched.
fn queued(srv: &Server, fields: Value) -> i64 {
    let svc = srv.service();
    let mut body = json!({"title": "edit", "execution": "interactive", "agent": "codex"});
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = svc.post("/api/tasks", &body);
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_i64().unwrap();
    let r = svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    id
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
    let r = srv.admin().patch(
        "/api/workspaces/1",
        &json!({"repo_path": repo.display().to_string()}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["repo_path"], repo.display().to_string());
    assert_eq!(r.json["base_ref"], Value::Null);
    let l = launcher(&srv, &edit_agent("shared.txt", 3, "loud"), &[]);
    let a = queued(&srv, json!({}));
    let b = queued(&srv, json!({}));
    // Both run at once.
    wait_for(30, "both tasks doing", || {
        (task(&srv, a)["status"] == "doing" && task(&srv, b)["status"] == "doing").then_some(())
    });
    let _guards = [
        AgentGuard(started_pid(&srv, a)),
        AgentGuard(started_pid(&srv, b)),
    ];
    for (id, other) in [(a, b), (b, a)] {
        let t = wait_status(&srv, id, "review", 30);
        let c = &t["changes"];
        let branch = format!("ops/task-{id}");
        assert_eq!(c["branch"], branch, "{t:#}");
        let patch = c["patch"].as_str().unwrap();
        assert!(patch.contains(&format!("+change of task {id}")), "{patch}");
        assert!(!patch.contains(&format!("task {other}")), "{patch}");
        assert!(
            c["diff_stat"].as_str().unwrap().contains("1 file changed"),
            "{c:#}"
        );
        assert!(
            c["status"].as_str().unwrap().contains("shared.txt"),
            "{c:#}"
        );
        assert_eq!(c["patch_truncated"], false);
        // The agent ran in its worktree ({workdir} and its cwd agree).
        let out = t["dispatch_output"].as_str().unwrap();
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
            c["head"].as_str().unwrap()
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
    let r = srv
        .service()
        .patch(&format!("/api/tasks/{a}"), &json!({"status": "done"}));
    assert_eq!(r.status, 200, "{}", r.text);
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
    let r = srv
        .service()
        .post(&format!("/api/tasks/{b}/archive"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
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
            json!({"repo_path": dir.join("missing").display().to_string()}),
            "repository not usable: missing",
            "No such file or directory",
        ),
        (
            json!({"repo_path": plain.display().to_string()}),
            "repository not usable: not a git checkout",
            "not a git repository",
        ),
        (
            json!({"repo_path": dirty.display().to_string()}),
            "repository not usable: uncommitted changes",
            "M shared.txt",
        ),
        (
            json!({"repo_path": good.display().to_string(), "base_ref": "no-such-branch"}),
            "repository not usable: unknown base_ref",
            "fatal",
        ),
    ];
    for (fields, signature, evidence) in cases {
        let id = queued(&srv, fields.clone());
        let t = wait_status(&srv, id, "waiting", 30);
        assert_eq!(t["blocked"], true, "{t:#}");
        let reason = t["blocked_reason"].as_str().unwrap();
        assert!(reason.starts_with(signature), "{fields}: {reason}");
        let b = blockers(&t).join("\n");
        assert!(
            b.contains(signature) && b.contains(evidence),
            "{fields}: {b}"
        );
        assert!(
            !event_kinds(&srv, id).contains(&"dispatch.started".to_string()),
            "{fields}: no agent is started"
        );
        assert_eq!(t["changes"], Value::Null);
    }
    assert!(!marker.exists(), "no agent ran anywhere");
    let id = queued(&srv, json!({"repo_path": good.display().to_string()}));
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
    let id = queued(
        &srv,
        json!({"repo_path": repo.display().to_string(), "base_ref": "main"}),
    );
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
    let c = &t["changes"];
    assert_eq!(c["branch"], format!("ops/task-{id}"), "{t:#}");
    assert!(c["patch"]
        .as_str()
        .unwrap()
        .contains(&format!("+change of task {id}")));
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
    let path = repo.display().to_string();
    // Changed a file, printed nothing: reviewable, and may become done.
    let mut l = launcher(&srv, &edit_agent("shared.txt", 1, "quiet"), &[]);
    let id = queued(&srv, json!({"repo_path": path}));
    let t = wait_status(&srv, id, "review", 30);
    assert_eq!(t["dispatch_output"], Value::Null, "{t:#}");
    assert!(t["changes"]["patch"]
        .as_str()
        .unwrap()
        .contains("+change of task"));
    let r = srv
        .service()
        .patch(&format!("/api/tasks/{id}"), &json!({"status": "done"}));
    assert_eq!(r.status, 200, "{}", r.text);
    // Stopped as a service would be, so that no claim of it is left waiting.
    assert!(l.signal_and_wait("TERM").success());

    // Changed nothing, printed nothing: blocked, and may not become done.
    let _l = launcher(&srv, &edit_agent("none", 1, "quiet"), &[]);
    let id = queued(&srv, json!({"repo_path": path}));
    let t = wait_status(&srv, id, "waiting", 30);
    assert_eq!(t["blocked"], true, "{t:#}");
    assert_eq!(t["changes"]["patch"], "", "{t:#}");
    let r = srv
        .service()
        .patch(&format!("/api/tasks/{id}"), &json!({"status": "done"}));
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json["error"], "done_guard");
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
        assert!(
            r.json["message"].as_str().unwrap().contains(field),
            "{}",
            r.text
        );
        let r = admin.post("/api/tasks", &{
            let mut b = body.clone();
            b["title"] = json!("t");
            b
        });
        assert_eq!(r.status, 400, "{body}: {}", r.text);
    }
    let r = admin.patch("/api/workspaces/99", &json!({"repo_path": "/srv/x"}));
    assert_eq!(r.status, 404, "{}", r.text);
    assert_eq!(
        admin.get("/api/workspaces").json["workspaces"][0]["repo_path"],
        Value::Null,
        "nothing changed"
    );
    let r = admin.patch(
        "/api/workspaces/1",
        &json!({"repo_path": "/srv/app", "base_ref": "release/1.2"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["base_ref"], "release/1.2");
    // `""` or null clears.
    let r = admin.patch("/api/workspaces/1", &json!({"base_ref": ""}));
    assert_eq!(r.json["base_ref"], Value::Null, "{}", r.text);
    assert_eq!(r.json["repo_path"], "/srv/app");

    // A sensitive task approved for one repository is not approved for another.
    create_agent(&srv, "coder");
    let id = admin.new_task(&crate::client::task("s").interactive("coder").sensitive());
    let r = admin.post(&format!("/api/tasks/{id}/approve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.json["gate_approved_at"].is_null(), "{}", r.text);
    let r = admin.patch("/api/workspaces/1", &json!({"repo_path": "/srv/other"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let t = admin.get(&format!("/api/tasks/{id}")).json;
    assert!(t["gate_approved_at"].is_null(), "{t:#}");
    let r = admin.post(&format!("/api/tasks/{id}/approve"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    // Allowing a root changes no task's repository: the approval stays.
    set_repo_roots(&srv, 1, &["/srv/mine"]);
    let t = admin.get(&format!("/api/tasks/{id}")).json;
    assert!(!t["gate_approved_at"].is_null(), "{t:#}");
    let r = admin.patch(
        &format!("/api/tasks/{id}"),
        &json!({"repo_path": "/srv/mine"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json["gate_approved_at"].is_null(), "{}", r.text);
    assert_eq!(r.json["repo_path"], "/srv/mine");
}

#[test]
fn a_reported_change_is_validated() {
    let srv = Server::start();
    enable_dispatch(&srv);
    create_agent(&srv, "coder");
    let w = crate::util::Worker::new(&srv, "w1");
    w.heartbeat(&["coder"], &[]);
    let id = queued(&srv, json!({"agent": "coder"}));
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
        assert!(
            r.json["message"].as_str().unwrap().contains(field),
            "{}",
            r.text
        );
    }
    assert_eq!(task(&srv, id)["status"], "dispatching", "nothing changed");
}

#[test]
fn the_claim_names_the_tasks_repository_its_own_before_its_workspaces() {
    let srv = Server::start();
    enable_dispatch(&srv);
    create_agent(&srv, "coder");
    let r = srv.admin().patch(
        "/api/workspaces/1",
        &json!({"repo_path": "/srv/ws", "base_ref": "develop", "repo_roots": ["/srv/own"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let w = crate::util::Worker::new(&srv, "w1");
    w.heartbeat(&["coder"], &[]);
    let a = queued(&srv, json!({"agent": "coder", "priority": 3}));
    let b = queued(
        &srv,
        json!({"agent": "coder", "priority": 2, "repo_path": "/srv/own"}),
    );
    let c = queued(
        &srv,
        json!({"agent": "coder", "priority": 1, "base_ref": "v2"}),
    );
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
    let id = queued(&srv, json!({"repo_path": repo.display().to_string()}));
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
    let path = repo.display().to_string();
    // Writes "change of task N" into shared.txt: a change the first time,
    // the same bytes (no change) every time after.
    let _l = launcher(&srv, &edit_agent("shared.txt", 0, "loud"), &[]);
    let svc = srv.service();
    let id = queued(&srv, json!({"repo_path": path}));
    let t = wait_status(&srv, id, "review", 30);
    assert_eq!(t["expects_changes"], true, "the default");
    let first_head = t["changes"]["head"].clone();

    // Run again: it prints its line and exits 0, but changes nothing.
    let r = svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let t = wait_for(30, "the second run's end", || {
        let t = task(&srv, id);
        (t["dispatch_attempts"] == 2 && t["status"] == "waiting").then_some(t)
    });
    assert_eq!(t["blocked"], true, "{t:#}");
    assert_eq!(
        t["blocked_reason"],
        "sin cambios: el agente terminó sin modificar el repositorio"
    );
    assert_eq!(
        (t["exit_code"].clone(), t["exit_signal"].clone()),
        (json!(0), Value::Null)
    );
    assert!(
        t["dispatch_output"]
            .as_str()
            .unwrap()
            .contains("wrote shared.txt"),
        "its output is kept: {t:#}"
    );
    // The branch still holds the first run's work, and is where it was.
    assert_eq!(t["changes"]["head"], first_head, "{t:#}");
    assert!(!t["changes"]["patch"].as_str().unwrap().is_empty());
    let b = blockers(&t);
    assert!(
        b.iter().any(|b| b.starts_with(
            "sin cambios: el agente terminó sin modificar el repositorio: branch ops/task-"
        ) && b.contains("expects_changes=false")),
        "{b:#?}"
    );
    let ev = svc.get(&format!("/api/events?task_id={id}&kind=dispatch.finished"));
    let p = &ev.json["events"][0]["payload"];
    assert_eq!(
        (p["changed"].clone(), p["to"].clone()),
        (json!(false), json!("waiting")),
        "{p}"
    );

    // A task that expects no change says so, and its run reaches review.
    let r = svc.patch(
        &format!("/api/tasks/{id}"),
        &json!({"expects_changes": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["expects_changes"], false);
    let r = svc.post(&format!("/api/tasks/{id}/retry"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let t = wait_for(30, "the third run's end", || {
        let t = task(&srv, id);
        (t["dispatch_attempts"] == 3 && t["status"] == "review").then_some(t)
    });
    assert_eq!(t["blocked"], false, "{t:#}");
    assert_eq!(t["exit_code"], 0);
}
