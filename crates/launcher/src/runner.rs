//! One thread per task: watches the agent process, streams its stdout as
//! `output` reports, and closes the run with `finished` or `failed`.
//! Every step is recorded in the task's state file before it counts as
//! done, so a restarted launcher picks up exactly where this one stopped.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::api::ApiError;
use super::clis;
use super::process::{alive, read_range, signal_name, strip_ansi, tail};
use super::state::{save, Ending, FinalReport, TaskState};
use super::supervise::{self, Record};
use super::Ctx;
use ops_base::time::now_ms;
use ops_protocol::dispatch::{
    CancelEnded, ClaimProof, Failed, Finished, Output, Report, ReportBody, RunChange, Started,
};
use ops_protocol::tasks::TaskView;

/// Largest `output` report: big enough to keep the number of log comments
/// low, small enough for one comment to stay readable.
const CHUNK: usize = 16 * 1024;
/// The tail of stdout sent as `finished.output`: what the server keeps of
/// `dispatch_output`.
const OUTPUT_TAIL: u64 = 64 * 1024;
/// While an agent runs, its output is sent at most this often (or when a
/// full chunk is waiting), so a chatty agent makes few log comments.
const OUTPUT_EVERY: Duration = Duration::from_secs(3);
/// Stdout streamed as `output` reports per run, at most: past it the log
/// file keeps growing, but the server's database does not (an agent that
/// prints without end would otherwise fill it).
pub const OUTPUT_STREAM_MAX: u64 = 8 * 1024 * 1024;
/// The tail of each log given as evidence of a failure.
const EVIDENCE_TAIL: u64 = 4 * 1024;
/// How often a running agent is looked at.
const POLL: Duration = Duration::from_millis(500);
/// An agent ended for its timeout or silence gets this long after TERM to
/// finish before KILL.
const KILL_GRACE_MS: i64 = 10_000;
/// A supervisor writes its record within moments of its start; a run with
/// neither a pid nor a record after this long never started.
const START_GRACE_MS: i64 = 5_000;

pub const SIG_RUNTIME_MISSING: &str = "runtime no disponible en host";
pub const SIG_COMMAND_NOT_FOUND: &str = "command not found";
/// Not a runtime problem: the launcher could not prepare the run.
pub const SIG_SETUP_FAILED: &str = "launcher could not start the agent";

pub struct Runner {
    pub ctx: Arc<Ctx>,
    pub st: TaskState,
    pub path: PathBuf,
    /// Present when this launcher started the agent; an adopted agent is
    /// watched by pid only.
    pub child: Option<Child>,
    /// When output was last sent, to batch a chatty agent's lines into
    /// fewer log comments.
    last_output: Option<Instant>,
    /// The stdout log could not be read (e.g. rotated away): said once.
    log_unreadable: bool,
    /// Bytes in both logs when last looked at, and when that changed: how
    /// long the agent has been silent.
    activity: (u64, Instant),
}

/// What became of one report.
enum Sent {
    Acked,
    /// Refused for good; the reason was logged.
    Refused(ApiError),
}

impl Runner {
    pub fn new(ctx: Arc<Ctx>, st: TaskState, path: PathBuf, child: Option<Child>) -> Runner {
        Runner {
            ctx,
            st,
            path,
            child,
            last_output: None,
            log_unreadable: false,
            activity: (0, Instant::now()),
        }
    }

