//! Starting an agent detached from the launcher, and watching a process
//! the launcher did not start (one adopted after a restart).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::boundary::AgentUser;

/// Starts the supervisor of `argv` (see [`super::supervise`]): this very
/// binary, as the leader of a new process group, so a signal aimed at the
/// launcher's group (Ctrl-C, a terminal hang-up) does not reach the run,
/// and one aimed at the run's group reaches the agent and its children.
/// The prompt file is on stdin and stdout/stderr are appended to the log
/// files, for the supervisor and the agent alike. The launcher keeps no
/// pipe to them, so they run on unchanged if the launcher stops.
///
/// The supervisor stays the launcher's user (the agent can neither signal
/// it nor rewrite its record); it starts the agent as `user`. Its
/// environment is `env` alone, which the agent inherits: nothing of the
/// launcher's own environment passes unless the allow-list named it.
pub fn spawn_supervised(run: &Supervised) -> std::io::Result<Child> {
    let stdin = File::open(run.prompt)?;
    let stdout = open_log(run.log)?;
    let stderr = open_log(run.err_log)?;
    // `/proc/self/exe` is the running binary even when a package upgrade
    // has replaced the file since the launcher started.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(super::supervise::args(run.record, run.user, run.argv))
        .current_dir(run.workdir)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .env_clear()
        .envs(run.env.iter().map(|(k, v)| (k, v)));
    new_session(&mut cmd);
    cmd.spawn()
}

/// Makes `cmd` the leader of a new session (and so of a new process group
/// with its pid as id): it has no controlling terminal, so nothing it runs
/// can push keystrokes into the terminal the launcher was started from
/// (TIOCSTI), and the whole session can be ended once it is done.
pub fn new_session(cmd: &mut Command) {
    // SAFETY: setsid is async-signal-safe; the child is a fresh fork that
    // is not yet a process group leader, so it cannot fail.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Kills every process still in session `sid` (one started with
/// [`new_session`]): what a run or a command left behind in the
/// background (`cmd &`, `nohup`) must not outlive it, holding its pipes
/// open or a port. A process that started a session of its own escapes
/// this; the sandbox's process namespace does not let it.
pub fn kill_session(sid: u32) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        // Field 6 of /proc/<pid>/stat, the 4th after the state.
        let in_session = stat_fields(pid)
            .and_then(|(_, f)| f.get(6 - 4).and_then(|s| s.parse::<u32>().ok()))
            == Some(sid);
        if in_session {
            // SAFETY: kill(2) of a process of the session this launcher
            // started.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    }
}

/// What [`spawn_supervised`] starts.
pub struct Supervised<'a> {
    pub argv: &'a [String],
    /// The supervisor's record file.
    pub record: &'a Path,
    pub user: &'a AgentUser,
    pub workdir: &'a Path,
    pub prompt: &'a Path,
    pub log: &'a Path,
    pub err_log: &'a Path,
    pub env: &'a [(String, String)],
}

/// A task's log file, opened for appending; created readable by the
/// launcher's user only (the agent writes it through the descriptor it
/// is given, and cannot open it).
pub fn open_log(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Start time of `pid` in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), `None` when the process does not exist.
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat_fields(pid).and_then(|(_, f)| f.get(STARTTIME).and_then(|s| s.parse().ok()))
}

/// Index of `starttime` (field 22 of `/proc/<pid>/stat`) among the fields
/// after the state (field 3).
const STARTTIME: usize = 22 - 4;

/// `(state, fields after the state)` of `/proc/<pid>/stat`.
fn stat_fields(pid: u32) -> Option<(char, Vec<String>)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces or
    // parentheses: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields[1..].to_vec()))
}

/// Whether the process `pid` started at `ticks` still runs. A zombie is
/// finished (only its parent's wait is missing), and a pid whose start
/// time differs is another process that reused the number.
pub fn alive(pid: u32, ticks: Option<u64>) -> bool {
    match stat_fields(pid) {
        None => false,
        Some(('Z' | 'X' | 'x', _)) => false,
        Some((_, fields)) => match ticks {
            Some(t) => fields.get(STARTTIME).and_then(|s| s.parse::<u64>().ok()) == Some(t),
            None => true,
        },
    }
}

/// Up to `max` bytes at the end of a file, as text (lossy UTF-8, starting
/// at a line boundary when the cut falls mid-line).
pub fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(max);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(max).read_to_end(&mut buf);
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        if let Some(nl) = text.find('\n') {
            text.drain(..=nl);
        }
    }
    text
}

/// `text` without terminal escape sequences (colours, cursor moves,
/// titles): agents' logs are read as plain text, in comments and evidence.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters and intermediates, then one final byte.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \.
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            // A two-character escape (ESC 7, ESC =, ...).
            _ => {}
        }
    }
    out
}

