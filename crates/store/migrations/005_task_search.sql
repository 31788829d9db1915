-- Schema version 5: the task list filtered by priority, newest first,
-- without a scan of every task nor a sort. (The title search has no index:
-- a substring match reads the titles of the rows the other filters leave.)
CREATE INDEX tasks_priority ON tasks(priority, id);
