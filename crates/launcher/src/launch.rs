//! Launching a claimed task: its log and prompt files, its worktree, its
//! command, the agent started under its supervisor, and the runner thread
//! that follows it from there.

use std::sync::Arc;
use std::time::Duration;

use super::boundary::SandboxView;
use super::claim::Claim;
use super::runner::Runner;
use super::state::{self, Ending, TaskState};
use super::transcript::Stream;
use super::{clis, command, process, worktree, Ctx};

/// `20261124T001500.123Z`: sortable, unique enough per task.
fn stamp() -> String {
    let s = ops_base::time::rfc3339(ops_base::time::now_ms());
    s.replace(['-', ':'], "")
}

/// How long a new claim of a task waits for an earlier run of it here to
/// end: the runner sends TERM at once and KILL after its grace (10 s).
const OLDER_RUN_WAIT: Duration = Duration::from_secs(30);

/// Starts the agent of a claimed task and hands it to a runner thread.
/// Whatever goes wrong ends in a state file with a final report, so the
/// failure reaches the task.
pub(crate) fn launch(ctx: &Arc<Ctx>, c: Claim) {
    let id = c.task.id;
    ctx.caps.learn_command(&c.slug, c.launch_command.clone());
    let base = ctx.cfg.log_dir.join(format!("task-{id}-{}", stamp()));
    let path_of = |ext: &str| {
        base.with_file_name(format!(
            "{}{ext}",
            base.file_name().unwrap().to_string_lossy()
        ))
    };
    let (log_path, err_log_path) = (path_of(".log"), path_of(".err.log"));
    // Beside the clones when agents run apart: the log folder is closed
    // to them.
    let prompt_path = if ctx.boundary.user.separate {
        ctx.worktrees_dir()
            .join(path_of(".prompt.md").file_name().expect("named"))
    } else {
        path_of(".prompt.md")
    };
    let model = c
        .task
        .model
        .as_deref()
        .filter(|m| !m.is_empty())
        .or(c.agent_model.as_deref())
        .unwrap_or("");
    let prompt = if c.task.description.trim().is_empty() {
        c.task.title.as_str()
    } else {
        c.task.description.as_str()
    };

    let mut st = TaskState {
        task_id: id,
        worker_id: ctx.worker_id.clone(),
        claim_token: c.token.clone(),
        agent_slug: c.slug.clone(),
        command: Vec::new(),
        cli: c.slug.clone(),
        pid: None,
        pid_start_ticks: None,
        log_path: log_path.clone(),
        err_log_path: err_log_path.clone(),
        prompt_path: prompt_path.clone(),
        started_at_ms: ops_base::time::now_ms(),
        started_reported: false,
        output_offset: 0,
        streamed: 0,
        output_capped: false,
        ending: None,
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
        stream: Stream::Plain,
        line_carry: String::new(),
        last_message: None,
        session: None,
        stream_errors: Vec::new(),
        stderr_read: false,
        rate_limit_first_ms: None,
        rate_limit_last_ms: None,
    };
    // Counted as running from here, so that the heartbeat lists the task
    // while its worktree is made.
    ctx.take_slot(id, &c.token);
    ctx.end_older_runs(id, &c.token, OLDER_RUN_WAIT);
    let mut child = None;
    let repo_unusable = c.repo.as_ref().and_then(|(repo, base)| {
        let dir = ctx.worktrees_dir();
        match worktree::prepare(&dir, id, repo, base.as_deref(), &ctx.git()) {
            Ok(wt) => {
                log::info!("task {id}: worktree {} on {}", wt.path.display(), wt.branch);
                st.worktree = Some(wt);
                None
            }
            Err(u) => Some(u),
        }
    });
    if let Some(u) = repo_unusable {
        log::error!(
            "task {id}: {}: {}: {}",
            worktree::SIG_REPO,
            u.kind,
            u.reason
        );
        st.ending = Some(Ending::RepoUnusable {
            problem: u.kind.to_string(),
            reason: u.reason,
            evidence: u.evidence,
        });
    } else {
        match prepare(ctx, &c, &mut st, prompt, model) {
            Err(Unprepared {
                reason,
                runtime_missing,
            }) => {
                log::error!("task {id}: cannot start agent {}: {reason}", c.slug);
                if runtime_missing {
                    ctx.caps.mark_missing(&c.slug, &st.cli, &reason);
                    let _ = ctx.poke.try_send(());
                }
                st.ending = Some(Ending::NotStarted {
                    reason,
                    runtime_missing,
                });
            }
            Ok(argv) => child = start_supervised(ctx, &c.slug, &mut st, &argv, model),
        }
    }
    let path = st.path_in(&ctx.cfg.log_dir);
    if let Err(e) = state::save(&path, &st) {
        log::error!(
            "task {id}: cannot write state file {}: {e}; a launcher restart could not adopt it",
            path.display()
        );
    }
    start_runner(ctx, Runner::new(ctx.clone(), st, path, child));
}

