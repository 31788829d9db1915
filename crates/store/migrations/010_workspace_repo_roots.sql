-- OPS Center schema: the repositories a workspace lets its tasks name.
--
-- A task's own repo_path overrides its workspace's, and the launcher runs
-- the task's agent in a worktree of it. Until now any path was taken, so
-- whoever could edit a task (a member, a script with the service token)
-- chose which checkout on the launcher hosts an agent works in. Now the
-- workspace decides: a task's repo_path must be the workspace's repo_path
-- or lie under one of these roots (domain::repo::Allowed), checked when
-- a task's repository is set and again when a launcher claims the task.
--
-- One row per root, set only by a workspace admin (or global admin)
-- through PATCH /api/workspaces/:id. A table rather than a column of
-- joined text, so that a root is one value and the set has no order or
-- duplicates to keep.
--
-- No root is seeded from the paths tasks already name: those were chosen
-- by whoever edited the task, which is what this takes away. A queued
-- task whose own repository is outside its workspace's roots is blocked
-- with the reason when a launcher would claim it, until an admin allows
-- it or the task names an allowed one.

CREATE TABLE workspace_repo_roots (
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    root          TEXT NOT NULL,
    PRIMARY KEY (workspace_id, root)
) WITHOUT ROWID;
