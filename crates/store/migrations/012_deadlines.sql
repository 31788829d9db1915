-- OPS Center schema: every task in flight has an owner and a deadline.
--
-- A task in `doing` runs on the worker that claimed it. Until now nothing
-- watched it: a worker that went silent for good (host lost), or whose
-- launcher no longer runs the task (its state file gone, its report
-- refused), left the task in `doing` for ever. Now it is taken back like
-- a stale dispatch (waiting, blocked, a blocker comment naming the worker
-- and when it was last seen, an alert) when its worker's heartbeat is
-- older than dispatch_worker_stale_seconds, or when the worker's fresh
-- heartbeats have not listed it for dispatch_claim_grace_seconds.
--
-- claim_unlisted_at: when a heartbeat of the claiming worker first left
-- the running task out of its running_task_ids (NULL: it lists it, or no
-- heartbeat has left it out yet). Written only when that changes, so a
-- heartbeat that lists what it runs writes nothing here; a claim clears it.
ALTER TABLE tasks ADD COLUMN claim_unlisted_at INTEGER;

-- The heartbeat's question (this worker's running tasks) and the
-- watchdog's (every running task and its worker's heartbeat): only tasks
-- in doing are in this index. (status leads, as in tasks_dispatching, so
-- that the planner sees an equality on it.)
CREATE INDEX tasks_doing ON tasks(status, claimed_by) WHERE status = 'doing';

-- A queued task waits for any worker that can run it; one that none takes
-- for dispatch_stale_minutes (an agent, model or workspace no fresh worker
-- serves) is named by health and by a watchdog alert instead of waiting
-- unseen. queued_at: when it last became queued (dispatch, retry, a lost
-- claim put back), set by every move to queued.
ALTER TABLE tasks ADD COLUMN queued_at INTEGER;
UPDATE tasks SET queued_at = updated_at WHERE status = 'queued';
-- Only queued tasks, by how long they have waited: health counts the ones
-- waiting too long without reading the others.
CREATE INDEX tasks_queued_at ON tasks(status, queued_at) WHERE status = 'queued';
