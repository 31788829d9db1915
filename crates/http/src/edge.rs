//! The HTTP edge: hyper's HTTP/1.1 server on a small tokio runtime of one
//! thread (`http-io`) that owns the listener and every connection and
//! nothing else. Handlers stay synchronous on the fixed handler pool: a
//! request whose head passed the checks below and whose body arrived in
//! time crosses to the pool over a bounded queue, and its answer comes
//! back through its [`Responder`]'s channel, awaited by the request's
//! future — so a parked long-poll or an open event stream holds no thread.
//!
//! hyper parses and frames (request line, fields, chunked bodies, `Expect:
//! 100-continue`, keep-alive, pipelining). What it does not do is here:
//! - the connection budgets (docs/SPEC.md §6): at most `max_connections` open;
//!   anonymous connections (no request on them showed a valid token or
//!   session) at most `max_connections - auth_reserve`, the oldest idle
//!   ones closed first to make room, never an authenticated one; and per
//!   client at most `anon_per_client` anonymous ones once it sends a
//!   request without credentials;
//! - the deadlines, in [`Io`]: a new connection must start a head within
//!   the read timeout, a started head must end within it (else 408), an
//!   idle keep-alive connection is closed after the idle timeout, a body
//!   must arrive within the read timeout from its head (408), and a
//!   response that makes no progress for the read timeout is given up;
//! - the checks hyper leaves to the server: `Host` (RFC 9112 §3.2), the
//!   target's and a field's length, transfer codings other than chunked,
//!   the body limit, the anonymous-body 401 before any byte of the body is
//!   read, the body budget over all connections;
//! - hyper's own answers to heads it cannot parse get the JSON error body
//!   of every other refusal (and 414/505 where the first line says so);
//! - after the last response, the connection lingers (reads and drops what
//!   the client still sends, 2 s at most) so that the answer is not lost
//!   to a reset.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, TcpListener as StdListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};
use http::header::{HeaderValue, CONNECTION, HOST, TRANSFER_ENCODING};
use http::{Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Sleep;

use super::access_log::AccessLog;
use super::auth;
use super::request::{Req, MAX_BODY};
use super::responder::{Reply, Responder, StreamBody};
use super::response::{Delivery, Resp};
use super::wire;
use ops_base::metrics::METRICS;

/// Deadlines, caps and budgets (docs/SPEC.md §6), from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The whole head, and then the whole body, must arrive within this;
    /// a response that makes no progress for this long is given up.
    pub read_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub idle_timeout: Duration,
    /// Connections open at once; past it the next one gets 503.
    pub max_connections: usize,
    /// Of those, how many only authenticated connections may use.
    pub auth_reserve: usize,
    /// Anonymous connections one client may hold once it sends requests
    /// without credentials.
    pub anon_per_client: usize,
    /// Requests waiting for a handler thread; past it, 503 `busy`.
    pub queue: usize,
}

/// Request bodies held in memory, over all requests from their first byte
/// until their handler is done, are held to this; a body that would pass
/// it is refused with 503 `busy`.
const BODY_BUDGET: usize = 64 * 1024 * 1024;
/// A request that waited this long for a handler thread is answered 503
/// `busy` without running: its client has most likely given up.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// After the last response the connection reads and drops what the client
/// still sends for this long (at most `LINGER_BYTES`) before closing.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 * 1024 * 1024;
/// At shutdown, requests in flight get this long to be answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// After an accept error (out of descriptors, memory), accepting resumes
/// after this pause.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// What a refused client is told to wait.
const RETRY_AFTER_SECS: &str = "1";

// The phases of a connection, as the budgets and deadlines see them.
/// Accepted, nothing read yet.
const FRESH: u8 = 0;
/// Between requests on a keep-alive connection.
const IDLE: u8 = 1;
/// Some bytes of a head have arrived.
const HEAD: u8 = 2;
/// A complete head; its body is being read.
const BODY: u8 = 3;
/// The request is with a handler (or parked).
const HANDLER: u8 = 4;
/// A streamed response is going out.
const STREAMING: u8 = 5;

