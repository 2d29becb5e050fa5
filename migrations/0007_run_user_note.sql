-- A note a user writes on a run (Airflow's dag_run note, set through the REST API). Kept
-- apart from `note`, which the engine writes when a run ends (why it ended) and `clear`
-- resets: a user's note survives both.
ALTER TABLE dag_run ADD COLUMN user_note TEXT;
