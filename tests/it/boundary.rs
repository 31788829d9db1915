//! The agent boundary: a hostile agent (examples/agents/fake-agent-hostile.sh)
//! run by a real launcher against a real server and a real repository. It
//! tries to steal the service token, to write outside its folder and to
//! make the launcher's git run its commands. Run as root, the launcher
//! runs it as an agent user of its own; run as another user, agents run as
//! the launcher's own user, so the parts that only a second user can give
//! are skipped, saying so, while the environment and git parts still hold.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::launcher::{enable_dispatch, example, wait_status};
use crate::util::Launcher;
use crate::util::{Server, TOKEN};
use crate::worktrees::git;

/// The agent user these tests create when they run as root.
const AGENT_USER: &str = "ops-it-agent";

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the test can run here: it needs root (a second user). When
/// not, says what is skipped.
fn root_or_skip(what: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED (not root): {what}");
    }
    is_root()
}

/// Creates the tests' agent user once (concurrent tests may race: a user
/// that exists already is fine). Its uid.
fn agent_user() -> u32 {
    let _ = Command::new("useradd")
        .args([
            "--system",
            "--create-home",
            "--home-dir",
            "/var/lib/ops-it-agent",
            "--shell",
            "/usr/sbin/nologin",
            AGENT_USER,
        ])
        .output()
        .expect("useradd (the passwd package)");
    let out = Command::new("id")
        .args(["-u", AGENT_USER])
        .output()
        .unwrap();
    assert!(out.status.success(), "no user {AGENT_USER}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

struct Setup {
    srv: Server,
    repo: PathBuf,
    records: PathBuf,
    env_file: PathBuf,
    log_dir: PathBuf,
    config_before: String,
}

/// A server whose workspace 1 runs in a fresh repository, a folder for
/// the agent's records that anyone may write (in `records_in`, else the
/// test's folder), and an environment file holding the service token as
/// the package's does (mode 0600).
fn setup(records_in: Option<&Path>) -> Setup {
    let srv = Server::start();
    enable_dispatch(&srv);
    let dir = srv.dir.path();
    // The agent user passes through to its clone; it lists nothing here.
    chmod(dir, 0o711);
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("shared.txt"), "base\n").unwrap();
    git(&repo, &["add", "shared.txt"]);
    git(&repo, &["commit", "-q", "-m", "base"]);
    let records = records_in.unwrap_or(dir).join(format!(
        "records-{}",
        dir.file_name().unwrap().to_string_lossy()
    ));
    std::fs::create_dir(&records).unwrap();
    chmod(&records, 0o1777);
    let env_file = dir.join("ops-dispatch-launcher.env");
    std::fs::write(&env_file, format!("OPS_SERVICE_TOKEN={TOKEN}\n")).unwrap();
    chmod(&env_file, 0o600);
    let r = srv.admin().patch(
        "/api/workspaces/1",
        &json!({"repo_path": repo.display().to_string()}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let config_before = read(&repo.join(".git/config"));
    let log_dir = dir.join("launcher-logs");
    Setup {
        srv,
        repo,
        records,
        env_file,
        log_dir,
        config_before,
    }
}

/// The hostile agent, copied where any user may run it (the checkout of
/// the tests may be in a folder only its owner can enter).
fn hostile_command(s: &Setup, mode: &str) -> String {
    // Beside its records: a sandboxed agent sees its home, not /tmp.
    let script = s.records.with_extension("sh");
    std::fs::copy(example("fake-agent-hostile.sh"), &script).unwrap();
    chmod(&script, 0o755);
    format!(
        "{} {{workdir}} {} {} {} {} {mode}",
        script.display(),
        s.records.display(),
        s.env_file.display(),
        s.log_dir.display(),
        s.repo.display()
    )
}

fn start_launcher(s: &Setup, mode: &str, extra: &[(&str, &str)]) -> Launcher {
    let cmd = hostile_command(s, mode);
    // Each test's own (the default when agents run apart is one folder
    // for the host).
    let wts = s.srv.dir.path().join("worktrees").display().to_string();
    let mut vars = vec![
        ("SUPPORTED_AGENT_SLUGS", "codex"),
        ("AGENT_CMD_CODEX", cmd.as_str()),
        ("AGENT_AUTH_CHECK_CODEX", "none"),
        ("OPS_LAUNCHER_WORKTREES_DIR", wts.as_str()),
    ];
    vars.extend_from_slice(extra);
    if is_root() {
        agent_user();
        vars.push(("OPS_AGENT_USER", AGENT_USER));
    } else {
        eprintln!(
            "SKIPPED (not root): the privilege drop; agents run as the launcher's own user, so the \
             checks that need a second user (uids, /proc, the environment file, the log folder) are \
             skipped; the environment allow-list and the git hardening are checked"
        );
    }
    Launcher::start(&s.srv, &s.log_dir, &vars)
}

fn queued(srv: &Server) -> i64 {
    let svc = srv.service();
    let r = svc.post(
        "/api/tasks",
        &json!({"title": "hostile", "description": "do harm", "execution": "interactive", "agent": "codex"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json["id"].as_i64().unwrap();
    let r = svc.post(&format!("/api/tasks/{id}/dispatch"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    id
}

/// What holds whatever the launcher's user is.
fn assert_contained(s: &Setup, l: &Launcher) {
    let rec = &s.records;
    // It can read the prompt file it is given.
    assert_eq!(read(&rec.join("prompt")), "do harm");
    let agent_env = read(&rec.join("agent-env"));
    assert!(!agent_env.is_empty(), "the agent did not run\n{}", l.log());
    assert!(!agent_env.contains(TOKEN), "{agent_env}");
    assert!(
        !agent_env.contains("OPS_API_BASE") && !agent_env.contains("OPS_LAUNCHER_"),
        "the launcher's configuration reached the agent: {agent_env}"
    );
    // The launcher's own git ran nothing the agent configured but the
    // clean filter, which runs as the agent (fsmonitor, hooks, textconv
    // and external diffs are off).
    let ran = read(&rec.join("ran"));
    for line in ran.lines() {
        assert!(line.ends_with(" filter"), "git ran {line:?}\n{ran}");
    }
    let ran_env = read(&rec.join("ran-env"));
    assert!(!ran_env.contains(TOKEN), "{ran_env}");
    assert!(
        !ran_env.lines().any(|l| l.starts_with("OPS_")),
        "git as the launcher runs it carried the launcher's environment: {ran_env}"
    );
    // The repository's main checkout and configuration are untouched.
    assert_eq!(git(&s.repo, &["status", "--porcelain"]), "");
    assert!(!s.repo.join("pwned.txt").exists());
    assert_eq!(read(&s.repo.join(".git/config")), s.config_before);
}

/// What only an agent user apart from the launcher's gives.
fn assert_separated(s: &Setup) {
    let rec = &s.records;
    let uid: u32 = read(&rec.join("agent-uid")).trim().parse().unwrap();
    assert_eq!(uid, agent_user(), "the agent ran as uid {uid}");
    for line in read(&rec.join("ran")).lines() {
        assert!(
            line.starts_with(&format!("{uid} ")),
            "git ran the agent's command as another user: {line}"
        );
    }
    let stolen = read(&rec.join("stolen"));
    assert!(
        !stolen.contains(TOKEN),
        "the agent read the token: {stolen}"
    );
    assert!(
        !stolen.contains("claim_token"),
        "the agent read a state file: {stolen}"
    );
    // Unreadable, or (in a sandbox) an empty folder in its place.
    let listed = read(&rec.join("listed"));
    assert!(
        listed.lines().all(|l| l == "." || l == ".."),
        "the agent listed the log folder: {listed}"
    );
    // What the agent believed it wrote outside its folder (in a sandbox,
    // a private copy of the path) is not there.
    for path in read(&rec.join("escaped")).lines() {
        let p = Path::new(path);
        if path.ends_with(".git/config") {
            assert_eq!(read(p), s.config_before, "the agent wrote {path}");
        } else if path.ends_with(".run.json") {
            assert_ne!(read(p).trim(), "{}", "the agent wrote {path}");
        } else {
            assert!(!p.exists(), "the agent wrote {path}");
        }
    }
    // The log folder is the launcher's alone, and so is all in it.
    let mode = std::fs::metadata(&s.log_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the log folder is mode {mode:o}");
    for e in std::fs::read_dir(&s.log_dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let mode = e.metadata().unwrap().permissions().mode();
        if e.metadata().unwrap().is_file() {
            assert_eq!(mode & 0o077, 0, "{name} is mode {mode:o}");
        }
    }
}

#[test]
fn a_hostile_agent_gets_nothing_but_its_clone() {
    let s = setup(None);
    let l = start_launcher(&s, "config", &[]);
    let id = queued(&s.srv);
    let t = wait_status(&s.srv, id, "review", 60);
    assert_contained(&s, &l);
    if is_root() {
        assert_separated(&s);
    }
    // Its work came back as data: on its branch, with its configuration
    // left behind in its clone.
    let branch = format!("ops/task-{id}");
    assert_eq!(
        git(&s.repo, &["show", &format!("{branch}:hostile.txt")]),
        "hostile work\n"
    );
    let patch = &t.changes.as_ref().unwrap().patch;
    assert!(patch.contains("+hostile work"), "{patch}");
    // The filter did run (proof that the test can fail): as the agent.
    assert!(
        read(&s.records.join("ran")).contains(" filter"),
        "{}",
        l.log()
    );
    // What the agent left running in its session ended with its run.
    let bg: u32 = read(&s.records.join("background-pid"))
        .trim()
        .parse()
        .unwrap();
    crate::util::wait_for(10, "the agent's background process killed", || {
        (!crate::launcher::alive(bg)).then_some(())
    });
    // Done: its clone goes (emptied as the agent user), its branch stays.
    let r = s
        .srv
        .service()
        .patch(&format!("/api/tasks/{id}"), &json!({"status": "done"}));
    assert_eq!(r.status, 200, "{}", r.text);
    let clone = s.srv.dir.path().join(format!("worktrees/task-{id}"));
    crate::util::wait_for(30, "the clone removed", || (!clone.exists()).then_some(()));
    assert_eq!(
        git(&s.repo, &["show", &format!("{branch}:hostile.txt")]),
        "hostile work\n"
    );
}

#[test]
fn a_clone_whose_git_points_elsewhere_blocks_the_run_and_nothing_is_taken() {
    let s = setup(None);
    let l = start_launcher(&s, "gitfile", &[]);
    let id = queued(&s.srv);
    let t = wait_status(&s.srv, id, "waiting", 60);
    assert!(t.task.blocked, "{t:?}");
    let reason = t.task.blocked_reason.as_deref().unwrap();
    assert!(
        reason.contains("agent tampered with its clone") && reason.contains("replaced by a file"),
        "{reason}"
    );
    assert_contained(&s, &l);
    if is_root() {
        assert_separated(&s);
    }
    assert_eq!(read(&s.records.join("ran")), "", "git ran in the clone");
    // Nothing was committed: the branch is where it started.
    let branch = format!("ops/task-{id}");
    assert_eq!(
        git(&s.repo, &["rev-parse", &branch]),
        git(&s.repo, &["rev-parse", "main"])
    );
}

/// Whether this host can run the sandbox test: root (an agent user) and
/// bubblewrap. CI installs bubblewrap and sets `OPS_REQUIRE_BWRAP=1`, which
/// makes a skip a failure.
fn sandbox_available() -> bool {
    let required = std::env::var("OPS_REQUIRE_BWRAP").is_ok_and(|v| v == "1");
    let why = if !is_root() {
        "not root, so no agent user to sandbox"
    } else if Command::new("bwrap").arg("--version").output().is_err() {
        "bubblewrap is not installed (apt-get install bubblewrap)"
    } else {
        return true;
    };
    assert!(!required, "OPS_REQUIRE_BWRAP=1 but {why}");
    eprintln!("SKIPPED the sandbox test: {why}");
    false
}

#[test]
fn in_the_sandbox_the_agent_sees_only_its_clone_and_home() {
    if !sandbox_available() {
        return;
    }
    agent_user();
    // Outside its clone and home the sandbox is read-only: the records go
    // to its home.
    let home = PathBuf::from("/var/lib/ops-it-agent");
    let s = setup(Some(&home));
    let l = start_launcher(&s, "config", &[("OPS_AGENT_SANDBOX", "bwrap")]);
    assert!(
        l.log().is_empty() || !l.log().contains("cannot make a sandbox"),
        "{}",
        l.log()
    );
    let other = queued(&s.srv);
    let id = queued(&s.srv);
    wait_status(&s.srv, other, "review", 60);
    wait_status(&s.srv, id, "review", 60);
    assert_contained(&s, &l);
    assert_separated(&s);
    // Beside its own folder it sees no other task's.
    let siblings = read(&s.records.join("siblings"));
    let tasks: Vec<&str> = siblings
        .lines()
        .filter(|n| n.starts_with("task-") && !n.ends_with(".prompt.md"))
        .collect();
    assert_eq!(
        tasks.len(),
        1,
        "the agent saw other tasks' folders: {siblings}"
    );
    // So did what it made git run after it ended: each listing (after a
    // "--") shows one task's folder at most.
    let ran = read(&s.records.join("ran-siblings"));
    assert!(
        ran.contains("--"),
        "git ran nothing of the agent's: {}",
        l.log()
    );
    for listing in ran.split(
        "--
",
    ) {
        let tasks = listing
            .lines()
            .filter(|n| n.starts_with("task-") && !n.ends_with(".prompt.md"))
            .count();
        assert!(
            tasks <= 1,
            "git in a clone saw other tasks' folders: {listing}"
        );
    }
    assert!(
        l.log().contains("sandbox: bubblewrap"),
        "the launcher did not say it sandboxes: {}",
        l.log()
    );
    let _ = std::fs::remove_dir_all(&s.records);
    let _ = std::fs::remove_file(s.records.with_extension("sh"));
}

#[test]
fn a_worktrees_folder_the_agent_user_cannot_reach_stops_the_launcher() {
    if !root_or_skip("no agent user to reach the folder") {
        return;
    }
    agent_user();
    let dir = tempfile::tempdir().unwrap();
    let closed = dir.path().join("closed");
    std::fs::create_dir(&closed).unwrap();
    chmod(&closed, 0o700);
    let wts = closed.join("wts").display().to_string();
    let err = refused_start(dir.path(), &[("OPS_LAUNCHER_WORKTREES_DIR", &wts)]);
    assert!(
        err.contains("OPS_LAUNCHER_WORKTREES_DIR")
            && err.contains(&format!("cannot pass through {}", closed.display())),
        "{err}"
    );
}

#[test]
fn a_cli_the_agent_user_cannot_run_is_reported_missing_not_logged_out() {
    if !root_or_skip("no agent user to run the CLI as") {
        return;
    }
    let s = setup(None);
    let closed = s.srv.dir.path().join("closed");
    std::fs::create_dir(&closed).unwrap();
    chmod(&closed, 0o700);
    let cli = closed.join("codex");
    std::fs::copy(example("fake-agent-ok.sh"), &cli).unwrap();
    chmod(&cli, 0o755);
    agent_user();
    let cmd = cli.display().to_string();
    let wts = s.srv.dir.path().join("worktrees").display().to_string();
    let l = Launcher::start(
        &s.srv,
        &s.log_dir,
        &[
            ("SUPPORTED_AGENT_SLUGS", "codex"),
            ("AGENT_CMD_CODEX", &cmd),
            ("OPS_AGENT_USER", AGENT_USER),
            ("OPS_LAUNCHER_WORKTREES_DIR", &wts),
        ],
    );
    let reason = crate::util::wait_for(20, "the heartbeat's reason", || {
        let h = s.srv.service().get("/api/dispatch/health").json;
        let a = &h["workers"][0]["agents"][0];
        (a["available"] == false).then(|| a["reason"].as_str().unwrap_or_default().to_string())
    });
    assert!(
        reason.starts_with("runtime no disponible en host")
            && reason.contains(&format!("cannot pass through {}", closed.display())),
        "{reason}\n{}",
        l.log()
    );
}

/// A launcher started as root with `vars`, expected to refuse to start;
/// what it said.
fn refused_start(dir: &Path, vars: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(crate::util::bin());
    cmd.arg("launcher")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OPS_API_BASE", "http://127.0.0.1:9/api")
        .env("OPS_SERVICE_TOKEN", TOKEN)
        .env("SUPPORTED_AGENT_SLUGS", "codex")
        .env("OPS_AGENT_USER", AGENT_USER)
        .env("OPS_LAUNCHER_LOG_DIR", dir.join("logs"));
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_worktrees_folder_another_user_could_replace_stops_the_launcher() {
    if !root_or_skip("no agent user") {
        return;
    }
    agent_user();
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o711);
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let wts = open.join("wts").display().to_string();
    let err = refused_start(dir.path(), &[("OPS_LAUNCHER_WORKTREES_DIR", &wts)]);
    assert!(
        err.contains("OPS_LAUNCHER_WORKTREES_DIR")
            && err.contains(&format!(
                "{} (owner uid 0, mode 777) could be replaced",
                open.display()
            )),
        "{err}"
    );
}

/// Makes the repository of `s` another user's (`nobody`), with a clean
/// filter in its own configuration that records who runs it.
fn give_repo_to_nobody(s: &Setup) -> PathBuf {
    let ran = s.records.join("owner-ran");
    git(
        &s.repo,
        &[
            "config",
            "filter.own.clean",
            &format!("sh -c 'id -u >> {}; cat'", ran.display()),
        ],
    );
    git(&s.repo, &["config", "filter.own.smudge", "cat"]);
    std::fs::write(s.repo.join(".gitattributes"), "* filter=own\n").unwrap();
    git(&s.repo, &["add", ".gitattributes"]);
    git(&s.repo, &["commit", "-q", "-m", "attributes"]);
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&s.repo)
        .status()
        .unwrap();
    assert!(st.success());
    // What the test's own git ran above does not count.
    let _ = std::fs::remove_file(&ran);
    ran
}

#[test]
fn a_repository_of_another_user_is_used_as_that_user_never_as_root() {
    if !root_or_skip("repositories of other users") {
        return;
    }
    let s = setup(None);
    let ran = give_repo_to_nobody(&s);
    // Touched, so that git must run the filter to know it is unchanged.
    std::fs::write(s.repo.join("shared.txt"), "base\n").unwrap();
    let l = start_launcher(&s, "config", &[]);
    let id = queued(&s.srv);
    wait_status(&s.srv, id, "review", 60);
    let uids = read(&ran);
    assert!(
        !uids.is_empty(),
        "the repository's filter never ran\n{}",
        l.log()
    );
    assert!(
        uids.lines().all(|u| u == "65534"),
        "the repository's configuration ran as another user than its owner: {uids}"
    );
    // Its work came back, into the repository of its owner.
    let branch = format!("ops/task-{id}");
    assert_eq!(
        git(
            &s.repo,
            &[
                "-c",
                "safe.directory=*",
                "show",
                &format!("{branch}:hostile.txt")
            ]
        ),
        "hostile work\n"
    );
}

#[test]
fn a_repository_the_agent_user_cannot_read_is_refused() {
    if !root_or_skip("no agent user") {
        return;
    }
    let s = setup(None);
    chmod(&s.repo.join(".git"), 0o700);
    let _l = start_launcher(&s, "config", &[]);
    let id = queued(&s.srv);
    let t = wait_status(&s.srv, id, "waiting", 60);
    let reason = t.task.blocked_reason.as_deref().unwrap();
    assert!(
        reason.starts_with("repository not usable: not readable by the agent user"),
        "{reason}"
    );
    assert_eq!(read(&s.records.join("agent-env")), "", "the agent ran");
}
