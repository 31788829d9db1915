//! The heartbeat: what this host can run and runs, sent to the server
//! every `heartbeat_every` (or at once when poked), on a thread of its own
//! that only reads the probe's snapshot, so nothing can hold it up; its
//! answer names the runs the server cancelled.

use ops_protocol::dispatch::{CancelledClaim, HeartbeatAnswer, HeartbeatReport};

use super::api::ApiError;
use super::Ctx;

impl Ctx {
    fn heartbeat_report(&self, draining: bool) -> HeartbeatReport {
        let running = self.running();
        let busy = self.busy();
        HeartbeatReport {
            worker_id: self.worker_id.clone(),
            host: self.host.clone(),
            pid: Some(i64::from(std::process::id())),
            version: env!("CARGO_PKG_VERSION").to_string(),
            agents: self
                .caps
                .snapshot()
                .iter()
                .map(|c| c.capability())
                .collect(),
            models: self.cfg.models.clone(),
            slots_total: self.cfg.slots as i64,
            slots_busy: busy as i64,
            running_task_ids: running,
            draining,
            workspace_id: self.cfg.workspace_id,
            // Until the server has heard from this process once.
            starting: !self.announced.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    pub(crate) fn heartbeat(&self, draining: bool) -> Result<(), ApiError> {
        let report = self.heartbeat_report(draining);
        // `starting` goes with the first attempt only: a server of an
        // older version refuses the field, and the claim-lost grace covers
        // a first heartbeat that did not arrive.
        self.announced
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let answer = self
            .api
            .post_as::<HeartbeatAnswer>("dispatch/heartbeat", &report)?;
        let mut cancel = answer.cancel_claims;
        // A server that names tasks only: every run of each of them here.
        let named: Vec<i64> = cancel.iter().map(|c| c.task_id).collect();
        for id in answer.cancel.iter().filter(|id| !named.contains(id)) {
            cancel.extend(self.runs().iter().filter(|r| r.task_id == *id).map(|r| {
                CancelledClaim {
                    task_id: *id,
                    claim_token: r.token.clone(),
                }
            }));
        }
        if !cancel.is_empty() {
            let mut ids: Vec<i64> = cancel.iter().map(|c| c.task_id).collect();
            ids.dedup();
            log::warn!("the server cancelled tasks {ids:?}: ending their agents");
            self.cancelled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(cancel);
        }
        Ok(())
    }
}

pub(crate) fn heartbeat_loop(ctx: &Ctx, poke: crossbeam_channel::Receiver<()>) {
    let mut failing = false;
    loop {
        match poke.recv_timeout(ctx.cfg.heartbeat_every) {
            Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        if ctx.stop.is_set() {
            return;
        }
        match ctx.heartbeat(false) {
            Ok(()) if failing => {
                log::info!("heartbeat delivered again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    log::warn!(
                        "heartbeat not delivered: {e}; retrying every {} s",
                        ctx.cfg.heartbeat_every.as_secs()
                    );
                }
                failing = true;
            }
        }
    }
}
