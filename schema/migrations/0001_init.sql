-- rclaude-server schema, version 1.
--
-- One migration set serves SQLite and PostgreSQL: only TEXT and BIGINT columns, ids are UUID
-- strings chosen by the server (no engine-specific auto-increment), JSON kept as TEXT.
-- Time columns say their unit: `_ms` = Unix milliseconds, `_s` = Unix seconds (UTC).

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);

-- API tokens: only the SHA-256 of the secret is kept; `prefix` is the public part shown in lists.
CREATE TABLE api_tokens (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    prefix          TEXT NOT NULL UNIQUE,
    token_hash      TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    last_used_at_ms BIGINT,
    revoked_at_ms   BIGINT
);
CREATE INDEX api_tokens_by_account ON api_tokens (account_id);

CREATE TABLE repositories (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    name          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (account_id, name)
);

-- One row per session. The open active interval (if any) lives here (`active_since_s`); closed
-- intervals are rows of `active_intervals`, and `active_closed_s` is their running total.
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    repository_id   TEXT NOT NULL REFERENCES repositories (id),
    branch          TEXT NOT NULL,
    provider        TEXT NOT NULL,
    sandbox_id      TEXT,
    config_hash     TEXT,
    state           TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    stopped_at_ms   BIGINT,
    last_seen_s     BIGINT NOT NULL,
    active_since_s  BIGINT,
    active_closed_s BIGINT NOT NULL,
    last_seq        BIGINT NOT NULL
);
CREATE INDEX sessions_by_account ON sessions (account_id, created_at_ms, id);
CREATE INDEX sessions_by_repository ON sessions (repository_id);

-- Append-only history. A client retry carries the same idempotency key and is stored once.
CREATE TABLE session_events (
    id              TEXT PRIMARY KEY,
    session_id      TEXT NOT NULL REFERENCES sessions (id),
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    seq             BIGINT NOT NULL,
    type            TEXT NOT NULL,
    data            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    UNIQUE (session_id, seq),
    UNIQUE (session_id, idempotency_key)
);

-- Closed, billable active intervals [start_s, end_s) of a session, in whole seconds.
CREATE TABLE active_intervals (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES sessions (id),
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    repository_id TEXT NOT NULL REFERENCES repositories (id),
    start_s       BIGINT NOT NULL,
    end_s         BIGINT NOT NULL
);
CREATE INDEX active_intervals_by_account ON active_intervals (account_id, end_s);
