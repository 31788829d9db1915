//! One private clone per task that names a repository: made before its
//! agent starts (on the task's own branch `ops/task-<id>`, under the
//! worktrees folder), recorded and committed after the agent ends, its
//! branch brought back into the repository, and removed once the task is
//! done or archived (the branch stays).
//!
//! The repository belongs to its workspace, not to agents: the agent user
//! may read it, never write it (a repository it can write is refused),
//! because every git that later runs there — the launcher's included —
//! obeys its configuration. So a task does not get a `git worktree` (which
//! shares the repository's `.git`) but a clone of its own that borrows the
//! repository's objects (`objects/info/alternates`, as `git clone
//! --shared` does), owned by the agent user. Every git in that clone runs
//! as the agent user: whatever it was made to run (a filter driver, an
//! fsmonitor) runs with no more rights than the agent had. The task's
//! branch comes back into the repository as data only: the agent user's
//! git writes a bundle to the launcher, and the launcher fetches that
//! bundle (objects checked) into `refs/heads/ops/task-<id>`; diffs are
//! then made in the repository.
//!
//! Every git runs with an argument vector (never a shell), no system or
//! global configuration, no fsmonitor, no hooks, no external diff or
//! textconv, no `GIT_*` from the environment, each bounded by
//! `OPS_LAUNCHER_GIT_TIMEOUT_SECONDS`. These commands run on a task's
//! runner or the launch, and on the probe thread for clean-up: never on
//! the heartbeat.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::boundary::{AgentUser, Boundary, SandboxView};
use super::process::{kill_session, new_session, read_on_side};

/// The tasks whose clone is being made or removed, so that the clean-up
/// never removes one that a launch is taking up (a launch counts its task
/// as running before it takes this). One task's slow git never holds up
/// another's.
static BUSY: std::sync::Mutex<BTreeSet<i64>> = std::sync::Mutex::new(BTreeSet::new());
static FREED: std::sync::Condvar = std::sync::Condvar::new();

/// Held while task `id`'s clone is made or removed.
struct TaskLock(i64);

fn lock(id: i64) -> TaskLock {
    let mut busy = BUSY.lock().unwrap_or_else(|p| p.into_inner());
    while busy.contains(&id) {
        busy = FREED.wait(busy).unwrap_or_else(|p| p.into_inner());
    }
    busy.insert(id);
    TaskLock(id)
}

impl Drop for TaskLock {
    fn drop(&mut self) {
        BUSY.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
        FREED.notify_all();
    }
}

/// A patch is reported up to this many bytes (its head); the server takes
/// at most `PATCH_LIMIT`.
pub const PATCH_MAX: usize = 200 * 1024;
/// `git status` and `diff --stat` are reported up to this many bytes.
pub const STAT_MAX: usize = 32 * 1024;
/// The failure signature of a task whose repository cannot be used.
pub const SIG_REPO: &str = "repository not usable";
/// The failure signature of a run whose clone was tampered with.
pub const SIG_TAMPERED: &str = "agent tampered with its clone";

const AUTHOR: [&str; 4] = [
    "-c",
    "user.name=OPS Center launcher",
    "-c",
    "user.email=ops-center@localhost",
];

/// Switched off for every git the launcher runs: each can run a command
/// that the repository's (or a clone's) configuration names.
const HARDENING: [&str; 6] = [
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.quotePath=false",
];

/// A task's clone, as the launcher records it (in the task's state file
/// and in `task-<id>.json` next to the clone, which the clean-up reads).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Worktree {
    pub task_id: i64,
    /// The repository's top level.
    pub repo: PathBuf,
    /// The clone.
    pub path: PathBuf,
    pub branch: String,
    /// The commit the task's branch started from (its merge base with the
    /// base ref when the branch already existed): what the diff is against.
    pub base: String,
    /// The commit the branch was at when this run started: a run that
    /// leaves it there changed nothing. Empty in a record of an older
    /// launcher.
    #[serde(default)]
    pub start: String,
    /// The repository's object store, which the clone borrows from. Empty
    /// for a `git worktree` made by an older launcher.
    #[serde(default)]
    pub objects: PathBuf,
}

impl Worktree {
    /// Made by an older launcher as a `git worktree` of the repository.
    fn is_legacy(&self) -> bool {
        self.objects.as_os_str().is_empty()
    }
}

/// What a run changed, as reported with `finished` or `failed`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub branch: String,
    pub head: String,
    pub base: String,
    /// Where the branch was when the run started.
    #[serde(default)]
    pub start: String,
    /// `git status --porcelain` before the launcher committed.
    pub status: String,
    pub diff_stat: String,
    pub patch: String,
    pub truncated: bool,
}

/// Why a task's repository cannot be used: `kind` completes the signature,
/// `evidence` is what git said.
#[derive(Clone, Debug, PartialEq)]
pub struct Unusable {
    pub kind: &'static str,
    pub reason: String,
    pub evidence: String,
}

/// One git command's result.
struct Out {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    /// The command's output went past the limit it was read with.
    cut: bool,
    stderr: String,
}

