-- Log lines get a per-try sequence number (1, 2, 3... in write order) that never changes:
-- readers follow a log by seq, and capping a huge log deletes its middle without
-- renumbering what is kept. Existing lines are numbered in their insertion order.
-- (ADD COLUMN rather than a table rebuild, so other migrations' columns on task_log stay.)

ALTER TABLE task_log ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;

UPDATE task_log SET seq = numbered.seq
FROM (
    SELECT id, ROW_NUMBER() OVER (PARTITION BY run, task_id, try_number ORDER BY id) AS seq
    FROM task_log
) AS numbered
WHERE numbered.id = task_log.id;

-- Reads, follows and the cap's range deletes all go by (run, task_id, try_number, seq).
CREATE UNIQUE INDEX task_log_by_seq ON task_log (run, task_id, try_number, seq);
DROP INDEX task_log_by_try;
