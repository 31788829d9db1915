//! The event stream (`GET /api/stream`, Server-Sent Events).
//!
//! One thread, the streamer, owns every open stream: no handler thread is
//! held by one. It reads the event bus (the writer thread publishes each
//! commit's events there, after the commit) and writes each event to the
//! streams whose caller may read it, with the same workspace scoping as
//! `GET /api/events`.
//!
//! A stream opened with `Last-Event-ID` first gets the events after that
//! id from the database, then the live ones. Both happen on the streamer
//! thread, in the order its messages arrive, and every stream remembers
//! the last id it was sent: a batch published before the replay was read
//! is in the replay (it was committed before it was published), and one
//! published after is sent only past that id, so there are no gaps and no
//! repeats. A replay is sent in pages ([`REPLAY_EVENTS`], [`REPLAY_BYTES`]);
//! when more are left the stream ends and the client, resuming from the
//! last id it got, reads the next page.
//!
//! Streams follow access: each is tied to the session or token that opened
//! it. A commit that may change who may read what (a logout, a password
//! change, a user deleted, a membership removed or changed, a global role
//! changed, the service token rotated) makes the streamer check every
//! stream's credential again before it sends that commit's events: a
//! stream whose session or token is no longer valid ends, and the others
//! are scoped to the workspaces their caller may read now. The same check
//! runs every [`RECHECK`] for changes made outside this process (`ops-center
//! admin`) and expired sessions. Every stream also ends after [`MAX_AGE`]:
//! the client reconnects (EventSource does it by itself).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, tick, unbounded, Receiver, Sender};

use super::responder::StreamSender;
use ops_app::{accounts, audit, views};
use ops_base::error::{Error, Result};
use ops_store::db::bus::{Batch, Committed};
use ops_store::db::Db;

/// A comment line is sent this often, so proxies and clients see the
/// connection alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A stream is closed after this long; the client resumes where it was.
pub const MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// Every stream's credential is checked again at least this often.
pub const RECHECK: Duration = Duration::from_secs(10);
/// The kinds of events whose commit may change who may read what.
const ACCESS_KINDS: [&str; 7] = [
    "auth.logout",
    "user.updated",
    "user.deleted",
    "user.admin_rotated",
    "workspace.member_removed",
    "workspace.member_set",
    "settings.changed",
];
/// What the client waits before reconnecting (the SSE `retry:` field).
const RETRY_MS: u64 = 2000;
/// The most events, and about the most bytes, one replay sends.
const REPLAY_EVENTS: i64 = 500;
const REPLAY_BYTES: usize = 512 * 1024;

/// How many streams the server, and one caller, may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    pub max_total: usize,
    pub max_per_caller: usize,
}

/// Open streams counted by caller, so the caps can be checked before a
/// stream starts.
#[derive(Default)]
struct Counts {
    total: usize,
    by_caller: HashMap<String, usize>,
}

/// A place among the open streams, given back when dropped.
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    caller: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total -= 1;
        if let Some(n) = c.by_caller.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                c.by_caller.remove(&self.caller);
            }
        }
    }
}

/// What opened a stream, checked again when access may have changed.
pub enum Credential {
    /// The service token as sent.
    Service(String),
    /// The session cookie's value.
    Session(String),
}

/// One open stream.
pub struct Client {
    pub stream: StreamSender,
    pub credential: Credential,
    /// `None`: every event; otherwise only those of these workspaces.
    pub workspaces: Option<Vec<i64>>,
    /// Resume after this event id; `None`: from now on.
    pub last_event_id: Option<i64>,
    pub slot: Slot,
}

struct Open {
    client: Client,
    last_sent: i64,
    opened: Instant,
}

impl Open {
    fn may_read(&self, e: &Committed) -> bool {
        match (&self.workspaces(), e.event.workspace_id) {
            (None, _) => true,
            (Some(ids), Some(ws)) => ids.contains(&ws),
            (Some(_), None) => false,
        }
    }

    fn workspaces(&self) -> Option<&[i64]> {
        self.client.workspaces.as_deref()
    }
}

enum Cmd {
    Open(Box<Client>),
    Stop,
}