/// How the launcher runs git: who the agents are (and their sandbox), and
/// for how long one git may run.
#[derive(Clone, Copy)]
pub struct Git<'a> {
    pub boundary: &'a Boundary,
    pub timeout: Duration,
}

/// Where a git command runs, which decides as whom.
#[derive(Clone, Copy)]
enum Side<'a> {
    /// In the workspace's repository, as its owner: only the owner's
    /// configuration is obeyed (the rule of git's `safe.directory`), so
    /// whatever the repository makes git run runs with no more rights than
    /// its owner has. Root's git never runs in another user's repository.
    Repo(&'a AgentUser),
    /// In a task's clone, as the agent user and, when agents have one, in
    /// their sandbox: nothing there is trusted. `objects` is the
    /// repository's object store, which the clone borrows.
    Clone { objects: &'a Path },
    /// As the launcher, in a folder that nobody else can write yet.
    Fresh,
}

impl Git<'_> {
    fn agent(&self) -> &AgentUser {
        &self.boundary.user
    }

    fn path_var(&self) -> Option<&str> {
        self.boundary.path_var.as_deref()
    }

    fn command(&self, side: Side, dir: &Path, args: &[&str]) -> Command {
        let mut argv: Vec<String> = vec!["git".into(), "-C".into(), dir.display().to_string()];
        argv.extend(HARDENING.iter().map(|a| a.to_string()));
        argv.extend(args.iter().map(|a| a.to_string()));
        let (user, argv) = match side {
            Side::Repo(owner) => (owner.clone(), argv),
            Side::Clone { objects } => {
                let view = SandboxView {
                    workdir: dir,
                    home: &self.agent().home,
                    hidden: &self.boundary.hidden,
                    shown: &[objects],
                };
                (
                    self.agent().clone(),
                    self.boundary.sandbox.wrap(&view, &argv),
                )
            }
            Side::Fresh => (
                AgentUser {
                    separate: false,
                    ..self.agent().clone()
                },
                argv,
            ),
        };
        let mut cmd = user.plain_command(&argv[0], self.path_var());
        cmd.args(&argv[1..])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        new_session(&mut cmd);
        cmd
    }

    /// Runs `git -C dir ARGS` on `side`, killing it after the timeout. At
    /// most `limit` bytes of stdout are kept (the rest is read and
    /// dropped, so git never blocks on a full pipe); with `to`, stdout
    /// goes to that file instead. Whatever it left running in the
    /// background is killed with its session.
    fn run(
        &self,
        side: Side,
        dir: &Path,
        args: &[&str],
        limit: usize,
        to: Option<File>,
    ) -> Result<Out, String> {
        let mut cmd = self.command(side, dir, args);
        let to_file = to.is_some();
        match to {
            Some(f) => cmd.stdout(Stdio::from(f)),
            None => cmd.stdout(Stdio::piped()),
        };
        let what = format!("git -C {} {}", dir.display(), args.join(" "));
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{what}: cannot run git: {e}"))?;
        let out =
            (!to_file).then(|| read_on_side(Box::new(child.stdout.take().expect("piped")), limit));
        let err = read_on_side(Box::new(child.stderr.take().expect("piped")), 16 * 1024);
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if started.elapsed() >= self.timeout => {
                    kill_session(child.id());
                    let _ = child.wait();
                    return Err(format!(
                        "{what}: killed after {} s without finishing",
                        self.timeout.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("{what}: cannot wait for git: {e}")),
            }
        };
        kill_session(child.id());
        let (stdout, cut) = out.map(|o| o.finish()).unwrap_or_default();
        let (stderr, _) = err.finish();
        Ok(Out {
            ok: status.success(),
            code: status.code(),
            stdout: utf8_head(&stdout),
            cut,
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        })
    }

    fn repo(
        &self,
        owner: &AgentUser,
        dir: &Path,
        args: &[&str],
        limit: usize,
    ) -> Result<Out, String> {
        self.run(Side::Repo(owner), dir, args, limit, None)
    }

    fn in_clone(&self, wt: &Worktree, args: &[&str], limit: usize) -> Result<Out, String> {
        self.run(
            Side::Clone {
                objects: &wt.objects,
            },
            &wt.path,
            args,
            limit,
            None,
        )
    }

    /// A git command that must succeed; its stdout, trimmed.
    fn must(&self, side: Side, dir: &Path, args: &[&str]) -> Result<String, String> {
        let o = self.run(side, dir, args, 1024 * 1024, None)?;
        if !o.ok {
            return Err(format!(
                "git -C {} {} failed (exit code {}): {}",
                dir.display(),
                args.join(" "),
                o.code.map_or("none".into(), |c| c.to_string()),
                o.stderr
            ));
        }
        Ok(o.stdout.trim().to_string())
    }
}

