-- OPS Center schema: agent runs, their transcripts and what they cost.
--
-- runs: one row per dispatch of a task that reached its agent (written by
-- the `started` report), keyed by the claim's token: its worker, agent and
-- model, how it ended, the CLI's session id (what a follow-up resumes),
-- and the tokens and money it spent. cost_usd stays NULL while no price is
-- known (the CLI said none and `model_prices` has none for its model);
-- cost_source says whose figure it is: 'cli' or 'model_prices'.
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    workspace_id INTEGER NOT NULL,
    number INTEGER NOT NULL,
    claim_token TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    agent_slug TEXT NOT NULL,
    model TEXT,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    outcome TEXT NOT NULL DEFAULT 'running'
        CHECK (outcome IN ('running', 'finished', 'failed', 'cancelled', 'rate_limited', 'lost')),
    exit_code INTEGER,
    signal TEXT,
    session_id TEXT,
    follow_up TEXT,
    resumed_session TEXT,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL,
    cost_source TEXT CHECK (cost_source IN ('cli', 'model_prices')),
    UNIQUE (task_id, number)
);
CREATE INDEX runs_claim ON runs(claim_token);
-- A workspace's spend in a month: one range of this index.
CREATE INDEX runs_workspace_month ON runs(workspace_id, started_at);

-- run_events: the transcript, one row per typed event the launcher read
-- in the agent's stream (body: the event's JSON, its `kind` beside it).
-- The id orders a task's events: `?after=` pages on it.
CREATE TABLE run_events (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    task_id INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX run_events_task ON run_events(task_id, id);
CREATE INDEX run_events_run ON run_events(run_id);

-- not_before: a queued task no claim takes before this time (ms); set when
-- the provider's rate limit ended its run. rate_limited_runs: its runs in a
-- row that the rate limit ended (reset by any other end).
ALTER TABLE tasks ADD COLUMN not_before INTEGER;
ALTER TABLE tasks ADD COLUMN rate_limited_runs INTEGER NOT NULL DEFAULT 0;
-- A follow-up waiting for its run: the message and the session it resumes
-- (cleared when that run starts).
ALTER TABLE tasks ADD COLUMN follow_up TEXT;
ALTER TABLE tasks ADD COLUMN follow_up_session TEXT;

-- budget_usd_month: the workspace's monthly budget in USD (NULL: none).
-- budget_warned / budget_exhausted: the month ('2026-12') whose 80 % alert
-- and 100 % stop were done, so that each happens once a month.
ALTER TABLE workspaces ADD COLUMN budget_usd_month REAL;
ALTER TABLE workspaces ADD COLUMN budget_warned TEXT;
ALTER TABLE workspaces ADD COLUMN budget_exhausted TEXT;