    pub fn run(mut self) {
        let id = self.st.task_id;
        let mut backoff = Duration::from_secs(1);
        loop {
            self.observe();
            if self.ctx.take_cancel(id, &self.st.claim_token) {
                self.cancel();
            }
            self.enforce_limits();
            match self.step() {
                Ok(true) => {
                    // The prompt is in the task; the logs stay for operators.
                    let _ = std::fs::remove_file(&self.st.prompt_path);
                    if let Err(e) = std::fs::remove_file(&self.path) {
                        log::warn!(
                            "task {id}: cannot remove state file {}: {e}",
                            self.path.display()
                        );
                    }
                    break;
                }
                Ok(false) => {
                    backoff = Duration::from_secs(1);
                    if self.ctx.stop.sleep(POLL) {
                        break;
                    }
                }
                Err(e) => {
                    log::warn!(
                        "task {id}: report not delivered, retrying in {} s: {e}",
                        backoff.as_secs()
                    );
                    if self.ctx.stop.sleep(backoff) {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
        if self.ctx.stop.is_set() && self.path.exists() {
            log::info!(
                "task {id}: launcher stopping; state kept in {} for the next start",
                self.path.display()
            );
        }
        self.ctx.finish_slot(id, &self.st.claim_token);
    }

    fn persist(&self) {
        if let Err(e) = save(&self.path, &self.st) {
            log::error!(
                "task {}: cannot write state file {}: {e}",
                self.st.task_id,
                self.path.display()
            );
        }
    }

    /// Notices the end of the agent process.
    fn observe(&mut self) {
        if self.st.ending.is_some() {
            self.ctx.agent_ended(self.st.task_id, &self.st.claim_token);
            return;
        }
        let ending = if self.st.supervised {
            self.observe_supervised()
        } else {
            self.observe_unsupervised()
        };
        if let Some(e) = ending {
            log::info!("task {}: agent ended: {e:?}", self.st.task_id);
            // What the run left behind in the background ends with it.
            if let Some(session) = self.st.pid {
                super::process::kill_session(session);
            }
            self.st.ending = Some(e);
            self.persist();
            self.ctx.agent_ended(self.st.task_id, &self.st.claim_token);
        }
    }

    /// A run under a supervisor: its record says how the agent ended, to
    /// this launcher and to one restarted at any point of the run.
    fn observe_supervised(&mut self) -> Option<Ending> {
        let path = self.st.record_path();
        let record = supervise::read(&path);
        if let Some(ending) = record.as_ref().and_then(outcome) {
            if let Some(child) = &mut self.child {
                // It exits right after writing the outcome: reap it.
                let _ = child.wait();
            }
            if let Ending::NotStarted { reason, .. } = &ending {
                // The CLI resolved at launch but could not be executed.
                self.ctx
                    .caps
                    .mark_missing(&self.st.agent_slug, &self.st.cli, reason);
            }
            return Some(ending);
        }
        let supervisor = match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(None) => return None,
                Ok(Some(status)) => Some(status),
                Err(e) => {
                    log::warn!(
                        "task {}: cannot wait for its supervisor: {e}",
                        self.st.task_id
                    );
                    return None;
                }
            },
            None => {
                let pid = self
                    .st
                    .pid
                    .map(|p| (p, self.st.pid_start_ticks))
                    .or_else(|| {
                        record
                            .as_ref()
                            .map(|r| (r.supervisor_pid, r.supervisor_start_ticks))
                    });
                match pid {
                    Some((pid, ticks)) if alive(pid, ticks) => return None,
                    Some(_) => None,
                    None if now_ms() - self.st.started_at_ms < START_GRACE_MS => return None,
                    None => {
                        // The launcher stopped between writing the state
                        // and starting the supervisor: nothing ran.
                        return Some(Ending::NotStarted {
                            reason: "the launcher stopped before it started the agent; nothing ran"
                                .into(),
                            runtime_missing: false,
                        });
                    }
                }
            }
        };
        // The supervisor is gone. It may have written the outcome just
        // before it exited.
        let record = supervise::read(&path);
        if let Some(ending) = record.as_ref().and_then(outcome) {
            return Some(ending);
        }
        // Killed on its own: the agent may still run.
        if let Some(r) = &record {
            if r.agent_pid.is_some_and(|p| alive(p, r.agent_start_ticks)) {
                self.child = None;
                self.st.pid = r.agent_pid;
                self.st.pid_start_ticks = r.agent_start_ticks;
                self.st.supervised = false;
                self.persist();
                return None;
            }
        }
        match supervisor.and_then(|s| s.signal()) {
            // The whole group was killed: the agent went with it.
            Some(signal) => Some(Ending::Exited {
                code: None,
                signal: Some(signal),
                at_ms: now_ms(),
            }),
            None => Some(Ending::Vanished { at_ms: now_ms() }),
        }
    }

    /// A run started without a supervisor (by an older launcher), or whose
    /// supervisor was killed on its own: watched by pid.
    fn observe_unsupervised(&mut self) -> Option<Ending> {
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(Ending::Exited {
                    code: status.code(),
                    signal: status.signal(),
                    at_ms: now_ms(),
                }),
                Ok(None) => None,
                Err(e) => {
                    log::warn!(
                        "task {}: cannot wait for pid {}: {e}",
                        self.st.task_id,
                        child.id()
                    );
                    None
                }
            },
            None => match self.st.pid {
                Some(pid) if !alive(pid, self.st.pid_start_ticks) => {
                    Some(Ending::Vanished { at_ms: now_ms() })
                }
                Some(_) => None,
                None => Some(Ending::Vanished { at_ms: now_ms() }),
            },
        }
    }