/// The bytes as text, without a character cut at the end.
fn utf8_head(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&b[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// A full object name, as git prints one (SHA-1 or SHA-256).
fn is_object_name(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn branch_of(task_id: i64) -> String {
    format!("ops/task-{task_id}")
}

fn sidecar(dir: &Path, task_id: i64) -> PathBuf {
    dir.join(format!("task-{task_id}.json"))
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Gives every file under `path` to the agent user, links included (not
/// followed). Only for a folder nobody but the launcher could write yet:
/// `path` itself is given last, so that until everything inside is done no
/// agent can enter it and swap a folder for a link.
fn give_tree(agent: &AgentUser, path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        for e in std::fs::read_dir(path)? {
            give_tree(agent, &e?.path())?;
        }
    }
    agent.give(path)
}

/// The worktrees folder: the launcher's, which agents may pass through to
/// their own clone and prompt, never list or write.
pub fn make_dir(dir: &Path, agent: &AgentUser) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .and_then(|()| {
            if agent.separate {
                set_mode(dir, 0o711)
            } else {
                Ok(())
            }
        })
        .map_err(|e| format!("cannot create the worktrees folder {}: {e}", dir.display()))
}

/// Up to 4 KiB of a file in a clone, read as the agent user: whatever the
/// agent made of the path (a link to a secret, a pipe that never ends) it
/// reads nothing the agent could not read itself, and never hangs.
fn read_as_agent(path: &Path, git: &Git) -> Result<String, String> {
    let mut cmd = git.agent().plain_command("head", git.path_var());
    cmd.args(["-c", "4096", "--"]).arg(path);
    super::process::run_command(cmd, Duration::from_secs(10))
}

/// The repository at `top` as the launcher uses it: its owner (who its git
/// runs as) and its common git folder, checked to belong to that owner.
fn repo_owner(top: &Path, common: &Path) -> Result<AgentUser, String> {
    use std::os::unix::fs::MetadataExt;
    let owner = AgentUser::owner_of(top)?;
    let m = std::fs::symlink_metadata(common).map_err(|e| format!("{}: {e}", common.display()))?;
    if m.uid() != owner.uid {
        return Err(format!(
            "{} belongs to uid {} but its checkout {} to uid {}: a repository must have one owner",
            common.display(),
            m.uid(),
            top.display(),
            owner.uid
        ));
    }
    Ok(owner)
}

/// The owner of the repository a clone came from.
fn owner_of_clone_repo(wt: &Worktree) -> Result<AgentUser, String> {
    AgentUser::owner_of(&wt.repo)
}

/// Creates (or reuses) the clone of task `task_id` for `repo_path` at
/// `base_ref` (default: the repository's current branch) under `dir`.
///
/// A new branch is refused when the checkout has uncommitted changes to
/// tracked files: the agent would not see them, which is rarely what the
/// operator meant. A task run again continues on its existing branch.
pub fn prepare(
    dir: &Path,
    task_id: i64,
    repo_path: &str,
    base_ref: Option<&str>,
    git: &Git,
) -> Result<Worktree, Unusable> {
    let unusable = |kind: &'static str, reason: String, evidence: String| Unusable {
        kind,
        reason,
        evidence,
    };
    let git_failed = |e: String| unusable("git failed", e.clone(), e);
    let _held = lock(task_id);
    let repo = Path::new(repo_path);
    match std::fs::metadata(repo) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(unusable(
                "missing",
                format!("repo_path {repo_path} is not a folder"),
                format!("{repo_path}: not a directory"),
            ))
        }
        Err(e) => {
            return Err(unusable(
                "missing",
                format!("repo_path {repo_path} does not exist on this host"),
                format!("{repo_path}: {e}"),
            ))
        }
    }
    let not_owned = |e: String| unusable("owner", e.clone(), e);
    // Before any git runs there: as whom.
    let owner = AgentUser::owner_of(repo).map_err(not_owned)?;
    let top = git
        .repo(
            &owner,
            repo,
            &[
                "rev-parse",
                "--path-format=absolute",
                "--show-toplevel",
                "--git-common-dir",
            ],
            64 * 1024,
        )
        .map_err(git_failed)?;
    let mut lines = top.stdout.lines();
    let (Some(top_s), Some(common)) = (lines.next().filter(|_| top.ok), lines.next()) else {
        return Err(unusable(
            "not a git checkout",
            format!("repo_path {repo_path} is not a git checkout (or is a bare repository)"),
            format!(
                "$ git -C {repo_path} rev-parse --show-toplevel\n{}",
                top.stderr
            ),
        ));
    };
    let top = PathBuf::from(top_s.trim());
    let common = PathBuf::from(common.trim());
    let objects = common.join("objects");
    let owner = repo_owner(&top, &common).map_err(not_owned)?;
    let agent = git.agent();
    if agent.separate {
        let writable: Vec<String> = [&top, &common, &common.join("config"), &objects]
            .into_iter()
            .filter(|p| agent.may_write(p))
            .map(|p| p.display().to_string())
            .collect();
        if !writable.is_empty() || owner.uid == agent.uid {
            let what = if writable.is_empty() {
                top.display().to_string()
            } else {
                writable.join(", ")
            };
            return Err(unusable(
                "writable by the agent user",
                format!(
                    "the agent user {} can write {what}: an agent could change the repository's \
                     configuration, which every later git obeys; make it readable only (e.g. owned by \
                     another user, mode 755)",
                    agent.name
                ),
                format!("writable by {}: {what}", agent.name),
            ));
        }
        // The clone borrows the repository's objects: the agent must be
        // able to read them, or its git fails half-way.
        agent.can_reach(&objects).map_err(|e| {
            unusable(
                "not readable by the agent user",
                format!("the agent user cannot read the repository's objects: {e}"),
                e,
            )
        })?;
    }
    make_dir(dir, agent).map_err(git_failed)?;
    let branch = branch_of(task_id);
    let path = dir.join(format!("task-{task_id}"));
    let base_name = base_ref.unwrap_or("HEAD");

    if std::fs::symlink_metadata(&path).is_ok() {
        let known = read_sidecar(&sidecar(dir, task_id));
        match known {
            // Run again: its clone is still there, untouched.
            Some(mut wt) if !wt.is_legacy() && wt.repo == top && wt.objects == objects => {
                return match tampered(&wt, git) {
                    // This run starts where the clone is now.
                    None => {
                        let in_clone = Side::Clone {
                            objects: &wt.objects,
                        };
                        wt.start = git
                            .must(in_clone, &wt.path, &["rev-parse", "--verify", "HEAD"])
                            .map_err(git_failed)?;
                        Ok(wt)
                    }
                    Some(why) => Err(unusable(
                        "clone tampered with",
                        format!(
                            "the clone {} of an earlier run was tampered with: {why}",
                            path.display()
                        ),
                        why,
                    )),
                };
            }
            Some(wt) if wt.is_legacy() && wt.repo == top => {
                remove_legacy(&wt, git).map_err(git_failed)?;
            }
            _ => {
                return Err(git_failed(format!(
                    "{} exists but is not this task's clone of {}",
                    path.display(),
                    top.display()
                )))
            }
        }
    }
    let base_out = git
        .repo(
            &owner,
            &top,
            &[
                "rev-parse",
                "--verify",
                "--end-of-options",
                &format!("{base_name}^{{commit}}"),
            ],
            1024,
        )
        .map_err(git_failed)?;
    if !base_out.ok {
        return Err(unusable(
            "unknown base_ref",
            format!("base_ref {base_name:?} does not exist in {}", top.display()),
            format!(
                "$ git -C {} rev-parse --verify {base_name}^{{commit}}\n{}",
                top.display(),
                base_out.stderr
            ),
        ));
    }
    let base_sha = base_out.stdout.trim().to_string();
    let existing = git
        .repo(
            &owner,
            &top,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ],
            1024,
        )
        .map_err(git_failed)?;
    let in_repo = Side::Repo(&owner);
    let (start, base) = if existing.ok {
        let start = existing.stdout.trim().to_string();
        let base = git
            .must(in_repo, &top, &["merge-base", &base_sha, &start])
            .unwrap_or(base_sha);
        (start, base)
    } else {
        let dirty = git
            .must(
                in_repo,
                &top,
                &["status", "--porcelain", "--untracked-files=no"],
            )
            .map_err(git_failed)?;
        if !dirty.is_empty() {
            return Err(unusable(
                "uncommitted changes",
                format!(
                    "the checkout {} has uncommitted changes; commit or stash them so that the task \
                     starts from a known state",
                    top.display()
                ),
                format!("$ git -C {} status --porcelain\n{dirty}", top.display()),
            ));
        }
        // The branch is the task's from the start, as it was with
        // worktrees: the clone's work comes back to it.
        git.must(in_repo, &top, &["branch", "--no-track", &branch, &base_sha])
            .map_err(git_failed)?;
        (base_sha.clone(), base_sha)
    };
    make_clone(&path, &objects, &branch, &start, git).map_err(|e| {
        let _ = std::fs::remove_dir_all(&path);
        git_failed(e)
    })?;
    let wt = Worktree {
        task_id,
        repo: top,
        path,
        branch,
        base,
        start,
        objects,
    };
    super::state::write_atomic(&sidecar(dir, task_id), &wt)
        .map_err(|e| git_failed(format!("cannot record the clone: {e}")))?;
    Ok(wt)
}

