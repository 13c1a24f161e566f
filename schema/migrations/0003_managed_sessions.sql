-- Managed sessions (issue 17): the server created the sandbox, owns its lifecycle and bills from
-- its own transitions. `idempotency_key` is the create request's `Idempotency-Key` (a retry gets
-- the same session back); NULLs never collide.
ALTER TABLE sessions ADD COLUMN managed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX sessions_by_idempotency_key ON sessions (account_id, idempotency_key);