    /// Ends an agent that has run longer than its timeout or written
    /// nothing for the silence limit: TERM to the run's process group,
    /// KILL if it is still there [`KILL_GRACE_MS`] later. The run then
    /// fails with the reason as its signature, and its slot is freed.
    fn enforce_limits(&mut self) {
        if self.st.ending.is_some() {
            return;
        }
        let Some(group) = self.st.pid else {
            return;
        };
        let now = now_ms();
        if let Some(sent) = self.st.term_sent_at_ms {
            if now - sent >= KILL_GRACE_MS {
                signal_group(group, libc::SIGKILL);
            }
            return;
        }
        let size = [&self.st.log_path, &self.st.err_log_path]
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum::<u64>();
        if size != self.activity.0 {
            self.activity = (size, Instant::now());
        }
        let cfg = &self.ctx.cfg;
        let timeout = cfg.timeout_of(&self.st.agent_slug);
        let why = if now - self.st.started_at_ms >= timeout.as_millis() as i64 {
            format!("agent timed out after {}", human(timeout))
        } else if self.activity.1.elapsed() >= cfg.silence {
            format!("agent silent for {}", human(cfg.silence))
        } else {
            return;
        };
        log::warn!(
            "task {}: {why}: ending its process group {group}",
            self.st.task_id
        );
        self.st.ended_by = Some(why);
        self.st.term_sent_at_ms = Some(now);
        self.persist();
        signal_group(group, libc::SIGTERM);
    }

    /// The server cancelled the run: TERM to its process group now (KILL
    /// follows through [`Self::enforce_limits`]), and from here on only how
    /// it ended is reported.
    fn cancel(&mut self) {
        if self.st.cancelled_at_ms.is_some() {
            return;
        }
        let now = now_ms();
        self.st.cancelled_at_ms = Some(now);
        if self.st.ending.is_none() {
            if let Some(group) = self.st.pid {
                log::warn!(
                    "task {}: cancelled: ending its process group {group}",
                    self.st.task_id
                );
                self.st.term_sent_at_ms = Some(now);
                signal_group(group, libc::SIGTERM);
            }
        }
        self.persist();
    }

    /// After a cancellation: once the agent has ended, reports how (fenced
    /// by the cancelled claim). `Ok(true)` when delivered or refused.
    fn report_cancelled(&mut self) -> Result<bool, ApiError> {
        let id = self.st.task_id;
        let cancelled_at = self.st.cancelled_at_ms.unwrap_or_else(now_ms);
        let (exit_code, signal, at_ms) = match &self.st.ending {
            None => return Ok(false),
            Some(Ending::Exited {
                code,
                signal,
                at_ms,
            }) => (code.map(i64::from), signal.map(signal_name), *at_ms),
            Some(Ending::Vanished { at_ms }) => (None, None, *at_ms),
            Some(_) => (None, None, cancelled_at),
        };
        let report = ReportBody {
            claim: ClaimProof {
                worker_id: self.st.worker_id.clone(),
                claim_token: self.st.claim_token.clone(),
            },
            report: CancelEnded {
                exit_code,
                signal,
                elapsed_ms: (at_ms - cancelled_at).max(0),
            },
        };
        match self
            .ctx
            .api
            .post_as::<TaskView>(&format!("dispatch/tasks/{id}/cancelled"), &report)
        {
            Ok(_) => log::info!("task {id}: how the cancelled agent ended acknowledged"),
            Err(e) if e.is_permanent() => {
                log::error!("task {id}: server refused `cancelled` for good ({e}); giving up on it")
            }
            Err(e) => return Err(e),
        }
        Ok(true)
    }

