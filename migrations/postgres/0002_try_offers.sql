-- Ready tries an instance offers to the others when its own slots are full; see SQLite
-- migration 9 for the rules.
CREATE TABLE try_offer (
    run          BIGINT NOT NULL REFERENCES dag_run (id) ON DELETE CASCADE,
    task_id      TEXT COLLATE "C" NOT NULL,
    try_number   BIGINT NOT NULL,
    offered_at   TEXT COLLATE "C" NOT NULL,
    worker       TEXT COLLATE "C",
    worker_epoch BIGINT,
    claimed_at   TEXT COLLATE "C",
    outcome      TEXT COLLATE "C",
    error        TEXT COLLATE "C",
    ended_at     TEXT COLLATE "C",
    duration_ms  BIGINT,
    PRIMARY KEY (run, task_id)
);
CREATE INDEX try_offer_open ON try_offer (offered_at) WHERE worker IS NULL;
CREATE INDEX try_offer_by_worker ON try_offer (worker);

-- The instance that started each try (its run's owner, or the instance that claimed it).
ALTER TABLE task_try ADD COLUMN instance TEXT COLLATE "C";
