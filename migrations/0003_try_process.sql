-- The process group a try's shell command runs in, so that after a crash the process that
-- adopts the run can kill what is left of it before the retry. The group is identified by
-- host, pgid and the leader's start time (clock ticks after boot), so a reused pid is never
-- mistaken for it.
ALTER TABLE task_try ADD COLUMN host TEXT;
ALTER TABLE task_try ADD COLUMN pgid INTEGER;
ALTER TABLE task_try ADD COLUMN pgid_start INTEGER;
