-- OPS Center schema: whether the last server on this file stopped cleanly.
--
-- Task ids are never given twice (migration 9), but a file that lost its
-- last writes — a Litestream restore after the host died, a backup put
-- back, a power loss with OPS_DB_SYNC=normal — rolls task_id_high_water
-- back with them, and ids already acknowledged to clients would be given
-- to new tasks. So the server notes here, as its first write, that it
-- serves this file (serving = 1), and as its very last write on a clean
-- stop that it no longer does (serving = 0). A file that says serving = 1
-- when a server starts was not stopped cleanly — crashed, or copied or
-- replicated while a server wrote it — and may miss acknowledged writes:
-- the start moves the high-water mark forward by a margin first (event
-- task_ids.raised). The marker is replicated and backed up with the rest,
-- and being the last write of a clean stop, a copy that has it also has
-- everything written before it. `ops-center admin restore` raises the
-- mark itself and leaves the marker at 0.
CREATE TABLE serve_marker (
    only        INTEGER PRIMARY KEY CHECK (only = 1),
    serving     INTEGER NOT NULL CHECK (serving IN (0, 1)),
    changed_at  INTEGER NOT NULL
);
INSERT INTO serve_marker(only, serving, changed_at) VALUES (1, 0, 0);
