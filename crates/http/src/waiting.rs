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
//!
//! Claims go only to live requests: a parked claim whose connection has
//! closed is dropped before any claim is run for it (and on every turn of
//! the thread), and a claim answer that cannot be delivered is withdrawn
//! at once (`Cmd::Undelivered`: the task back to `queued`, event
//! `dispatch.claim_undelivered`), then offered to the parked workers.
//!
//! No wake-up is lost: every wake bumps a generation counter before it is
//! sent, and a claim reads it before it looks for a task. A park that
//! arrives with an older generation than the room's runs its claim again
//! at once: a task queued between the claim's search and its park (whose
//! wake found nobody parked) is then found.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};

use super::responder::Responder;
use super::response::Resp;
use ops_app::dispatch::{self, ClaimOutcome, ClaimRequest, WorkerView};
use ops_base::metrics::METRICS;
use ops_domain::access::Principal;
use ops_store::db::Db;

/// Parked claims whose client left are looked for at least this often.
const SWEEP: Duration = Duration::from_millis(250);

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
    /// Only this parked worker tries (its park missed a wake).
    Parked(String),
}

struct Parked {
    who: Principal,
    req: ClaimRequest,
    responder: Responder,
    until: Instant,
    /// What the worker can run, from its heartbeat when it parked.
    view: Option<WorkerView>,
    /// The room's generation when its claim looked for a task.
    generation: u64,
}