/// Makes the clone at `path`, on `branch` at `start`: set up by the
/// launcher in a folder only it can write (an empty repository whose
/// object store borrows the repository's), then given to the agent user,
/// who checks the files out.
fn make_clone(
    path: &Path,
    objects: &Path,
    branch: &str,
    start: &str,
    git: &Git,
) -> Result<(), String> {
    std::fs::create_dir(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    set_mode(path, 0o700).map_err(|e| format!("{}: {e}", path.display()))?;
    git.must(Side::Fresh, path, &["init", "-q", "-b", branch])?;
    let alternates = path.join(".git/objects/info/alternates");
    std::fs::write(&alternates, format!("{}\n", objects.display()))
        .map_err(|e| format!("cannot write {}: {e}", alternates.display()))?;
    give_tree(git.agent(), path).map_err(|e| {
        format!(
            "cannot give {} to the agent user {}: {e}",
            path.display(),
            git.agent().name
        )
    })?;
    git.must(
        Side::Clone { objects },
        path,
        &["reset", "-q", "--hard", start],
    )?;
    Ok(())
}

/// Whether the clone is still the one the launcher made, read without
/// running anything in it: its `.git` a folder of the agent user's (not a
/// file or a link pointing at another repository), borrowing objects only
/// from its repository, with no `commondir` sending git elsewhere.
/// `Some(why)` when it is not: the run's change is not taken.
pub fn tampered(wt: &Worktree, git: &Git) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let agent = git.agent();
    let dot_git = wt.path.join(".git");
    let m = match std::fs::symlink_metadata(&dot_git) {
        Ok(m) => m,
        Err(e) => return Some(format!("{} is gone ({e})", dot_git.display())),
    };
    if !m.is_dir() {
        let what = if m.file_type().is_symlink() {
            format!(
                "a link to {}",
                std::fs::read_link(&dot_git)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        } else if m.is_file() {
            let text = read_as_agent(&dot_git, git).unwrap_or_default();
            format!(
                "a file ({})",
                text.trim().chars().take(200).collect::<String>()
            )
        } else {
            "something that is neither a folder nor a file".to_string()
        };
        return Some(format!("{} was replaced by {what}", dot_git.display()));
    }
    if agent.separate && m.uid() != agent.uid {
        return Some(format!(
            "{} belongs to uid {}, not to the agent user",
            dot_git.display(),
            m.uid()
        ));
    }
    let commondir = dot_git.join("commondir");
    if std::fs::symlink_metadata(&commondir).is_ok() {
        return Some(format!("{} was added", commondir.display()));
    }
    let alternates = dot_git.join("objects/info/alternates");
    let expected = format!("{}\n", wt.objects.display());
    match read_as_agent(&alternates, git) {
        Ok(text) if text == expected => None,
        Ok(text) => Some(format!(
            "{} now names {:?} instead of {}",
            alternates.display(),
            text.trim().chars().take(200).collect::<String>(),
            wt.objects.display()
        )),
        Err(e) => Some(format!("{} is unreadable ({e})", alternates.display())),
    }
}

/// Commits whatever is uncommitted in the clone on its branch. True
/// when there was something to commit.
fn commit_all(wt: &Worktree, message: &str, git: &Git) -> Result<bool, String> {
    let in_clone = Side::Clone {
        objects: &wt.objects,
    };
    git.must(in_clone, &wt.path, &["add", "-A"])?;
    let staged = git.in_clone(wt, &["diff", "--cached", "--quiet"], 1024)?;
    if staged.ok {
        return Ok(false);
    }
    let mut args: Vec<&str> = AUTHOR.to_vec();
    args.extend([
        "commit",
        "--no-verify",
        "--no-gpg-sign",
        "-q",
        "-m",
        message,
    ]);
    git.must(in_clone, &wt.path, &args)?;
    Ok(true)
}

/// Brings the clone's `HEAD` back into the repository as branch `branch`;
/// returns the commit the branch now points at, read from the repository.
/// Only data crosses: the agent user's git writes a bundle into a file of
/// the launcher's, and the repository owner's git fetches it with its
/// objects checked, into that one ref.
fn bring_back(wt: &Worktree, branch: &str, git: &Git) -> Result<String, String> {
    let owner = owner_of_clone_repo(wt)?;
    let in_repo = Side::Repo(&owner);
    let in_clone = Side::Clone {
        objects: &wt.objects,
    };
    let head = git.must(
        in_clone,
        &wt.path,
        &["rev-parse", "--verify", "HEAD^{commit}"],
    )?;
    if !is_object_name(&head) {
        return Err(format!("the clone's HEAD is not a commit name: {head:?}"));
    }
    let ref_name = format!("refs/heads/{branch}");
    let current = git
        .must(
            in_repo,
            &wt.repo,
            &["rev-parse", "--verify", "--quiet", &ref_name],
        )
        .unwrap_or_default();
    let known = git
        .repo(
            &owner,
            &wt.repo,
            &["cat-file", "-e", &format!("{head}^{{commit}}")],
            1024,
        )?
        .ok;
    if known {
        if current != head {
            let mut args = vec!["update-ref", &ref_name, &head];
            if !current.is_empty() {
                args.push(&current);
            }
            git.must(in_repo, &wt.repo, &args)?;
        }
    } else {
        let bundle = wt
            .path
            .with_file_name(format!(".task-{}.bundle", wt.task_id));
        let _ = std::fs::remove_file(&bundle);
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&bundle)
                .map_err(|e| format!("cannot create {}: {e}", bundle.display()))?
        };
        // Read by the repository's owner only.
        owner
            .give(&bundle)
            .map_err(|e| format!("cannot give {} to its reader: {e}", bundle.display()))?;
        let mut args = vec![
            "bundle",
            "create",
            "-q",
            "-",
            "HEAD",
            "--not",
            wt.base.as_str(),
        ];
        if is_object_name(&current) {
            args.push(&current);
        }
        let made = git.run(in_clone, &wt.path, &args, 0, Some(file));
        let fetched = made.and_then(|o| {
            if !o.ok {
                return Err(format!(
                    "git bundle create in {} failed: {}",
                    wt.path.display(),
                    o.stderr
                ));
            }
            let bundle_s = bundle.display().to_string();
            let refspec = format!("+HEAD:{ref_name}");
            git.must(
                in_repo,
                &wt.repo,
                &[
                    "-c",
                    "transfer.fsckObjects=true",
                    "fetch",
                    "-q",
                    "--no-tags",
                    "--no-write-fetch-head",
                    "--no-recurse-submodules",
                    "--",
                    &bundle_s,
                    &refspec,
                ],
            )
        });
        let _ = std::fs::remove_file(&bundle);
        fetched?;
    }
    let now = git.must(in_repo, &wt.repo, &["rev-parse", "--verify", &ref_name])?;
    if now != head {
        return Err(format!(
            "{ref_name} is at {now} after bringing the clone's HEAD {head} back"
        ));
    }
    Ok(now)
}