    /// Sends what is due. `Ok(true)` when nothing is left to do.
    fn step(&mut self) -> Result<bool, ApiError> {
        let id = self.st.task_id;
        if self.st.cancelled_at_ms.is_some() {
            return self.report_cancelled();
        }
        if self.st.abandoned {
            return Ok(self.st.ending.is_some());
        }
        let not_started = matches!(
            self.st.ending,
            Some(Ending::NotStarted { .. } | Ending::RepoUnusable { .. })
        );
        if !not_started {
            if !self.st.started_reported {
                let started = Report::Started(Started {
                    pid: self.st.pid.map(i64::from),
                    log_path: Some(self.st.log_path.display().to_string()),
                    err_log_path: Some(self.st.err_log_path.display().to_string()),
                });
                match self.send(started)? {
                    Sent::Acked => {}
                    Sent::Refused(e) if e.code() == "claim_cancelled" => {
                        self.cancel();
                        return Ok(false);
                    }
                    Sent::Refused(e) if e.code() == "stale_claim" || e.status() == Some(404) => {
                        return Ok(self.abandon(e));
                    }
                    // Any other refusal (e.g. a repeated `started` after a
                    // lost answer) leaves the task started on the server.
                    Sent::Refused(_) => {}
                }
                self.st.started_reported = true;
                self.persist();
            }
            if !self.stream_output()? {
                return Ok(self.st.ending.is_some() && self.st.cancelled_at_ms.is_none());
            }
        }
        let Some(_) = &self.st.ending else {
            return Ok(false);
        };
        if self.st.final_report.is_none() && !not_started {
            self.record_change();
        }
        if self.st.final_report.is_none() {
            let report = final_report(&self.st, self.ctx.cfg.path_var.as_deref());
            log::info!(
                "task {id}: reporting {}: {}",
                report.kind(),
                summary(&report)
            );
            let failed = match &report {
                FinalReport::Failed(f) => Some(f.signature.as_str()),
                FinalReport::Finished(_) => None,
            };
            // A repository that cannot be used says nothing about the CLI:
            // it does not count towards holding the agent back.
            let repo_problem = matches!(self.st.ending, Some(Ending::RepoUnusable { .. }));
            if !repo_problem
                && self
                    .ctx
                    .caps
                    .record_outcome(&self.ctx.cfg, &self.st.agent_slug, failed)
            {
                let _ = self.ctx.poke.try_send(());
            }
            self.st.final_report = Some(report);
            self.persist();
        }
        let report = self.st.final_report.clone().expect("set above");
        match self.send(report.report())? {
            Sent::Acked => log::info!("task {id}: {} acknowledged", report.kind()),
            // Cancelled while the agent was ending on its own: what the
            // server wants now is how it ended, fenced by this claim.
            Sent::Refused(e) if e.code() == "claim_cancelled" => {
                log::warn!(
                    "task {id}: its run was cancelled as it ended; reporting how it ended instead of `{}`",
                    report.kind()
                );
                self.cancel();
                return Ok(false);
            }
            Sent::Refused(e) => log::error!(
                "task {id}: server refused `{}` for good ({e}); giving up on it",
                report.kind()
            ),
        }
        Ok(true)
    }

    /// Records (and commits) what the agent changed in its worktree, once,
    /// before the final report is decided. A failure is said in the report
    /// rather than retried: the worktree and its branch stay for a person.
    fn record_change(&mut self) {
        let Some(wt) = &self.st.worktree else {
            return;
        };
        if self.st.change.is_some() || self.st.change_error.is_some() || self.st.tampered.is_some()
        {
            return;
        }
        // Looked at before any git runs there: a clone pointed elsewhere
        // would have the launcher's git act on another repository.
        if let Some(why) = super::worktree::tampered(wt, &self.ctx.git()) {
            log::error!(
                "task {}: {}: {why}; nothing of it is committed or brought back",
                self.st.task_id,
                super::worktree::SIG_TAMPERED
            );
            self.st.tampered = Some(why);
            self.persist();
            return;
        }
        match super::worktree::record(wt, &self.ctx.git()) {
            Ok(c) => {
                log::info!(
                    "task {}: change on {} at {}: {}",
                    self.st.task_id,
                    c.branch,
                    c.head,
                    c.diff_stat.lines().last().unwrap_or("no change").trim()
                );
                self.st.change = Some(c);
            }
            Err(e) => {
                log::error!("task {}: cannot record its change: {e}", self.st.task_id);
                self.st.change_error = Some(e);
            }
        }
        super::worktree::touch(&self.ctx.worktrees_dir(), wt);
        self.persist();
    }