pub struct Streams {
    tx: Sender<Cmd>,
    counts: Arc<Mutex<Counts>>,
    limits: StreamLimits,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Streams {
    pub fn start(db: Arc<Db>, limits: StreamLimits) -> Streams {
        let (tx, rx) = unbounded();
        let bus = db.bus.subscribe();
        let thread = std::thread::Builder::new()
            .name("streamer".into())
            .spawn(move || run(&db, &rx, &bus))
            .expect("spawn the streamer");
        Streams {
            tx,
            counts: Arc::default(),
            limits,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// A place for one more stream of `caller`, or why there is none.
    pub fn reserve(&self, caller: &str) -> Result<Slot> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mine = c.by_caller.get(caller).copied().unwrap_or(0);
        if mine >= self.limits.max_per_caller {
            return Err(Error::TooMany {
                code: "too_many_streams",
                message: format!(
                    "you already hold {mine} event streams, the most one caller may; close one \
                     (another tab or client) first"
                ),
            });
        }
        if c.total >= self.limits.max_total {
            return Err(Error::Busy {
                code: "streams_full",
                message: format!(
                    "the server holds {} event streams, the most it serves; retry later",
                    c.total
                ),
            });
        }
        c.total += 1;
        *c.by_caller.entry(caller.to_string()).or_default() += 1;
        Ok(Slot {
            counts: self.counts.clone(),
            caller: caller.to_string(),
        })
    }

    pub fn open(&self, client: Client) {
        // After `stop` the client is dropped, which ends its stream.
        let _ = self.tx.send(Cmd::Open(Box::new(client)));
    }

    /// Ends every stream and stops the thread.
    pub fn stop(&self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// One event in the SSE format.
fn frame(e: &Committed) -> Vec<u8> {
    // The JSON is one line: serde_json escapes newlines inside strings.
    let data = serde_json::to_string(&views::streamed(e)).expect("an event serializes");
    format!("id: {}\ndata: {data}\n\n", e.event.id).into_bytes()
}

fn run(db: &Db, cmds: &Receiver<Cmd>, bus: &Receiver<Batch>) {
    let mut open: Vec<Open> = Vec::new();
    let ticker = tick(Duration::from_secs(1));
    let mut last_keep_alive = Instant::now();
    let mut last_recheck = Instant::now();
    loop {
        select! {
            recv(cmds) -> cmd => match cmd {
                Ok(Cmd::Open(c)) => {
                    if let Some(o) = start(db, *c) {
                        open.push(o);
                    }
                }
                Ok(Cmd::Stop) | Err(_) => break,
            },
            recv(bus) -> batch => match batch {
                Ok(batch) => {
                    if batch.iter().any(|e| ACCESS_KINDS.contains(&e.event.kind.as_str())) {
                        recheck(db, &mut open);
                        last_recheck = Instant::now();
                    }
                    open.retain_mut(|o| deliver(o, &batch));
                }
                Err(_) => break,
            },
            recv(ticker) -> _ => {
                let now = Instant::now();
                if now.duration_since(last_recheck) >= RECHECK {
                    recheck(db, &mut open);
                    last_recheck = now;
                }
                let keep_alive = now.duration_since(last_keep_alive) >= KEEP_ALIVE;
                if keep_alive {
                    last_keep_alive = now;
                }
                open.retain(|o| {
                    if o.client.stream.is_closed() || now.duration_since(o.opened) >= MAX_AGE {
                        return false;
                    }
                    !keep_alive || o.client.stream.send(b": keep-alive\n\n".to_vec()).is_ok()
                });
            },
        }
    }
    // Dropping the streams ends them.
}

/// Checks every stream's credential again: a stream whose session or
/// token is no longer valid ends (dropping it closes its connection), the
/// others read the workspaces their caller may read now.
fn recheck(db: &Db, open: &mut Vec<Open>) {
    open.retain_mut(|o| {
        let now = match &o.client.credential {
            Credential::Service(token) => {
                accounts::is_service_token(db, token).map(|valid| valid.then_some(None))
            }
            Credential::Session(cookie) => accounts::session_principal(db, cookie)
                .map(|who| who.map(|p| p.visible_workspaces())),
        };
        match now {
            Ok(Some(workspaces)) => {
                o.client.workspaces = workspaces;
                true
            }
            Ok(None) => {
                log::info!("closing an event stream whose credential is no longer valid");
                false
            }
            Err(e) => {
                log::warn!("cannot check an event stream's credential again: {e}");
                true
            }
        }
    });
}

/// Sends the preamble and the replay; `None` when the stream is already
/// over (its client left, or more is left to replay than one page).
fn start(db: &Db, client: Client) -> Option<Open> {
    let mut o = Open {
        last_sent: 0,
        client,
        opened: Instant::now(),
    };
    let preamble = format!("retry: {RETRY_MS}\n: connected\n\n");
    o.client.stream.send(preamble.into_bytes()).ok()?;
    let read = match o.client.last_event_id {
        None => audit::last_id(db).map(|id| (id, Vec::new())),
        Some(after) => {
            audit::after(db, after, o.workspaces(), REPLAY_EVENTS).map(|replay| (after, replay))
        }
    };
    let (from, replay) = match read {
        Ok(r) => r,
        Err(e) => {
            log::warn!("cannot read the events to replay to a stream: {e}");
            return None;
        }
    };
    o.last_sent = from;
    let full = replay.len() as i64 == REPLAY_EVENTS;
    let mut bytes = 0;
    for e in &replay {
        let f = frame(e);
        bytes += f.len();
        o.client.stream.send(f).ok()?;
        o.last_sent = e.event.id;
        if bytes >= REPLAY_BYTES {
            return None;
        }
    }
    (!full).then_some(o)
}

/// Sends the events of `batch` the stream may read and has not had; false
/// once its client has gone.
fn deliver(o: &mut Open, batch: &Batch) -> bool {
    for e in batch.iter() {
        if e.event.id <= o.last_sent {
            continue;
        }
        if o.may_read(e) && o.client.stream.send(frame(e)).is_err() {
            return false;
        }
        o.last_sent = e.event.id;
    }
    true
}
