//! How an answer gets back to its connection. Handler threads never touch
//! a socket: they send what they have to the event loop through a
//! [`Responder`], which names the connection (slot and generation, so an
//! answer for a connection that has since closed and whose slot was reused
//! is dropped) and wakes the loop.
//!
//! Two hooks build on it: a handler may keep the Responder and answer
//! *later* from any thread ([`super::request::Req::defer`]), and it may turn
//! the connection into a *stream* ([`Responder::stream`]) of chunks pushed
//! from any thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use mio::Waker;

use super::response::Resp;

/// A connection: its slot in the loop and the slot's generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnId {
    pub slot: usize,
    pub generation: u64,
}

/// What other threads tell the event loop.
pub enum Msg {
    /// The response of the connection's request.
    Respond(ConnId, Resp),
    /// The answer comes later; answer 503 if it has not come by then.
    Park(ConnId, Instant),
    /// Write the head of a stream; `closed` is set once the connection is
    /// gone.
    StreamHead(ConnId, Resp, Arc<AtomicBool>),
    Chunk(ConnId, Vec<u8>),
    /// The stream is over: flush, then close.
    End(ConnId),
}

/// The way back to the loop, shared by every Responder.
#[derive(Clone)]
pub struct Mailbox {
    tx: Sender<Msg>,
    waker: Arc<Waker>,
}

impl Mailbox {
    pub fn new(tx: Sender<Msg>, waker: Arc<Waker>) -> Mailbox {
        Mailbox { tx, waker }
    }

    fn send(&self, msg: Msg) {
        // The loop only goes away at shutdown, when answers no longer matter.
        if self.tx.send(msg).is_ok() {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the HTTP event loop: {e}");
            }
        }
    }
}

/// The right to answer one request. Dropping it unanswered answers 500, so
/// a connection never waits for an answer nobody will give.
pub struct Responder {
    id: ConnId,
    mailbox: Mailbox,
    answered: bool,
}

impl Responder {
    pub fn new(id: ConnId, mailbox: Mailbox) -> Responder {
        Responder {
            id,
            mailbox,
            answered: false,
        }
    }

    pub fn respond(mut self, resp: Resp) {
        self.answered = true;
        self.mailbox.send(Msg::Respond(self.id, resp));
    }

    /// Tells the loop the answer may take until `until` (a parked request
    /// is not idle; past its deadline the loop answers 503).
    pub(super) fn park(&self, until: Instant) {
        self.mailbox.send(Msg::Park(self.id, until));
    }

    /// Answers with `head` (status, content type, extra headers; its body
    /// is ignored) and no length: what follows are the chunks sent through
    /// the returned [`Stream`], and the connection closes when the stream
    /// is dropped. A client that reads too slowly is disconnected once the
    /// loop holds [`super::event_loop::STREAM_BUFFER`] bytes for it.
    pub fn stream(mut self, head: Resp) -> Stream {
        self.answered = true;
        let closed = Arc::new(AtomicBool::new(false));
        self.mailbox
            .send(Msg::StreamHead(self.id, head, closed.clone()));
        Stream {
            id: self.id,
            mailbox: self.mailbox.clone(),
            closed,
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            self.mailbox.send(Msg::Respond(
                self.id,
                Resp::error("internal", 500, "the request was dropped unanswered"),
            ));
        }
    }
}

/// The sending end of a streamed response.
pub struct Stream {
    id: ConnId,
    mailbox: Mailbox,
    closed: Arc<AtomicBool>,
}

/// The client of a stream has gone (or was disconnected for reading too
/// slowly): stop producing for it.
#[derive(Debug, PartialEq)]
pub struct Gone;

impl Stream {
    pub fn send(&self, chunk: Vec<u8>) -> Result<(), Gone> {
        if self.is_closed() {
            return Err(Gone);
        }
        self.mailbox.send(Msg::Chunk(self.id, chunk));
        Ok(())
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.mailbox.send(Msg::End(self.id));
    }
}
