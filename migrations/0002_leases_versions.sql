-- Leases, fenced ownership, stored DAG versions and idempotent child runs.

-- A process that executes runs (`serve`, `run`, `trigger --wait`). It owns runs while its
-- lease is current; `epoch` grows each time it has to take a lapsed lease back, so writes
-- it prepared under an older epoch are refused.
CREATE TABLE instance (
    id               TEXT PRIMARY KEY NOT NULL,
    host             TEXT NOT NULL,
    pid              INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    epoch            INTEGER NOT NULL DEFAULT 1,
    heartbeat_at     TEXT NOT NULL,
    lease_expires_at TEXT NOT NULL,
    stopped_at       TEXT
);

-- Each distinct definition of a DAG (its YAML after load-time placeholders), stored once.
CREATE TABLE dag_version (
    hash        TEXT PRIMARY KEY NOT NULL,
    dag_id      TEXT NOT NULL,
    source_path TEXT NOT NULL,
    project     TEXT,
    definition  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX dag_version_by_dag ON dag_version (dag_id, created_at);

ALTER TABLE dag_run DROP COLUMN owner_pid;
-- The instance executing the run (or that reserved it while queued), and its epoch then.
ALTER TABLE dag_run ADD COLUMN owner TEXT;
ALTER TABLE dag_run ADD COLUMN owner_epoch INTEGER;
ALTER TABLE dag_run ADD COLUMN dag_version TEXT REFERENCES dag_version (hash);
-- Random, unique across state databases: keys the warehouse ledger.
ALTER TABLE dag_run ADD COLUMN uid TEXT;
-- The try of the parent's trigger_dag task that created this run.
ALTER TABLE dag_run ADD COLUMN parent_try INTEGER;
CREATE UNIQUE INDEX dag_run_one_child_per_try ON dag_run (parent_run, parent_task_id, parent_try)
    WHERE parent_run IS NOT NULL AND parent_try IS NOT NULL;
CREATE INDEX dag_run_by_owner ON dag_run (owner);

-- The first try since the task was last cleared: tries from it on are one attempt, whose
-- warehouse writes a retry may take over instead of repeating.
ALTER TABLE task_instance ADD COLUMN first_try INTEGER NOT NULL DEFAULT 1;

-- Set when a try was interrupted (shutdown, or its owner died) rather than ending on its
-- own: a later try of the same attempt takes over what it started (its child run).
ALTER TABLE task_try ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;
