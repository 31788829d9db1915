-- OPS Center schema: how every run ended, and whether a task's run must
-- change its repository.
--
-- exit_signal: the signal that ended the task's last run (with exit_code,
-- which until now was stored only for runs that finished, not for failed
-- ones). A claim clears both, as it clears the rest of the last run's
-- results.
ALTER TABLE tasks ADD COLUMN exit_signal TEXT;

-- expects_changes: a run of a task with a repository that ends well but
-- leaves its branch as it was has delivered nothing reviewable, and is
-- blocked ("sin cambios") instead of reaching review, unless the task says
-- it expects no change (an investigation, a report): 0 here.
ALTER TABLE tasks ADD COLUMN expects_changes INTEGER NOT NULL DEFAULT 1
    CHECK (expects_changes IN (0, 1));
