//! The waiting room of long-poll claims (`POST /api/dispatch/next?wait=N`).
//!
//! A claim that finds nothing to do is parked here instead of holding a
//! handler thread: its answer was taken over with `Req::defer`. One thread
//! owns every parked claim. Routes that may have made a task claimable (a
//! dispatch, a heartbeat, a settings or agent change) wake it; it then runs
//! ordinary claims — the one transactional claim path, fenced as always —
//! for the parked workers the change may concern, oldest first, and
//! answers those that got a task or can no longer get one. A parked claim
//! whose time is up is answered `no_task`, as an immediate claim would be;
//! at shutdown every parked claim is answered at once.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};

use super::responder::Responder;
use super::response::Resp;
use crate::app::dispatch::{self as ops, ClaimOutcome, ClaimRequest, WorkerView};
use crate::db::Db;
use crate::domain::access::Principal;

/// The longest a claim may wait (`wait` is 0 to this many seconds).
pub const MAX_WAIT_SECONDS: i64 = 60;

/// What may have made a task claimable.
pub enum Wake {
    /// A task was queued: only workers that may run it need to try.
    Queued {
        workspace_id: i64,
        agent: Option<String>,
    },
    /// A worker's heartbeat changed what it may get (or it is draining).
    Worker(String),
    /// Anything else (settings, agents): every parked worker tries.
    All,
}

struct Parked {
    who: Principal,
    req: ClaimRequest,
    responder: Responder,
    until: Instant,
    /// What the worker can run, from its heartbeat when it parked.
    view: Option<WorkerView>,
}

impl Parked {
    fn may_take(&self, wake: &Wake) -> bool {
        match wake {
            Wake::All => true,
            Wake::Worker(id) => *id == self.req.worker_id,
            Wake::Queued {
                workspace_id,
                agent,
            } => match &self.view {
                // Without a heartbeat to go by, the claim itself decides.
                None => true,
                Some(v) => {
                    v.workspace_id.map_or(true, |w| w == *workspace_id)
                        && agent.as_ref().map_or(true, |a| v.usable_slugs.contains(a))
                }
            },
        }
    }
}

enum Cmd {
    Park(Box<Parked>),
    Wake(Wake),
    Stop,
}

pub struct WaitingRoom {
    tx: Sender<Cmd>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl WaitingRoom {
    pub fn start(db: Arc<Db>) -> WaitingRoom {
        let (tx, rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("waiting-room".into())
            .spawn(move || run(&db, &rx))
            .expect("spawn the waiting room");
        WaitingRoom {
            tx,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Parks a claim that found nothing, to be answered by `until`.
    pub fn park(
        &self,
        db: &Db,
        who: Principal,
        req: ClaimRequest,
        responder: Responder,
        until: Instant,
    ) {
        let view = ops::worker_view(db, &req.worker_id).ok().flatten();
        let parked = Box::new(Parked {
            who,
            req,
            responder,
            until,
            view,
        });
        if let Err(crossbeam_channel::SendError(Cmd::Park(p))) = self.tx.send(Cmd::Park(parked)) {
            // Shutting down: answer now.
            p.responder.respond(no_task());
        }
    }

    pub fn wake(&self, wake: Wake) {
        let _ = self.tx.send(Cmd::Wake(wake));
    }

    /// Answers every parked claim and stops the thread.
    pub fn stop(&self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn no_task() -> Resp {
    Resp::ok(
        ClaimOutcome::Nothing {
            reason: "no_task",
            reconciled: 0,
        }
        .answer(),
    )
}

fn run(db: &Db, rx: &Receiver<Cmd>) {
    let mut parked: Vec<Parked> = Vec::new();
    loop {
        let next = parked.iter().map(|p| p.until).min();
        let timeout = next.map_or(Duration::from_secs(1), |t| {
            t.saturating_duration_since(Instant::now())
        });
        match rx.recv_timeout(timeout) {
            Ok(Cmd::Park(p)) => parked.push(*p),
            Ok(Cmd::Wake(wake)) => try_claims(db, &mut parked, &wake),
            Ok(Cmd::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = Instant::now();
        let (due, waiting): (Vec<Parked>, Vec<Parked>) =
            parked.into_iter().partition(|p| p.until <= now);
        parked = waiting;
        for p in due {
            p.responder.respond(no_task());
        }
    }
    for p in parked {
        p.responder.respond(no_task());
    }
}

/// Runs the claims `wake` may concern, oldest parked first. A queued task
/// goes to one worker, so the first that gets a task ends the round; a
/// worker whose claim now answers anything but `no_task` is answered.
fn try_claims(db: &Db, parked: &mut Vec<Parked>, wake: &Wake) {
    if let Wake::Worker(id) = wake {
        // A launcher's regular heartbeat usually repeats the last one: then
        // its claim would answer as before, and a read spares the write.
        // (Lost claims it requeued wake everyone separately.)
        let Some(p) = parked.iter_mut().find(|p| p.req.worker_id == *id) else {
            return;
        };
        let now = ops::worker_view(db, id).ok().flatten();
        if now.is_some() && now == p.view {
            return;
        }
        p.view = now;
    }
    let mut i = 0;
    while i < parked.len() {
        if !parked[i].may_take(wake) {
            i += 1;
            continue;
        }
        let p = &parked[i];
        let outcome = match ops::claim(db, &p.who, p.req.clone()) {
            Ok(ClaimOutcome::Nothing {
                reason: "no_task", ..
            }) => {
                i += 1;
                continue;
            }
            Ok(outcome) => Ok(outcome),
            Err(e) => Err(e),
        };
        let p = parked.remove(i);
        let got_task = matches!(outcome, Ok(ClaimOutcome::Claimed { .. }));
        p.responder.respond(match outcome {
            Ok(o) => Resp::ok(o.answer()),
            Err(e) => Resp::from_error(&e),
        });
        if got_task && matches!(wake, Wake::Queued { .. }) {
            return;
        }
    }
}