/// One connection, as the edge and the handlers share it.
pub struct ConnInfo {
    id: u64,
    /// The client: the peer address, or behind a trusted proxy the
    /// address its last request came from.
    client: Mutex<IpAddr>,
    /// Set once a request on it showed a valid token or session.
    authenticated: AtomicBool,
    /// The edge's count of authenticated connections.
    counted: Arc<AtomicUsize>,
    phase: AtomicU8,
    /// When it entered its phase (ms since the edge started).
    since: AtomicU64,
    /// Closes it (a budget made room).
    kill: Notify,
    /// Bytes handed to the kernel so far.
    written: AtomicU64,
    /// Answers in flight, each confirmed by the first flush after bytes
    /// were written past what had been written before it: (delivery,
    /// bytes written before it).
    delivery: Mutex<Vec<(Delivery, u64)>>,
    epoch: Instant,
}

impl ConnInfo {
    /// A request on it showed a valid token or session.
    pub fn authenticate(&self) {
        if !self.authenticated.swap(true, Ordering::SeqCst) {
            self.counted.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Out of the edge's books (closed, or chosen to close): closes it.
    fn close(&self) {
        if self.authenticated.load(Ordering::SeqCst) {
            self.counted.fetch_sub(1, Ordering::SeqCst);
        }
        self.kill.notify_one();
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::SeqCst)
    }

    fn enter(&self, phase: u8) {
        self.phase.store(phase, Ordering::SeqCst);
        self.since
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::SeqCst);
    }

    fn since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.since.load(Ordering::SeqCst))
    }

    fn client(&self) -> IpAddr {
        *self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn anonymous(&self) -> bool {
        !self.authenticated.load(Ordering::Relaxed)
    }

    /// Whether a budget may close it to make room: anonymous and not
    /// waiting on a handler or streaming. Idle ones go first (rank 0).
    fn evictable(&self) -> Option<u8> {
        if !self.anonymous() {
            return None;
        }
        match self.phase() {
            FRESH | IDLE => Some(0),
            HEAD | BODY => Some(1),
            _ => None,
        }
    }

    /// After a flush (`confirmed`), the answers whose bytes it wrote are
    /// delivered; at the end of the connection, those still waiting are
    /// not, and their actions run as they drop.
    fn settle_delivery(&self, confirmed: bool) {
        let mut pending = self.delivery.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_empty() {
            return;
        }
        let written = self.written.load(Ordering::SeqCst);
        let all = std::mem::take(&mut *pending);
        for (delivery, before) in all {
            if confirmed && written > before {
                delivery.confirm();
            } else if confirmed {
                pending.push((delivery, before));
            } else {
                drop(delivery);
            }
        }
    }
}

/// The bodies in memory, over all requests.
#[derive(Default)]
pub struct BodyBudget {
    used: AtomicUsize,
}

/// A body's share of the [`BodyBudget`], given back when dropped (with its
/// request, once the handler is done).
pub struct BodyCharge {
    budget: Arc<BodyBudget>,
    held: usize,
}

impl BodyCharge {
    /// Takes `n` more bytes, or refuses when the budget is spent.
    fn add(&mut self, n: usize) -> bool {
        let before = self.budget.used.fetch_add(n, Ordering::SeqCst);
        self.held += n;
        before + n <= BODY_BUDGET
    }
}

impl Drop for BodyCharge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::SeqCst);
    }
}

/// What the connections share.
pub struct Edge {
    limits: Limits,
    trust_proxy: bool,
    jobs: Sender<Req>,
    log: AccessLog,
    /// Every open connection, in the order they were accepted.
    conns: Mutex<BTreeMap<u64, Arc<ConnInfo>>>,
    /// How many of them are authenticated.
    authenticated: Arc<AtomicUsize>,
    next_id: AtomicU64,
    bodies: Arc<BodyBudget>,
    stopping: AtomicBool,
    epoch: Instant,
}