/// After the agent ended: what it changed (status before committing, the
/// diff of the branch against its base), committed on the branch and
/// brought back into the repository, so that nothing is lost when the
/// clone is removed. Call [`tampered`] first: a tampered clone's change is
/// not taken.
pub fn record(wt: &Worktree, git: &Git) -> Result<Change, String> {
    let status = git.in_clone(
        wt,
        &["status", "--porcelain", "--untracked-files=all"],
        STAT_MAX,
    )?;
    let message = format!(
        "ops-center: changes of task {} ({})",
        wt.task_id,
        ops_base::time::rfc3339(ops_base::time::now_ms())
    );
    commit_all(wt, &message, git)?;
    let head = bring_back(wt, &wt.branch, git)?;
    // The diff is made in the repository, from what was brought back.
    let owner = owner_of_clone_repo(wt)?;
    let range = format!("{}..{head}", wt.base);
    let diff = |extra: &str, limit: usize| {
        git.repo(
            &owner,
            &wt.repo,
            &[
                "diff",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                extra,
                &range,
            ],
            limit,
        )
    };
    let stat = diff("--stat", STAT_MAX)?;
    let patch = diff("--binary", PATCH_MAX)?;
    if !patch.ok {
        return Err(format!("git diff {range} failed: {}", patch.stderr));
    }
    Ok(Change {
        branch: wt.branch.clone(),
        head,
        base: wt.base.clone(),
        start: wt.start.clone(),
        status: status.stdout,
        diff_stat: stat.stdout,
        patch: patch.stdout,
        truncated: patch.cut,
    })
}

