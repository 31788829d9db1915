//! The one thread that owns the listening socket and every connection.
//!
//! Each connection is a small state machine — reading the head, reading the
//! body, waiting for its handler, streaming, idle between requests,
//! lingering before close — with a deadline for the state it is in,
//! checked on a timer tick. Sockets are non-blocking and the loop never
//! waits on one client, so a client that sends slowly, stops, or reads
//! slowly costs a few kilobytes of buffer and a slot, never a thread.
//! Complete requests (head and body in memory) go to the handler pool;
//! answers come back through [`Msg`]s and are written from here.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::auth;
use super::request::Req;
use super::responder::{ConnId, Mailbox, Msg, Responder};
use super::response::Resp;
use super::wire::{self, Chunked, Framing, Reject};

/// Deadlines and the connection cap (SPEC §13), from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The whole head, and then the whole body, must arrive within this;
    /// a response that makes no progress for this long is given up.
    pub read_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub idle_timeout: Duration,
    /// Connections open at once; the next one gets 503 and is closed.
    pub max_connections: usize,
}

/// A stream's client that lets this much pile up unread is disconnected.
pub const STREAM_BUFFER: usize = 1024 * 1024;
/// Request bodies being read, over all connections, are held to this; a
/// body that would pass it is refused with 503.
const BODY_BUDGET: usize = 64 * 1024 * 1024;
/// After the last response on a connection the loop reads and drops what
/// the client still sends for this long (at most `LINGER_BYTES`), so that
/// closing with unread data does not reset the connection and destroy the
/// response before the client has read it.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 * 1024 * 1024;
/// Deadlines are checked this often.
const TICK: Duration = Duration::from_millis(100);
/// After an accept error (out of descriptors, memory), accepting resumes
/// after this pause.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// At shutdown, requests in flight get this long to be answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

enum Phase {
    /// Reading a request head (its deadline runs from the first byte, or
    /// from accept for a new connection).
    Head,
    Body {
        req: Box<Req>,
        left: BodyLeft,
        keep_alive: bool,
    },
    /// A handler has the request (or parked it, see `Msg::Park`).
    Handler { keep_alive: bool },
    /// A streamed response: chunks come from another thread.
    Streaming,
    /// Between requests on a keep-alive connection.
    Idle,
    /// Write side shut after the last response; draining until EOF.
    Linger { dropped: usize },
}

enum BodyLeft {
    Length(usize),
    Chunked(Chunked),
}

struct Conn {
    sock: TcpStream,
    generation: u64,
    peer: Option<IpAddr>,
    phase: Phase,
    /// The deadline of `phase` (`None`: no limit).
    deadline: Option<Instant>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    /// While output is pending: when it must have made progress by.
    write_deadline: Option<Instant>,
    close_after_write: bool,
    /// The request in flight is a `HEAD`: its answer goes without a body.
    head_request: bool,
    /// Method, path and start of the request in flight, for the log line.
    log: Option<(String, String, Instant)>,
    stream_closed: Option<Arc<AtomicBool>>,
}

impl Conn {
    fn pending(&self) -> bool {
        self.out_pos < self.out.len()
    }

    fn queue(&mut self, bytes: &[u8], read_timeout: Duration) {
        if !self.pending() {
            self.out.clear();
            self.out_pos = 0;
            self.write_deadline = Some(Instant::now() + read_timeout);
        }
        self.out.extend_from_slice(bytes);
    }

    /// Queues `resp` as the answer of the request in flight and logs it.
    fn answer(&mut self, resp: &Resp, close: bool, limits: &Limits) {
        self.queue(
            &wire::response_bytes_to(resp, close, self.head_request),
            limits.read_timeout,
        );
        self.close_after_write |= close;
        self.log_status(resp.status);
        self.phase = Phase::Idle;
        self.deadline = Some(Instant::now() + limits.idle_timeout);
    }