impl Edge {
    pub fn new(limits: Limits, trust_proxy: bool, jobs: Sender<Req>, log: AccessLog) -> Edge {
        Edge {
            limits,
            trust_proxy,
            jobs,
            log,
            conns: Mutex::default(),
            authenticated: Arc::default(),
            next_id: AtomicU64::new(1),
            bodies: Arc::default(),
            stopping: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ConnInfo>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes room for a new connection: `None` when there is none.
    fn admit(&self, peer: IpAddr) -> Option<Arc<ConnInfo>> {
        let mut conns = self.conns();
        let max = self.limits.max_connections;
        let anon_max = max.saturating_sub(self.limits.auth_reserve).max(1);
        if conns.len() >= anon_max.min(max) {
            let anonymous = conns
                .len()
                .saturating_sub(self.authenticated.load(Ordering::SeqCst));
            if anonymous >= anon_max || conns.len() >= max {
                match pick_victim(conns.values(), |_| true) {
                    Some(victim) => {
                        conns.remove(&victim.id);
                        victim.close();
                    }
                    None if conns.len() >= max => return None,
                    None => {}
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(ConnInfo {
            id,
            client: Mutex::new(peer),
            authenticated: AtomicBool::new(false),
            counted: self.authenticated.clone(),
            phase: AtomicU8::new(FRESH),
            since: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            kill: Notify::new(),
            written: AtomicU64::new(0),
            delivery: Mutex::new(Vec::new()),
            epoch: self.epoch,
        });
        conns.insert(id, info.clone());
        Some(info)
    }

    /// The per-client budget of anonymous connections, checked when `me`
    /// sends a request without credentials: the client's oldest idle
    /// anonymous connection is closed to keep it, or, with none to give
    /// up, the request is refused.
    fn client_budget(&self, me: &ConnInfo) -> bool {
        let client = me.client();
        let mut conns = self.conns();
        // Only connections that made a request count: the budgets decide
        // after a head, never at accept or on a head still arriving.
        let mine = |c: &ConnInfo| {
            c.id != me.id
                && c.anonymous()
                && matches!(c.phase(), IDLE | BODY | HANDLER)
                && c.client() == client
        };
        let held = conns.values().filter(|c| mine(c)).count();
        if held < self.limits.anon_per_client {
            return true;
        }
        let victim = pick_victim(conns.values(), |c| mine(c) && c.phase() == IDLE);
        match victim {
            Some(v) => {
                conns.remove(&v.id);
                v.close();
                true
            }
            None => false,
        }
    }

    fn forget(&self, id: u64) {
        if let Some(c) = self.conns().remove(&id) {
            c.close();
        }
    }

    fn log_refused(&self, status: u16, peer: IpAddr) {
        METRICS.refused(status);
        self.log.line(format!(
            "- - {status} (from {peer}, before a complete request head)"
        ));
    }
}

/// The oldest evictable connection among `conns` (in accept order) that
/// `filter` allows: an idle one if there is one, else one whose head or
/// body is still coming.
fn pick_victim<'a>(
    conns: impl Iterator<Item = &'a Arc<ConnInfo>> + Clone,
    filter: impl Fn(&ConnInfo) -> bool,
) -> Option<Arc<ConnInfo>> {
    for rank in [0, 1] {
        let found = conns
            .clone()
            .find(|c| c.evictable() == Some(rank) && filter(c));
        if let Some(c) = found {
            return Some(c.clone());
        }
    }
    None
}

/// Serves `listener` until `stop` says so, then stops accepting, closes
/// idle connections and lets those in flight finish (at most
/// [`SHUTDOWN_GRACE`]). Runs on the calling thread.
pub fn run(
    edge: Arc<Edge>,
    listener: StdListener,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let mut reserve = std::fs::File::open("/dev/null").ok();
        let mut accept_errors: u64 = 0;
        let mut accept_error_logged: Option<Instant> = None;
        let mut note = |what: String| {
            accept_errors += 1;
            let due =
                accept_error_logged.map_or(true, |at| at.elapsed() >= Duration::from_secs(10));
            if due {
                log::warn!("{what} ({accept_errors} such events since the last report)");
                accept_errors = 0;
                accept_error_logged = Some(Instant::now());
            }
        };
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.changed() => {
                    // Answers from now on close their connections.
                    edge.stopping.store(true, Ordering::SeqCst);
                    break;
                }
            };
            match accepted {
                Ok((sock, addr)) => {
                    let peer = addr.ip();
                    let Some(info) = edge.admit(peer) else {
                        let busy = Resp::error(
                            "too_many_connections",
                            503,
                            "the server has too many open connections; retry shortly",
                        )
                        .with_header("Retry-After", RETRY_AFTER_SECS.into());
                        // Best effort: a fresh socket's send buffer is empty.
                        let _ = sock.try_write(&wire::response_bytes(&busy));
                        edge.log_refused(503, peer);
                        note("connection limit reached; refusing with 503".into());
                        continue;
                    };
                    let _ = sock.set_nodelay(true);
                    tokio::spawn(connection(edge.clone(), info, sock, peer, stop.clone()));
                }
                Err(e) => {
                    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    if out_of_fds && reserve.take().is_some() {
                        // Closing the reserve frees one descriptor: take the
                        // newest client with it and close it at once.
                        if let Ok((sock, _)) = listener.accept().await {
                            drop(sock);
                        }
                        reserve = std::fs::File::open("/dev/null").ok();
                    }
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) {
                        note(format!("accept failed: {e}"));
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        }
        drop(listener);
        let until = Instant::now() + SHUTDOWN_GRACE + Duration::from_secs(1);
        while !edge.conns().is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    })
}

/// One connection, from accept to close.
async fn connection(
    edge: Arc<Edge>,
    info: Arc<ConnInfo>,
    sock: TcpStream,
    peer: IpAddr,
    mut stop: watch::Receiver<bool>,
) {
    let limits = edge.limits;
    let io = Io::new(sock, info.clone(), edge.clone(), peer);
    let svc = {
        let (edge, info) = (edge.clone(), info.clone());
        service_fn(move |req| {
            let (edge, info) = (edge.clone(), info.clone());
            async move { Ok::<_, Infallible>(exchange(edge, info, peer, req).await) }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The edge's own deadlines (in `Io`) answer 408 and tell a head
        // from an idle connection; hyper's is the backstop behind them.
        .header_read_timeout(limits.read_timeout.max(limits.idle_timeout) + Duration::from_secs(5))
        .keep_alive(true)
        .half_close(false)
        .title_case_headers(true)
        .max_headers(wire::MAX_HEADERS)
        .max_buf_size(wire::MAX_HEAD);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    let shutdown = async {
        if !stopping {
            let _ = stop.changed().await;
        }
    };
    let graceful = tokio::select! {
        _ = &mut conn => false,
        _ = info.kill.notified() => false,
        _ = shutdown => true,
    };
    if graceful {
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, &mut conn).await;
    }
    info.settle_delivery(false);
    edge.forget(info.id);
}

/// One request on a connection: the checks, the body, the trip to the
/// handler pool and back.
async fn exchange(
    edge: Arc<Edge>,
    info: Arc<ConnInfo>,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Response<OutBody> {
    info.enter(BODY);
    let started = Instant::now();
    let (parts, mut body) = req.into_parts();
    let method = parts.method.as_str().to_string();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let path = target.split('?').next().unwrap_or("").to_string();
    let connection: Vec<String> = parts
        .headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    let keep_alive = if parts.version == Version::HTTP_10 {
        connection.iter().any(|t| t == "keep-alive")
    } else {
        !connection.iter().any(|t| t == "close")
    };
    let out = Out {
        edge: edge.clone(),
        info: info.clone(),
        method: method.clone(),
        path,
        started,
        keep_alive,
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).trim().to_string(),
            )
        })
        .collect();

    // What hyper leaves to the server.
    let raw_target = parts.uri.to_string();
    if raw_target.len() > wire::MAX_LINE {
        return out.refuse(wire::refusal(414));
    }
    if !raw_target.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return out.refuse(Resp::error(
            "bad_request",
            400,
            "the request target may hold only visible ASCII characters",
        ));
    }
    if headers
        .iter()
        .any(|(k, v)| k.len() + v.len() + 2 > wire::MAX_LINE)
    {
        return out.refuse(wire::refusal(431));
    }
    let te = wire::codings(
        parts
            .headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .map(|v| v.to_str().unwrap_or("?")),
    );
    if !te.is_empty() && te != ["chunked"] {
        return out.refuse(Resp::error(
            "not_implemented",
            501,
            &format!(
                "Transfer-Encoding {:?} is not supported; send chunked or Content-Length",
                te.join(", ")
            ),
        ));
    }
    if body.size_hint().lower() > MAX_BODY as u64 {
        return out.refuse(Resp::error(
            "payload_too_large",
            413,
            &format!("the request body is larger than {MAX_BODY} bytes"),
        ));
    }
    let hosts: Vec<&HeaderValue> = parts.headers.get_all(HOST).iter().collect();
    let host_ok = match hosts.as_slice() {
        [] => parts.version == Version::HTTP_10,
        [h] => h.to_str().is_ok_and(wire::valid_host),
        _ => false,
    };
    if !host_ok {
        return out.refuse(Resp::error(
            "bad_request",
            400,
            "a request must carry exactly one Host field with a valid host (RFC 9112 §3.2)",
        ));
    }

    let mut req = Req::new(&method, &target, headers, Some(peer), edge.trust_proxy);
    if let Some(client) = req.client_ip {
        *info.client.lock().unwrap_or_else(|p| p.into_inner()) = client;
    }
    let credentials = req.header(auth::TOKEN_HEADER).is_some()
        || req.cookie(auth::SESSION_COOKIE).is_some()
        || req.header("authorization").is_some();
    if !credentials && info.anonymous() && !edge.client_budget(&info) {
        return out.refuse(
            Resp::error(
                "too_many_connections",
                429,
                "this client holds too many connections without credentials; close some",
            )
            .with_header("Retry-After", RETRY_AFTER_SECS.into()),
        );
    }
    if !body.is_end_stream() {
        if let Some(e) = auth::refuse_before_body(&req) {
            return out.refuse(Resp::from_error(&e));
        }
    }

    // The body, within the read timeout from the head.
    let mut charge = BodyCharge {
        budget: edge.bodies.clone(),
        held: 0,
    };
    if !body.is_end_stream() {
        let deadline = tokio::time::Instant::from_std(started + edge.limits.read_timeout);
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return out.refuse(wire::refusal(408)),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return out.refuse(Resp::error(
                        "bad_request",
                        400,
                        &format!("malformed request body: {e}"),
                    ))
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if req.body.len() + data.len() > MAX_BODY {
                return out.refuse(Resp::error(
                    "payload_too_large",
                    413,
                    &format!("the request body is larger than {MAX_BODY} bytes"),
                ));
            }
            if !charge.add(data.len()) {
                return out.refuse(
                    Resp::error(
                        "busy",
                        503,
                        "the server is reading too many request bodies; retry shortly",
                    )
                    .with_header("Retry-After", RETRY_AFTER_SECS.into()),
                );
            }
            req.body.extend_from_slice(&data);
        }
    }
    drop(body);

