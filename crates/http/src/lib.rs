//! The HTTP API: hyper's HTTP/1.1 server on a one-thread tokio runtime
//! that owns only the sockets (`edge`), a fixed pool of handler threads,
//! one router, JSON errors everywhere.

mod access_log;
mod auth;
mod edge;
mod event_stream;
mod fields;
mod openapi;
mod request;
mod responder;
mod response;
mod router;
mod routes;
mod waiting;
mod wire;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

pub use auth::{LoginLimiter, SESSION_COOKIE, TOKEN_HEADER};
pub use edge::Limits;
pub use event_stream::{StreamLimits, Streams};
use ops_store::db::Db;
pub use request::Req;
pub use responder::{Gone, Responder, StreamSender};
pub use response::Resp;
pub use waiting::WaitingRoom;

/// What every handler shares.
pub struct App {
    pub db: Arc<Db>,
    pub trust_proxy: bool,
    /// Whether `POST /api/test/clock` exists (`OPS_TEST_CLOCK=1`).
    pub test_clock: bool,
    pub login_limiter: LoginLimiter,
    /// Long-poll claims waiting for a task.
    pub waiting: WaitingRoom,
    /// The open event streams (`GET /api/stream`).
    pub streams: Streams,
}

/// Binds `addr` (port 0 picks a free one), with a listen backlog of
/// [`BACKLOG`] rather than the standard library's 128: a burst of
/// connections beyond the backlog makes clients wait a whole second for a
/// retransmitted SYN.
pub fn bind(addr: SocketAddr) -> std::result::Result<TcpListener, String> {
    let listener = TcpListener::bind(addr).map_err(|e| e.to_string())?;
    // SAFETY: listen on a socket we own; calling it again on a listening
    // socket only changes its backlog (capped by net.core.somaxconn).
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        log::warn!(
            "cannot raise the listen backlog: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(listener)
}

const BACKLOG: libc::c_int = 4096;

/// The running server: its I/O thread and handler threads.
pub struct Http {
    stop: tokio::sync::watch::Sender<bool>,
    io: JoinHandle<()>,
    handlers: Vec<JoinHandle<()>>,
}

/// Serves `listener` with the edge's I/O thread and `threads` handler
/// threads. Should the I/O thread fail (it does not on a client's doing),
/// the process exits with status 70 so that the service manager restarts
/// it: a server that is up but cannot accept is the one outcome to avoid.
pub fn serve(
    app: Arc<App>,
    listener: TcpListener,
    threads: usize,
    limits: Limits,
) -> std::result::Result<Http, String> {
    let (jobs, queue) = crossbeam_channel::bounded(limits.queue.max(1));
    let log = access_log::AccessLog::start()
        .map_err(|e| format!("cannot start the request log thread: {e}"))?;
    let handlers = (0..threads.max(1))
        .map(|i| {
            let (app, queue) = (app.clone(), queue.clone());
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || handle_all(&app, &queue))
                .map_err(|e| format!("cannot start a handler thread: {e}"))
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let edge = Arc::new(edge::Edge::new(limits, app.trust_proxy, jobs, log));
    let io = std::thread::Builder::new()
        .name("http-io".into())
        .spawn(move || {
            let why = match catch_unwind(AssertUnwindSafe(|| {
                edge::run(edge, listener, stopped.clone())
            })) {
                Ok(Ok(())) if *stopped.borrow() => return,
                Ok(Ok(())) => "it stopped".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(panic) => ops_store::db::panic_text(&panic),
            };
            log::error!(
                "the HTTP I/O thread failed ({why}); exiting so that the server is restarted"
            );
            std::process::exit(70);
        })
        .map_err(|e| format!("cannot start the I/O thread: {e}"))?;
    Ok(Http { stop, io, handlers })
}

impl Http {
    /// Stops accepting, lets the handlers finish the requests in flight
    /// and writes their answers, then closes every connection.
    pub fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.io.join();
        // The edge held the only sender of the queue: the handlers now see
        // it end.
        for h in self.handlers {
            let _ = h.join();
        }
    }
}

/// A handler thread: answers requests until the queue ends. A request
/// whose client has gone, or that waited longer than
/// [`edge::QUEUE_WAIT`], is not run.
fn handle_all(app: &App, queue: &Receiver<Req>) {
    for req in queue.iter() {
        if req.client_gone() {
            ops_base::metrics::METRICS.request_dropped();
            log::info!("{} {}: not run, its client has gone", req.method, req.path);
            continue;
        }
        if req.queued_at.elapsed() > edge::QUEUE_WAIT {
            ops_base::metrics::METRICS.request_dropped();
            if let Some(r) = req.take_responder() {
                r.respond(
                    Resp::error(
                        "busy",
                        503,
                        "the request waited too long for a handler; retry shortly",
                    )
                    .with_header("Retry-After", "1".into()),
                );
            }
            continue;
        }
        let resp = match catch_unwind(AssertUnwindSafe(|| router::route(app, &req))) {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => Resp::from_error(&e),
            Err(panic) => {
                log::error!(
                    "handler panicked on {} {}: {}",
                    req.method,
                    req.path,
                    ops_store::db::panic_text(&panic)
                );
                Resp::error("internal", 500, "internal server error; see the server log")
            }
        };
        // Unless the handler took the answer over (see `Req::defer`).
        if let Some(r) = req.take_responder() {
            r.respond(resp);
        }
    }
}
