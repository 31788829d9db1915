-- OPS Center schema: each run's change, and a reviewer's comments on it.
--
-- run_changes: what a run reported it changed (its `finished` or `failed`
-- report's change fields), one row per run, kept with the run: the task's
-- branch against its base as of that run. `task_changes` still holds the
-- task's latest change (what the task page shows); this keeps every run's,
-- so a review can show any run's diff. A table of its own, not columns of
-- `runs`, so that run lists do not carry patches. A change reported by a
-- claim whose run never started (no `started` report) has no run and is
-- kept only in `task_changes`.
CREATE TABLE run_changes (
    run_id       INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    task_id      INTEGER NOT NULL,
    branch       TEXT NOT NULL,
    head         TEXT,
    base         TEXT,
    status       TEXT NOT NULL DEFAULT '',
    diff_stat    TEXT NOT NULL DEFAULT '',
    patch        TEXT NOT NULL DEFAULT '',
    truncated    INTEGER NOT NULL DEFAULT 0,
    reported_at  INTEGER NOT NULL
);
CREATE INDEX run_changes_task ON run_changes(task_id, run_id);

-- A task's latest change, reported before this version, goes with its last
-- run when that run has ended (the run that reported it, as far as can be
-- told); one still running has not reported yet.
INSERT INTO run_changes(run_id, task_id, branch, head, base, status, diff_stat, patch,
                        truncated, reported_at)
SELECT r.id, c.task_id, c.branch, c.head, c.base, c.status, c.diff_stat, c.patch,
       c.truncated, c.reported_at
FROM task_changes c
JOIN runs r ON r.task_id = c.task_id
           AND r.number = (SELECT max(number) FROM runs WHERE task_id = c.task_id)
WHERE r.outcome <> 'running';

-- review_comments: a reviewer's comment on lines of a run's change: the
-- run (its number), the file (its new path, or the old one of a deleted
-- file), the lines `line`..`end_line` on `side` ('new' or 'old'), and the
-- hunk they lie in (its header and the lines around them, as the diff
-- wrote them) for the agent to see. `sent_at`: when a review sent it to
-- the agent as a follow-up; `sent_in_run`: the number of the run that took
-- that follow-up, set when that run starts.
CREATE TABLE review_comments (
    id           INTEGER PRIMARY KEY,
    task_id      INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    run          INTEGER NOT NULL,
    file         TEXT NOT NULL,
    line         INTEGER NOT NULL,
    end_line     INTEGER NOT NULL,
    side         TEXT NOT NULL CHECK (side IN ('new', 'old')),
    body         TEXT NOT NULL,
    hunk         TEXT NOT NULL,
    author       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    sent_at      INTEGER,
    sent_in_run  INTEGER,
    CHECK (end_line >= line)
);
CREATE INDEX review_comments_task ON review_comments(task_id, id);
