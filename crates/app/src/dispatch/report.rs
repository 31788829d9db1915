//! A worker's reports on the task it holds (started, output, finished,
//! failed) and the rules they apply: a finished run goes to review only
//! with evidence, and a run that left its branch as it was delivered
//! nothing for a task that expects a change.

use serde_json::json;

use crate::views;
use crate::{event, secrets, transition};
use ops_base::error::{Error, Result};
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_domain::task::{Status, DISPATCH_AUTHOR};
use ops_protocol::dispatch::{
    ClaimProof, Failed, Finished, Output, RateLimited, Report, RunChange, Started,
};
use ops_protocol::tasks::TaskView;
use ops_store::changes::{self, Change};
use ops_store::comments;
use ops_store::db::Db;
use ops_store::tasks::{self, Task};

/// `blocked_reason` of a run that ended without output.
pub const NO_EVIDENCE_REASON: &str = "finished without deliverable evidence";
/// `blocked_reason` of a run in a repository that finished without
/// changing its branch, for a task that expects a change.
pub const NO_CHANGE_REASON: &str = "sin cambios: el agente terminó sin modificar el repositorio";
/// `dispatch_output` keeps at most this many bytes: the tail of the output.
pub const OUTPUT_LIMIT: usize = 64 * 1024;
/// A reported patch is at most this large (the launcher sends its head
/// and says it was cut).
pub const PATCH_LIMIT: usize = 256 * 1024;
/// A reported `git status` or `diff --stat` is at most this large.
pub const STAT_LIMIT: usize = 64 * 1024;
/// Runs in a row ended by a rate limit after which a task is blocked
/// rather than queued again.
pub const RATE_LIMIT_BLOCK_AFTER: i64 = 5;
/// The start of `blocked_reason` of a task blocked for that.
pub const RATE_LIMITED_REASON: &str = "límite de uso del proveedor";
/// The longest a rate-limited task waits before a claim may take it.
const MAX_RATE_LIMIT_WAIT_SECONDS: i64 = 6 * 3600;
/// A streamed output chunk is at most this large.
pub const CHUNK_LIMIT: usize = 256 * 1024;

