-- One row per user who ever had a notification or opened a live connection.
-- `last_seq` is the user's sequence counter: every change to the user's
-- message center increments it while holding this row's lock, so a user's
-- events commit in seq order (see src/db/users.rs for why that matters).
-- `purged_seq`: events with seq <= purged_seq may have been removed by
-- retention; resuming from before it answers `reset`.
CREATE TABLE users (
    user_id    text PRIMARY KEY,
    last_seq   bigint NOT NULL DEFAULT 0,
    purged_seq bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A notification row is also the `notification` event of its seq: the log is
-- the union of this table and `events`, so a publish writes its content once.
CREATE TABLE notifications (
    id         uuid PRIMARY KEY,
    user_id    text NOT NULL,
    seq        bigint NOT NULL,
    title      text NOT NULL,
    body       text,
    category   text,
    data       jsonb,
    created_at timestamptz NOT NULL,
    read_at    timestamptz,
    expires_at timestamptz,
    UNIQUE (user_id, seq)
);

CREATE INDEX notifications_unread ON notifications (user_id, seq) WHERE read_at IS NULL;
CREATE INDEX notifications_expiry ON notifications (expires_at) WHERE expires_at IS NOT NULL;

-- State changes (read, unread, read_all, deleted): small JSON payloads.
CREATE TABLE events (
    user_id    text NOT NULL,
    seq        bigint NOT NULL,
    kind       text NOT NULL,
    data       json NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, seq)
);

CREATE INDEX events_created_at ON events (created_at);

-- Idempotency-Key records, scoped to the publishing token's subject.
CREATE TABLE idempotency_keys (
    publisher    text NOT NULL,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    response     json,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (publisher, key)
);