    // To the handler pool, and back.
    info.enter(HANDLER);
    req.charge = Some(charge);
    req.conn = Some(info.clone());
    let (responder, mut rx) = Responder::new();
    req.set_responder(responder);
    req.queued_at = Instant::now();
    match edge.jobs.try_send(req) {
        Ok(()) => {}
        Err(TrySendError::Full(req) | TrySendError::Disconnected(req)) => {
            if let Some(r) = req.take_responder() {
                r.respond(
                    Resp::error(
                        "busy",
                        503,
                        "every handler is busy and the queue is full; retry shortly",
                    )
                    .with_header("Retry-After", RETRY_AFTER_SECS.into()),
                );
            }
        }
    }
    let mut until: Option<Instant> = None;
    let reply = loop {
        let msg = match until {
            None => rx.recv().await,
            Some(t) => match tokio::time::timeout_at(t.into(), rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    break Reply::Answer(Resp::error(
                        "timeout",
                        503,
                        "the answer did not come in time; retry",
                    ))
                }
            },
        };
        match msg {
            Some(Reply::Park(t)) => until = Some(t),
            Some(other) => break other,
            None => {
                break Reply::Answer(Resp::error(
                    "internal",
                    500,
                    "the request was dropped unanswered",
                ))
            }
        }
    };
    match reply {
        Reply::Answer(resp) => out.answer(resp, false),
        Reply::Stream(head, body) => out.stream(head, body),
        Reply::Park(_) => unreachable!("parks are read above"),
    }
}