/// Applies a worker report. A claim that is not the task's current one is
/// `409 stale_claim` and changes nothing. Reports are idempotent: a retried
/// `started`, `finished` or `failed` whose effect is already recorded
/// answers 200 without changing anything again.
pub fn report(
    db: &Db,
    who: &Principal,
    id: i64,
    claim: ClaimProof,
    report: Report,
) -> Result<TaskView> {
    who.require_service("worker reports")?;
    let t = db.write(move |conn| {
        let now = now_ms();
        let mut t = tasks::require(conn, id)?;
        let holds = t.claimed_by.as_deref() == Some(claim.worker_id.as_str())
            && t.claim_token.as_deref().is_some_and(|tok| secrets::constant_time_eq(tok, &claim.claim_token));
        if !holds && crate::cancel::is_cancelled_claim(conn, id, &claim)? {
            return Err(Error::conflict(
                "claim_cancelled",
                format!("the claim of worker {:?} on task {id} was cancelled: end the agent and report `cancelled`", claim.worker_id),
            ));
        }
        if !holds {
            return Err(Error::conflict(
                "stale_claim",
                format!("worker {:?} does not hold the current claim on task {id}", claim.worker_id),
            ));
        }
        let actor = format!("worker:{}", claim.worker_id);
        let ws = Some(t.workspace_id);
        let ended = t.dispatch_finished_at.is_some();
        match report {
            Report::Started(Started { pid, log_path, err_log_path }) => {
                if t.status != Status::Dispatching {
                    return already(t, Status::Doing, "started");
                }
                t.dispatch_started_at = Some(now);
                crate::runs::start(conn, &mut t, &claim.worker_id, now)?;
                t.log_path = log_path;
                t.err_log_path = err_log_path;
                transition(conn, &mut t, Status::Doing, "dispatch.started", &actor, json!({"pid": pid}), now)?;
            }
            Report::Output(Output { chunk, offset, events }) => {
                if ended || !t.status.is_claimed() {
                    return Err(Error::conflict("task_not_running", format!("task {id} is {}; its run has ended", t.status.as_str())));
                }
                if let Some(offset) = offset {
                    // A chunk that starts at or before the last one taken
                    // was sent again: it is already logged.
                    if tasks::output_offset(conn, id)?.is_some_and(|last| offset <= last) {
                        return Ok(t);
                    }
                    tasks::set_output_offset(conn, id, offset)?;
                }
                let cid = comments::add(conn, id, DISPATCH_AUTHOR, "log", &chunk, now)?;
                event(conn, now, ws, Some(id), "dispatch.output", &actor,
                      json!({"comment_id": cid, "bytes": chunk.len(), "events": events.len()}))?;
                if !events.is_empty() {
                    let settings = ops_store::settings::load(conn)?;
                    crate::runs::take_events(conn, &claim.claim_token, events, &settings, now)?;
                }
                return tasks::require(conn, id);
            }
            Report::Finished(Finished { exit_code, signal, output, change }) => {
                if ended {
                    return already(t, Status::Review, "finished");
                }
                put_change(conn, &t, &claim.claim_token, change.as_ref(), &actor, now)?;
                t.dispatch_output = Some(tail(&output, OUTPUT_LIMIT)).filter(|o| !o.is_empty());
                t.exit_code = exit_code;
                t.exit_signal = signal.clone();
                t.dispatch_finished_at = Some(now);
                t.rate_limited_runs = 0;
                crate::runs::end(conn, &claim.claim_token, "finished", exit_code, signal.as_deref(), now)?;
                let evidence = tasks::has_output_evidence(conn, &t)?;
                // A run in a clone reports its change: one that left the
                // branch as it was delivered nothing to review. A follow-up
                // may answer the reviewer without an edit: its branch, with
                // the earlier runs' change, is what is reviewed.
                let follow_up = crate::runs::follow_up_of(conn, &claim.claim_token)?.is_some();
                let unchanged = change.as_ref().is_some_and(|c| {
                    if follow_up { holds_no_change(c) } else { left_branch_as_it_was(c) }
                });
                let payload = json!({"exit_code": exit_code, "signal": signal, "evidence": evidence,
                                     "changed": change.as_ref().map(|c| !left_branch_as_it_was(c)),
                                     "expects_changes": t.expects_changes});
                if unchanged && t.expects_changes {
                    let c = change.as_ref().expect("unchanged implies a change report");
                    t.blocked = true;
                    t.blocked_reason = Some(NO_CHANGE_REASON.to_string());
                    comments::add(conn, id, DISPATCH_AUTHOR, "blocker",
                        &format!("{NO_CHANGE_REASON}: branch {} is at {}, where it was when the run started (exit_code={}, \
                                  signal={}); the agent's output is kept in dispatch_output. A task that expects no change \
                                  in its repository says so with expects_changes=false; then dispatch it again.",
                            c.branch, c.head.as_deref().unwrap_or("its start"),
                            exit_code.map_or("none".into(), |c| c.to_string()), signal.as_deref().unwrap_or("none")), now)?;
                    transition(conn, &mut t, Status::Waiting, "dispatch.finished", &actor, payload, now)?;
                } else if evidence {
                    transition(conn, &mut t, Status::Review, "dispatch.finished", &actor, payload, now)?;
                } else {
                    t.blocked = true;
                    t.blocked_reason = Some(NO_EVIDENCE_REASON.to_string());
                    comments::add(conn, id, DISPATCH_AUTHOR, "blocker",
                        &format!("{NO_EVIDENCE_REASON} (exit_code={}, signal={}): the agent printed nothing and changed no file",
                            exit_code.map_or("none".into(), |c| c.to_string()), signal.as_deref().unwrap_or("none")), now)?;
                    transition(conn, &mut t, Status::Waiting, "dispatch.finished", &actor, payload, now)?;
                }
            }
            Report::Failed(Failed { signature, reason, evidence, change, exit_code, signal, rate_limited }) => {
                if ended {
                    return already(t, Status::Waiting, "failed");
                }
                put_change(conn, &t, &claim.claim_token, change.as_ref(), &actor, now)?;
                if let Some(limit) = rate_limited {
                    rate_limited_run(conn, &mut t, &claim, &reason, limit, (exit_code, signal), now)?;
                    tasks::save(conn, &t, now)?;
                    return tasks::require(conn, id);
                }
                t.rate_limited_runs = 0;
                crate::runs::end(conn, &claim.claim_token, "failed", exit_code, signal.as_deref(), now)?;
                // An older launcher says how the agent ended only in the
                // signature: `… (code=1, signal=null)`.
                let (code_in, signal_in) = exit_in_signature(&signature);
                t.exit_code = exit_code.or(code_in);
                t.exit_signal = signal.or(signal_in);
                t.blocked = true;
                t.blocked_reason = Some(if reason.trim().is_empty() { signature.clone() } else { reason.clone() });
                t.dispatch_finished_at = Some(now);
                let body = format!("dispatch failed on worker {}: {signature}\nreason: {reason}\nevidence:\n{evidence}", claim.worker_id);
                comments::add(conn, id, DISPATCH_AUTHOR, "blocker", &body, now)?;
                let payload = json!({"signature": signature, "reason": reason,
                                     "worker_id": claim.worker_id, "agent": t.agent_slug,
                                     "exit_code": t.exit_code, "signal": t.exit_signal});
                transition(conn, &mut t, Status::Waiting, "dispatch.failed", &actor, payload, now)?;
                ops_base::metrics::METRICS.failure(&signature);
            }
        }
        tasks::save(conn, &t, now)?;
        tasks::require(conn, id)
    })?;
    Ok(views::task(&t))
}

