//! The HTTP API on tiny_http: a fixed pool of handler threads, one router,
//! JSON errors everywhere.

mod auth;
mod fields;
mod request;
mod response;
mod router;
mod routes;

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
