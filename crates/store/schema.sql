-- OPS Center schema, version 1.
-- Applied once by crates/store/src/db/migrate.rs; later changes are new numbered
-- migrations, never edits of this file. Timestamps are unix milliseconds.

CREATE TABLE workspaces (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,            -- argon2id PHC string
    is_admin       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE workspace_members (
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_user ON workspace_members(user_id);

-- Login sessions: only a SHA-256 of the cookie value is stored.
CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE agents (
    id              INTEGER PRIMARY KEY,
    slug            TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    active          INTEGER NOT NULL DEFAULT 1,
    launch_command  TEXT,
    model           TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE tasks (
    id                    INTEGER PRIMARY KEY,
    workspace_id          INTEGER NOT NULL REFERENCES workspaces(id),
    title                 TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    status                TEXT NOT NULL DEFAULT 'next'
                          CHECK (status IN ('next', 'queued', 'dispatching', 'doing', 'review', 'done', 'waiting')),
    execution             TEXT NOT NULL DEFAULT 'manual' CHECK (execution IN ('manual', 'interactive')),
    agent_id              INTEGER REFERENCES agents(id),
    model                 TEXT,
    priority              INTEGER NOT NULL DEFAULT 0,
    sensitive             INTEGER NOT NULL DEFAULT 0,
    gate_approved_by      TEXT,
    gate_approved_at      INTEGER,
    blocked               INTEGER NOT NULL DEFAULT 0,
    blocked_reason        TEXT,
    dispatch_output       TEXT,
    dispatch_attempts     INTEGER NOT NULL DEFAULT 0,
    claimed_by            TEXT,
    claim_token           TEXT,
    claimed_at            INTEGER,
    dispatch_started_at   INTEGER,
    dispatch_finished_at  INTEGER,
    exit_code             INTEGER,
    log_path              TEXT,
    err_log_path          TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    archived_at           INTEGER
);
-- The claim query: highest priority, oldest first, among queued tasks.
CREATE INDEX tasks_queue ON tasks(status, priority DESC, id) WHERE archived_at IS NULL;
CREATE INDEX tasks_workspace ON tasks(workspace_id, id);
CREATE INDEX tasks_agent ON tasks(agent_id);

CREATE TABLE task_comments (
    id          INTEGER PRIMARY KEY,
    task_id     INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    author      TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('note', 'log', 'blocker', 'system')),
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX task_comments_task ON task_comments(task_id, id);

CREATE TABLE ops_settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE worker_heartbeats (
    worker_id         TEXT PRIMARY KEY,
    host              TEXT NOT NULL DEFAULT '',
    pid               INTEGER,
    version           TEXT NOT NULL DEFAULT '',
    agents            TEXT NOT NULL DEFAULT '[]',   -- JSON
    models            TEXT NOT NULL DEFAULT '[]',   -- JSON
    slots_total       INTEGER NOT NULL DEFAULT 0,
    slots_busy        INTEGER NOT NULL DEFAULT 0,
    running_task_ids  TEXT NOT NULL DEFAULT '[]',   -- JSON
    draining          INTEGER NOT NULL DEFAULT 0,
    workspace_id      INTEGER,
    last_seen_at      INTEGER NOT NULL
);

CREATE TABLE alerts (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,
    -- What the alert is about, so one condition keeps one alert
    -- (e.g. 'task:42', 'agent:codex', 'dispatch').
    subject          TEXT NOT NULL,
    task_id          INTEGER,
    followup_task_id INTEGER,
    status           TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    title            TEXT NOT NULL,
    detail           TEXT NOT NULL DEFAULT '',
    occurrences      INTEGER NOT NULL DEFAULT 1,
    first_seen_at    INTEGER NOT NULL,
    last_seen_at     INTEGER NOT NULL,
    resolved_at      INTEGER,
    UNIQUE (kind, subject)
);
CREATE INDEX alerts_status ON alerts(status);

-- Append-only audit log. task_id is not a foreign key on purpose: the
-- history of a deleted task stays.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    workspace_id  INTEGER,
    task_id       INTEGER,
    kind          TEXT NOT NULL,
    actor         TEXT NOT NULL,
    payload       TEXT NOT NULL DEFAULT '{}'   -- JSON
);
CREATE INDEX events_task ON events(task_id, id);
CREATE INDEX events_kind ON events(kind, at);

-- First start: workspace 1 and the four known agents.
INSERT INTO workspaces(id, name, created_at)
VALUES (1, 'default', CAST(unixepoch('subsec') * 1000 AS INTEGER));
INSERT INTO agents(slug, name, active, created_at, updated_at)
SELECT slug, name, 1, CAST(unixepoch('subsec') * 1000 AS INTEGER), CAST(unixepoch('subsec') * 1000 AS INTEGER)
FROM (SELECT 'opencode' AS slug, 'OpenCode' AS name
      UNION ALL SELECT 'claudecode', 'Claude Code'
      UNION ALL SELECT 'codex', 'Codex'
      UNION ALL SELECT 'hermes', 'Hermes');
