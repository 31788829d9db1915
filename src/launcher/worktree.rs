//! One git worktree per task that names a repository: created before its
//! agent starts (on the task's own branch `ops/task-<id>`, under the
//! worktrees folder), recorded and committed after the agent ends, removed
//! once the task is done or archived (the branch stays).
//!
//! Everything goes through the `git` command line with an argument vector,
//! never a shell, each command bounded by `OPS_LAUNCHER_GIT_TIMEOUT_SECONDS`
//! and with the repository's hooks off (a hook could run anything, or
//! hang). These commands run on a task's runner or the launch, and on the
//! probe thread for clean-up: never on the heartbeat.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Held while a worktree is made or removed, so that the clean-up never
/// removes one that a launch is taking up (a launch counts its task as
/// running before it takes this).
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A patch is reported up to this many bytes (its head); the server takes
/// at most `PATCH_LIMIT`.
pub const PATCH_MAX: usize = 200 * 1024;
/// `git status` and `diff --stat` are reported up to this many bytes.
pub const STAT_MAX: usize = 32 * 1024;
/// The failure signature of a task whose repository cannot be used.
pub const SIG_REPO: &str = "repository not usable";

const AUTHOR: [&str; 4] = [
    "-c",
    "user.name=OPS Center launcher",
    "-c",
    "user.email=ops-center@localhost",
];

/// A task's worktree, as the launcher records it (in the task's state file
/// and in `task-<id>.json` next to the worktree, which the clean-up reads).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Worktree {
    pub task_id: i64,
    /// The checkout's top level.
    pub repo: PathBuf,
    pub path: PathBuf,
    pub branch: String,
    /// The commit the task's branch started from (its merge base with the
    /// base ref when the branch already existed): what the diff is against.
    pub base: String,
}

/// What a run changed, as reported with `finished` or `failed`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub branch: String,
    pub head: String,
    pub base: String,
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

/// Runs `git -C dir ARGS` with the hooks off, no prompt and untranslated
/// messages, killing it after `timeout`. At most `limit` bytes of stdout
/// are kept (the rest is read and dropped, so git never blocks on a full
/// pipe).
fn git(dir: &Path, args: &[&str], timeout: Duration, limit: usize) -> Result<Out, String> {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.quotePath=false",
        ])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let what = format!("git -C {} {}", dir.display(), args.join(" "));
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot run git: {e}"))?;
    let read = |mut r: Box<dyn Read + Send>, limit: usize| {
        std::thread::spawn(move || {
            let (mut kept, mut buf, mut cut) = (Vec::new(), [0u8; 8192], false);
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = limit.saturating_sub(kept.len());
                cut |= n > room;
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            (kept, cut)
        })
    };
    let out = read(Box::new(child.stdout.take().expect("piped")), limit);
    let err = read(Box::new(child.stderr.take().expect("piped")), 16 * 1024);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if started.elapsed() >= timeout => {
                // SAFETY: kill(2) on the process group this command leads.
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                let _ = child.wait();
                return Err(format!(
                    "{what}: killed after {} s without finishing",
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("{what}: cannot wait for git: {e}")),
        }
    };
    let (stdout, cut) = out.join().unwrap_or_default();
    let (stderr, _) = err.join().unwrap_or_default();
    Ok(Out {
        ok: status.success(),
        code: status.code(),
        stdout: utf8_head(&stdout),
        cut,
        stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
    })
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

