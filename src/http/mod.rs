//! The HTTP API: our own small HTTP/1.1 server (one event loop owning
//! every connection, see `event_loop`), a fixed pool of handler threads,
//! one router, JSON errors everywhere.

mod auth;
mod event_loop;
mod fields;
mod openapi;
mod request;
mod responder;
mod response;
mod router;
mod routes;
mod stream;
mod waiting;
mod wire;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use mio::Waker;

use crate::db::Db;
pub use auth::{LoginLimiter, SESSION_COOKIE, TOKEN_HEADER};
pub use event_loop::Limits;
pub use request::Req;
pub use responder::{Gone, Responder, Stream};
pub use response::Resp;
pub use stream::{StreamLimits, Streams};
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

/// The running server: its event loop and handler threads.
pub struct Http {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    event_loop: JoinHandle<()>,
    handlers: Vec<JoinHandle<()>>,
}

/// Serves `listener` with an event loop and `threads` handler threads.
/// Should the event loop fail (it does not on a client's doing), the
/// process exits with status 70 so that the service manager restarts it:
/// a server that is up but cannot accept is the one outcome to avoid.
pub fn serve(
    app: Arc<App>,
    listener: TcpListener,
    threads: usize,
    limits: Limits,
) -> std::result::Result<Http, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let (jobs, queue) = crossbeam_channel::unbounded();
    let (ev, waker) =
        event_loop::EventLoop::new(listener, limits, app.trust_proxy, jobs, stop.clone())
            .map_err(|e| format!("cannot start the event loop: {e}"))?;
    let handlers = (0..threads.max(1))
        .map(|i| {
            let (app, queue) = (app.clone(), queue.clone());
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || handle_all(&app, &queue))
                .map_err(|e| format!("cannot start a handler thread: {e}"))
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    let stopping = stop.clone();
    let event_loop = std::thread::Builder::new()
        .name("http-loop".into())
        .spawn(move || {
            let why = match catch_unwind(AssertUnwindSafe(|| ev.run())) {
                Ok(Ok(())) if stopping.load(Ordering::SeqCst) => return,
                Ok(Ok(())) => "it stopped".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(panic) => crate::db::panic_text(&panic),
            };
            log::error!(
                "the HTTP event loop failed ({why}); exiting so that the server is restarted"
            );
            std::process::exit(70);
        })
        .map_err(|e| format!("cannot start the event loop: {e}"))?;
    Ok(Http {
        stop,
        waker,
        event_loop,
        handlers,
    })
}

impl Http {
    /// Stops accepting, lets the handlers finish the requests in flight
    /// and writes their answers, then closes every connection.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        let _ = self.event_loop.join();
        // The loop held the only sender of the queue: the handlers now see
        // it end.
        for h in self.handlers {
            let _ = h.join();
        }
    }
}

/// A handler thread: answers requests until the queue ends.
fn handle_all(app: &App, queue: &Receiver<Req>) {
    for req in queue.iter() {
        let resp = match catch_unwind(AssertUnwindSafe(|| router::route(app, &req))) {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => Resp::from_error(&e),
            Err(panic) => {
                log::error!(
                    "handler panicked on {} {}: {}",
                    req.method,
                    req.path,
                    crate::db::panic_text(&panic)
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