/// The branch that takes what was left uncommitted in a clone when it is
/// removed: never the task's own branch, whose content a person reviewed.
pub fn leftovers_branch_of(task_id: i64) -> String {
    format!("ops/task-{task_id}-leftovers")
}

/// Removes a clone whose task no longer needs it. Anything left
/// uncommitted in it since its last run was recorded is committed and
/// brought back on its own branch ([`leftovers_branch_of`]) first; if that
/// fails, or the clone was tampered with, it is kept for a person. The
/// task's branch always stays as it was.
pub fn remove(dir: &Path, wt: &Worktree, git: &Git) -> Result<(), String> {
    if wt.is_legacy() {
        remove_legacy(wt, git)?;
    } else if std::fs::symlink_metadata(&wt.path).is_ok() {
        if let Some(why) = tampered(wt, git) {
            return Err(format!("not removed, it was tampered with: {why}"));
        }
        let leftovers = leftovers_branch_of(wt.task_id);
        let saved = commit_all(
            wt,
            &format!(
                "ops-center: uncommitted changes of task {} saved before its clone was removed",
                wt.task_id
            ),
            git,
        )
        .and_then(|saved| {
            if saved {
                bring_back(wt, &leftovers, git)?;
            }
            Ok(saved)
        })
        .map_err(|e| format!("not removed, its changes could not be saved: {e}"))?;
        if saved {
            log::info!(
                "task {}: uncommitted changes in {} committed on {leftovers} before removal",
                wt.task_id,
                wt.path.display(),
            );
        }
        delete_clone(wt, git)?;
    }
    let _ = std::fs::remove_file(sidecar(dir, wt.task_id));
    Ok(())
}

/// Deletes a clone: its content as the agent user (however deep or odd it
/// is, it costs the launcher nothing and can reach nothing the agent could
/// not), then the emptied folder as the launcher.
fn delete_clone(wt: &Worktree, git: &Git) -> Result<(), String> {
    if git.agent().separate {
        let mut rm = git.agent().plain_command("rm", git.path_var());
        rm.args(["-rf", "--one-file-system", "--"]);
        let entries = std::fs::read_dir(&wt.path)
            .map_err(|e| format!("cannot list {}: {e}", wt.path.display()))?;
        for e in entries.filter_map(|e| e.ok()) {
            rm.arg(e.path());
        }
        super::process::run_command(rm, git.timeout)
            .map_err(|e| format!("cannot empty {}: {e}", wt.path.display()))?;
        std::fs::remove_dir(&wt.path)
            .map_err(|e| format!("cannot remove {}: {e}", wt.path.display()))
    } else {
        // Links are removed, never followed.
        std::fs::remove_dir_all(&wt.path)
            .map_err(|e| format!("cannot remove {}: {e}", wt.path.display()))
    }
}

