-- Schema version 3: where the last accepted output chunk of the current
-- claim started in the agent's stdout, so that a chunk sent again (the
-- launcher died after the server accepted it, before it noted that) is
-- recognised and not logged twice. NULL: none yet, or a launcher that does
-- not send offsets. A claim resets it.
ALTER TABLE tasks ADD COLUMN output_offset INTEGER;
