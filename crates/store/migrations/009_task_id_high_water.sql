-- OPS Center schema: a deleted task's id is never given to another task.
--
-- tasks.id is an INTEGER PRIMARY KEY without AUTOINCREMENT, so SQLite
-- would give a new task max(id)+1 and reuse the id of the newest task
-- once it is deleted; its events (kept on purpose: the audit trail) and
-- alerts would then read as the new task's. task_id_high_water holds the
-- highest task id ever given; store::tasks::insert takes the next one
-- past it and raises it in the same write.
--
-- A one-row table rather than rebuilding tasks with AUTOINCREMENT: the
-- rebuild copies every task and rebuilds every index and trigger, and the
-- per-insert cost is the same one-row write either way.
--
-- Seeded with every task id the database still names anywhere, so the ids
-- of tasks deleted before this migration are not reused either.

CREATE TABLE task_id_high_water (
    only    INTEGER PRIMARY KEY CHECK (only = 1),
    last_id INTEGER NOT NULL
);
INSERT INTO task_id_high_water(only, last_id) VALUES (1, max(
    coalesce((SELECT max(id) FROM tasks), 0),
    coalesce((SELECT max(task_id) FROM events), 0),
    coalesce((SELECT max(task_id) FROM alerts), 0),
    coalesce((SELECT max(followup_task_id) FROM alerts), 0)
));
