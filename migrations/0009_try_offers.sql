-- Ready tries an instance offers to the others when its own slots are full (stores shared
-- by several instances; an embedded SQLite store never writes here, the table exists so
-- both backends have one schema). One offer per task: the owner of the run pre-assigns
-- the try number; a worker claims it (`worker`, at its lease epoch), starts the try in
-- the same transaction, and writes its end here for the owner to record.
CREATE TABLE try_offer (
    run          INTEGER NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    task_id      TEXT NOT NULL,
    try_number   INTEGER NOT NULL,
    offered_at   TEXT NOT NULL,
    worker       TEXT,
    worker_epoch INTEGER,
    claimed_at   TEXT,
    outcome      TEXT,
    error        TEXT,
    ended_at     TEXT,
    duration_ms  INTEGER,
    PRIMARY KEY (run, task_id)
);
CREATE INDEX try_offer_open ON try_offer (offered_at) WHERE worker IS NULL;
CREATE INDEX try_offer_by_worker ON try_offer (worker);

-- The instance that started each try (its run's owner, or the instance that claimed it).
ALTER TABLE task_try ADD COLUMN instance TEXT;