    /// Sends new stdout as `output` reports. `Ok(false)` when the claim
    /// was lost on the way.
    fn stream_output(&mut self) -> Result<bool, ApiError> {
        loop {
            let (mut bytes, len) = match read_range(&self.st.log_path, self.st.output_offset, CHUNK)
            {
                Ok(r) => r,
                Err(e) => {
                    if !self.log_unreadable {
                        log::warn!(
                            "task {}: cannot read {} ({e}); its output is no longer streamed",
                            self.st.task_id,
                            self.st.log_path.display()
                        );
                        self.log_unreadable = true;
                    }
                    return Ok(true);
                }
            };
            if len < self.st.output_offset {
                // The log was truncated (e.g. by logrotate's copytruncate):
                // start again from its new beginning.
                self.st.output_offset = 0;
                continue;
            }
            if bytes.is_empty() {
                return Ok(true);
            }
            if self.st.streamed >= OUTPUT_STREAM_MAX {
                // Said once, then the rest is skipped.
                let note = format!(
                    "\n[ops-center launcher] more than {} MiB of output: the rest is not sent; it is in {}\n",
                    OUTPUT_STREAM_MAX / (1024 * 1024),
                    self.st.log_path.display()
                );
                if !self.st.output_capped {
                    let capped = Report::Output(Output {
                        chunk: note,
                        offset: Some(self.st.streamed as i64),
                    });
                    match self.send(capped)? {
                        Sent::Acked | Sent::Refused(_) => {}
                    }
                    self.st.output_capped = true;
                }
                self.st.output_offset = len;
                self.persist();
                return Ok(true);
            }
            let running = self.st.ending.is_none();
            let recently = self.last_output.is_some_and(|t| t.elapsed() < OUTPUT_EVERY);
            if running && recently && bytes.len() < CHUNK {
                return Ok(true);
            }
            if running {
                // While the agent writes, send whole lines only.
                match bytes.iter().rposition(|b| *b == b'\n') {
                    Some(nl) => bytes.truncate(nl + 1),
                    None if bytes.len() < CHUNK => return Ok(true),
                    None => {}
                }
            }
            // A chunk cut mid-character would show a replacement sign:
            // leave the incomplete character for the next chunk.
            let more = running || self.st.output_offset + (bytes.len() as u64) < len;
            if let Err(e) = std::str::from_utf8(&bytes) {
                if more && e.error_len().is_none() && e.valid_up_to() > 0 {
                    bytes.truncate(e.valid_up_to());
                }
            }
            let n = bytes.len() as u64;
            let chunk = strip_ansi(&String::from_utf8_lossy(&bytes));
            let output = Report::Output(Output {
                chunk,
                offset: Some(self.st.streamed as i64),
            });
            match self.send(output)? {
                Sent::Acked => {}
                Sent::Refused(e) if e.code() == "claim_cancelled" => {
                    self.cancel();
                    return Ok(false);
                }
                Sent::Refused(e) if e.code() == "stale_claim" || e.status() == Some(404) => {
                    self.abandon(e);
                    return Ok(false);
                }
                Sent::Refused(e) => log::error!(
                    "task {}: output chunk refused, skipped: {e}",
                    self.st.task_id
                ),
            }
            self.last_output = Some(Instant::now());
            self.st.output_offset += n;
            self.st.streamed += n;
            self.persist();
        }
    }

    fn abandon(&mut self, e: ApiError) -> bool {
        log::error!(
            "task {}: the server no longer accepts reports for this claim ({e}); the agent is left to finish \
             but nothing more is reported",
            self.st.task_id
        );
        self.st.abandoned = true;
        self.persist();
        self.st.ending.is_some()
    }

    fn send(&self, report: Report) -> Result<Sent, ApiError> {
        let claim = ClaimProof {
            worker_id: self.st.worker_id.clone(),
            claim_token: self.st.claim_token.clone(),
        };
        let path = format!("dispatch/tasks/{}/{}", self.st.task_id, report.kind());
        let api = &self.ctx.api;
        let answer = match report {
            Report::Started(report) => {
                api.post_as::<TaskView>(&path, &ReportBody { claim, report })
            }
            Report::Output(report) => api.post_as::<TaskView>(&path, &ReportBody { claim, report }),
            Report::Finished(report) => {
                api.post_as::<TaskView>(&path, &ReportBody { claim, report })
            }
            Report::Failed(report) => api.post_as::<TaskView>(&path, &ReportBody { claim, report }),
        };
        match answer {
            Ok(_) => Ok(Sent::Acked),
            Err(e) if e.is_permanent() => Ok(Sent::Refused(e)),
            Err(e) => Err(e),
        }
    }
}