/// A run the provider's rate limit ended: back to the queue, not before
/// the provider's reset (else a backoff doubling from a minute), without
/// counting as a failure; blocked once [`RATE_LIMIT_BLOCK_AFTER`] runs in a
/// row ended so.
fn rate_limited_run(
    conn: &rusqlite::Connection,
    t: &mut Task,
    claim: &ClaimProof,
    reason: &str,
    limit: RateLimited,
    (exit_code, signal): (Option<i64>, Option<String>),
    now: i64,
) -> Result<()> {
    let actor = format!("worker:{}", claim.worker_id);
    crate::runs::end(
        conn,
        &claim.claim_token,
        "rate_limited",
        exit_code,
        signal.as_deref(),
        now,
    )?;
    // A follow-up the limit stopped is still owed: the next run resumes
    // with the same message.
    if let Some((message, session)) = crate::runs::follow_up_of(conn, &claim.claim_token)? {
        t.follow_up = Some(message);
        t.follow_up_session = session;
    }
    t.rate_limited_runs += 1;
    t.exit_code = exit_code;
    t.exit_signal = signal;
    t.dispatch_finished_at = Some(now);
    let n = t.rate_limited_runs;
    let reason = if reason.trim().is_empty() {
        "rate limited by the provider"
    } else {
        reason.trim()
    };
    if n >= RATE_LIMIT_BLOCK_AFTER {
        t.blocked = true;
        t.blocked_reason = Some(format!(
            "{RATE_LIMITED_REASON}: {n} ejecuciones seguidas; la última: {reason}"
        ));
        comments::add(conn, t.id, DISPATCH_AUTHOR, "blocker",
            &format!("{n} runs in a row ended by the provider's rate limit or quota; the task waits blocked until                       someone retries it. Last: {reason}"), now)?;
        let payload = json!({"worker_id": claim.worker_id, "rate_limited_runs": n, "reason": reason, "blocked": true});
        return transition(
            conn,
            t,
            Status::Waiting,
            "dispatch.rate_limited",
            &actor,
            payload,
            now,
        );
    }
    let wait = match limit.retry_after_seconds {
        Some(s) => s.clamp(1, MAX_RATE_LIMIT_WAIT_SECONDS),
        None => (60_i64 << (n - 1).min(10)).min(MAX_RATE_LIMIT_WAIT_SECONDS),
    };
    let not_before = now + wait * 1000;
    t.clear_claim();
    t.not_before = Some(not_before);
    comments::add(conn, t.id, DISPATCH_AUTHOR, "note",
        &format!("rate limited by the provider (run {n} in a row): queued again, not before {} ({wait} s). {reason}",
                 ops_base::time::rfc3339(not_before)), now)?;
    let payload = json!({"worker_id": claim.worker_id, "rate_limited_runs": n, "retry_after_seconds": wait,
                         "not_before": ops_base::time::rfc3339(not_before), "reason": reason});
    transition(
        conn,
        t,
        Status::Queued,
        "dispatch.rate_limited",
        &actor,
        payload,
        now,
    )?;
    // Its wait in the queue counts from when a claim may take it.
    t.queued_at = Some(not_before);
    Ok(())
}

/// Whether a run's reported change left its branch where the run found
/// it: `head` is `start` (the launcher says where the run started), or,
/// from a launcher that does not, the patch and its summary are empty.
fn left_branch_as_it_was(c: &RunChange) -> bool {
    match (&c.start, &c.head) {
        (Some(start), Some(head)) => start.eq_ignore_ascii_case(head),
        _ => holds_no_change(c),
    }
}