/// Removes a `git worktree` that an older launcher made (its changes were
/// committed on its branch when its run ended): the folder, then the
/// repository's record of it. Nothing runs inside the folder.
fn remove_legacy(wt: &Worktree, git: &Git) -> Result<(), String> {
    if std::fs::symlink_metadata(&wt.path).is_ok() {
        std::fs::remove_dir_all(&wt.path)
            .map_err(|e| format!("cannot remove {}: {e}", wt.path.display()))?;
        log::info!(
            "task {}: the git worktree {} of an older launcher removed; its branch {} stays",
            wt.task_id,
            wt.path.display(),
            wt.branch
        );
    }
    if let Ok(owner) = owner_of_clone_repo(wt) {
        let _ = git.repo(&owner, &wt.repo, &["worktree", "prune"], 1024);
    }
    Ok(())
}

/// A sidecar, when it is the launcher's own: a file of anyone else's is
/// not a record to act on.
fn read_sidecar(path: &Path) -> Option<Worktree> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.is_file() || m.uid() != super::boundary::launcher_uid() {
        return None;
    }
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Marks a clone as used now (its age counts from here).
pub fn touch(dir: &Path, wt: &Worktree) {
    let _ = super::state::write_atomic(&sidecar(dir, wt.task_id), wt);
}

/// The clones this launcher made, with how long ago each was last used.
pub fn list(dir: &Path) -> Vec<(Worktree, Duration)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut all: Vec<(Worktree, Duration)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("task-") && n.ends_with(".json"))
        })
        .filter_map(|e| {
            let wt = read_sidecar(&e.path())?;
            let age = e
                .metadata()
                .ok()?
                .modified()
                .ok()?
                .elapsed()
                .unwrap_or_default();
            Some((wt, age))
        })
        .collect();
    all.sort_by_key(|(wt, _)| wt.task_id);
    all
}

