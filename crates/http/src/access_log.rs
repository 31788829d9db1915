//! The request log: one line per answer, handed over a bounded channel to
//! a thread of its own that writes it, so a log that stalls (a journald
//! that does not read) never stalls the I/O thread. When the channel is
//! full the line is dropped and counted (`ops_http_log_dropped_total`).

use crossbeam_channel::{bounded, Sender};

use ops_base::metrics::METRICS;

/// Lines waiting for the log thread.
const BACKLOG: usize = 4096;

#[derive(Clone)]
pub struct AccessLog {
    tx: Sender<String>,
}

impl AccessLog {
    /// Starts the log thread; it ends when every sender is gone.
    pub fn start() -> std::io::Result<AccessLog> {
        let (tx, rx) = bounded::<String>(BACKLOG);
        std::thread::Builder::new()
            .name("http-log".into())
            .spawn(move || {
                for line in rx {
                    log::info!(target: "ops_center::http", "{line}");
                }
            })?;
        Ok(AccessLog { tx })
    }

    pub fn line(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            METRICS.log_line_dropped();
        }
    }
}
