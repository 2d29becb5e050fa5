-- Pages list a DAG's runs newest first and page through them: one index seek per DAG
-- instead of a sort of all its runs. Listings filtered by state use the same order.
CREATE INDEX dag_run_by_dag_id ON dag_run (dag_id, id);
CREATE INDEX dag_run_by_dag_state ON dag_run (dag_id, state, id);
-- `runs show <run_id>` without --dag finds a run by its id alone.
CREATE INDEX dag_run_by_run_id ON dag_run (run_id);