    fn log_status(&mut self, status: u16) {
        match self.log.take() {
            Some((method, path, started)) => {
                let took = started.elapsed();
                crate::metrics::METRICS.request(status, took);
                // To the tenth of a millisecond: most answers take less
                // than one.
                log::info!(
                    "{method} {path} {status} {:.1}ms",
                    took.as_secs_f64() * 1000.0
                )
            }
            None => {
                crate::metrics::METRICS.refused(status);
                log::info!(
                    "- - {status} (from {}, before a complete request head)",
                    self.peer.map(|p| p.to_string()).unwrap_or_default()
                )
            }
        }
    }
}

/// Why reading stopped.
enum Stop {
    /// Nothing more now; wait for the next event.
    Wait,
    /// The client closed its side or the connection failed.
    Closed,
}

pub struct EventLoop {
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    generation: u64,
    limits: Limits,
    trust_proxy: bool,
    jobs: Sender<Req>,
    inbox: Receiver<Msg>,
    mailbox: Mailbox,
    /// Bytes of request bodies held by connections in `Phase::Body`.
    body_bytes: usize,
    /// A descriptor kept in reserve: when accept fails for want of
    /// descriptors it is closed to accept (and close) the newest client, so
    /// the backlog drains instead of spinning.
    reserve: Option<File>,
    accept_retry: Option<Instant>,
    accept_errors: u64,
    accept_error_logged: Option<Instant>,
    stop: Arc<AtomicBool>,
    scratch: Box<[u8]>,
    /// The canned answer to a connection over the cap.
    too_many: Vec<u8>,
}

impl EventLoop {
    pub fn new(
        listener: std::net::TcpListener,
        limits: Limits,
        trust_proxy: bool,
        jobs: Sender<Req>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<(EventLoop, Arc<Waker>)> {
        listener.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, inbox) = crossbeam_channel::unbounded();
        let ev = EventLoop {
            poll,
            listener: Some(listener),
            conns: Vec::new(),
            free: Vec::new(),
            open: 0,
            generation: 0,
            limits,
            trust_proxy,
            jobs,
            inbox,
            mailbox: Mailbox::new(tx, waker.clone()),
            body_bytes: 0,
            reserve: File::open("/dev/null").ok(),
            accept_retry: None,
            accept_errors: 0,
            accept_error_logged: None,
            stop,
            scratch: vec![0; 16 * 1024].into_boxed_slice(),
            too_many: wire::response_bytes(
                &Resp::error(
                    "too_many_connections",
                    503,
                    "the server has too many open connections; retry shortly",
                )
                .with_header("Retry-After", "1".into()),
                true,
            ),
        };
        Ok((ev, waker))
    }