/// Runs a git command that must succeed; its stdout, trimmed.
fn must(dir: &Path, args: &[&str], timeout: Duration) -> Result<String, String> {
    let o = git(dir, args, timeout, 1024 * 1024)?;
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

pub fn branch_of(task_id: i64) -> String {
    format!("ops/task-{task_id}")
}

fn sidecar(dir: &Path, task_id: i64) -> PathBuf {
    dir.join(format!("task-{task_id}.json"))
}

/// Creates (or reuses) the worktree of task `task_id` for `repo_path` at
/// `base_ref` (default: the checkout's current branch) under `dir`.
///
/// A new branch is refused when the checkout has uncommitted changes to
/// tracked files: the agent would not see them, which is rarely what the
/// operator meant. A task run again continues on its existing branch.
pub fn prepare(
    dir: &Path,
    task_id: i64,
    repo_path: &str,
    base_ref: Option<&str>,
    timeout: Duration,
) -> Result<Worktree, Unusable> {
    let unusable = |kind: &'static str, reason: String, evidence: String| Unusable {
        kind,
        reason,
        evidence,
    };
    let git_failed = |e: String| unusable("git failed", e.clone(), e);
    let _held = lock();
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
    let top =
        git(repo, &["rev-parse", "--show-toplevel"], timeout, 64 * 1024).map_err(git_failed)?;
    if !top.ok || top.stdout.trim().is_empty() {
        return Err(unusable(
            "not a git checkout",
            format!("repo_path {repo_path} is not a git checkout (or is a bare repository)"),
            format!(
                "$ git -C {repo_path} rev-parse --show-toplevel\n{}",
                top.stderr
            ),
        ));
    }
    let top = PathBuf::from(top.stdout.trim());
    std::fs::create_dir_all(dir).map_err(|e| {
        git_failed(format!(
            "cannot create the worktrees folder {}: {e}",
            dir.display()
        ))
    })?;
    let branch = branch_of(task_id);
    let path = dir.join(format!("task-{task_id}"));
    let base_name = base_ref.unwrap_or("HEAD");
    let base_commit = |name: &str| {
        git(
            &top,
            &[
                "rev-parse",
                "--verify",
                "--end-of-options",
                &format!("{name}^{{commit}}"),
            ],
            timeout,
            1024,
        )
    };

    // Run again: the worktree is still there, on its branch.
    if path.join(".git").exists() {
        let on = must(&path, &["rev-parse", "--abbrev-ref", "HEAD"], timeout);
        let known: Option<Worktree> = std::fs::read(sidecar(dir, task_id))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match (on, known) {
            (Ok(b), Some(wt)) if b == branch && wt.repo == top => return Ok(wt),
            (on, _) => {
                return Err(git_failed(format!(
                    "{} exists but is not this task's worktree of {} on {branch} (HEAD: {})",
                    path.display(),
                    top.display(),
                    on.unwrap_or_else(|e| e)
                )))
            }
        }
    }
    let base_out = base_commit(base_name).map_err(git_failed)?;
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
    // A worktree folder removed by hand leaves an entry git still knows.
    let _ = git(&top, &["worktree", "prune"], timeout, 1024);
    let exists = git(
        &top,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ],
        timeout,
        1024,
    )
    .map_err(git_failed)?;
    let path_s = path.display().to_string();
    let base = if exists.ok {
        must(&top, &["worktree", "add", &path_s, &branch], timeout).map_err(git_failed)?;
        must(&top, &["merge-base", &base_sha, &branch], timeout).unwrap_or(base_sha)
    } else {
        let dirty = must(
            &top,
            &["status", "--porcelain", "--untracked-files=no"],
            timeout,
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
        must(
            &top,
            &["worktree", "add", "-b", &branch, &path_s, &base_sha],
            timeout,
        )
        .map_err(git_failed)?;
        base_sha
    };
    let wt = Worktree {
        task_id,
        repo: top,
        path,
        branch,
        base,
    };
    super::state::write_atomic(&sidecar(dir, task_id), &wt)
        .map_err(|e| git_failed(format!("cannot record the worktree: {e}")))?;
    Ok(wt)
}

/// Commits whatever is uncommitted in the worktree on its branch. True
/// when there was something to commit.
fn commit_all(wt: &Worktree, message: &str, timeout: Duration) -> Result<bool, String> {
    must(&wt.path, &["add", "-A"], timeout)?;
    let staged = git(&wt.path, &["diff", "--cached", "--quiet"], timeout, 1024)?;
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
    must(&wt.path, &args, timeout)?;
    Ok(true)
}

/// After the agent ended: what it changed (status before committing, the
/// diff of the branch against its base), committed on the branch so that
/// nothing is lost when the worktree is removed.
pub fn record(wt: &Worktree, timeout: Duration) -> Result<Change, String> {
    let status = git(
        &wt.path,
        &["status", "--porcelain", "--untracked-files=all"],
        timeout,
        STAT_MAX,
    )?;
    let message = format!(
        "ops-center: changes of task {} ({})",
        wt.task_id,
        crate::time::rfc3339(crate::time::now_ms())
    );
    commit_all(wt, &message, timeout)?;
    let head = must(&wt.path, &["rev-parse", "HEAD"], timeout)?;
    let range = format!("{}..{head}", wt.base);
    let stat = git(
        &wt.path,
        &["diff", "--no-color", "--no-ext-diff", "--stat", &range],
        timeout,
        STAT_MAX,
    )?;
    let patch = git(
        &wt.path,
        &["diff", "--no-color", "--no-ext-diff", "--binary", &range],
        timeout,
        PATCH_MAX,
    )?;
    if !patch.ok {
        return Err(format!("git diff {range} failed: {}", patch.stderr));
    }
    Ok(Change {
        branch: wt.branch.clone(),
        head,
        base: wt.base.clone(),
        status: status.stdout,
        diff_stat: stat.stdout,
        patch: patch.stdout,
        truncated: patch.cut,
    })
}

