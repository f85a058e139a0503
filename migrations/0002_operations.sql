-- Running processes. Each one upserts its row every 10 s (and deletes it on a
-- clean shutdown); /v1/admin/stats lists those seen in the last minute.
-- Rows of processes that died are removed after a day.
CREATE TABLE instances (
    id           text PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);

CREATE INDEX instances_last_seen ON instances (last_seen_at);

-- A notification sent to every known user. A background worker sends it in
-- chunks of users in `user_id` order: each chunk's notifications, the move of
-- `cursor` (the last user id done; NULL before the first chunk) and the
-- `recipients` count commit in one transaction, so a crash never repeats or
-- skips a chunk and another instance resumes where it stopped.
CREATE TABLE broadcasts (
    id          uuid PRIMARY KEY,
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'done')),
    title       text NOT NULL,
    body        text,
    category    text,
    data        jsonb,
    expires_at  timestamptz,
    -- The `sub` of the admin token that created it.
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL,
    cursor      text,
    recipients  bigint NOT NULL DEFAULT 0,
    finished_at timestamptz
);

-- The worker's queue: broadcasts not done yet, oldest first.
CREATE INDEX broadcasts_unfinished ON broadcasts (created_at) WHERE status <> 'done';