/// Bytes `[from, from+max)` of a file (fewer at its end), and the file's
/// current length.
pub fn read_range(path: &Path, from: u64, max: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if from >= len {
        return Ok((Vec::new(), len));
    }
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity(max.min((len - from) as usize));
    f.take(max as u64).read_to_end(&mut buf)?;
    Ok((buf, len))
}

/// The name of a signal number, as operators read it (`SIGKILL`).
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => return format!("SIG{sig}"),
    };
    name.to_string()
}

/// Runs `cmd` with no input and a deadline (killing its process group
/// when it runs over); its output (stdout and stderr together, as `sh -c
/// '… 2>&1'` gives them) when it succeeds, else why it did not.
pub fn run_command(mut cmd: Command, timeout: Duration) -> Result<String, String> {
    new_session(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    // Read on the side, so that a talkative command cannot fill the pipe
    // and stall.
    let stdout = child.stdout.take().expect("piped");
    let reader = read_on_side(Box::new(stdout), usize::MAX);
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if std::time::Instant::now() >= deadline => {
                // The whole group: a CLI may have started helpers.
                // SAFETY: kill(2) on the process group we created.
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                let _ = child.wait();
                return Err(format!("timed out after {} s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    };
    kill_session(child.id());
    let out = String::from_utf8_lossy(&reader.finish().0).into_owned();
    if status.success() {
        Ok(out)
    } else {
        Err(format!("exited with {status}"))
    }
}

/// A pipe read to its end on a thread of its own, keeping at most `limit`
/// bytes (the rest is read and dropped, so the writer never blocks).
pub struct SideReader(std::sync::mpsc::Receiver<(Vec<u8>, bool)>);

pub fn read_on_side(mut r: Box<dyn Read + Send>, limit: usize) -> SideReader {
    let (tx, rx) = std::sync::mpsc::channel();
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
        let _ = tx.send((kept, cut));
    });
    SideReader(rx)
}

impl SideReader {
    /// What was read, and whether it went past the limit. Called once the
    /// command has ended and its session was killed: a process that
    /// escaped the session and still holds the pipe does not hold the
    /// caller too (after 2 s, what was read by then is lost with it).
    pub fn finish(self) -> (Vec<u8>, bool) {
        self.0
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_a_process_by_pid() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let ticks = start_ticks(pid);
        assert!(ticks.is_some());
        assert!(alive(pid, ticks));
        assert!(
            !alive(pid, ticks.map(|t| t + 1)),
            "another start time is another process"
        );
        child.kill().unwrap();
        // Not yet reaped: a zombie counts as ended.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid, ticks) {
            assert!(
                std::time::Instant::now() < deadline,
                "killed process still alive"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait().unwrap();
        assert!(!alive(pid, ticks));
    }

    #[test]
    fn a_new_session_has_no_terminal_and_ends_whole() {
        let mut cmd = Command::new("sh");
        // The session's own fields, then a process left in the background.
        cmd.args([
            "-c",
            "cut -d' ' -f6,7 /proc/self/stat; sleep 30 >/dev/null 2>&1 & echo $!",
        ]);
        new_session(&mut cmd);
        let child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let leader = child.id();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let fields: Vec<&str> = lines.next().unwrap().split(' ').collect();
        // `cut`, a child of the shell, is in the session the shell leads.
        assert_eq!(fields[0], leader.to_string(), "{text}");
        assert_eq!(fields[1], "0", "a controlling terminal: {text}");
        let bg: u32 = lines.next().unwrap().parse().unwrap();
        let sid: u32 = fields[0].parse().unwrap();
        assert!(alive(bg, None));
        kill_session(sid);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(bg, None) {
            assert!(std::time::Instant::now() < deadline, "left running");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn escape_sequences_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[0m\u{1b}[90m~/x\u{1b}[39m done \u{1b}]0;title\u{7}ok\u{1b}=."),
            "~/x done ok."
        );
        assert_eq!(strip_ansi("plain — texto"), "plain — texto");
    }

    #[test]
    fn tails_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "one\ntwo\nthree\n").unwrap();
        assert_eq!(tail(&p, 100), "one\ntwo\nthree\n");
        assert_eq!(tail(&p, 8), "three\n");
        assert_eq!(tail(&dir.path().join("none"), 8), "");
        assert_eq!(read_range(&p, 4, 3).unwrap(), (b"two".to_vec(), 14));
        assert_eq!(read_range(&p, 14, 3).unwrap(), (Vec::new(), 14));
    }

    #[test]
    fn auth_checks_succeed_fail_and_time_out() {
        let sh = |c: &str| {
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(c);
            cmd
        };
        assert!(run_command(sh("true"), Duration::from_secs(5)).is_ok());
        assert!(run_command(sh("exit 3"), Duration::from_secs(5))
            .unwrap_err()
            .contains('3'));
        assert!(run_command(sh("sleep 5"), Duration::from_millis(200))
            .unwrap_err()
            .contains("timed out"));
        assert_eq!(signal_name(9), "SIGKILL");
    }
}