impl Parked {
    fn may_take(&self, wake: &Wake) -> bool {
        match wake {
            Wake::All => true,
            Wake::Worker(id) | Wake::Parked(id) => *id == self.req.worker_id,
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
    /// A claim answer that did not reach its worker.
    Undelivered {
        task_id: i64,
        worker_id: String,
        claim_token: String,
    },
    Stop,
}

pub struct WaitingRoom {
    tx: Sender<Cmd>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Bumped by every wake, before it is sent.
    generation: Arc<AtomicU64>,
    /// The test hook between a claim's search and its park.
    hold: Arc<Hold>,
}

/// The test-only hold of a claim between finding nothing and parking
/// (`POST /api/test/hold-park`).
#[derive(Default)]
struct Hold {
    state: Mutex<HoldState>,
    changed: Condvar,
}

#[derive(Default)]
struct HoldState {
    armed_for: Option<String>,
    held: bool,
}

/// How long a held claim, or a test waiting for one, waits at most.
const HOLD_LIMIT: Duration = Duration::from_secs(20);

impl WaitingRoom {
    pub fn start(db: Arc<Db>) -> WaitingRoom {
        let (tx, rx) = unbounded();
        let generation = Arc::new(AtomicU64::new(0));
        let thread = {
            let (generation, tx) = (generation.clone(), tx.clone());
            std::thread::Builder::new()
                .name("waiting-room".into())
                .spawn(move || run(&db, &rx, &tx, &generation))
                .expect("spawn the waiting room")
        };
        WaitingRoom {
            tx,
            thread: Mutex::new(Some(thread)),
            generation,
            hold: Arc::default(),
        }
    }

    /// The generation a claim reads before it looks for a task.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Parks a claim that found nothing (looking at `generation`), to be
    /// answered by `until`.
    pub fn park(
        &self,
        db: &Db,
        who: Principal,
        req: ClaimRequest,
        responder: Responder,
        until: Instant,
        generation: u64,
    ) {
        let view = dispatch::worker_view(db, &req.worker_id).ok().flatten();
        let parked = Box::new(Parked {
            who,
            req,
            responder,
            until,
            view,
            generation,
        });
        if let Err(crossbeam_channel::SendError(Cmd::Park(p))) = self.tx.send(Cmd::Park(parked)) {
            // Shutting down: answer now.
            p.responder.respond(no_task());
        }
    }

    pub fn wake(&self, wake: Wake) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let _ = self.tx.send(Cmd::Wake(wake));
    }

    /// `resp`, the answer to a claim that got a task, made to withdraw the
    /// claim should it not reach the worker.
    pub fn withdraw_if_undelivered(
        &self,
        resp: Resp,
        outcome: &ClaimOutcome,
        worker_id: &str,
    ) -> Resp {
        withdrawable(&self.tx, resp, outcome, worker_id)
    }

    /// The test hook (`OPS_TEST_CLOCK=1` servers only): a claim of the
    /// worker the hold is armed for stops here until released.
    pub fn hold_point(&self, worker_id: &str) {
        let mut s = self.hold.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.armed_for.as_deref() != Some(worker_id) {
            return;
        }
        s.held = true;
        self.hold.changed.notify_all();
        let until = Instant::now() + HOLD_LIMIT;
        while s.armed_for.as_deref() == Some(worker_id) && Instant::now() < until {
            s = self
                .hold
                .changed
                .wait_timeout(s, until.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        s.held = false;
        s.armed_for = None;
    }

    /// `arm`, `wait` (until a claim is held, at most [`HOLD_LIMIT`]) or
    /// `release` the test hook; whether a claim is held at it.
    pub fn hold(&self, worker_id: &str, action: &str) -> bool {
        let mut s = self.hold.state.lock().unwrap_or_else(|p| p.into_inner());
        match action {
            "arm" => {
                s.armed_for = Some(worker_id.to_string());
                s.held = false;
            }
            "release" => {
                s.armed_for = None;
                self.hold.changed.notify_all();
            }
            _ => {
                let until = Instant::now() + HOLD_LIMIT;
                while !s.held && Instant::now() < until {
                    s = self
                        .hold
                        .changed
                        .wait_timeout(s, until.saturating_duration_since(Instant::now()))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        s.held
    }

    /// Answers every parked claim and stops the thread.
    pub fn stop(&self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// `resp` with the withdrawal of its claim should it not be delivered.
fn withdrawable(tx: &Sender<Cmd>, resp: Resp, outcome: &ClaimOutcome, worker_id: &str) -> Resp {
    let ClaimOutcome::Claimed {
        task, claim_token, ..
    } = outcome
    else {
        return resp;
    };
    let tx = tx.clone();
    let cmd = Cmd::Undelivered {
        task_id: task.id,
        worker_id: worker_id.to_string(),
        claim_token: claim_token.clone(),
    };
    resp.on_undelivered(move || {
        let _ = tx.send(cmd);
    })
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

fn run(db: &Db, rx: &Receiver<Cmd>, tx: &Sender<Cmd>, generation: &AtomicU64) {
    let mut parked: Vec<Parked> = Vec::new();
    loop {
        let next = parked.iter().map(|p| p.until).min();
        let timeout = next.map_or(SWEEP, |t| {
            t.saturating_duration_since(Instant::now()).min(SWEEP)
        });
        match rx.recv_timeout(timeout) {
            Ok(Cmd::Park(p)) => {
                let missed = p.generation != generation.load(Ordering::SeqCst);
                let worker = p.req.worker_id.clone();
                parked.push(*p);
                if missed {
                    // A wake came between its search and now: look again.
                    try_claims(db, &mut parked, &Wake::Parked(worker), tx);
                }
            }
            Ok(Cmd::Wake(wake)) => try_claims(db, &mut parked, &wake, tx),
            Ok(Cmd::Undelivered {
                task_id,
                worker_id,
                claim_token,
            }) => match dispatch::withdraw_undelivered(db, task_id, worker_id.clone(), claim_token)
            {
                Ok(Some((workspace_id, agent))) => {
                    METRICS.claim_undelivered();
                    log::warn!(
                        "the claim of task {task_id} by {worker_id} could not be delivered; \
                         the task is queued again"
                    );
                    generation.fetch_add(1, Ordering::SeqCst);
                    try_claims(
                        db,
                        &mut parked,
                        &Wake::Queued {
                            workspace_id,
                            agent,
                        },
                        tx,
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    log::warn!("cannot withdraw the undelivered claim of task {task_id}: {e}")
                }
            },
            Ok(Cmd::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // Claims whose client left wait for nothing.
        parked.retain(|p| !p.responder.is_gone());
        let now = Instant::now();
        let (due, waiting): (Vec<Parked>, Vec<Parked>) =
            parked.into_iter().partition(|p| p.until <= now);
        parked = waiting;
        METRICS.parked(parked.len());
        for p in due {
            p.responder.respond(no_task());
        }
    }
    METRICS.parked(0);
    for p in parked {
        p.responder.respond(no_task());
    }
}

/// Runs the claims `wake` may concern, oldest parked first. A queued task
/// goes to one worker, so the first that gets a task ends the round; a
/// worker whose claim now answers anything but `no_task` is answered.
fn try_claims(db: &Db, parked: &mut Vec<Parked>, wake: &Wake, tx: &Sender<Cmd>) {
    if let Wake::Worker(id) = wake {
        // A launcher's regular heartbeat usually repeats the last one: then
        // its claim would answer as before, and a read spares the write.
        // (Lost claims it requeued wake everyone separately.)
        let Some(p) = parked.iter_mut().find(|p| p.req.worker_id == *id) else {
            return;
        };
        let now = dispatch::worker_view(db, id).ok().flatten();
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
        if parked[i].responder.is_gone() {
            // Its client left: a task must not go to it.
            parked.remove(i);
            continue;
        }
        let p = &parked[i];
        let outcome = match dispatch::claim(db, &p.who, p.req.clone()) {
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
        METRICS.parked(parked.len());
        let got_task = matches!(outcome, Ok(ClaimOutcome::Claimed { .. }));
        p.responder.respond(match outcome {
            Ok(o) => withdrawable(tx, Resp::ok(o.answer()), &o, &p.req.worker_id),
            Err(e) => Resp::from_error(&e),
        });
        if got_task && matches!(wake, Wake::Queued { .. }) {
            return;
        }
    }
}
