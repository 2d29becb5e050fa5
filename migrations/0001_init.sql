-- State of DAGs, runs, task instances, their tries and logs.
-- Times are UTC RFC 3339 text with microseconds, so they sort as text.

CREATE TABLE dag (
    dag_id      TEXT PRIMARY KEY NOT NULL,
    is_paused   INTEGER NOT NULL DEFAULT 0,
    first_seen  TEXT NOT NULL
);

CREATE TABLE dag_run (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    dag_id              TEXT NOT NULL,
    run_id              TEXT NOT NULL,
    run_type            TEXT NOT NULL CHECK (run_type IN ('manual', 'scheduled', 'backfill', 'triggered')),
    state               TEXT NOT NULL CHECK (state IN ('queued', 'running', 'success', 'failed')),
    logical_date        TEXT NOT NULL,
    data_interval_start TEXT NOT NULL,
    data_interval_end   TEXT NOT NULL,
    conf                TEXT NOT NULL DEFAULT '{}',
    queued_at           TEXT NOT NULL,
    start_date          TEXT,
    end_date            TEXT,
    parent_run          INTEGER REFERENCES dag_run (id),
    parent_task_id      TEXT,
    -- The process executing the run (or that reserved it for itself while queued).
    owner_pid           INTEGER,
    note                TEXT,
    UNIQUE (dag_id, run_id)
);
CREATE INDEX dag_run_by_state ON dag_run (state, queued_at);
CREATE INDEX dag_run_by_dag ON dag_run (dag_id, logical_date);
CREATE INDEX dag_run_by_parent ON dag_run (parent_run);

CREATE TABLE task_instance (
    run             INTEGER NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    task_id         TEXT NOT NULL,
    state           TEXT CHECK (state IN ('scheduled', 'queued', 'running', 'success', 'failed',
                                          'up_for_retry', 'upstream_failed', 'skipped')),
    try_number      INTEGER NOT NULL DEFAULT 0,
    max_tries       INTEGER NOT NULL DEFAULT 1,
    start_date      TEXT,
    end_date        TEXT,
    next_retry_at   TEXT,
    error           TEXT,
    PRIMARY KEY (run, task_id)
);

-- One row per try, written when the try starts and completed when it ends.
CREATE TABLE task_try (
    run         INTEGER NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    task_id     TEXT NOT NULL,
    try_number  INTEGER NOT NULL,
    state       TEXT NOT NULL,
    start_date  TEXT NOT NULL,
    end_date    TEXT,
    error       TEXT,
    PRIMARY KEY (run, task_id, try_number)
);

CREATE TABLE task_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run         INTEGER NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    task_id     TEXT NOT NULL,
    try_number  INTEGER NOT NULL,
    ts          TEXT NOT NULL,
    level       TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX task_log_by_try ON task_log (run, task_id, try_number, id);
