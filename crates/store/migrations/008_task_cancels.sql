-- The claim a person withdrew with POST /api/tasks/:id/cancel, kept so that
-- the launcher still running it can be told (heartbeat `cancel`, the
-- `claim_cancelled` refusal of its reports) and can report how the agent
-- ended, fenced by that claim's token. One row per task: the last
-- cancellation of a claimed run; `confirmed_at` is set by the launcher's
-- report. A cancelled `queued` task had no claim and leaves no row.
CREATE TABLE task_cancels (
    task_id       INTEGER PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    worker_id     TEXT NOT NULL,
    claim_token   TEXT NOT NULL,
    cancelled_at  INTEGER NOT NULL,
    confirmed_at  INTEGER
);
-- The heartbeat's question: which of this worker's runs are cancelled and
-- not yet confirmed.
CREATE INDEX task_cancels_pending ON task_cancels(worker_id) WHERE confirmed_at IS NULL;
