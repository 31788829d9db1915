//! How an answer gets back to its connection. Handler threads never touch
//! a socket: the edge (`edge.rs`) hands each request to the pool with a
//! [`Responder`], the sending half of a channel whose receiving half is the
//! request's future on the I/O thread, which writes what arrives.
//!
//! Two hooks build on it: a handler may keep the Responder and answer
//! *later* from any thread ([`super::request::Req::defer`]), and it may turn
//! the answer into a *stream* ([`Responder::stream`]) of chunks pushed from
//! any thread. Neither holds a thread while it waits.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::response::Resp;

/// A stream's client that lets this much pile up unread is disconnected.
pub const STREAM_BUFFER: usize = 1024 * 1024;

/// What a handler tells the request's future.
pub(super) enum Reply {
    /// The answer.
    Answer(Resp),
    /// The answer comes later; answer 503 if it has not come by then.
    Park(Instant),
    /// A streamed answer: this head, then the chunks of the body.
    Stream(Resp, StreamBody),
}

/// The right to answer one request. Dropping it unanswered answers 500, so
/// a client never waits for an answer nobody will give.
pub struct Responder {
    tx: UnboundedSender<Reply>,
    answered: bool,
}

impl Responder {
    pub(super) fn new() -> (Responder, UnboundedReceiver<Reply>) {
        let (tx, rx) = unbounded_channel();
        (
            Responder {
                tx,
                answered: false,
            },
            rx,
        )
    }

    /// Sends the answer. When its client has gone, the answer is dropped
    /// here, and with it its [`super::response::Delivery`] runs.
    pub fn respond(mut self, resp: Resp) {
        self.answered = true;
        // On error the message, and the answer in it, drop here.
        let _ = self.tx.send(Reply::Answer(resp));
    }

    /// Whether the client has gone (its connection closed): an answer
    /// would reach nobody.
    pub fn is_gone(&self) -> bool {
        self.tx.is_closed()
    }

    /// Tells the edge the answer may take until `until` (past it the
    /// client gets 503 `timeout`).
    pub(super) fn park(&self, until: Instant) {
        let _ = self.tx.send(Reply::Park(until));
    }

    /// Answers with `head` (status, content type, extra headers; its body
    /// is ignored) and no length: what follows are the chunks sent through
    /// the returned [`Stream`], and the connection closes when the stream
    /// is dropped. A client that reads too slowly is disconnected once
    /// [`STREAM_BUFFER`] bytes wait for it.
    pub fn stream(mut self, head: Resp) -> StreamSender {
        self.answered = true;
        let (tx, rx) = unbounded_channel();
        let state = Arc::new(StreamState::default());
        let body = StreamBody {
            rx,
            state: state.clone(),
        };
        if self.tx.send(Reply::Stream(head, body)).is_err() {
            state.closed.store(true, Ordering::SeqCst);
        }
        StreamSender { tx, state }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.tx.send(Reply::Answer(Resp::error(
                "internal",
                500,
                "the request was dropped unanswered",
            )));
        }
    }
}

#[derive(Default)]
struct StreamState {
    /// Bytes sent and not yet taken by the connection.
    queued: AtomicUsize,
    /// The client has gone or was cut off.
    closed: AtomicBool,
    /// Cut off for reading too slowly: the connection is aborted.
    overflowed: AtomicBool,
}

/// The sending end of a streamed response.
pub struct StreamSender {
    tx: UnboundedSender<Bytes>,
    state: Arc<StreamState>,
}

/// The client of a stream has gone (or was disconnected for reading too
/// slowly): stop producing for it.
#[derive(Debug, PartialEq)]
pub struct Gone;

impl StreamSender {
    pub fn send(&self, chunk: Vec<u8>) -> Result<(), Gone> {
        if self.is_closed() {
            return Err(Gone);
        }
        let queued = self.state.queued.fetch_add(chunk.len(), Ordering::SeqCst) + chunk.len();
        if queued > STREAM_BUFFER {
            log::info!("closing a stream whose client reads too slowly");
            self.state.overflowed.store(true, Ordering::SeqCst);
            self.state.closed.store(true, Ordering::SeqCst);
            // Wakes the body so that it aborts the connection.
            let _ = self.tx.send(Bytes::new());
            return Err(Gone);
        }
        self.tx.send(Bytes::from(chunk)).map_err(|_| Gone)
    }