/// Whether a run's branch holds no change at all against its base.
fn holds_no_change(c: &RunChange) -> bool {
    c.patch.trim().is_empty() && c.diff_stat.trim().is_empty()
}

/// The exit code and signal an older launcher wrote only into a failure
/// signature (`launcher process exited early (code=1, signal=null)`):
/// `null`, `none` and `unknown` are no value.
fn exit_in_signature(signature: &str) -> (Option<i64>, Option<String>) {
    let value = |key: &str| -> Option<&str> {
        let start = signature.find(key)? + key.len();
        let rest = &signature[start..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(rest.len());
        Some(&rest[..end]).filter(|v| !v.is_empty() && !["null", "none", "unknown"].contains(v))
    };
    (
        value("code=").and_then(|c| c.parse().ok()),
        value("signal=").map(str::to_string),
    )
}

/// Stores what a run changed as the task's change and, when the claim's
/// run started, as that run's, with an event saying so.
fn put_change(
    conn: &rusqlite::Connection,
    t: &Task,
    claim_token: &str,
    change: Option<&RunChange>,
    actor: &str,
    now: i64,
) -> Result<()> {
    let Some(c) = change else {
        return Ok(());
    };
    let c = Change {
        branch: c.branch.clone(),
        head: c.head.clone(),
        base: c.base.clone(),
        status: c.git_status.clone(),
        diff_stat: c.diff_stat.clone(),
        patch: c.patch.clone(),
        truncated: c.patch_truncated,
    };
    changes::put(conn, t.id, &c, now)?;
    if let Some(run) = ops_store::runs::by_claim(conn, claim_token)? {
        changes::put_for_run(conn, run.id, t.id, &c, now)?;
    }
    let files = c.diff_stat.lines().filter(|l| l.contains('|')).count();
    event(
        conn,
        now,
        Some(t.workspace_id),
        Some(t.id),
        "dispatch.change",
        actor,
        json!({"branch": c.branch, "head": c.head, "files": files, "patch_bytes": c.patch.len(), "truncated": c.truncated}),
    )?;
    Ok(())
}

/// A retried report whose effect is already recorded: answer with the task
/// as it is; anything else is out of order.
fn already(t: Task, expected: Status, what: &str) -> Result<Task> {
    if t.status == expected
        || (what == "finished" && t.status == Status::Waiting && t.dispatch_finished_at.is_some())
    {
        return Ok(t);
    }
    Err(Error::conflict(
        "invalid_transition",
        format!(
            "task {} is {}; a `{what}` report does not apply",
            t.id,
            t.status.as_str()
        ),
    ))
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_launchers_signature_says_how_the_agent_ended() {
        let cases = [
            (
                "launcher process exited early (code=1, signal=null)",
                (Some(1), None),
            ),
            (
                "launcher process exited early (code=null, signal=SIGKILL)",
                (None, Some("SIGKILL")),
            ),
            (
                "launcher process exited early (code=unknown, signal=unknown)",
                (None, None),
            ),
            (
                "launcher process exited early (code=-3, signal=15)",
                (Some(-3), Some("15")),
            ),
            ("command not found", (None, None)),
            ("agent timed out after 2 h", (None, None)),
        ];
        for (sig, (code, signal)) in cases {
            let (c, s) = exit_in_signature(sig);
            assert_eq!((c, s.as_deref()), (code, signal), "{sig}");
        }
    }

    #[test]
    fn a_change_is_no_change_when_the_branch_stayed_where_the_run_found_it() {
        let change = |start: Option<&str>, head: Option<&str>, patch: &str| RunChange {
            branch: "ops/task-1".into(),
            head: head.map(str::to_string),
            base: Some("aaaa".into()),
            start: start.map(str::to_string),
            patch: patch.into(),
            ..RunChange::default()
        };
        assert!(left_branch_as_it_was(&change(
            Some("bbbb"),
            Some("BBBB"),
            "earlier runs' diff"
        )));
        assert!(!left_branch_as_it_was(&change(
            Some("bbbb"),
            Some("cccc"),
            ""
        )));
        // From a launcher that does not say where the run started.
        assert!(left_branch_as_it_was(&change(None, Some("aaaa"), " \n")));
        assert!(!left_branch_as_it_was(&change(
            None,
            Some("cccc"),
            "diff --git"
        )));
    }
}