/// One clean-up pass over the clones this launcher made: a clone is
/// removed when its task is done, archived or deleted, or (with `max_age`)
/// unused for that long while its task is not running. A task this
/// launcher runs (`running`) or that is claimed on the server is never
/// touched; a task the server cannot be asked about is left for the next
/// pass. Returns what was done, one line per clone removed or kept
/// because it could not be saved.
pub fn clean(
    dir: &Path,
    api: &super::api::Api,
    running: &dyn Fn() -> Vec<i64>,
    max_age: Option<Duration>,
    git: &Git,
) -> Vec<String> {
    let mut done = Vec::new();
    for (wt, age) in list(dir) {
        if running().contains(&wt.task_id) {
            continue;
        }
        let why = match api.get(&format!("tasks/{}", wt.task_id)) {
            Err(e) if e.status() == Some(404) => "its task was deleted".to_string(),
            Err(e) => {
                log::warn!(
                    "task {}: clone {} kept for now: cannot ask the server about the task: {e}",
                    wt.task_id,
                    wt.path.display()
                );
                continue;
            }
            Ok(t) if !t["archived_at"].is_null() => "its task is archived".to_string(),
            Ok(t) if t["status"] == "done" => "its task is done".to_string(),
            Ok(t) if t["status"] == "dispatching" || t["status"] == "doing" => continue,
            Ok(_) if max_age.is_some_and(|m| age >= m) => {
                format!("unused for {} days", age.as_secs() / 86_400)
            }
            Ok(_) => continue,
        };
        let _held = lock(wt.task_id);
        // Claimed again since it was looked at: it is in use.
        if running().contains(&wt.task_id) {
            continue;
        }
        let line = match remove(dir, &wt, git) {
            Ok(()) => format!(
                "task {}: worktree {} removed ({why}); branch {} kept in {}",
                wt.task_id,
                wt.path.display(),
                wt.branch,
                wt.repo.display()
            ),
            Err(e) => format!(
                "task {}: worktree {} kept ({why}, but {e})",
                wt.task_id,
                wt.path.display()
            ),
        };
        log::info!("{line}");
        done.push(line);
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) {
        let o = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
    }

    fn repo() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        sh(d.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(d.path().join("a.txt"), "one\n").unwrap();
        sh(d.path(), &["add", "a.txt"]);
        sh(
            d.path(),
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "-m",
                "init",
            ],
        );
        d
    }

    /// Git as the launcher runs it, with agents as the test's own user.
    fn with_git<R>(f: impl FnOnce(&Git) -> R) -> R {
        let b = Boundary {
            user: AgentUser::current(std::env::var("HOME").ok().as_deref()),
            sandbox: super::super::boundary::Sandbox::Off,
            env_extra: Default::default(),
            path_var: std::env::var("PATH").ok(),
            hidden: Vec::new(),
        };
        f(&Git {
            boundary: &b,
            timeout: Duration::from_secs(30),
        })
    }

    #[test]
    fn a_run_is_recorded_committed_and_removed() {
        with_git(a_run_is_recorded_committed_and_removed_with)
    }

    fn a_run_is_recorded_committed_and_removed_with(g: &Git) {
        let r = repo();
        let wts = tempfile::tempdir().unwrap();
        let repo_s = r.path().display().to_string();
        let wt = prepare(wts.path(), 7, &repo_s, None, g).unwrap();
        assert_eq!(wt.branch, "ops/task-7");
        std::fs::write(wt.path.join("a.txt"), "two\n").unwrap();
        std::fs::write(wt.path.join("new.txt"), "new\n").unwrap();
        let c = record(&wt, g).unwrap();
        assert!(c.status.contains("a.txt") && c.status.contains("new.txt"));
        assert!(c.diff_stat.contains("2 files changed"), "{}", c.diff_stat);
        assert!(c.patch.contains("+two"));
        assert_eq!(list(wts.path()).len(), 1);
        assert_eq!(c.start, wt.base, "a new branch starts at its base");
        // Again: the same worktree, and nothing more to commit; this run
        // starts where the last one left the branch.
        let again = prepare(wts.path(), 7, &repo_s, None, g).unwrap();
        assert_eq!(again.start, c.head);
        assert_eq!(
            Worktree {
                start: wt.start.clone(),
                ..again
            },
            wt
        );
        // Left uncommitted at removal: saved on a branch of its own first,
        // never on the task's reviewed branch.
        std::fs::write(wt.path.join("late.txt"), "late\n").unwrap();
        remove(wts.path(), &wt, g).unwrap();
        assert!(!wt.path.exists());
        assert!(list(wts.path()).is_empty());
        let show = |rev: &str| {
            let o = Command::new("git")
                .args(["-C", &repo_s, "show", "--stat", rev])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        assert!(show("ops/task-7-leftovers").contains("late.txt"));
        assert!(!show("ops/task-7").contains("late.txt"));
        // The main checkout never changed.
        assert_eq!(
            std::fs::read_to_string(r.path().join("a.txt")).unwrap(),
            "one\n"
        );
        // The branch stays, and a later run continues on it.
        let back = prepare(wts.path(), 7, &repo_s, None, g).unwrap();
        assert!(back.path.join("new.txt").exists() && !back.path.join("late.txt").exists());
        // The clone has no way into the repository but its objects.
        assert!(back.path.join(".git").is_dir());
        assert_eq!(tampered(&back, g), None);
    }

    #[test]
    fn a_clone_pointed_elsewhere_is_tampered_with() {
        with_git(|g| {
            let r = repo();
            let other = repo();
            let wts = tempfile::tempdir().unwrap();
            let repo_s = r.path().display().to_string();
            let wt = prepare(wts.path(), 3, &repo_s, None, g).unwrap();
            let alternates = wt.path.join(".git/objects/info/alternates");
            std::fs::write(
                &alternates,
                format!("{}/.git/objects\n", other.path().display()),
            )
            .unwrap();
            assert!(tampered(&wt, g).unwrap().contains("now names"));
            assert!(
                prepare(wts.path(), 3, &repo_s, None, g).unwrap_err().kind == "clone tampered with"
            );
            assert!(remove(wts.path(), &wt, g).unwrap_err().contains("tampered"));
            std::fs::remove_dir_all(wt.path.join(".git")).unwrap();
            std::fs::write(
                wt.path.join(".git"),
                format!("gitdir: {}/.git\n", other.path().display()),
            )
            .unwrap();
            let why = tampered(&wt, g).unwrap();
            assert!(
                why.contains("replaced by a file") && why.contains("gitdir:"),
                "{why}"
            );
        })
    }

    #[test]
    fn unusable_repositories() {
        with_git(unusable_repositories_with)
    }

    fn unusable_repositories_with(g: &Git) {
        let wts = tempfile::tempdir().unwrap();
        let e = prepare(wts.path(), 1, "/nonexistent/repo", None, g).unwrap_err();
        assert_eq!(e.kind, "missing");
        let plain = tempfile::tempdir().unwrap();
        let e = prepare(wts.path(), 1, &plain.path().display().to_string(), None, g).unwrap_err();
        assert_eq!(e.kind, "not a git checkout");
        assert!(
            e.evidence.contains("not a git repository"),
            "{}",
            e.evidence
        );
        let r = repo();
        let repo_s = r.path().display().to_string();
        let e = prepare(wts.path(), 1, &repo_s, Some("nope"), g).unwrap_err();
        assert_eq!(e.kind, "unknown base_ref");
        std::fs::write(r.path().join("a.txt"), "dirty\n").unwrap();
        let e = prepare(wts.path(), 1, &repo_s, None, g).unwrap_err();
        assert_eq!(e.kind, "uncommitted changes");
        assert!(e.evidence.contains("a.txt"));
    }
}
