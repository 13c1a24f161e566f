-- Managed sessions (issue 17): the server created the sandbox, owns its lifecycle and bills from
-- its own transitions. `idempotency_key` is the create request's `Idempotency-Key` (a retry gets
-- the same session back); NULLs never collide.
ALTER TABLE sessions ADD COLUMN managed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX sessions_by_idempotency_key ON sessions (account_id, idempotency_key);

-- Per-account limits on managed sessions (`admin set-limits`): a monthly budget (micro-dollars)
-- at which running sessions pause and creates/resumes answer 402, and a cap on concurrently
-- running managed sessions (429 past it). NULL: no limit.
ALTER TABLE accounts ADD COLUMN max_month_micros BIGINT;
ALTER TABLE accounts ADD COLUMN max_running BIGINT;
