//! The report that closes a run, decided from what is known once its
//! agent has ended: how it ended (or why it never started), what its logs
//! hold, and what it changed in its worktree. `finished` or `failed`, with
//! the signature, reason and evidence of a failure. Plain functions, no
//! I/O: the runner reads the logs into [`Logs`] and sends what is decided.

use ops_protocol::dispatch::{Failed, Finished, RunChange};

use super::clis;
use super::process::signal_name;
use super::state::{Ending, FinalReport, TaskState};
use super::worktree;

/// The tail of stdout sent as `finished.output`: what the server keeps of
/// `dispatch_output`.
pub const OUTPUT_TAIL: u64 = 64 * 1024;
/// The tail of each log given as evidence of a failure.
pub const EVIDENCE_TAIL: u64 = 4 * 1024;
/// The tail of stderr looked through for [`SIG_COMMAND_NOT_FOUND`].
pub const ERR_SCAN_TAIL: u64 = 64 * 1024;

pub const SIG_RUNTIME_MISSING: &str = "runtime no disponible en host";
pub const SIG_COMMAND_NOT_FOUND: &str = "command not found";
/// Not a runtime problem: the launcher could not prepare the run.
pub const SIG_SETUP_FAILED: &str = "launcher could not start the agent";

/// What the decision reads of a run's logs, read once it has ended.
#[derive(Clone, Debug, Default)]
pub struct Logs {
    /// The last [`OUTPUT_TAIL`] bytes of stdout, without terminal escapes.
    pub output: String,
    /// The last [`EVIDENCE_TAIL`] bytes of stdout, without terminal escapes.
    pub out_tail: String,
    /// The last [`EVIDENCE_TAIL`] bytes of stderr, without terminal escapes.
    pub err_tail: String,
    /// The last [`ERR_SCAN_TAIL`] bytes of stderr, as written.
    pub err_scan: String,
}