/// Starts the agent under its supervisor. The state file is written first,
/// so that a launcher killed at any point of the launch leaves the run
/// known to the next start: either no supervisor ever started (the record
/// never appears) or its record says what became of the agent.
fn start_supervised(
    ctx: &Ctx,
    slug: &str,
    st: &mut TaskState,
    argv: &[String],
    model: &str,
) -> Option<std::process::Child> {
    let id = st.task_id;
    st.supervised = true;
    let path = st.path_in(&ctx.cfg.log_dir);
    if let Err(e) = state::save(&path, st) {
        // Without a state file a restart could not adopt the run: do not
        // start it at all.
        let reason = format!("cannot write state file {}: {e}", path.display());
        log::error!("task {id}: {reason}");
        st.ending = Some(Ending::NotStarted {
            reason,
            runtime_missing: false,
        });
        return None;
    }
    crash_point("before_spawn");
    let workdir = workdir_of(ctx, st);
    let mut env = ctx.boundary.env_for(slug, &workdir);
    let mut set = |k: &str, v: String| env.push((k.to_string(), v));
    set("OPS_TASK_ID", id.to_string());
    set("OPS_TASK_MODEL", model.to_string());
    set("OPS_PROMPT_FILE", st.prompt_path.display().to_string());
    if let Some(wt) = &st.worktree {
        // The agent may commit on its branch itself; what is left is
        // committed for it when it ends.
        set("OPS_TASK_BRANCH", wt.branch.clone());
        set("OPS_TASK_BASE", wt.base.clone());
    }
    // The clone reads its repository's objects, wherever that is.
    let mut shown = vec![st.prompt_path.as_path()];
    shown.extend(st.worktree.as_ref().map(|wt| wt.objects.as_path()));
    let argv = ctx.boundary.sandbox.wrap(
        &SandboxView {
            workdir: &workdir,
            home: &ctx.boundary.user.home,
            hidden: &ctx.boundary.hidden,
            shown: &shown,
        },
        argv,
    );
    match process::spawn_supervised(&process::Supervised {
        argv: &argv,
        record: &st.record_path(),
        user: &ctx.boundary.user,
        workdir: &workdir,
        prompt: &st.prompt_path,
        log: &st.log_path,
        err_log: &st.err_log_path,
        env: &env,
    }) {
        Ok(ch) => {
            crash_point("after_spawn");
            st.pid = Some(ch.id());
            st.pid_start_ticks = process::start_ticks(ch.id());
            log::info!(
                "task {id}: started {slug} (process group {}), log {}",
                ch.id(),
                st.log_path.display()
            );
            Some(ch)
        }
        Err(e) => {
            let reason = format!("cannot start the supervisor of {}: {e}", argv[0]);
            log::error!("task {id}: {reason}");
            st.ending = Some(Ending::NotStarted {
                reason,
                runtime_missing: false,
            });
            None
        }
    }
}

/// `{workdir}` and the agent's working directory: the task's clone; for a
/// task without a repository, the launcher's own directory when agents run
/// as the launcher's user, else the agent user's home (the launcher's
/// directory is not the agent's to write).
fn workdir_of(ctx: &Ctx, st: &TaskState) -> std::path::PathBuf {
    match &st.worktree {
        Some(wt) => wt.path.clone(),
        None if ctx.boundary.user.separate => ctx.boundary.user.home.clone(),
        None => ctx.cfg.workdir.clone(),
    }
}

/// Tests of adoption end the launcher at a named step of a launch, as a
/// `kill -9` there would (`OPS_LAUNCHER_CRASH_AT=before_spawn|after_spawn`;
/// not for production use).
fn crash_point(step: &str) {
    if std::env::var("OPS_LAUNCHER_CRASH_AT").is_ok_and(|v| v == step) {
        log::warn!("OPS_LAUNCHER_CRASH_AT={step}: aborting here");
        std::process::abort();
    }
}

/// What heads a follow-up appended to the task's prompt for a CLI that
/// cannot resume its session.
const FOLLOW_UP_HEADING: &str = "Seguimiento del revisor:";

/// Why a claimed task's agent cannot be started.
struct Unprepared {
    reason: String,
    /// The runtime is missing here (as opposed to a launcher-side problem).
    runtime_missing: bool,
}

