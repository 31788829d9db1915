-- Schema version 4: where a task's code lives, and what its run changed.
-- A workspace may name a repository (a git checkout on the launcher
-- hosts) and the ref a task's branch starts from; a task may override
-- both. NULL: none (the task runs in the launcher's working directory).
ALTER TABLE workspaces ADD COLUMN repo_path TEXT;
ALTER TABLE workspaces ADD COLUMN base_ref TEXT;
ALTER TABLE tasks ADD COLUMN repo_path TEXT;
ALTER TABLE tasks ADD COLUMN base_ref TEXT;

-- What the last run of a task changed in its worktree, as its launcher
-- reported it with `finished` or `failed`: the task's branch, the commit
-- holding the change, `git diff --stat` and the patch (its head, bounded).
-- One row per task, replaced by each report that carries a change. Kept
-- apart from `tasks` so that task lists do not carry patches.
CREATE TABLE task_changes (
    task_id      INTEGER PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    branch       TEXT NOT NULL,
    head         TEXT,
    base         TEXT,
    status       TEXT NOT NULL DEFAULT '',
    diff_stat    TEXT NOT NULL DEFAULT '',
    patch        TEXT NOT NULL DEFAULT '',
    truncated    INTEGER NOT NULL DEFAULT 0,
    reported_at  INTEGER NOT NULL
);
