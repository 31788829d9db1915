-- Task title search through an index. An FTS5 table with the trigram
-- tokenizer indexes every three-character run of each title, so a
-- substring of three or more characters is found by index lookups
-- instead of by reading every title. External content: the titles are
-- not stored twice, only their trigrams; `rowid` is `tasks.id`.
-- The trigram tokenizer folds case (like LIKE does for ASCII); the list
-- still applies LIKE to the rows it finds, so the match stays exactly
-- the LIKE one.
CREATE VIRTUAL TABLE tasks_title_fts USING fts5(
    title,
    content = 'tasks',
    content_rowid = 'id',
    tokenize = 'trigram'
);

-- Kept in step by triggers that fire only when a title comes, goes or
-- changes: a claim or any other update of other columns writes nothing
-- here (`UPDATE OF title` alone, and only when the text differs).
CREATE TRIGGER tasks_title_fts_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO tasks_title_fts(rowid, title) VALUES (new.id, new.title);
END;

CREATE TRIGGER tasks_title_fts_delete AFTER DELETE ON tasks BEGIN
    INSERT INTO tasks_title_fts(tasks_title_fts, rowid, title)
        VALUES ('delete', old.id, old.title);
END;

CREATE TRIGGER tasks_title_fts_update AFTER UPDATE OF title ON tasks
WHEN old.title IS NOT new.title BEGIN
    INSERT INTO tasks_title_fts(tasks_title_fts, rowid, title)
        VALUES ('delete', old.id, old.title);
    INSERT INTO tasks_title_fts(rowid, title) VALUES (new.id, new.title);
END;

-- The existing titles.
INSERT INTO tasks_title_fts(tasks_title_fts) VALUES ('rebuild');
