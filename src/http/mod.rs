//! The HTTP API on tiny_http: a fixed pool of handler threads, one router,
//! JSON errors everywhere.

mod auth;
mod fields;
mod request;
mod response;
mod router;
mod routes;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tiny_http::{Header, Server};

use crate::db::Db;
pub use auth::{LoginLimiter, SESSION_COOKIE, TOKEN_HEADER};
use request::{BodyError, Req};
use response::Resp;

/// What every handler shares.
pub struct App {
    pub db: Arc<Db>,
    pub trust_proxy: bool,
    pub login_limiter: LoginLimiter,
}

/// Binds `addr` for tiny_http with `TCP_NODELAY` on the listening socket,
/// which every accepted connection inherits. tiny_http writes a response
/// through a 1 KiB buffer, so a larger one leaves in several writes; with
/// Nagle's algorithm on, the second write would wait for the client's
/// delayed ACK (40 ms on Linux) on every keep-alive response.
pub fn listen(addr: SocketAddr) -> std::result::Result<Server, String> {
    let listener = TcpListener::bind(addr).map_err(|e| e.to_string())?;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a pointer to a c_int and
    // its size, as TCP_NODELAY expects.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        log::warn!(
            "cannot set TCP_NODELAY: {}",
            std::io::Error::last_os_error()
        );
    }
    Server::from_listener(listener, None).map_err(|e| e.to_string())
}

/// Starts `threads` handler threads taking requests from `server` until
/// `stop` is set; each finishes the request it is in before it returns.
pub fn spawn_handlers(
    app: Arc<App>,
    server: Arc<Server>,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> Vec<JoinHandle<()>> {
    (0..threads.max(1))
        .map(|i| {
            let (app, server, stop) = (app.clone(), server.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match server.recv_timeout(Duration::from_millis(100)) {
                            Ok(Some(rq)) => handle(&app, rq),
                            Ok(None) => {}
                            Err(e) => {
                                log::error!("accepting a request failed: {e}");
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                    }
                })
                .expect("spawn http thread")
        })
        .collect()
}

fn handle(app: &App, mut rq: tiny_http::Request) {
    let started = Instant::now();
    let method = rq.method().as_str().to_string();
    let path = rq.url().split('?').next().unwrap_or("").to_string();
    let mut close = false;
    let resp = match Req::read(&mut rq, app.trust_proxy) {
        Ok(req) => match catch_unwind(AssertUnwindSafe(|| router::route(app, &req))) {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => Resp::from_error(&e),
            Err(panic) => {
                log::error!(
                    "handler panicked on {method} {path}: {}",
                    crate::db::panic_text(&panic)
                );
                Resp::error("internal", 500, "internal server error; see the server log")
            }
        },
        Err(BodyError::TooLarge) => {
            // The rest of the body is not read: close the connection.
            close = true;
            Resp::error(
                "payload_too_large",
                413,
                &format!(
                    "the request body is larger than {} bytes",
                    request::MAX_BODY
                ),
            )
        }
        Err(BodyError::Io(e)) => {
            close = true;
            Resp::error(
                "bad_request",
                400,
                &format!("could not read the request body: {e}"),
            )
        }
    };
    let status = resp.status;
    let mut out = tiny_http::Response::from_data(resp.body).with_status_code(status);
    out.add_header(header("Content-Type", resp.content_type));
    out.add_header(header("Cache-Control", "no-store"));
    out.add_header(header("X-Content-Type-Options", "nosniff"));
    for (name, value) in &resp.headers {
        out.add_header(header(name, value));
    }
    if close {
        out.add_header(header("Connection", "close"));
    }
    if let Err(e) = rq.respond(out) {
        log::debug!("{method} {path}: client went away before the response: {e}");
    }
    log::info!(
        "{method} {path} {status} {}ms",
        started.elapsed().as_millis()
    );
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}
