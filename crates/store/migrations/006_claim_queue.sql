-- OPS Center schema, version 6: the claim's queue holds only what a claim
-- can take.
--
-- tasks_queue indexed every unarchived task by (status, priority, id), so
-- every status change of every task rewrote two of its entries, and a
-- claim wrote one entry for the `dispatching` row no query reads through
-- it. tasks_queued holds only queued, unblocked, unarchived tasks in the
-- claim's order: a claim deletes one entry and inserts none, and later
-- status changes of the task (started, finished, reconciled) touch it not
-- at all. No other query used tasks_queue: the list by status walks
-- tasks_status, the stale scan tasks_dispatching, the counts task_counts.

-- `status` leads although every entry is 'queued': without statistics the
-- planner takes an index it can search by equality over one it can only
-- walk, and would otherwise start from the agents and sort their tasks.

DROP INDEX tasks_queue;
CREATE INDEX tasks_queued ON tasks(status, priority DESC, id)
    WHERE status = 'queued' AND archived_at IS NULL AND blocked = 0;
