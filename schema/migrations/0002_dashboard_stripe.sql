-- rclaude-server schema, version 2: dashboard sign-in sessions and the Stripe usage export.
--
-- Same rules as 0001: only TEXT and BIGINT columns, ids chosen by the server, `_ms` / `_s` units.

-- Browser sessions of the dashboard. The cookie holds a random secret; only its SHA-256 is kept
-- (`id_hash`), like API tokens. A session dies at `expires_at_ms`, at sign-out (row deleted), or
-- when the API token used to sign in is revoked (lookups join `api_tokens`).
CREATE TABLE web_sessions (
    id_hash       TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    token_id      TEXT NOT NULL REFERENCES api_tokens (id),
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at_ms);

-- The dashboard lists each repository's newest sessions.
CREATE INDEX sessions_by_repository_created ON sessions (repository_id, created_at_ms, id);

-- The Stripe customer of an account (`admin set-stripe-customer`); accounts without one are not
-- exported.
CREATE TABLE stripe_customers (
    account_id    TEXT PRIMARY KEY REFERENCES accounts (id),
    customer_id   TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Outbox of Stripe billing meter events: one row per closed active interval per UTC month it
-- touches (`source` = "<interval id>/<YYYY-MM>"). `id` is our event id: it is sent as the meter
-- event's `identifier` and as the `Idempotency-Key`, and never changes, so a retry cannot bill
-- twice. The body fields (customer, event name, value, timestamp) are frozen at enqueue time so
-- every retry sends the same request.
CREATE TABLE stripe_meter_events (
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL UNIQUE,
    interval_id     TEXT NOT NULL REFERENCES active_intervals (id),
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    customer_id     TEXT NOT NULL,
    event_name      TEXT NOT NULL,
    value           BIGINT NOT NULL,
    timestamp_s     BIGINT NOT NULL,
    -- pending | sent | failed
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    last_error      TEXT,
    created_at_ms   BIGINT NOT NULL,
    sent_at_ms      BIGINT
);
CREATE INDEX stripe_meter_events_due ON stripe_meter_events (state, next_attempt_ms);
CREATE INDEX stripe_meter_events_by_interval ON stripe_meter_events (interval_id);

-- The dashboard groups an account's sessions per repository (served from the index alone).
CREATE INDEX sessions_by_account_repository ON sessions (account_id, repository_id, state, created_at_ms);

-- The usage page sums a month of intervals and session lifetimes per repository and day; these
-- cover those queries, so they read only the index.
CREATE INDEX active_intervals_usage ON active_intervals (account_id, end_s, start_s, repository_id);
CREATE INDEX sessions_by_stop ON sessions (account_id, stopped_at_ms, created_at_ms, repository_id);
CREATE INDEX sessions_open ON sessions (account_id, active_since_s);