fn runtime_missing(reason: String) -> Unprepared {
    Unprepared {
        reason,
        runtime_missing: true,
    }
}

fn setup_error(reason: String) -> Unprepared {
    Unprepared {
        reason,
        runtime_missing: false,
    }
}

/// Resolves the command and writes the prompt and empty log files.
fn prepare(
    ctx: &Ctx,
    c: &Claim,
    st: &mut TaskState,
    prompt: &str,
    model: &str,
) -> Result<Vec<String>, Unprepared> {
    let Some((template, source)) =
        command::configured(&c.slug, c.launch_command.as_deref(), &ctx.cfg.agent_cmds)
    else {
        return Err(runtime_missing(format!(
            "no command for agent {}: set {} or the agent's launch_command in OPS",
            c.slug,
            command::env_name("AGENT_CMD_", &c.slug)
        )));
    };
    // Only a built-in command is known to print its CLI's stream, and to
    // resume a session.
    let known = (source == command::Source::Builtin)
        .then(|| clis::known(&c.slug))
        .flatten();
    st.stream = known.map_or(Stream::Plain, |k| k.stream);
    let follow_up;
    let (template, prompt, session) = match (&c.follow_up, known.and_then(|k| k.resume)) {
        (Some(f), Some(resume)) => {
            log::info!(
                "task {}: a follow-up: resuming session {} of {}",
                st.task_id,
                f.session_id,
                c.slug
            );
            (
                resume.to_string(),
                f.message.as_str(),
                f.session_id.as_str(),
            )
        }
        (Some(f), None) => {
            // The session cannot be resumed with this command: a fresh run
            // that reads the follow-up after the task.
            log::warn!(
                "task {}: a follow-up, but {} cannot resume a session: a fresh run with the message appended",
                st.task_id,
                source.describe(&c.slug)
            );
            follow_up = format!("{prompt}\n\n---\n{}\n{}", FOLLOW_UP_HEADING, f.message);
            (template, follow_up.as_str(), "")
        }
        (None, _) => (template, prompt, ""),
    };
    command::validate(&template)
        .map_err(|e| setup_error(format!("{} {e}: {template:?}", source.describe(&c.slug))))?;
    let vars = command::Vars {
        prompt_file: &st.prompt_path.display().to_string(),
        prompt,
        task_id: st.task_id,
        model,
        workdir: &workdir_of(ctx, st).display().to_string(),
        session,
    };
    let mut argv = command::render(&template, &vars).map_err(setup_error)?;
    // What logs and evidence show: the prompt is in the task already.
    st.command = command::render(
        &template,
        &command::Vars {
            prompt: "{prompt}",
            ..vars
        },
    )
    .map_err(setup_error)?;
    // The agent's CLI (inside a shell wrapper too) must exist here.
    st.cli = command::cli_of(&template).map_err(setup_error)?;
    command::resolve_cli(&st.cli, ctx.cfg.path_var.as_deref()).map_err(runtime_missing)?;
    let resolved = command::resolve_cli(&argv[0], ctx.cfg.path_var.as_deref())
        .and_then(|p| ctx.boundary.user.can_execute(&p).map(|()| p))
        .map_err(runtime_missing)?;
    argv[0] = resolved.display().to_string();
    // The prompt is on the agent's stdin; the file is there for
    // `{prompt_file}`, readable by the agent user, written by no agent.
    process::open_log(&st.prompt_path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, prompt.as_bytes()))
        .and_then(|()| ctx.boundary.user.share_read(&st.prompt_path))
        .map_err(|e| setup_error(format!("cannot write {}: {e}", st.prompt_path.display())))?;
    for p in [&st.log_path, &st.err_log_path] {
        process::open_log(p)
            .map_err(|e| setup_error(format!("cannot create {}: {e}", p.display())))?;
    }
    Ok(argv)
}

pub(crate) fn start_runner(ctx: &Arc<Ctx>, r: Runner) {
    let id = r.st.task_id;
    let token = r.st.claim_token.clone();
    ctx.take_slot(id, &token);
    let _ = ctx.poke.try_send(());
    let c = ctx.clone();
    let r_token = token.clone();
    let body = move || {
        // A bug in one runner must not take the slot (or the launcher)
        // with it; its state file stays for the next start.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.run())).is_err() {
            log::error!("task {id}: its runner failed unexpectedly; the state file is kept for the next start");
            c.finish_slot(id, &token);
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name(format!("task-{id}"))
        .spawn(body)
    {
        log::error!("task {id}: cannot start its runner thread: {e}");
        ctx.finish_slot(id, &r_token);
    }
}
