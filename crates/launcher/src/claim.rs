//! The claim loop: while a slot is free and an agent usable, asks the
//! server for a task (a long poll) and launches what it gets.

use std::sync::Arc;
use std::time::Duration;

use ops_protocol::dispatch::{ClaimAnswer, ClaimRequest};
use ops_protocol::runs::FollowUp;
use ops_protocol::tasks::TaskView;

use super::api::ApiError;
use super::launch::launch;
use super::Ctx;

/// One claim answer that holds a task.
pub(crate) struct Claim {
    pub(crate) task: TaskView,
    pub(crate) slug: String,
    pub(crate) launch_command: Option<String>,
    pub(crate) agent_model: Option<String>,
    pub(crate) token: String,
    /// The repository the task runs in, and its base ref.
    pub(crate) repo: Option<(String, Option<String>)>,
    /// A follow-up: resume this session with this message.
    pub(crate) follow_up: Option<FollowUp>,
}

fn claim(ctx: &Ctx, slugs: &[String]) -> Result<Result<Claim, String>, ApiError> {
    let body = ClaimRequest {
        worker_id: ctx.worker_id.clone(),
        agent_slugs: Some(slugs.to_vec()),
        workspace_id: ctx.cfg.workspace_id,
    };
    // A long poll: the server answers as soon as a task for this worker is
    // queued, or `no_task` when the wait is over.
    let path = match ctx.cfg.claim_wait.as_secs() {
        0 => "dispatch/next".to_string(),
        s => format!("dispatch/next?wait={s}"),
    };
    let answer: ClaimAnswer = ctx.api.post_as(&path, &body)?;
    let ClaimAnswer {
        task: Some(task),
        agent: Some(agent),
        claim_token: Some(token),
        repo,
        follow_up,
        ..
    } = answer
    else {
        if answer.task.is_some() {
            return Err(ApiError::Transport(format!(
                "claim answer with a task but without its agent or claim_token: {answer:?}"
            )));
        }
        return Ok(Err(answer.reason.unwrap_or_else(|| "no_task".into())));
    };
    Ok(Ok(Claim {
        task,
        slug: agent.slug,
        launch_command: agent.launch_command,
        agent_model: agent.model,
        token,
        repo: repo.map(|r| (r.path, r.base_ref)),
        follow_up,
    }))
}

pub(crate) fn claim_loop(ctx: &Arc<Ctx>) {
    let mut backoff = Duration::from_secs(1);
    let mut last_reason = String::new();
    while !ctx.stop.is_set() {
        if ctx.busy() >= ctx.cfg.slots {
            ctx.stop.sleep(Duration::from_millis(500));
            continue;
        }
        let slugs = ctx.caps.usable_slugs();
        if slugs.is_empty() {
            if last_reason != "no usable agent" {
                log::warn!(
                    "no usable agent on this host: not claiming (see the heartbeat's reasons)"
                );
                last_reason = "no usable agent".into();
            }
            ctx.stop.sleep(ctx.cfg.poll_every);
            continue;
        }
        let asked = std::time::Instant::now();
        match claim(ctx, &slugs) {
            Ok(Ok(c)) => {
                backoff = Duration::from_secs(1);
                last_reason.clear();
                launch(ctx, c);
            }
            Ok(Err(reason)) => {
                backoff = Duration::from_secs(1);
                if reason != last_reason {
                    log::info!("no task to claim: {reason}");
                    last_reason = reason.clone();
                }
                // A server that waited the whole time is asked again at
                // once; one that answered at once (it does not wait, or
                // dispatch is off) after the poll pause.
                let waited = reason == "no_task"
                    && !ctx.cfg.claim_wait.is_zero()
                    && asked.elapsed() + Duration::from_secs(1) >= ctx.cfg.claim_wait;
                if !waited {
                    ctx.stop.sleep(ctx.cfg.poll_every);
                }
            }
            Err(e) => {
                log::warn!("claim failed, retrying in {} s: {e}", backoff.as_secs());
                last_reason.clear();
                ctx.stop.sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}
