-- Per-session settings of managed sessions (issue 17): how long a session may go without client
-- activity before the idle auto-pause job pauses it (milliseconds; NULL: the deployment's
-- `--idle-pause`).
ALTER TABLE sessions ADD COLUMN idle_pause_ms BIGINT;
