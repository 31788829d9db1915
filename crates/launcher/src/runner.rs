//! One thread per task: watches the agent process, streams its stdout as
//! `output` reports, and closes the run with `finished` or `failed`.
//! Every step is recorded in the task's state file before it counts as
//! done, so a restarted launcher picks up exactly where this one stopped.
//! What the final report says is decided in [`super::outcome`].

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::api::ApiError;
use super::outcome::{self, final_report, summary, Logs};
use super::process::{alive, read_range, signal_name, strip_ansi, tail};
use super::rate_limit;
use super::state::{save, Ending, FinalReport, TaskState};
use super::supervise::{self, Record};
use super::transcript::{self, Stream};
use super::Ctx;
use ops_base::time::now_ms;
use ops_protocol::dispatch::{
    CancelEnded, ClaimProof, Output, RateLimited, Report, ReportBody, Started,
};
use ops_protocol::runs::RunEvent;
use ops_protocol::tasks::TaskView;

/// Largest `output` report: big enough to keep the number of log comments
/// low, small enough for one comment to stay readable.
const CHUNK: usize = 16 * 1024;
/// While an agent runs, its output is sent at most this often (or when a
/// full chunk is waiting), so a chatty agent makes few log comments.
const OUTPUT_EVERY: Duration = Duration::from_secs(3);
/// Stdout streamed as `output` reports per run, at most: past it the log
/// file keeps growing, but the server's database does not (an agent that
/// prints without end would otherwise fill it).
pub const OUTPUT_STREAM_MAX: u64 = 8 * 1024 * 1024;
/// How often a running agent is looked at.
const POLL: Duration = Duration::from_millis(500);
/// An agent ended for its timeout or silence gets this long after TERM to
/// finish before KILL.
const KILL_GRACE_MS: i64 = 10_000;
/// A supervisor writes its record within moments of its start; a run with
/// neither a pid nor a record after this long never started.
const START_GRACE_MS: i64 = 5_000;

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
    /// Where stderr was last read for rate-limit refusals, and when.
    rate_scan: (u64, Option<Instant>),
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
            rate_scan: (0, None),
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
        self.watch_rate_limit(now);
        let refused = self.still_rate_limited(now);
        let ctx = self.ctx.clone();
        let cfg = &ctx.cfg;
        let timeout = cfg.timeout_of(&self.st.agent_slug);
        let why = if now - self.st.started_at_ms >= timeout.as_millis() as i64 {
            format!("agent timed out after {}", human(timeout))
        } else if self.activity.1.elapsed() >= cfg.silence {
            format!("agent silent for {}", human(cfg.silence))
        } else if refused {
            format!(
                "{RATE_LIMITED_SIGNATURE}: still refused {} after the first refusal",
                human(cfg.rate_limit_grace)
            )
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

    /// Reads what stderr gained since the last look (every few seconds)
    /// for the provider's rate-limit refusals; refusals in the stream are
    /// noted as they are read ([`read_stream`]).
    fn watch_rate_limit(&mut self, now: i64) {
        if self
            .rate_scan
            .1
            .is_some_and(|t| t.elapsed() < RATE_LIMIT_SCAN_EVERY)
        {
            return;
        }
        self.rate_scan.1 = Some(Instant::now());
        let Ok((bytes, len)) = read_range(&self.st.err_log_path, self.rate_scan.0, 64 * 1024)
        else {
            return;
        };
        self.rate_scan.0 = if len < self.rate_scan.0 {
            0
        } else {
            self.rate_scan.0 + bytes.len() as u64
        };
        if rate_limit::rate_limited(&String::from_utf8_lossy(&bytes)).is_some() {
            note_rate_limit(&mut self.st, now);
        }
    }

    /// Whether the provider has refused the run for its rate limit for
    /// `AGENT_RATE_LIMIT_GRACE` and still does: a CLI that retries without
    /// end (opencode) would hold its slot for its whole timeout.
    fn still_rate_limited(&mut self, now: i64) -> bool {
        let (Some(first), Some(last)) = (self.st.rate_limit_first_ms, self.st.rate_limit_last_ms)
        else {
            return false;
        };
        if now - last > 2 * RATE_LIMIT_RECENT_MS {
            // It got through: a later refusal starts the count again.
            self.st.rate_limit_first_ms = None;
            self.st.rate_limit_last_ms = None;
            return false;
        }
        now - first >= self.ctx.cfg.rate_limit_grace.as_millis() as i64
            && now - last <= RATE_LIMIT_RECENT_MS
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
        if !not_started && !self.stderr_events()? {
            return Ok(false);
        }
        if self.st.final_report.is_none() && !not_started {
            self.record_change();
        }
        if self.st.final_report.is_none() {
            let logs = read_logs(&self.st);
            let mut report = final_report(&self.st, &logs, self.ctx.cfg.path_var.as_deref());
            mark_rate_limited(&self.st, &logs, &mut report);
            log::info!(
                "task {id}: reporting {}: {}",
                report.kind(),
                summary(&report)
            );
            // A rate limit says nothing about the CLI either.
            let failed = match &report {
                FinalReport::Failed(f) if f.rate_limited.is_none() => Some(f.signature.as_str()),
                _ => None,
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
                        events: Vec::new(),
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
            let text = strip_ansi(&String::from_utf8_lossy(&bytes));
            let last = !more;
            let (chunk, events) = read_stream(&mut self.st, &text, last);
            if chunk.is_empty() {
                // Only streaming deltas (activity, not transcript), or a
                // line still incomplete: nothing to send yet.
                self.st.output_offset += n;
                self.persist();
                continue;
            }
            if !self.send_output(chunk, events, "output chunk")? {
                return Ok(false);
            }
            self.last_output = Some(Instant::now());
            self.st.output_offset += n;
            self.persist();
        }
    }
    /// Once the agent has ended: what a CLI says only on stderr (Hermes'
    /// `session_id: …`) is sent as one more `output` report, a line naming
    /// it, once. `Ok(false)` when the claim was lost on the way.
    fn stderr_events(&mut self) -> Result<bool, ApiError> {
        if self.st.stream != Stream::Hermes || self.st.stderr_read {
            return Ok(true);
        }
        let err = tail(&self.st.err_log_path, STDERR_EVENTS_TAIL);
        let events: Vec<RunEvent> = err
            .lines()
            .flat_map(|l| transcript::parse_line(self.st.stream, l))
            .filter(|e| matches!(e, RunEvent::Session { .. }))
            .collect();
        if let Some(RunEvent::Session { id }) = events.last() {
            let chunk =
                format!("[ops-center launcher] session_id: {id} (from the agent's stderr)\n");
            let session = events[events.len() - 1..].to_vec();
            if !self.send_output(chunk, session, "its session line")? {
                return Ok(false);
            }
        }
        self.st.stderr_read = true;
        self.persist();
        Ok(true)
    }

    /// Sends `chunk` and its `events` as the next `output` report, at the
    /// offset of what was streamed so far. `Ok(true)` when it is done with
    /// (taken, or refused for good and skipped: `what` says which part of
    /// the output in the log); `Ok(false)` when the claim was lost on the
    /// way (cancelled, or taken back).
    fn send_output(
        &mut self,
        chunk: String,
        events: Vec<RunEvent>,
        what: &str,
    ) -> Result<bool, ApiError> {
        let sent = chunk.len() as u64;
        let output = Report::Output(Output {
            chunk,
            offset: Some(self.st.streamed as i64),
            events,
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
            Sent::Refused(e) => {
                log::error!("task {}: {what} refused, skipped: {e}", self.st.task_id)
            }
        }
        self.st.streamed += sent;
        Ok(true)
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

/// The largest chunk of a structured stream sent at once: a line carried
/// over from earlier chunks can make it longer than [`CHUNK`]; the server
/// takes up to 256 KiB.
const STREAM_CHUNK_MAX: usize = 192 * 1024;
/// A line of a structured stream longer than this is not kept whole to be
/// read (its events are lost; the log file keeps it).
const LINE_MAX: usize = 1024 * 1024;
/// Run events sent with one chunk, at most (the server takes 1,000).
const EVENTS_MAX: usize = 1_000;
/// A refusal this recent means the provider still refuses.
const RATE_LIMIT_RECENT_MS: i64 = 60_000;
/// How often a running agent's stderr is read for refusals.
const RATE_LIMIT_SCAN_EVERY: Duration = Duration::from_secs(5);

/// Notes a rate-limit refusal seen at `now`.
fn note_rate_limit(st: &mut TaskState, now: i64) {
    st.rate_limit_first_ms.get_or_insert(now);
    st.rate_limit_last_ms = Some(now);
}

/// How much of stderr is read for what a CLI says only there.
const STDERR_EVENTS_TAIL: u64 = 64 * 1024;
/// Errors of the stream kept for the rate-limit check.
const ERRORS_KEPT: usize = 5;

/// Reads a chunk of the agent's stdout: for a structured stream, the
/// events its complete lines hold and the chunk to send without the lines
/// that are only streaming deltas (activity, not transcript); an
/// incomplete last line waits in `line_carry` for the next chunk unless
/// this is the `last` one. Plain text is sent as it is, without events.
fn read_stream(st: &mut TaskState, text: &str, last: bool) -> (String, Vec<RunEvent>) {
    if st.stream == Stream::Plain {
        return (text.to_string(), Vec::new());
    }
    let mut all = std::mem::take(&mut st.line_carry);
    all.push_str(text);
    let split = if last {
        all.len()
    } else {
        all.rfind('\n').map_or(0, |i| i + 1)
    };
    let (complete, rest) = all.split_at(split);
    let mut chunk = String::new();
    let mut events = Vec::new();
    for line in complete.split_inclusive('\n') {
        let l = line.trim_end();
        if l.is_empty() || transcript::is_activity_only(st.stream, l) {
            continue;
        }
        if chunk.len() + line.len() <= STREAM_CHUNK_MAX {
            chunk.push_str(line);
        }
        for e in transcript::parse_line(st.stream, l) {
            match &e {
                // opencode names its session on every step: said once.
                RunEvent::Session { id } if st.session.as_ref() == Some(id) => continue,
                RunEvent::Session { id } => st.session = Some(id.clone()),
                RunEvent::Message { text } => st.last_message = Some(text.clone()),
                RunEvent::Error { text } => {
                    if rate_limit::rate_limited(text).is_some() {
                        note_rate_limit(st, ops_base::time::now_ms());
                    }
                    st.stream_errors.push(text.chars().take(2000).collect());
                    let extra = st.stream_errors.len().saturating_sub(ERRORS_KEPT);
                    st.stream_errors.drain(..extra);
                }
                _ => {}
            }
            if events.len() < EVENTS_MAX {
                events.push(e);
            }
        }
    }
    st.line_carry = if rest.len() > LINE_MAX {
        String::new()
    } else {
        rest.to_string()
    };
    (chunk, events)
}

/// A failed run that the provider's rate limit or quota ended (said in
/// its stream's errors, in its stderr, or in the stdout of a plain-text
/// CLI) is reported as such: the server queues it again rather than
/// blocking it. Not when the launcher ended it (timeout, silence, cancel).
fn mark_rate_limited(st: &TaskState, logs: &Logs, report: &mut FinalReport) {
    let FinalReport::Failed(f) = report else {
        return;
    };
    let ended_for_it = st
        .ended_by
        .as_deref()
        .is_some_and(|w| w.starts_with(RATE_LIMITED_SIGNATURE));
    if (st.ended_by.is_some() && !ended_for_it)
        || st.cancelled_at_ms.is_some()
        || !matches!(
            st.ending,
            Some(Ending::Exited { .. } | Ending::Vanished { .. })
        )
    {
        return;
    }
    let mut seen = st.stream_errors.join("\n");
    seen.push('\n');
    seen.push_str(&logs.err_scan);
    if st.stream == Stream::Plain {
        seen.push('\n');
        seen.push_str(&logs.out_tail);
    }
    let Some(retry_after_seconds) =
        rate_limit::rate_limited(&seen).or(ended_for_it.then_some(None))
    else {
        return;
    };
    f.rate_limited = Some(RateLimited {
        retry_after_seconds,
    });
    f.reason = format!(
        "{RATE_LIMITED_SIGNATURE}: the provider refused for its rate limit or quota; queued again{}",
        retry_after_seconds.map_or(String::new(), |s| format!(" after {s} s"))
    );
    f.signature = RATE_LIMITED_SIGNATURE.to_string();
}

/// The signature of a run a rate limit ended.
pub const RATE_LIMITED_SIGNATURE: &str = "rate limited by the provider";

/// What the final report is decided from in the run's logs (see
/// [`Logs`]): for a structured stream, the output is the agent's last
/// message rather than the stream's JSON.
fn read_logs(st: &TaskState) -> Logs {
    // Hermes prints its answer as plain text: its tail is the output.
    let output = match (&st.last_message, st.stream) {
        (Some(m), Stream::Claude | Stream::Codex | Stream::Opencode) => m.clone(),
        _ => strip_ansi(&tail(&st.log_path, outcome::OUTPUT_TAIL)),
    };
    Logs {
        output,
        out_tail: strip_ansi(&tail(&st.log_path, outcome::EVIDENCE_TAIL)),
        err_tail: strip_ansi(&tail(&st.err_log_path, outcome::EVIDENCE_TAIL)),
        err_scan: tail(&st.err_log_path, outcome::ERR_SCAN_TAIL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tails_the_decision_takes() {
        let d = tempfile::tempdir().unwrap();
        let mut st: TaskState = serde_json::from_value(serde_json::json!({
            "task_id": 1, "worker_id": "w", "claim_token": "t", "agent_slug": "codex",
            "command": ["codex"], "cli": "codex", "pid": null, "pid_start_ticks": null,
            "log_path": "", "err_log_path": "", "prompt_path": "", "started_at_ms": 0,
            "started_reported": true, "output_offset": 0, "ending": null, "final_report": null,
        }))
        .unwrap();
        st.log_path = d.path().join("task-1-x.log");
        st.err_log_path = d.path().join("task-1-x.err.log");
        let long = "x".repeat(outcome::EVIDENCE_TAIL as usize);
        std::fs::write(&st.log_path, format!("{long}\n\x1b[31mred\x1b[0m\n")).unwrap();
        std::fs::write(&st.err_log_path, "\x1b[1mcommand not found\x1b[0m\n").unwrap();
        let logs = read_logs(&st);
        assert_eq!(logs.output, format!("{long}\nred\n"));
        assert_eq!(logs.out_tail, "red\n", "the evidence's tail is shorter");
        assert_eq!(logs.err_tail, "command not found\n");
        assert_eq!(logs.err_scan, "\x1b[1mcommand not found\x1b[0m\n");
    }
}