/// How a request's answer goes out.
struct Out {
    edge: Arc<Edge>,
    info: Arc<ConnInfo>,
    method: String,
    path: String,
    started: Instant,
    keep_alive: bool,
}

impl Out {
    /// A refusal by the edge: answered, then the connection closes.
    fn refuse(self, resp: Resp) -> Response<OutBody> {
        self.answer(resp, true)
    }

    fn answer(self, mut resp: Resp, close: bool) -> Response<OutBody> {
        let close = close || !self.keep_alive || self.edge.stopping.load(Ordering::SeqCst);
        if let Some(d) = resp.delivery.take() {
            let before = self.info.written.load(Ordering::SeqCst);
            self.info
                .delivery
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((d, before));
        }
        let body = std::mem::take(&mut resp.body);
        let response = self.head(&resp, close);
        self.info.enter(IDLE);
        response.map(|()| OutBody::Full(Some(Bytes::from(body))))
    }

    fn stream(self, resp: Resp, body: StreamBody) -> Response<OutBody> {
        let response = self.head(&resp, true);
        self.info.enter(STREAMING);
        response.map(|()| OutBody::Stream(Box::pin(body), self.info.clone()))
    }

    /// The response head, and the log line.
    fn head(&self, resp: &Resp, close: bool) -> Response<()> {
        let took = self.started.elapsed();
        METRICS.request(resp.status, took);
        // To the tenth of a millisecond: most answers take less than one.
        self.edge.log.line(format!(
            "{} {} {} {:.1}ms",
            self.method,
            self.path,
            resp.status,
            took.as_secs_f64() * 1000.0
        ));
        let mut b = Response::builder()
            .status(resp.status)
            .header("Content-Type", resp.content_type);
        if !resp
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("cache-control"))
        {
            b = b.header("Cache-Control", "no-store");
        }
        b = b.header("X-Content-Type-Options", "nosniff");
        for (name, value) in &resp.headers {
            b = b.header(*name, value.as_str());
        }
        b = b.header("Connection", if close { "close" } else { "keep-alive" });
        b.body(()).unwrap_or_else(|e| {
            log::error!("cannot build a response head: {e}");
            let mut r = Response::new(());
            *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
    }
}

/// A response body: all of it at once, or a stream's chunks.
pub enum OutBody {
    Full(Option<Bytes>),
    Stream(Pin<Box<StreamBody>>, Arc<ConnInfo>),
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = super::responder::SlowReader;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            OutBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            OutBody::Stream(s, _) => s
                .as_mut()
                .poll_chunk(cx)
                .map(|c| c.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, OutBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            OutBody::Stream(..) => SizeHint::default(),
        }
    }
}