/// The report that closes a run, decided from how the process ended and
/// what its logs hold, with what the run changed in its worktree.
pub fn final_report(st: &TaskState, logs: &Logs, path_var: Option<&str>) -> FinalReport {
    let mut r = decide(st, logs, path_var);
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

fn decide(st: &TaskState, logs: &Logs, path_var: Option<&str>) -> FinalReport {
    let Logs {
        output,
        out_tail,
        err_tail,
        err_scan,
    } = logs;
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
            rate_limited: None,
            change: None,
        })
    };
    if let Some(why) = &st.tampered {
        let signature = worktree::SIG_TAMPERED.to_string();
        return failed(
            signature.clone(),
            format!("{signature}: {why}; its change was not taken and nothing was committed"),
            format!("{why}\n{evidence}"),
        );
    }
    // The runner decides once the agent has ended; a run without an ending
    // is judged as one that vanished (whose time is not read).
    let ending = st.ending.clone().unwrap_or(Ending::Vanished { at_ms: 0 });
    if let Ending::RepoUnusable {
        problem,
        reason,
        evidence,
    } = &ending
    {
        let signature = format!("{}: {problem}", worktree::SIG_REPO);
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
            output: output.clone(),
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

/// The final report in one line, for the launcher's log.
pub fn summary(r: &FinalReport) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::strip_ansi;
    use crate::worktree::Change;

    /// The report's body as it is sent and kept in the state file.
    fn body(r: &FinalReport) -> serde_json::Value {
        serde_json::to_value(r).unwrap()["body"].clone()
    }

    /// The logs as the runner reads them, for logs shorter than any tail.
    fn logs(out: &str, err: &str) -> Logs {
        Logs {
            output: strip_ansi(out),
            out_tail: strip_ansi(out),
            err_tail: strip_ansi(err),
            err_scan: err.to_string(),
        }
    }

    fn st(ending: Ending) -> TaskState {
        TaskState {
            task_id: 1,
            worker_id: "w".into(),
            claim_token: "t".into(),
            agent_slug: "codex".into(),
            command: vec!["codex".into(), "exec".into()],
            cli: "codex".into(),
            pid: Some(42),
            pid_start_ticks: None,
            log_path: "/logs/task-1-x.log".into(),
            err_log_path: "/logs/task-1-x.err.log".into(),
            prompt_path: "/logs/task-1-x.prompt.md".into(),
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
            stream: Default::default(),
            line_carry: String::new(),
            last_message: None,
            session: None,
            stream_errors: Vec::new(),
            stderr_read: false,
            rate_limit_first_ms: None,
            rate_limit_last_ms: None,
        }
    }

    #[test]
    fn decides_the_outcome() {
        let ok = Ending::Exited {
            code: Some(0),
            signal: None,
            at_ms: 3000,
        };

        let r = final_report(&st(ok.clone()), &logs("done\n", ""), None);
        assert_eq!(r.kind(), "finished");
        assert_eq!(body(&r)["exit_code"], 0);
        assert_eq!(body(&r)["output"], "done\n");

        let r = final_report(
            &st(ok),
            &logs("", "x.sh: line 2: frobnicate: command not found\n"),
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
            &st(Ending::Exited {
                code: Some(3),
                signal: None,
                at_ms: 2000,
            }),
            &logs("partial\n", "boom\n"),
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
            &st(Ending::Exited {
                code: None,
                signal: Some(9),
                at_ms: 0,
            }),
            &logs("", ""),
            None,
        );
        assert_eq!(
            body(&r)["signature"],
            "launcher process exited early (code=null, signal=SIGKILL)"
        );
        assert_eq!(body(&r)["signal"], "SIGKILL");
        assert!(body(&r).get("exit_code").is_none());

        let r = final_report(
            &st(Ending::NotStarted {
                reason: "not found in PATH".into(),
                runtime_missing: true,
            }),
            &logs("", ""),
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
        let r = final_report(&st(bad), &logs("", ""), None);
        assert_eq!(body(&r)["signature"], "launcher could not start the agent");
        assert!(body(&r)["reason"].as_str().unwrap().contains("read-only"));

        let r = final_report(
            &st(Ending::Exited {
                code: Some(127),
                signal: None,
                at_ms: 0,
            }),
            &logs("", "sh: 1: exec: hermes: not found\n"),
            None,
        );
        assert_eq!(body(&r)["signature"], "command not found");

        let r = final_report(
            &st(Ending::Vanished { at_ms: 0 }),
            &logs("result\n", ""),
            None,
        );
        assert_eq!(r.kind(), "finished");
        assert!(body(&r)["exit_code"].is_null(), "unknown, sent as null");
        assert!(body(&r)["output"]
            .as_str()
            .unwrap()
            .contains("exit code unknown"));

        let r = final_report(&st(Ending::Vanished { at_ms: 0 }), &logs("", ""), None);
        assert_eq!(r.kind(), "failed");
        assert!(body(&r)["reason"]
            .as_str()
            .unwrap()
            .contains("exit code unknown"));
    }

    fn exited(code: Option<i32>, signal: Option<i32>, at_ms: i64) -> Ending {
        Ending::Exited {
            code,
            signal,
            at_ms,
        }
    }

    fn change(patch: &str) -> Change {
        Change {
            branch: "ops/task-1".into(),
            head: "h".into(),
            base: "b".into(),
            start: "s".into(),
            status: " M a.txt\n".into(),
            diff_stat: " a.txt | 1 +\n".into(),
            patch: patch.into(),
            truncated: false,
        }
    }

    #[test]
    fn a_failure_gives_both_tails_as_evidence() {
        let r = final_report(
            &st(exited(Some(3), None, 2000)),
            &logs("partial\n", "boom\n"),
            None,
        );
        assert_eq!(
            body(&r)["evidence"],
            "$ codex exec\n--- /logs/task-1-x.err.log (tail) ---\nboom\n--- /logs/task-1-x.log (tail) ---\npartial"
        );
        assert_eq!(
            body(&r)["reason"],
            "launcher process exited early (code=3, signal=null) after 2 s running codex"
        );
    }

    #[test]
    fn a_tampered_clone_fails_the_run_whatever_its_exit() {
        let mut s = st(exited(Some(0), None, 1000));
        s.tampered = Some("its origin points elsewhere".into());
        let r = final_report(&s, &logs("done\n", ""), None);
        assert_eq!(r.kind(), "failed");
        assert_eq!(body(&r)["signature"], worktree::SIG_TAMPERED);
        assert_eq!(
            body(&r)["reason"],
            format!(
                "{}: its origin points elsewhere; its change was not taken and nothing was committed",
                worktree::SIG_TAMPERED
            )
        );
        let evidence = body(&r)["evidence"].as_str().unwrap().to_string();
        assert!(evidence.starts_with("its origin points elsewhere\n$ codex exec\n"));
        assert!(evidence.contains("done"));
        assert_eq!(body(&r)["exit_code"], 0, "how the agent ended is kept");
    }

    #[test]
    fn an_unusable_repository_fails_with_its_own_evidence() {
        let s = st(Ending::RepoUnusable {
            problem: "not a git repository".into(),
            reason: "/srv/x has no .git".into(),
            evidence: "fatal: not a git repository".into(),
        });
        let r = final_report(&s, &logs("", ""), None);
        assert_eq!(r.kind(), "failed");
        let signature = format!("{}: not a git repository", worktree::SIG_REPO);
        assert_eq!(body(&r)["signature"], signature.as_str());
        assert_eq!(
            body(&r)["reason"],
            format!("{signature}: /srv/x has no .git; no agent was started")
        );
        assert_eq!(body(&r)["evidence"], "fatal: not a git repository");
        assert!(body(&r).get("exit_code").is_none());
        assert!(body(&r).get("signal").is_none());
    }

    #[test]
    fn a_runtime_that_is_missing_names_the_cli_and_the_path() {
        let s = st(Ending::NotStarted {
            reason: "not found in PATH".into(),
            runtime_missing: true,
        });
        let r = final_report(&s, &logs("", ""), Some("/usr/bin:/bin"));
        assert_eq!(
            body(&r)["reason"],
            "runtime no disponible en host: codex (not found in PATH); agent codex cannot run on this host"
        );
        assert_eq!(
            body(&r)["evidence"],
            "$ codex exec\nnot found in PATH\nPATH=/usr/bin:/bin"
        );
    }

    #[test]
    fn an_agent_the_launcher_ended_fails_with_why() {
        let mut s = st(exited(None, Some(15), 5000));
        s.ended_by = Some("agent timed out after 2 h".into());
        // Why the launcher ended it comes before what its stderr says.
        let r = final_report(&s, &logs("", "sh: foo: command not found\n"), None);
        assert_eq!(r.kind(), "failed");
        assert_eq!(body(&r)["signature"], "agent timed out after 2 h");
        assert_eq!(
            body(&r)["reason"],
            "agent timed out after 2 h: the launcher ended codex (TERM, then KILL)"
        );
        assert_eq!(body(&r)["signal"], "SIGTERM");
        assert!(body(&r).get("exit_code").is_none());
    }

    #[test]
    fn a_logged_out_cli_is_the_reason_given() {
        let r = final_report(
            &st(exited(Some(1), None, 2000)),
            &logs("", "Error: Not logged in. Run `codex login`.\n"),
            None,
        );
        assert_eq!(
            body(&r)["signature"],
            "launcher process exited early (code=1, signal=null)"
        );
        assert_eq!(
            body(&r)["reason"],
            "not logged in: codex (launcher process exited early (code=1, signal=null) after 2 s)"
        );
        // Also when the message is on stdout.
        let r = final_report(
            &st(exited(Some(1), None, 2000)),
            &logs("not logged in\n", ""),
            None,
        );
        assert!(body(&r)["reason"]
            .as_str()
            .unwrap()
            .starts_with("not logged in: codex"));
    }

    #[test]
    fn a_vanished_agent_that_changed_files_finished() {
        let mut s = st(Ending::Vanished { at_ms: 0 });
        s.change = Some(change("+two\n"));
        let r = final_report(&s, &logs("", ""), None);
        assert_eq!(r.kind(), "finished");
        assert!(body(&r)["exit_code"].is_null());
        assert!(body(&r)["output"]
            .as_str()
            .unwrap()
            .contains("exit code unknown: the agent (pid 42)"));
        assert_eq!(body(&r)["branch"], "ops/task-1");

        // A patch of blanks is no change: nothing says the work was done.
        s.change = Some(change(" \n"));
        let r = final_report(&s, &logs("", ""), None);
        assert_eq!(r.kind(), "failed");
        assert_eq!(
            body(&r)["signature"],
            "launcher process exited early (code=unknown, signal=unknown)"
        );
    }

    #[test]
    fn a_run_without_an_ending_is_judged_as_vanished() {
        let mut s = st(Ending::Vanished { at_ms: 0 });
        s.ending = None;
        let r = final_report(&s, &logs("result\n", ""), None);
        assert_eq!(r.kind(), "finished");
        assert!(body(&r)["exit_code"].is_null());
    }

    #[test]
    fn the_change_goes_with_either_report() {
        let mut s = st(exited(Some(0), None, 1000));
        s.change = Some(Change {
            head: String::new(),
            start: String::new(),
            truncated: true,
            ..change("+two\n")
        });
        let expected = RunChange {
            branch: "ops/task-1".into(),
            head: None,
            base: Some("b".into()),
            start: None,
            git_status: " M a.txt\n".into(),
            diff_stat: " a.txt | 1 +\n".into(),
            patch: "+two\n".into(),
            patch_truncated: true,
        };
        match final_report(&s, &logs("done\n", ""), None) {
            FinalReport::Finished(f) => assert_eq!(f.change, Some(expected.clone())),
            r => panic!("{r:?}"),
        }
        s.ending = Some(exited(Some(2), None, 1000));
        match final_report(&s, &logs("", ""), None) {
            FinalReport::Failed(f) => assert_eq!(f.change, Some(expected)),
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn a_change_that_could_not_be_recorded_is_said() {
        let note = "\n[ops-center launcher] the change in the worktree could not be recorded: git commit failed";
        let mut s = st(exited(Some(0), None, 1000));
        s.change_error = Some("git commit failed".into());
        let r = final_report(&s, &logs("done\n\n", ""), None);
        assert_eq!(r.kind(), "finished");
        assert_eq!(body(&r)["output"], format!("done{note}"));
        assert!(body(&r).get("branch").is_none());

        s.ending = Some(exited(Some(2), None, 1000));
        let r = final_report(&s, &logs("", "boom\n"), None);
        assert_eq!(r.kind(), "failed");
        assert!(body(&r)["evidence"].as_str().unwrap().ends_with(note));
    }

    #[test]
    fn summarises_a_report_in_one_line() {
        let r = final_report(&st(exited(Some(0), None, 0)), &logs("", ""), None);
        assert_eq!(summary(&r), "exit_code=0");
        let r = final_report(&st(Ending::Vanished { at_ms: 0 }), &logs("x\n", ""), None);
        assert_eq!(summary(&r), "exit_code=null");
        let r = final_report(&st(exited(Some(3), None, 0)), &logs("", ""), None);
        assert_eq!(
            summary(&r),
            "launcher process exited early (code=3, signal=null) after 0 s running codex"
        );
    }
}