    pub fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::SeqCst) || self.tx.is_closed()
    }
}

/// The body of a streamed response: the chunks a [`Stream`] sends, until
/// it is dropped (the end of the response) or overflows (an error, which
/// aborts the connection).
pub struct StreamBody {
    rx: UnboundedReceiver<Bytes>,
    state: Arc<StreamState>,
}

/// Why a stream's body stopped early.
#[derive(Debug)]
pub struct SlowReader;

impl std::fmt::Display for SlowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the stream's client reads too slowly")
    }
}

impl std::error::Error for SlowReader {}

impl StreamBody {
    pub(super) fn poll_chunk(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, SlowReader>>> {
        loop {
            if self.state.overflowed.load(Ordering::SeqCst) {
                return Poll::Ready(Some(Err(SlowReader)));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(b)) if b.is_empty() => continue,
                Poll::Ready(Some(b)) => {
                    self.state.queued.fetch_sub(b.len(), Ordering::SeqCst);
                    return Poll::Ready(Some(Ok(b)));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(rx: &mut UnboundedReceiver<Reply>) -> Reply {
        rx.try_recv().expect("a reply")
    }

    #[test]
    fn a_dropped_responder_answers_500_and_a_late_answer_to_a_gone_client_is_dropped() {
        let (r, mut rx) = Responder::new();
        drop(r);
        match recv(&mut rx) {
            Reply::Answer(resp) => assert_eq!(resp.status, 500),
            _ => panic!("not an answer"),
        }
        let (r, rx) = Responder::new();
        assert!(!r.is_gone());
        drop(rx);
        assert!(r.is_gone());
        let undelivered = Arc::new(AtomicBool::new(false));
        let flag = undelivered.clone();
        r.respond(Resp::ok(()).on_undelivered(move || flag.store(true, Ordering::SeqCst)));
        assert!(
            undelivered.load(Ordering::SeqCst),
            "the undelivered answer's action ran"
        );
    }

    #[test]
    fn a_parked_answer_says_until_when_then_answers() {
        let (r, mut rx) = Responder::new();
        let until = Instant::now();
        r.park(until);
        assert!(matches!(recv(&mut rx), Reply::Park(t) if t == until));
        r.respond(Resp::ok(()));
        assert!(matches!(recv(&mut rx), Reply::Answer(resp) if resp.status == 200));
    }

    #[test]
    fn a_stream_whose_client_does_not_read_is_cut_off() {
        let (r, mut rx) = Responder::new();
        let stream = r.stream(Resp::stream_head("text/event-stream", Vec::new()));
        let Reply::Stream(_, body) = recv(&mut rx) else {
            panic!("not a stream");
        };
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while stream.send(chunk.clone()) == Ok(()) {
            sent += chunk.len();
        }
        assert_eq!(sent, STREAM_BUFFER, "cut off past the buffer, not before");
        assert!(stream.is_closed());
        assert_eq!(stream.send(b"more".to_vec()), Err(Gone));
        // The body ends the connection with an error.
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        let mut body = Box::pin(body);
        let waker = std::task::Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut got = 0;
        loop {
            match body.as_mut().poll_chunk(&mut cx) {
                Poll::Ready(Some(Ok(b))) => got += b.len(),
                Poll::Ready(Some(Err(SlowReader))) => break,
                other => panic!("unexpected {:?}", other.map(|o| o.map(|r| r.is_ok()))),
            }
            assert!(got <= STREAM_BUFFER);
        }
        // A client that left: the producer learns it at its next send.
        let (r, mut rx) = Responder::new();
        let stream = r.stream(Resp::stream_head("text/event-stream", Vec::new()));
        drop(recv(&mut rx));
        assert_eq!(stream.send(b"data".to_vec()), Err(Gone));
    }
}