impl Drop for OutBody {
    fn drop(&mut self) {
        if let OutBody::Stream(_, info) = self {
            info.enter(IDLE);
        }
    }
}

/// The socket as hyper sees it, with the edge's deadlines, the JSON form of
/// hyper's own refusals, delivery confirmation and lingering close.
struct Io {
    sock: TcpStream,
    info: Arc<ConnInfo>,
    edge: Arc<Edge>,
    peer: IpAddr,
    read_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    /// Since when writes have made no progress.
    write_stalled: Option<Instant>,
    /// The first line of the head being read (leading empty lines skipped),
    /// up to a little over [`wire::MAX_LINE`].
    first_line: Vec<u8>,
    line_done: bool,
    /// Bytes written in place of what hyper wrote (its own refusals).
    replaced: Vec<u8>,
    /// Lingering after the write side was shut: until when, bytes dropped.
    linger: Option<(Instant, usize)>,
}

impl Io {
    fn new(sock: TcpStream, info: Arc<ConnInfo>, edge: Arc<Edge>, peer: IpAddr) -> Io {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        Io {
            sock,
            info,
            edge,
            peer,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            write_stalled: None,
            first_line: Vec::new(),
            line_done: false,
            replaced: Vec::new(),
            linger: None,
        }
    }

    /// The read deadline of the connection's phase.
    fn read_deadline(&self) -> Option<Instant> {
        let limits = self.edge.limits;
        match self.info.phase() {
            FRESH | HEAD => Some(self.info.since() + limits.read_timeout),
            IDLE => Some(self.info.since() + limits.idle_timeout),
            _ => None,
        }
    }