    /// Runs until `stop` is set and the requests in flight are answered
    /// (or [`SHUTDOWN_GRACE`] has passed). An error means the loop cannot
    /// go on.
    pub fn run(mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut last_tick = Instant::now();
        let mut stopping_since: Option<Instant> = None;
        loop {
            let mut timeout = TICK;
            if let Some(at) = self.accept_retry {
                timeout = timeout.min(at.saturating_duration_since(Instant::now()));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(slot) => self.drive(slot),
                }
            }
            self.read_inbox();
            if self.accept_retry.is_some_and(|at| at <= Instant::now()) {
                self.accept_retry = None;
                self.accept();
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.expire();
            }
            if self.stop.load(Ordering::SeqCst) {
                let since = *stopping_since.get_or_insert_with(|| {
                    self.begin_shutdown();
                    Instant::now()
                });
                let busy = self
                    .conns
                    .iter()
                    .flatten()
                    .any(|c| c.pending() || matches!(c.phase, Phase::Handler { .. }));
                if !busy || since.elapsed() > SHUTDOWN_GRACE {
                    return Ok(());
                }
            }
        }
    }

    /// Stops accepting and closes every connection that is not waiting
    /// for or writing an answer; those that are close after it.
    fn begin_shutdown(&mut self) {
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            c.close_after_write = true;
            let keep = c.pending() && !matches!(c.phase, Phase::Streaming)
                || matches!(c.phase, Phase::Handler { .. });
            if !keep {
                self.close(slot);
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((mut sock, addr)) => {
                    if self.open >= self.limits.max_connections {
                        // Best effort: a fresh socket's send buffer is empty.
                        let _ = sock.write(&self.too_many);
                        let _ = sock.shutdown(Shutdown::Write);
                        self.note_accept_error("connection limit reached; refusing with 503");
                        continue;
                    }
                    self.add(sock, addr.ip());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    if out_of_fds && self.reserve.take().is_some() {
                        // Closing the reserve frees one descriptor: take the
                        // newest client with it and close it at once.
                        if let Ok((sock, _)) = listener.accept() {
                            drop(sock);
                        }
                        self.reserve = File::open("/dev/null").ok();
                    }
                    self.note_accept_error(&format!("accept failed: {e}"));
                    self.accept_retry = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// Logs accept trouble once per burst: the first time, then a count at
    /// most every ten seconds.
    fn note_accept_error(&mut self, what: &str) {
        self.accept_errors += 1;
        let due = self
            .accept_error_logged
            .map_or(true, |at| at.elapsed() >= Duration::from_secs(10));
        if due {
            log::warn!(
                "{what} ({} such events since the last report)",
                self.accept_errors
            );
            self.accept_errors = 0;
            self.accept_error_logged = Some(Instant::now());
        }
    }

    fn add(&mut self, mut sock: TcpStream, peer: IpAddr) {
        // Responses leave in one write, but a stream's chunks and a head
        // followed by its body would otherwise wait for delayed ACKs.
        let _ = sock.set_nodelay(true);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if let Err(e) = self.poll.registry().register(
            &mut sock,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot watch a new connection: {e}");
            self.free.push(slot);
            return;
        }
        self.generation += 1;
        self.open += 1;
        self.conns[slot] = Some(Conn {
            sock,
            generation: self.generation,
            peer: Some(peer),
            phase: Phase::Head,
            deadline: Some(Instant::now() + self.limits.read_timeout),
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            write_deadline: None,
            close_after_write: false,
            head_request: false,
            log: None,
            stream_closed: None,
        });
        self.drive(slot);
    }

    fn close(&mut self, slot: usize) {
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if let Phase::Body { req, .. } = &c.phase {
            self.body_bytes -= req.body.len();
        }
        if let Some(flag) = &c.stream_closed {
            flag.store(true, Ordering::SeqCst);
        }
        let _ = self.poll.registry().deregister(&mut c.sock);
        self.free.push(slot);
        self.open -= 1;
    }

    /// Moves the connection as far as it can go without waiting: write what
    /// is pending, read, parse, hand a complete request over.
    fn drive(&mut self, slot: usize) {
        loop {
            let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            if c.pending() {
                match write_out(c, self.limits.read_timeout) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(_) => return self.close(slot),
                }
            }
            if c.close_after_write && !matches!(c.phase, Phase::Linger { .. }) {
                if matches!(c.phase, Phase::Streaming | Phase::Handler { .. }) {
                    // A stream still producing, or an answer still to come
                    // (at shutdown): close once it is written.
                    if !matches!(c.phase, Phase::Handler { .. }) && c.stream_done() {
                        return self.close(slot);
                    }
                    return;
                }
                self.leave_body(slot);
                let Some(c) = self.conns[slot].as_mut() else {
                    return;
                };
                let _ = c.sock.shutdown(Shutdown::Write);
                c.phase = Phase::Linger { dropped: 0 };
                c.deadline = Some(Instant::now() + LINGER);
                c.inbuf = Vec::new();
                c.out = Vec::new();
                c.out_pos = 0;
                continue;
            }
            match c.phase {
                Phase::Handler { .. } => return,
                // A stream's client sends nothing more; reading only
                // notices at once that it has gone, so its producer stops
                // and its place is given back.
                Phase::Streaming => match self.read_more(slot) {
                    Ok(_) => self.conns[slot]
                        .as_mut()
                        .expect("live connection")
                        .inbuf
                        .clear(),
                    Err(Stop::Wait) => return,
                    Err(Stop::Closed) => return self.close(slot),
                },
                Phase::Linger { dropped } => match self.read_more(slot) {
                    Ok(n) if dropped + n <= LINGER_BYTES => {
                        let c = self.conns[slot].as_mut().expect("live connection");
                        c.phase = Phase::Linger {
                            dropped: dropped + n,
                        };
                        c.inbuf.clear();
                    }
                    Ok(_) | Err(Stop::Closed) => return self.close(slot),
                    Err(Stop::Wait) => return,
                },
                Phase::Head | Phase::Idle | Phase::Body { .. } => {
                    if self.process(slot) {
                        continue;
                    }
                    match self.read_more(slot) {
                        Ok(_) => {}
                        Err(Stop::Wait) => return,
                        Err(Stop::Closed) => return self.close(slot),
                    }
                }
            }
        }
    }

    /// Reads one chunk into the connection's buffer.
    fn read_more(&mut self, slot: usize) -> Result<usize, Stop> {
        let c = self.conns[slot].as_mut().expect("live connection");
        match c.sock.read(&mut self.scratch) {
            Ok(0) => Err(Stop::Closed),
            Ok(n) => {
                c.inbuf.extend_from_slice(&self.scratch[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(Stop::Wait),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(0),
            Err(_) => Err(Stop::Closed),
        }
    }

    /// Works on what has been read; true when the state changed in a way
    /// that makes another turn of [`Self::drive`] worthwhile without
    /// reading (output queued, request handed over).
    fn process(&mut self, slot: usize) -> bool {
        let limits = self.limits;
        let c = self.conns[slot].as_mut().expect("live connection");
        match &mut c.phase {
            Phase::Idle | Phase::Head if c.inbuf.is_empty() => {
                if c.inbuf.capacity() > 0 {
                    c.inbuf = Vec::new();
                }
                false
            }
            Phase::Idle => {
                c.phase = Phase::Head;
                c.deadline = Some(Instant::now() + limits.read_timeout);
                true
            }
            Phase::Head => match wire::parse_head(&c.inbuf) {
                Ok(None) => false,
                Err(rej) => {
                    self.reject(slot, &rej);
                    true
                }
                Ok(Some((head, n))) => {
                    c.inbuf.drain(..n);
                    let req = Req::new(&head, c.peer, self.trust_proxy);
                    let path = head.target.split('?').next().unwrap_or("").to_string();
                    c.log = Some((head.method.clone(), path, Instant::now()));
                    // A HEAD is answered as the GET would be, without the
                    // body (`wire::response_bytes_to`).
                    c.head_request = head.method == "HEAD";
                    let keep_alive = head.keep_alive;
                    if !head.has_body() {
                        self.dispatch(slot, req, keep_alive);
                        return true;
                    }
                    if let Some(e) = auth::refuse_before_body(&req) {
                        c.answer(&Resp::from_error(&e), true, &limits);
                        return true;
                    }
                    if head.expects_continue && c.inbuf.is_empty() {
                        c.queue(b"HTTP/1.1 100 Continue\r\n\r\n", limits.read_timeout);
                    }
                    let left = match head.framing {
                        Framing::Length(n) => BodyLeft::Length(n),
                        Framing::Chunked => BodyLeft::Chunked(Chunked::default()),
                    };
                    c.phase = Phase::Body {
                        req: Box::new(req),
                        left,
                        keep_alive,
                    };
                    c.deadline = Some(Instant::now() + limits.read_timeout);
                    true
                }
            },
            Phase::Body {
                req,
                left,
                keep_alive,
            } => {
                if c.inbuf.is_empty() {
                    return false;
                }
                let before = req.body.len();
                let used = match left {
                    BodyLeft::Length(n) => {
                        let k = (*n).min(c.inbuf.len());
                        req.body.extend_from_slice(&c.inbuf[..k]);
                        *n -= k;
                        Ok(k)
                    }
                    BodyLeft::Chunked(dec) => dec.feed(&c.inbuf, &mut req.body),
                };
                self.body_bytes += req.body.len() - before;
                let used = match used {
                    Ok(used) => used,
                    Err(rej) => {
                        self.reject(slot, &rej);
                        return true;
                    }
                };
                c.inbuf.drain(..used);
                let done = match left {
                    BodyLeft::Length(n) => *n == 0,
                    BodyLeft::Chunked(dec) => dec.done(),
                };
                if done {
                    let keep_alive = *keep_alive;
                    let Phase::Body { req, .. } = std::mem::replace(&mut c.phase, Phase::Idle)
                    else {
                        unreachable!()
                    };
                    self.body_bytes -= req.body.len();
                    self.dispatch(slot, *req, keep_alive);
                    return true;
                }
                if self.body_bytes > BODY_BUDGET {
                    let busy = Resp::error(
                        "busy",
                        503,
                        "the server is reading too many request bodies; retry shortly",
                    )
                    .with_header("Retry-After", "1".into());
                    self.leave_body(slot);
                    let c = self.conns[slot].as_mut().expect("live connection");
                    c.answer(&busy, true, &limits);
                    return true;
                }
                false
            }
            Phase::Handler { .. } | Phase::Streaming | Phase::Linger { .. } => false,
        }
    }

    /// Forgets the body being read, if any, in the body budget.
    fn leave_body(&mut self, slot: usize) {
        let Some(c) = self.conns[slot].as_mut() else {
            return;
        };
        if let Phase::Body { req, .. } = &c.phase {
            self.body_bytes -= req.body.len();
            c.phase = Phase::Idle;
        }
    }

    fn reject(&mut self, slot: usize, rej: &Reject) {
        self.leave_body(slot);
        let limits = self.limits;
        let c = self.conns[slot].as_mut().expect("live connection");
        c.answer(&rej.resp(), true, &limits);
    }

    fn dispatch(&mut self, slot: usize, req: Req, keep_alive: bool) {
        let c = self.conns[slot].as_mut().expect("live connection");
        c.phase = Phase::Handler { keep_alive };
        c.deadline = None;
        let id = ConnId {
            slot,
            generation: c.generation,
        };
        req.set_responder(Responder::new(id, self.mailbox.clone()));
        if let Err(e) = self.jobs.send(req) {
            // The handlers are gone (only at shutdown): the Responder in the
            // request answers 500 as it drops.
            drop(e);
        }
    }

    fn conn(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.slot)
            .and_then(Option::as_mut)
            .filter(|c| c.generation == id.generation)
    }

    fn read_inbox(&mut self) {
        let limits = self.limits;
        let stopping = self.listener.is_none();
        while let Ok(msg) = self.inbox.try_recv() {
            let slot = match msg {
                Msg::Respond(id, resp) => {
                    let Some(c) = self.conn(id) else { continue };
                    let Phase::Handler { keep_alive } = c.phase else {
                        continue;
                    };
                    c.answer(&resp, !keep_alive || stopping, &limits);
                    id.slot
                }
                Msg::Park(id, until) => {
                    if let Some(c) = self.conn(id) {
                        if matches!(c.phase, Phase::Handler { .. }) {
                            c.deadline = Some(until);
                        }
                    }
                    continue;
                }
                Msg::StreamHead(id, head, closed) => {
                    let Some(c) = self.conn(id) else {
                        closed.store(true, Ordering::SeqCst);
                        continue;
                    };
                    if !matches!(c.phase, Phase::Handler { .. }) {
                        closed.store(true, Ordering::SeqCst);
                        continue;
                    }
                    c.queue(&wire::response_head(&head, None, true), limits.read_timeout);
                    c.log_status(head.status);
                    c.phase = Phase::Streaming;
                    c.deadline = None;
                    c.stream_closed = Some(closed);
                    id.slot
                }
                Msg::Chunk(id, bytes) => {
                    let Some(c) = self.conn(id) else { continue };
                    if !matches!(c.phase, Phase::Streaming) {
                        continue;
                    }
                    if c.out.len() - c.out_pos + bytes.len() > STREAM_BUFFER {
                        log::info!("closing a stream whose client reads too slowly");
                        self.close(id.slot);
                        continue;
                    }
                    c.queue(&bytes, limits.read_timeout);
                    id.slot
                }
                Msg::End(id) => {
                    let Some(c) = self.conn(id) else { continue };
                    if !matches!(c.phase, Phase::Streaming) {
                        continue;
                    }
                    c.close_after_write = true;
                    c.stream_closed
                        .as_ref()
                        .expect("a stream has its flag")
                        .store(true, Ordering::SeqCst);
                    id.slot
                }
            };
            self.drive(slot);
        }
    }

    /// Applies the deadlines.
    fn expire(&mut self) {
        let now = Instant::now();
        let limits = self.limits;
        for slot in 0..self.conns.len() {
            let Some(c) = self.conns[slot].as_mut() else {
                continue;
            };
            if c.pending() {
                if c.write_deadline.is_some_and(|d| d <= now) {
                    self.close(slot);
                }
                continue;
            }
            if !c.deadline.is_some_and(|d| d <= now) {
                continue;
            }
            match c.phase {
                Phase::Head if !c.inbuf.is_empty() => self.time_out(slot),
                Phase::Body { .. } => self.time_out(slot),
                Phase::Handler { keep_alive } => {
                    let resp =
                        Resp::error("timeout", 503, "the answer did not come in time; retry");
                    c.answer(&resp, !keep_alive, &limits);
                    self.drive(slot);
                }
                _ => self.close(slot),
            }
        }
    }

    /// A client that stopped sending mid-request: a 408 (best effort, one
    /// non-blocking write) and close.
    fn time_out(&mut self, slot: usize) {
        let c = self.conns[slot].as_mut().expect("live connection");
        let resp = Resp::error(
            "request_timeout",
            408,
            "the request did not arrive in time; connection closed",
        );
        c.log_status(408);
        let _ = c.sock.write(&wire::response_bytes(&resp, true));
        self.close(slot);
    }
}

impl Conn {
    /// A stream whose producer has finished (or was cut off).
    fn stream_done(&self) -> bool {
        self.stream_closed
            .as_ref()
            .map_or(true, |f| f.load(Ordering::SeqCst))
    }
}

/// Writes pending output; `Ok(true)` when all of it is out.
fn write_out(c: &mut Conn, read_timeout: Duration) -> std::io::Result<bool> {
    while c.pending() {
        match c.sock.write(&c.out[c.out_pos..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.out_pos += n;
                c.write_deadline = Some(Instant::now() + read_timeout);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.write_deadline = None;
    if c.out.capacity() > 64 * 1024 {
        c.out = Vec::new();
    } else {
        c.out.clear();
    }
    c.out_pos = 0;
    Ok(true)
}

#[cfg(test)]
mod tests {
    //! The hooks for answers that come later or as a stream, driven by
    //! hand: the test plays the handler pool.
    use std::net::TcpStream;
    use std::thread::JoinHandle;

    use serde_json::json;

    use super::*;
    use crate::http::responder::Gone;

    struct Running {
        addr: std::net::SocketAddr,
        queue: Receiver<Req>,
        stop: Arc<AtomicBool>,
        waker: Arc<Waker>,
        thread: Option<JoinHandle<()>>,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = self.waker.wake();
            // Requests still queued here answer 500 as they drop.
            while self.queue.try_recv().is_ok() {}
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn start() -> Running {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (jobs, queue) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let limits = Limits {
            read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_connections: 16,
        };
        let (ev, waker) = EventLoop::new(listener, limits, false, jobs, stop.clone()).unwrap();
        let thread = std::thread::spawn(move || ev.run().unwrap());
        Running {
            addr,
            queue,
            stop,
            waker,
            thread: Some(thread),
        }
    }

    fn request(addr: std::net::SocketAddr, close: bool) -> TcpStream {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = if close { "close" } else { "keep-alive" };
        s.write_all(format!("GET /live HTTP/1.1\r\nConnection: {conn}\r\n\r\n").as_bytes())
            .unwrap();
        s
    }

    fn next(r: &Running) -> Req {
        r.queue.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    fn read_all(s: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// One response on a keep-alive connection (its length is known).
    fn read_one(s: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        s.read_exact(&mut body).unwrap();
        head + &String::from_utf8_lossy(&body)
    }

    #[test]
    fn a_deferred_answer_comes_from_another_thread() {
        let r = start();
        let mut s = request(r.addr, false);
        let req = next(&r);
        let responder = req.defer(Instant::now() + Duration::from_secs(10)).unwrap();
        assert!(req.defer(Instant::now()).is_none(), "taken once only");
        drop(req);
        let sent = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            responder.respond(Resp::ok(json!({"late": true})));
        });
        let text = read_one(&mut s);
        assert!(sent.elapsed() >= Duration::from_millis(300));
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        assert!(text.ends_with(r#"{"late":true}"#), "{text}");
        // The connection goes on with the next request.
        s.write_all(b"GET /again HTTP/1.1\r\n\r\n").unwrap();
        let req = next(&r);
        assert_eq!(req.path, "/again");
        req.take_responder().unwrap().respond(Resp::ok(json!({})));
        assert!(read_one(&mut s).starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn a_parked_request_past_its_deadline_gets_503_and_a_dropped_one_500() {
        let r = start();
        let mut s = request(r.addr, true);
        let req = next(&r);
        let late = req
            .defer(Instant::now() + Duration::from_millis(300))
            .unwrap();
        let text = read_all(&mut s);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.contains(r#""error":"timeout""#), "{text}");
        // Too late: ignored.
        late.respond(Resp::ok(json!({})));

        let mut s = request(r.addr, true);
        drop(next(&r));
        let text = read_all(&mut s);
        assert!(text.starts_with("HTTP/1.1 500"), "{text}");
    }

    /// Turns the request's connection into an event stream.
    fn event_stream(req: Req) -> crate::http::Stream {
        req.take_responder().unwrap().stream(Resp {
            status: 200,
            content_type: "text/event-stream",
            body: Vec::new(),
            headers: Vec::new(),
        })
    }

    #[test]
    fn a_stream_carries_chunks_until_it_is_dropped() {
        let r = start();
        let mut s = request(r.addr, false);
        let stream = event_stream(next(&r));
        std::thread::spawn(move || {
            for i in 0..3 {
                stream.send(format!("data: {i}\n\n").into_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let text = read_all(&mut s);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.contains("Content-Type: text/event-stream\r\n"),
            "{text}"
        );
        assert!(!text.contains("Content-Length"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\ndata: 0\n\ndata: 1\n\ndata: 2\n\n"),
            "{text}"
        );
    }

    #[test]
    fn a_stream_whose_client_does_not_read_is_cut_off() {
        let r = start();
        let _s = request(r.addr, false);
        let stream = event_stream(next(&r));
        let chunk = vec![b'x'; 64 * 1024];
        // Socket buffers take some megabytes before the loop's own buffer
        // fills; far less than this in any case.
        let mut sent = 0;
        while stream.send(chunk.clone()) == Ok(()) {
            sent += chunk.len();
            assert!(sent < 256 * 1024 * 1024, "never cut off");
            if sent % (1024 * 1024) == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert_eq!(stream.send(chunk), Err(Gone));
        assert!(stream.is_closed());
    }
}