fn summary(r: &FinalReport) -> String {
    match r {
        FinalReport::Failed(f) => f.reason.clone(),
        FinalReport::Finished(f) => format!(
            "exit_code={}",
            f.exit_code.map_or("null".into(), |c| c.to_string())
        ),
    }
}

fn code_text(code: Option<i32>) -> String {
    code.map(|c| c.to_string()).unwrap_or_else(|| "null".into())
}

/// Sends `sig` to the process group led by `group`.
fn signal_group(group: u32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals that process group; the
    // group is the one the launcher created for the run.
    unsafe {
        libc::kill(-(group as i32), sig);
    }
}

/// `2 h`, `15 min`, `90 s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s % 3600 == 0 {
        format!("{} h", s / 3600)
    } else if s >= 60 && s % 60 == 0 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

/// How a supervised agent ended, once its supervisor knows.
fn outcome(r: &Record) -> Option<Ending> {
    if let Some(reason) = &r.exec_error {
        return Some(Ending::NotStarted {
            reason: reason.clone(),
            runtime_missing: true,
        });
    }
    r.exit.as_ref().map(|e| Ending::Exited {
        code: e.code,
        signal: e.signal,
        at_ms: e.at_ms,
    })
}

/// The report that closes a run, decided from how the process ended and
/// what its logs hold, with what the run changed in its worktree.
pub fn final_report(st: &TaskState, path_var: Option<&str>) -> FinalReport {
    let mut r = decide(st, path_var);
    let change = st.change.as_ref().map(|c| RunChange {
        branch: c.branch.clone(),
        head: Some(c.head.clone()).filter(|h| !h.is_empty()),
        base: Some(c.base.clone()).filter(|b| !b.is_empty()),
        start: Some(c.start.clone()).filter(|s| !s.is_empty()),
        git_status: c.status.clone(),
        diff_stat: c.diff_stat.clone(),
        patch: c.patch.clone(),
        patch_truncated: c.truncated,
    });
    let text = match &mut r {
        FinalReport::Finished(f) => {
            f.change = change;
            &mut f.output
        }
        FinalReport::Failed(f) => {
            f.change = change;
            // How the agent ended, whatever the failure: stored on the
            // task as a finished run's is.
            if let Some(Ending::Exited { code, signal, .. }) = &st.ending {
                f.exit_code = code.map(i64::from);
                f.signal = signal.map(signal_name);
            }
            &mut f.evidence
        }
    };
    if let Some(e) = &st.change_error {
        *text = format!(
            "{}\n[ops-center launcher] the change in the worktree could not be recorded: {e}",
            text.trim_end()
        );
    }
    r
}

