//! Starting and stopping a real `ops-center serve`: the one process
//! harness of the integration tests (`tests/it/util.rs`) and the benchmark
//! (`examples/bench.rs`), included by both with `#[path]`. Errors are
//! returned, not panicked, so that the benchmark can report them; the
//! tests panic with them.

// Each of the two crates that include this file uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What `serve` prints on stdout once it accepts connections.
pub const LISTENING: &str = "listening on http://";

/// A server that said it is listening.
pub struct Started {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// What it printed before (generated secrets on a first start).
    pub banner: Vec<String>,
}

/// Runs `cmd` (an `ops-center serve …` with its arguments and environment)
/// with stderr appended to `log` and waits up to `timeout` for it to
/// listen. On failure the process is killed and the error holds its log.
pub fn start_serve(mut cmd: Command, log: &Path, timeout: Duration) -> Result<Started, String> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("server log {}: {e}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file));
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut banner = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix(LISTENING) {
                let _ = tx.send(Ok((addr.to_string(), banner.clone())));
            } else {
                banner.push(line);
            }
        }
        let _ = tx.send(Err(banner));
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok((addr, banner))) => Ok(Started {
            child,
            addr,
            banner,
        }),
        other => {
            end(&mut child);
            Err(format!(
                "the server did not start ({other:?}); its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ))
        }
    }
}

/// Kills `child` if it still runs, and reaps it.
pub fn end(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// The last `n` lines of a log file.
pub fn tail(log: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