    fn note_head_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.line_done || self.first_line.len() > wire::MAX_LINE {
                return;
            }
            if self.first_line.is_empty() && (b == b'\r' || b == b'\n') {
                continue;
            }
            if b == b'\n' {
                self.line_done = true;
            } else {
                self.first_line.push(b);
            }
        }
    }

    /// Writes what stands in for hyper's bytes; ready once all is out.
    fn poll_replaced(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.replaced.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.sock).poll_write(cx, &self.replaced))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.info.written.fetch_add(n as u64, Ordering::SeqCst);
            self.replaced.drain(..n);
        }
        Poll::Ready(Ok(()))
    }

    /// Whether `buf` is hyper's own answer to a head it could not parse:
    /// written while no request is in flight, a head with no body and no
    /// `Content-Type` (every answer of the server has one).
    fn is_hypers_refusal(&self, buf: &[u8]) -> Option<u16> {
        if !matches!(self.info.phase(), FRESH | IDLE | HEAD) || !buf.starts_with(b"HTTP/1.1 ") {
            return None;
        }
        let head = String::from_utf8_lossy(buf);
        if !head.ends_with("\r\n\r\n") || head.to_ascii_lowercase().contains("content-type:") {
            return None;
        }
        head.get(9..12)?.parse().ok()
    }

    fn write_deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        let since = *self.write_stalled.get_or_insert_with(Instant::now);
        let deadline = since + self.edge.limits.read_timeout;
        if Instant::now() >= deadline {
            return true;
        }
        let at = tokio::time::Instant::from_std(deadline);
        if self.write_timer.deadline() != at {
            self.write_timer.as_mut().reset(at);
        }
        self.write_timer.as_mut().poll(cx).is_ready()
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut me.sock).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if !read.is_empty() {
                    let phase = me.info.phase();
                    if matches!(phase, FRESH | IDLE) {
                        me.info.enter(HEAD);
                        me.first_line.clear();
                        me.line_done = false;
                    }
                    if matches!(phase, FRESH | IDLE | HEAD) {
                        let read = read.to_vec();
                        me.note_head_bytes(&read);
                    }
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        loop {
            let Some(deadline) = me.read_deadline() else {
                return Poll::Pending;
            };
            if Instant::now() >= deadline {
                if me.info.phase() == HEAD {
                    // A head that never ended: 408 (best effort), then close.
                    let _ = me
                        .sock
                        .try_write(&wire::response_bytes(&wire::refusal(408)));
                    me.edge.log_refused(408, me.peer);
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
                // Idle past its time: the end, as if the client closed.
                return Poll::Ready(Ok(()));
            }
            let at = tokio::time::Instant::from_std(deadline);
            if me.read_timer.deadline() != at {
                me.read_timer.as_mut().reset(at);
            }
            if me.read_timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if let Some(status) = me.is_hypers_refusal(buf) {
            let status = wire::refine_status(status, &me.first_line, me.line_done);
            me.replaced = wire::response_bytes(&wire::refusal(status));
            me.edge.log_refused(status, me.peer);
            return Poll::Ready(Ok(buf.len()));
        }
        if me.poll_replaced(cx)?.is_pending() {
            return Poll::Pending;
        }
        match Pin::new(&mut me.sock).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                me.write_stalled = None;
                me.info.written.fetch_add(n as u64, Ordering::SeqCst);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if me.write_deadline_passed(cx) => {
                Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.poll_replaced(cx)?.is_pending() {
            return if me.write_deadline_passed(cx) {
                Poll::Ready(Err(io::ErrorKind::TimedOut.into()))
            } else {
                Poll::Pending
            };
        }
        std::task::ready!(Pin::new(&mut me.sock).poll_flush(cx))?;
        me.info.settle_delivery(true);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.linger.is_none() {
            if me.poll_replaced(cx)?.is_pending() {
                return if me.write_deadline_passed(cx) {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            me.info.settle_delivery(true);
            std::task::ready!(Pin::new(&mut me.sock).poll_shutdown(cx))?;
            me.linger = Some((Instant::now() + LINGER, 0));
        }
        // Reads and drops what the client still sends, so that closing with
        // unread data does not reset the connection and destroy the answer
        // before the client has read it.
        let (until, mut dropped) = me.linger.expect("lingering");
        let mut scratch = [0u8; 8192];
        loop {
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut me.sock).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    dropped += rb.filled().len();
                    me.linger = Some((until, dropped));
                    if dropped > LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        if Instant::now() >= until {
            return Poll::Ready(Ok(()));
        }
        let at = tokio::time::Instant::from_std(until);
        if me.read_timer.deadline() != at {
            me.read_timer.as_mut().reset(at);
        }
        match me.read_timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}
