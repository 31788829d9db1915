//! One state file per task the launcher runs, in the log directory:
//! `task-<id>-<stamp>.state.json`. It is written before anything is
//! reported and removed only when the server has acknowledged the final
//! report, so that a launcher restarted after a crash can adopt the agent
//! and no outcome is lost while the server is away.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ops_protocol::dispatch::{Failed, Finished, Report};
use serde::{Deserialize, Serialize};

use super::transcript::Stream;
use super::worktree::{Change, Worktree};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskState {
    pub task_id: i64,
    /// The worker id that claimed the task; reports must carry it even if
    /// a later launcher runs under another id.
    pub worker_id: String,
    pub claim_token: String,
    pub agent_slug: String,
    pub command: Vec<String>,
    pub cli: String,
    pub pid: Option<u32>,
    /// Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat`),
    /// so that a reused pid is not mistaken for the agent.
    pub pid_start_ticks: Option<u64>,
    pub log_path: PathBuf,
    pub err_log_path: PathBuf,
    pub prompt_path: PathBuf,
    pub started_at_ms: i64,
    /// The server acknowledged `started`.
    pub started_reported: bool,
    /// Bytes of the stdout log already acknowledged as `output` reports.
    pub output_offset: u64,
    /// The run's output went past `OUTPUT_STREAM_MAX`: it was said once,
    /// and nothing more is streamed.
    #[serde(default)]
    pub output_capped: bool,
    /// Bytes of stdout acknowledged over the whole run: unlike
    /// `output_offset` it never goes back when the log is truncated (log
    /// rotation), so it is the `offset` the server dedups retried chunks by.
    #[serde(default)]
    pub streamed: u64,
    pub ending: Option<Ending>,
    /// The report that closes the run, kept until acknowledged.
    pub final_report: Option<FinalReport>,
    /// The server refused a report for good (claim lost): the agent is
    /// still watched until it ends, but nothing more is reported.
    #[serde(default)]
    pub abandoned: bool,
    /// The agent runs under a supervisor (`launcher::supervise`), whose
    /// pid is `pid` and whose record (`record_path`) says how the agent
    /// ended. The state is written before the supervisor is started, so a
    /// launcher that dies at any point leaves a trace of every run.
    #[serde(default)]
    pub supervised: bool,
    /// Why the launcher ended the agent (its run timeout, its silence):
    /// the failure signature of the run.
    #[serde(default)]
    pub ended_by: Option<String>,
    /// When the launcher sent TERM to the run's process group; KILL
    /// follows if it is still there a little later.
    #[serde(default)]
    pub term_sent_at_ms: Option<i64>,
    /// When the launcher learned the server cancelled this run: the agent's
    /// group is ended and only `cancelled` (how it ended) is reported.
    #[serde(default)]
    pub cancelled_at_ms: Option<i64>,
    /// The task's worktree, when it names a repository: the agent runs
    /// there, and a restarted launcher records its change from there.
    #[serde(default)]
    pub worktree: Option<Worktree>,
    /// What the run changed, recorded (and committed) once the agent
    /// ended, before the final report is decided.
    #[serde(default)]
    pub change: Option<Change>,
    /// Recording the change failed: said in the final report.
    #[serde(default)]
    pub change_error: Option<String>,
    /// The agent tampered with its clone (why): the run fails, and
    /// nothing of the clone is committed or brought back.
    #[serde(default)]
    pub tampered: Option<String>,
    /// How its stdout is read: the built-in CLI's machine-readable stream,
    /// or plain text (a custom command).
    #[serde(default)]
    pub stream: Stream,
    /// The start of the stream's last line, not yet complete: read with
    /// the next chunk.
    #[serde(default)]
    pub line_carry: String,
    /// The agent's last message in its stream: the run's output in the
    /// final report (the raw stream is JSON).
    #[serde(default)]
    pub last_message: Option<String>,
    /// The session its stream named last.
    #[serde(default)]
    pub session: Option<String>,
    /// The last errors its stream reported, for the rate-limit check.
    #[serde(default)]
    pub stream_errors: Vec<String>,
    /// What the CLI says only on stderr was read, once it ended.
    #[serde(default)]
    pub stderr_read: bool,
    /// When the provider's rate limit first refused the running agent, and
    /// when last.
    #[serde(default)]
    pub rate_limit_first_ms: Option<i64>,
    #[serde(default)]
    pub rate_limit_last_ms: Option<i64>,
}

/// How the agent's run ended, as far as the launcher knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ending {
    /// Seen by the launcher that started it.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        at_ms: i64,
    },
    /// The process was gone when a restarted launcher looked: the exit
    /// status went to whoever reaped it.
    Vanished { at_ms: i64 },
    /// The agent could not be started at all: its CLI is missing
    /// (`runtime_missing`), or the launcher could not prepare the run (a
    /// bad command template, an unwritable log dir).
    NotStarted {
        reason: String,
        #[serde(default)]
        runtime_missing: bool,
    },
    /// The task's repository cannot be used (missing, not a checkout,
    /// uncommitted changes, unknown base ref): no agent was started.
    RepoUnusable {
        /// Completes the signature: `missing`, `not a git checkout`, ...
        problem: String,
        reason: String,
        evidence: String,
    },
}

