-- OPS Center schema, version 2: task counts kept by triggers, and indexes
-- for the task list and the stale-claim scan.
--
-- task_counts holds one row per combination of the task list's filters
-- (workspace, agent, status, blocked, archived) with the number of tasks in
-- it, so the list's `total` and the health queue counts are a SUM over a
-- few rows instead of a scan of every task. Triggers on tasks keep it exact
-- in the same transaction as every insert, update and delete; rows that
-- drop to 0 stay.

CREATE TABLE task_counts (
    workspace_id  INTEGER NOT NULL,
    agent_id      INTEGER NOT NULL,   -- 0: no agent
    status        TEXT NOT NULL,
    blocked       INTEGER NOT NULL,   -- 0 or 1
    archived      INTEGER NOT NULL,   -- 1 when archived_at is set
    n             INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, agent_id, status, blocked, archived)
) WITHOUT ROWID;

INSERT INTO task_counts(workspace_id, agent_id, status, blocked, archived, n)
SELECT workspace_id, COALESCE(agent_id, 0), status, blocked != 0, archived_at IS NOT NULL, COUNT(*)
FROM tasks
GROUP BY 1, 2, 3, 4, 5;

CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks
BEGIN
    INSERT INTO task_counts(workspace_id, agent_id, status, blocked, archived, n)
    VALUES (NEW.workspace_id, COALESCE(NEW.agent_id, 0), NEW.status, NEW.blocked != 0,
            NEW.archived_at IS NOT NULL, 1)
    ON CONFLICT(workspace_id, agent_id, status, blocked, archived) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks
BEGIN
    UPDATE task_counts SET n = n - 1
    WHERE workspace_id = OLD.workspace_id AND agent_id = COALESCE(OLD.agent_id, 0)
      AND status = OLD.status AND blocked = (OLD.blocked != 0)
      AND archived = (OLD.archived_at IS NOT NULL);
END;

CREATE TRIGGER task_counts_update AFTER UPDATE OF workspace_id, agent_id, status, blocked, archived_at ON tasks
WHEN OLD.workspace_id IS NOT NEW.workspace_id
  OR OLD.agent_id IS NOT NEW.agent_id
  OR OLD.status IS NOT NEW.status
  OR (OLD.blocked != 0) IS NOT (NEW.blocked != 0)
  OR (OLD.archived_at IS NULL) IS NOT (NEW.archived_at IS NULL)
BEGIN
    UPDATE task_counts SET n = n - 1
    WHERE workspace_id = OLD.workspace_id AND agent_id = COALESCE(OLD.agent_id, 0)
      AND status = OLD.status AND blocked = (OLD.blocked != 0)
      AND archived = (OLD.archived_at IS NOT NULL);
    INSERT INTO task_counts(workspace_id, agent_id, status, blocked, archived, n)
    VALUES (NEW.workspace_id, COALESCE(NEW.agent_id, 0), NEW.status, NEW.blocked != 0,
            NEW.archived_at IS NOT NULL, 1)
    ON CONFLICT(workspace_id, agent_id, status, blocked, archived) DO UPDATE SET n = n + 1;
END;

-- The task list filtered by status, newest first, without a sort.
CREATE INDEX tasks_status ON tasks(status, id);

-- The stale-claim scan before every claim: only tasks in dispatching are in
-- this index, ordered by when they were claimed. (status leads so that the
-- planner sees an equality here, not only in the partial index's WHERE.)
CREATE INDEX tasks_dispatching ON tasks(status, claimed_at) WHERE status = 'dispatching';
