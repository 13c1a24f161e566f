-- Checkpoints kept off the sandbox (issue 23): a session's sandbox work as a git bundle, stored
-- as an object in the checkpoint store (a directory under the data directory, or an
-- S3-compatible bucket). A row is written only once its object is completely stored and its
-- SHA-256 checked, so a crash mid-upload leaves at most an unreferenced object (swept at start),
-- never a row without its bundle. `base` names the checkpoint whose objects this bundle builds on
-- (NULL: self-contained); `deleted_at_ms` marks one dropped by retention (its object is deleted
-- right after). Stored checkpoints count toward the repository's persistent storage.
CREATE TABLE checkpoints (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES sessions (id),
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    repository_id TEXT NOT NULL REFERENCES repositories (id),
    name          TEXT NOT NULL,
    base          TEXT,
    anchor        BIGINT NOT NULL,
    object_key    TEXT NOT NULL UNIQUE,
    size_bytes    BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    info          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    deleted_at_ms BIGINT,
    UNIQUE (session_id, name)
);
CREATE INDEX checkpoints_by_account ON checkpoints (account_id, created_at_ms);