/// Removes a worktree whose task no longer needs it. Anything uncommitted
/// in it is committed on its branch first; if that fails the worktree is
/// kept. The branch always stays.
pub fn remove(dir: &Path, wt: &Worktree, timeout: Duration) -> Result<(), String> {
    if wt.path.exists() {
        let saved = commit_all(
            wt,
            &format!(
                "ops-center: uncommitted changes of task {} saved before its worktree was removed",
                wt.task_id
            ),
            timeout,
        )
        .map_err(|e| format!("not removed, its changes could not be saved: {e}"))?;
        if saved {
            log::info!(
                "task {}: uncommitted changes in {} committed on {} before removal",
                wt.task_id,
                wt.path.display(),
                wt.branch
            );
        }
        // --force: what is left are ignored files (builds, caches).
        let path_s = wt.path.display().to_string();
        must(
            &wt.repo,
            &["worktree", "remove", "--force", &path_s],
            timeout,
        )?;
    } else {
        let _ = git(&wt.repo, &["worktree", "prune"], timeout, 1024);
    }
    let _ = std::fs::remove_file(sidecar(dir, wt.task_id));
    Ok(())
}

/// Marks a worktree as used now (its age counts from here).
pub fn touch(dir: &Path, wt: &Worktree) {
    let _ = super::state::write_atomic(&sidecar(dir, wt.task_id), wt);
}

/// The worktrees this launcher made, with how long ago each was last used.
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
            let wt: Worktree = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
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

/// One clean-up pass over the worktrees this launcher made: a worktree is
/// removed when its task is done, archived or deleted, or (with `max_age`)
/// unused for that long while its task is not running. A task this
/// launcher runs (`running`) or that is claimed on the server is never
/// touched; a task the server cannot be asked about is left for the next
/// pass. Returns what was done, one line per worktree removed or kept
/// because it could not be saved.
pub fn clean(
    dir: &Path,
    api: &super::api::Api,
    running: &dyn Fn() -> Vec<i64>,
    max_age: Option<Duration>,
    timeout: Duration,
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
                    "task {}: worktree {} kept for now: cannot ask the server about the task: {e}",
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
        let _held = lock();
        // Claimed again since it was looked at: it is in use.
        if running().contains(&wt.task_id) {
            continue;
        }
        let line = match remove(dir, &wt, timeout) {
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

    const T: Duration = Duration::from_secs(30);

    #[test]
    fn a_run_is_recorded_committed_and_removed() {
        let r = repo();
        let wts = tempfile::tempdir().unwrap();
        let repo_s = r.path().display().to_string();
        let wt = prepare(wts.path(), 7, &repo_s, None, T).unwrap();
        assert_eq!(wt.branch, "ops/task-7");
        std::fs::write(wt.path.join("a.txt"), "two\n").unwrap();
        std::fs::write(wt.path.join("new.txt"), "new\n").unwrap();
        let c = record(&wt, T).unwrap();
        assert!(c.status.contains("a.txt") && c.status.contains("new.txt"));
        assert!(c.diff_stat.contains("2 files changed"), "{}", c.diff_stat);
        assert!(c.patch.contains("+two"));
        assert_eq!(list(wts.path()).len(), 1);
        // Again: the same worktree, and nothing more to commit.
        let again = prepare(wts.path(), 7, &repo_s, None, T).unwrap();
        assert_eq!(again, wt);
        // Left uncommitted at removal: saved on the branch first.
        std::fs::write(wt.path.join("late.txt"), "late\n").unwrap();
        remove(wts.path(), &wt, T).unwrap();
        assert!(!wt.path.exists());
        assert!(list(wts.path()).is_empty());
        let o = Command::new("git")
            .args(["-C", &repo_s, "show", "--stat", "ops/task-7"])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&o.stdout).contains("late.txt"));
        // The main checkout never changed.
        assert_eq!(
            std::fs::read_to_string(r.path().join("a.txt")).unwrap(),
            "one\n"
        );
        // The branch stays, and a later run continues on it.
        let back = prepare(wts.path(), 7, &repo_s, None, T).unwrap();
        assert!(back.path.join("late.txt").exists());
    }

    #[test]
    fn unusable_repositories() {
        let wts = tempfile::tempdir().unwrap();
        let e = prepare(wts.path(), 1, "/nonexistent/repo", None, T).unwrap_err();
        assert_eq!(e.kind, "missing");
        let plain = tempfile::tempdir().unwrap();
        let e = prepare(wts.path(), 1, &plain.path().display().to_string(), None, T).unwrap_err();
        assert_eq!(e.kind, "not a git checkout");
        assert!(
            e.evidence.contains("not a git repository"),
            "{}",
            e.evidence
        );
        let r = repo();
        let repo_s = r.path().display().to_string();
        let e = prepare(wts.path(), 1, &repo_s, Some("nope"), T).unwrap_err();
        assert_eq!(e.kind, "unknown base_ref");
        std::fs::write(r.path().join("a.txt"), "dirty\n").unwrap();
        let e = prepare(wts.path(), 1, &repo_s, None, T).unwrap_err();
        assert_eq!(e.kind, "uncommitted changes");
        assert!(e.evidence.contains("a.txt"));
    }
}
