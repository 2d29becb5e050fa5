-- At most one scheduled-or-backfill run per (DAG, logical date), as Airflow 3 enforces with
-- its unique key on (dag_id, logical_date). Manual and triggered runs are not concerned:
-- they get a fresh logical date when theirs is taken.
--
-- Before this migration a scheduled run and a backfill run could share a logical date.
-- Such runs are history and are kept, so the migration never fails on them: the first of
-- each group (lowest id) stays unique and the others are flagged as legacy duplicates,
-- which the unique index leaves out. Nothing new is ever flagged.
ALTER TABLE dag_run ADD COLUMN legacy_duplicate INTEGER NOT NULL DEFAULT 0;

UPDATE dag_run SET legacy_duplicate = 1
WHERE run_type IN ('scheduled', 'backfill')
  AND EXISTS (
      SELECT 1 FROM dag_run AS earlier
      WHERE earlier.dag_id = dag_run.dag_id
        AND earlier.logical_date = dag_run.logical_date
        AND earlier.run_type IN ('scheduled', 'backfill')
        AND earlier.id < dag_run.id
  );

CREATE UNIQUE INDEX dag_run_one_per_logical_date ON dag_run (dag_id, logical_date)
WHERE run_type IN ('scheduled', 'backfill') AND legacy_duplicate = 0;