/// The report that closes a run, kept until the server acknowledged it.
/// In the state file: `{"kind": "finished"|"failed", "body": {…}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "lowercase")]
pub enum FinalReport {
    Finished(Finished),
    Failed(Failed),
}

impl FinalReport {
    /// The last segment of its path.
    pub fn kind(&self) -> &'static str {
        self.report().kind()
    }

    pub fn report(&self) -> Report {
        match self {
            FinalReport::Finished(f) => Report::Finished(f.clone()),
            FinalReport::Failed(f) => Report::Failed(f.clone()),
        }
    }
}

impl TaskState {
    /// `task-<id>-<stamp>`: the name every file of the run starts with.
    fn stem(&self) -> &str {
        self.log_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("task")
            .trim_end_matches(".log")
    }

    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.state.json", self.stem()))
    }

    /// The supervisor's record of the run, next to the logs.
    pub fn record_path(&self) -> PathBuf {
        self.log_path
            .with_file_name(format!("{}.run.json", self.stem()))
    }
}

/// Writes atomically (temporary file, fsync, rename), so a crash leaves
/// either the old or the new state, never half of one.
pub fn save(path: &Path, st: &TaskState) -> std::io::Result<()> {
    write_atomic(path, st)
}

/// `value` as JSON in `path`, atomically: a reader sees the old content or
/// the new, never a part.
pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    {
        // Readable by the launcher's user only: a state file holds the
        // claim token, with which an agent could report on its own task.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Every state file in `dir`, oldest task first. Unreadable files are
/// returned as errors to log, not dropped silently.
pub fn load_all(dir: &Path) -> Vec<Result<(PathBuf, TaskState), String>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".state.json"))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let st = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok((p, st))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state file written before the report was typed still loads: the
    /// final report keeps the shape `{"kind", "body"}`, and a body without
    /// `exit_code` (unknown) reads as none.
    #[test]
    fn final_reports_keep_their_state_file_shape() {
        let old = r#"{"kind":"finished","body":{"signal":null,"output":"done"}}"#;
        let r: FinalReport = serde_json::from_str(old).unwrap();
        assert_eq!(
            r,
            FinalReport::Finished(Finished {
                exit_code: None,
                signal: None,
                output: "done".into(),
                change: None,
            })
        );
        let failed = FinalReport::Failed(Failed {
            signature: "s".into(),
            reason: "r".into(),
            evidence: "e".into(),
            exit_code: None,
            signal: None,
            rate_limited: None,
            change: None,
        });
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            serde_json::json!({"kind": "failed", "body": {"signature": "s", "reason": "r", "evidence": "e"}})
        );
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let st = TaskState {
            task_id: 4,
            worker_id: "w".into(),
            claim_token: "t".into(),
            agent_slug: "codex".into(),
            command: vec!["codex".into()],
            cli: "codex".into(),
            pid: Some(12),
            pid_start_ticks: Some(99),
            log_path: dir.path().join("task-4-20260101T000000Z.log"),
            err_log_path: dir.path().join("task-4-20260101T000000Z.err.log"),
            prompt_path: dir.path().join("task-4-20260101T000000Z.prompt.md"),
            started_at_ms: 1,
            started_reported: false,
            output_offset: 0,
            streamed: 0,
            output_capped: false,
            ending: Some(Ending::Exited {
                code: Some(0),
                signal: None,
                at_ms: 2,
            }),
            final_report: None,
            abandoned: false,
            supervised: true,
            ended_by: None,
            term_sent_at_ms: None,
            cancelled_at_ms: None,
            worktree: None,
            change: None,
            change_error: None,
            tampered: None,
            stream: Default::default(),
            line_carry: String::new(),
            last_message: None,
            session: None,
            stream_errors: Vec::new(),
            stderr_read: false,
            rate_limit_first_ms: None,
            rate_limit_last_ms: None,
        };
        let path = st.path_in(dir.path());
        assert!(st
            .record_path()
            .ends_with("task-4-20260101T000000Z.run.json"));
        assert!(path.ends_with("task-4-20260101T000000Z.state.json"));
        save(&path, &st).unwrap();
        let all = load_all(dir.path());
        assert_eq!(all.len(), 1);
        let (p, back) = all[0].as_ref().unwrap();
        assert_eq!(p, &path);
        assert_eq!(back.ending, st.ending);
        std::fs::write(dir.path().join("junk.state.json"), "{").unwrap();
        assert_eq!(
            load_all(dir.path()).iter().filter(|r| r.is_err()).count(),
            1
        );
    }
}
