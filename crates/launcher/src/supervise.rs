//! The supervisor of one agent run: `ops-center launcher supervise RECORD
//! [--as UID:GID] -- ARGV…`, a hidden subcommand that the launcher starts
//! (detached, as the leader of a new session) for every agent. It stays
//! the launcher's user, so the agent can neither signal it nor rewrite its
//! record, and starts the agent as UID:GID when agents run apart.
//!
//! It exists so that nothing about a run depends on the launcher staying
//! alive. It writes its own pid to the run's record file, starts the agent
//! (same process group, same stdin, stdout and stderr: the prompt and the
//! task's two log files), writes the agent's pid, waits for it, and writes
//! its exit code and signal. A launcher restarted at any moment thus finds
//! every run it started and learns how each one ended, exactly as if it
//! had watched it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::boundary::AgentUser;
use super::process::start_ticks;
use super::state::write_atomic;
use ops_base::time::now_ms;

/// The hidden subcommand of `ops-center launcher`.
pub const SUBCOMMAND: &str = "supervise";

/// What the supervisor knows of its run, in `task-<id>-<stamp>.run.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub supervisor_pid: u32,
    pub supervisor_start_ticks: Option<u64>,
    pub agent_pid: Option<u32>,
    pub agent_start_ticks: Option<u64>,
    /// The agent could not be executed at all.
    pub exec_error: Option<String>,
    pub exit: Option<Exit>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub at_ms: i64,
}

/// The record at `path`, if the supervisor has written one.
pub fn read(path: &Path) -> Option<Record> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The arguments that make `ops-center launcher` supervise `argv`, run
/// as `user`.
pub fn args(record: &Path, user: &AgentUser, argv: &[String]) -> Vec<String> {
    let mut args = vec![
        "launcher".to_string(),
        SUBCOMMAND.to_string(),
        record.display().to_string(),
    ];
    if user.separate {
        args.extend([AS.to_string(), format!("{}:{}", user.uid, user.gid)]);
    }
    args.push("--".to_string());
    args.extend(argv.iter().cloned());
    args
}

/// `--as UID:GID`: the agent runs as that user and group.
const AS: &str = "--as";

fn parse_as(s: &str) -> Option<(u32, u32)> {
    let (u, g) = s.split_once(':')?;
    Some((u.parse().ok()?, g.parse().ok()?))
}

/// `ops-center launcher supervise RECORD -- ARGV…`. Its stdout and stderr
/// are the task's logs: it writes nothing there but a line saying why the
/// agent could not be executed.
pub fn main(args: &[String]) -> Result<(), String> {
    const USAGE: &str =
        "usage: ops-center launcher supervise RECORD [--as UID:GID] -- PROGRAM [ARG…]";
    let (record_path, user, argv) = match args {
        [record, sep, argv @ ..] if sep == "--" && !argv.is_empty() => {
            (PathBuf::from(record), None, argv)
        }
        [record, flag, ids, sep, argv @ ..] if flag == AS && sep == "--" && !argv.is_empty() => (
            PathBuf::from(record),
            Some(parse_as(ids).ok_or(USAGE)?),
            argv,
        ),
        _ => return Err(USAGE.into()),
    };
    // The agent's process group gets the launcher's TERM (a timeout, a
    // cancellation): the supervisor outlives it to record how the agent
    // ended. Handlers, unlike an ignored disposition, are not inherited
    // across exec, so the agent still gets the default behaviour.
    let noticed = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        signal_hook::flag::register(sig, noticed.clone())
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    }
    let me = std::process::id();
    let mut record = Record {
        supervisor_pid: me,
        supervisor_start_ticks: start_ticks(me),
        ..Record::default()
    };
    save(&record_path, &record)?;
    let mut agent = Command::new(&argv[0]);
    agent.args(&argv[1..]);
    if let Some((uid, gid)) = user {
        // Dropping from root also drops the supplementary groups.
        agent.uid(uid).gid(gid);
    }
    let mut child = match agent.spawn() {
        Ok(child) => child,
        Err(e) => {
            let why = format!("cannot execute {}: {e}", argv[0]);
            eprintln!("ops-center launcher: {why}");
            record.exec_error = Some(why);
            return save(&record_path, &record);
        }
    };
    record.agent_pid = Some(child.id());
    record.agent_start_ticks = start_ticks(child.id());
    save(&record_path, &record)?;
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for the agent: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    record.exit = Some(Exit {
        code: status.code(),
        signal: status.signal(),
        at_ms: now_ms(),
    });
    save(&record_path, &record)
}

fn save(path: &Path, record: &Record) -> Result<(), String> {
    write_atomic(path, record).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
