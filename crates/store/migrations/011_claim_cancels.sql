-- OPS Center schema: a cancellation belongs to the claim it withdrew.
--
-- task_cancels held one row per task, so a cancelled claim was forgotten
-- as soon as the task was cancelled again, and "which runs of this worker
-- are cancelled" was answered with task ids: a task cancelled and
-- dispatched again to the same worker had its new run killed by the old
-- cancellation (the heartbeat's `cancel` named the task), whose report
-- was then refused, and the task stayed in `doing`.
--
-- Now one row per withdrawn claim, keyed by its token: the heartbeat
-- names the cancelled claims (task and token), the `claim_cancelled`
-- refusal answers only that claim's token, and the launcher's
-- confirmation of how the agent ended is stored on that row (exit code and
-- signal) and touches nothing else. `reason` says who withdrew it:
-- `cancelled` (POST /api/tasks/:id/cancel) or `stale_running` (a running
-- task whose worker stopped running it was reconciled: if that launcher
-- comes back it ends the agent).

CREATE TABLE claim_cancels (
    claim_token   TEXT PRIMARY KEY,
    task_id       INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    worker_id     TEXT NOT NULL,
    reason        TEXT NOT NULL DEFAULT 'cancelled'
                  CHECK (reason IN ('cancelled', 'stale_running')),
    cancelled_at  INTEGER NOT NULL,
    confirmed_at  INTEGER,
    -- How the agent ended, as its launcher confirmed it.
    exit_code     INTEGER,
    signal        TEXT
) WITHOUT ROWID;

INSERT INTO claim_cancels(claim_token, task_id, worker_id, cancelled_at, confirmed_at)
SELECT claim_token, task_id, worker_id, cancelled_at, confirmed_at FROM task_cancels;

DROP TABLE task_cancels;

-- The heartbeat's question: which of this worker's claims are cancelled and
-- not yet confirmed.
CREATE INDEX claim_cancels_pending ON claim_cancels(worker_id) WHERE confirmed_at IS NULL;
-- A report's question: is this token a cancelled claim of this task.
CREATE INDEX claim_cancels_task ON claim_cancels(task_id);
