//! The launcher's own log: stderr, or `OPS_LAUNCHER_LOG_FILE` (appended),
//! reopened on SIGHUP so that logrotate can move it away.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

struct Sink {
    path: Option<PathBuf>,
    file: Option<File>,
}

static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Installs the logger (`RUST_LOG` filters, default `info`). Fails when
/// the log file cannot be opened.
pub fn init(path: Option<PathBuf>) -> Result<(), String> {
    let file = match &path {
        Some(p) => Some(
            open(p)
                .map_err(|e| format!("OPS_LAUNCHER_LOG_FILE {}: cannot open: {e}", p.display()))?,
        ),
        None => None,
    };
    let _ = SINK.set(Mutex::new(Sink { path, file }));
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .target(env_logger::Target::Pipe(Box::new(Writer)))
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))
}

/// Reopens the log file by its path (after logrotate renamed it).
pub fn reopen() {
    let Some(sink) = SINK.get() else { return };
    let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(path) = s.path.clone() {
        match open(&path) {
            Ok(f) => s.file = Some(f),
            Err(e) => eprintln!("ops-center launcher: cannot reopen {}: {e}", path.display()),
        }
    }
}

struct Writer;

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(sink) = SINK.get() else {
            return std::io::stderr().write(buf);
        };
        let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
        match &mut s.file {
            Some(f) => f.write_all(buf).map(|_| buf.len()),
            None => std::io::stderr().write_all(buf).map(|_| buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