fn decide(st: &TaskState, path_var: Option<&str>) -> FinalReport {
    let out_tail = strip_ansi(&tail(&st.log_path, EVIDENCE_TAIL));
    let err_tail = strip_ansi(&tail(&st.err_log_path, EVIDENCE_TAIL));
    let evidence = format!(
        "$ {}\n--- {} (tail) ---\n{}\n--- {} (tail) ---\n{}",
        st.command.join(" "),
        st.err_log_path.display(),
        err_tail.trim_end(),
        st.log_path.display(),
        out_tail.trim_end()
    );
    let failed = |signature: String, reason: String, evidence: String| {
        FinalReport::Failed(Failed {
            signature,
            reason,
            evidence,
            exit_code: None,
            signal: None,
            change: None,
        })
    };
    if let Some(why) = &st.tampered {
        let signature = super::worktree::SIG_TAMPERED.to_string();
        return failed(
            signature.clone(),
            format!("{signature}: {why}; its change was not taken and nothing was committed"),
            format!("{why}\n{evidence}"),
        );
    }
    let ending = st
        .ending
        .clone()
        .unwrap_or(Ending::Vanished { at_ms: now_ms() });
    if let Ending::RepoUnusable {
        problem,
        reason,
        evidence,
    } = &ending
    {
        let signature = format!("{}: {problem}", super::worktree::SIG_REPO);
        return failed(
            signature.clone(),
            format!("{signature}: {reason}; no agent was started"),
            evidence.clone(),
        );
    }
    let changed = st
        .change
        .as_ref()
        .is_some_and(|c| !c.patch.trim().is_empty());
    if let Ending::NotStarted {
        reason,
        runtime_missing,
    } = &ending
    {
        let evidence = format!(
            "$ {}\n{reason}\nPATH={}",
            st.command.join(" "),
            path_var.unwrap_or("")
        );
        if !runtime_missing {
            let signature = SIG_SETUP_FAILED.to_string();
            return failed(
                signature.clone(),
                format!("{signature}: {reason}"),
                evidence,
            );
        }
        let signature = format!("{SIG_RUNTIME_MISSING}: {}", st.cli);
        return failed(
            signature.clone(),
            format!(
                "{signature} ({reason}); agent {} cannot run on this host",
                st.agent_slug
            ),
            evidence,
        );
    }
    if let Some(why) = &st.ended_by {
        return failed(
            why.clone(),
            format!("{why}: the launcher ended {} (TERM, then KILL)", st.cli),
            evidence,
        );
    }
    // A wrapper that could not find a program it calls: the agent may even
    // exit 0, but the work did not happen.
    let err_scan = tail(&st.err_log_path, 64 * 1024);
    if let Some(line) = err_scan
        .lines()
        .find(|l| l.to_ascii_lowercase().contains(SIG_COMMAND_NOT_FOUND))
    {
        return failed(
            SIG_COMMAND_NOT_FOUND.into(),
            format!(
                "{SIG_COMMAND_NOT_FOUND} in {}: {}",
                st.err_log_path.display(),
                line.trim()
            ),
            evidence,
        );
    }
    match ending {
        // What a shell answers for a program it cannot find.
        Ending::Exited {
            code: Some(127), ..
        } => failed(
            SIG_COMMAND_NOT_FOUND.into(),
            format!(
                "{SIG_COMMAND_NOT_FOUND}: {} exited with code 127 (a program it runs was not found)",
                st.cli
            ),
            evidence,
        ),
        Ending::Exited { code: Some(0), .. } => FinalReport::Finished(Finished {
            exit_code: Some(0),
            signal: None,
            output: strip_ansi(&tail(&st.log_path, OUTPUT_TAIL)),
            change: None,
        }),
        Ending::Exited {
            code,
            signal,
            at_ms,
        } => {
            let sig = signal.map(signal_name);
            let signature = format!(
                "launcher process exited early (code={}, signal={})",
                code_text(code),
                sig.clone().unwrap_or_else(|| "null".into())
            );
            let secs = (at_ms - st.started_at_ms).max(0) / 1000;
            // The CLI said it is not logged in: that is the reason to act on.
            let logged_out = clis::logged_out_in(&st.agent_slug, &format!("{err_tail}\n{out_tail}"));
            let reason = if logged_out {
                format!("not logged in: {} ({signature} after {secs} s)", st.cli)
            } else {
                format!("{signature} after {secs} s running {}", st.cli)
            };
            failed(signature, reason, evidence)
        }
        Ending::Vanished { .. } => {
            let output = strip_ansi(&tail(&st.log_path, OUTPUT_TAIL));
            let note = format!(
                "exit code unknown: the agent (pid {}) ended while no launcher was watching it (launcher \
                 restarted); outcome judged from its logs",
                st.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
            );
            if output.trim().is_empty() && !changed {
                let signature =
                    "launcher process exited early (code=unknown, signal=unknown)".to_string();
                failed(
                    signature.clone(),
                    format!("{signature}: {note}; its stdout log is empty"),
                    evidence,
                )
            } else {
                // `exit_code` is null: it is unknown, and the server
                // takes a null code as such.
                FinalReport::Finished(Finished {
                    exit_code: None,
                    signal: None,
                    output: format!("{}\n[ops-center launcher] {note}", output.trim_end()),
                    change: None,
                })
            }
        }
        Ending::NotStarted { .. } | Ending::RepoUnusable { .. } => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The report's body as it is sent and kept in the state file.
    fn body(r: &FinalReport) -> serde_json::Value {
        serde_json::to_value(r).unwrap()["body"].clone()
    }

    fn st(dir: &std::path::Path, out: &str, err: &str, ending: Ending) -> TaskState {
        let log = dir.join("task-1-x.log");
        let err_log = dir.join("task-1-x.err.log");
        std::fs::write(&log, out).unwrap();
        std::fs::write(&err_log, err).unwrap();
        TaskState {
            task_id: 1,
            worker_id: "w".into(),
            claim_token: "t".into(),
            agent_slug: "codex".into(),
            command: vec!["codex".into(), "exec".into()],
            cli: "codex".into(),
            pid: Some(42),
            pid_start_ticks: None,
            log_path: log,
            err_log_path: err_log,
            prompt_path: dir.join("p"),
            started_at_ms: 0,
            started_reported: true,
            output_offset: 0,
            streamed: 0,
            output_capped: false,
            ending: Some(ending),
            final_report: None,
            abandoned: false,
            supervised: false,
            ended_by: None,
            term_sent_at_ms: None,
            cancelled_at_ms: None,
            worktree: None,
            change: None,
            change_error: None,
            tampered: None,
        }
    }

    #[test]
    fn decides_the_outcome() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path();
        let ok = Ending::Exited {
            code: Some(0),
            signal: None,
            at_ms: 3000,
        };

        let r = final_report(&st(d, "done\n", "", ok.clone()), None);
        assert_eq!(r.kind(), "finished");
        assert_eq!(body(&r)["exit_code"], 0);
        assert_eq!(body(&r)["output"], "done\n");

        let r = final_report(
            &st(d, "", "x.sh: line 2: frobnicate: command not found\n", ok),
            None,
        );
        assert_eq!(r.kind(), "failed");
        assert_eq!(body(&r)["signature"], "command not found");
        assert!(body(&r)["reason"]
            .as_str()
            .unwrap()
            .contains("frobnicate: command not found"));
        assert!(body(&r)["evidence"]
            .as_str()
            .unwrap()
            .contains("frobnicate"));

        let r = final_report(
            &st(
                d,
                "partial\n",
                "boom\n",
                Ending::Exited {
                    code: Some(3),
                    signal: None,
                    at_ms: 2000,
                },
            ),
            None,
        );
        assert_eq!(
            body(&r)["signature"],
            "launcher process exited early (code=3, signal=null)"
        );
        assert_eq!(body(&r)["exit_code"], 3, "a failed run says how it ended");
        assert!(body(&r).get("signal").is_none());
        assert!(body(&r)["evidence"].as_str().unwrap().contains("boom"));
        assert!(body(&r)["evidence"].as_str().unwrap().contains("partial"));

        let r = final_report(
            &st(
                d,
                "",
                "",
                Ending::Exited {
                    code: None,
                    signal: Some(9),
                    at_ms: 0,
                },
            ),
            None,
        );
        assert_eq!(
            body(&r)["signature"],
            "launcher process exited early (code=null, signal=SIGKILL)"
        );
        assert_eq!(body(&r)["signal"], "SIGKILL");
        assert!(body(&r).get("exit_code").is_none());

        let r = final_report(
            &st(
                d,
                "",
                "",
                Ending::NotStarted {
                    reason: "not found in PATH".into(),
                    runtime_missing: true,
                },
            ),
            Some("/bin"),
        );
        assert_eq!(
            body(&r)["signature"],
            "runtime no disponible en host: codex"
        );
        assert!(body(&r)["evidence"].as_str().unwrap().contains("PATH=/bin"));

        let bad = Ending::NotStarted {
            reason: "cannot write /x: read-only".into(),
            runtime_missing: false,
        };
        let r = final_report(&st(d, "", "", bad), None);
        assert_eq!(body(&r)["signature"], "launcher could not start the agent");
        assert!(body(&r)["reason"].as_str().unwrap().contains("read-only"));

        let r = final_report(
            &st(
                d,
                "",
                "sh: 1: exec: hermes: not found\n",
                Ending::Exited {
                    code: Some(127),
                    signal: None,
                    at_ms: 0,
                },
            ),
            None,
        );
        assert_eq!(body(&r)["signature"], "command not found");

        let r = final_report(&st(d, "result\n", "", Ending::Vanished { at_ms: 0 }), None);
        assert_eq!(r.kind(), "finished");
        assert!(body(&r)["exit_code"].is_null(), "unknown, sent as null");
        assert!(body(&r)["output"]
            .as_str()
            .unwrap()
            .contains("exit code unknown"));

        let r = final_report(&st(d, "", "", Ending::Vanished { at_ms: 0 }), None);
        assert_eq!(r.kind(), "failed");
        assert!(body(&r)["reason"]
            .as_str()
            .unwrap()
            .contains("exit code unknown"));
    }
}
