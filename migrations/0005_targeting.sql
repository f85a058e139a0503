-- Targeting and timing: preferences, topics, scheduled delivery, and
-- broadcasts to the subscribers of topics.

-- A user's preferences, {"<category>": true|false} for the categories the
-- user has set. They live on the user's row because every change to them is
-- an event taken under that row's lock, and a publish reads them after
-- locking the row: a notification that follows the `preferences` event in
-- the user's log obeys it.
ALTER TABLE users ADD COLUMN preferences jsonb NOT NULL DEFAULT '{}';

-- Aborts the statement as a serialization failure, which the publisher
-- retries: a publish uses it when a recipient's row appeared, preferences
-- and all, while the publish was running, so the preferences it read (none)
-- may be wrong.
CREATE FUNCTION herald_retry(reason text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', reason USING ERRCODE = 'serialization_failure';
END
$$;

-- Topic membership. Expanding a publish's topics is one index range scan
-- per topic, inside the publish transaction. Names and ids compare by byte
-- value, as the contract orders them.
CREATE TABLE topic_subscribers (
    topic      text COLLATE "C" NOT NULL,
    user_id    text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, user_id)
);

-- A user's own topics (`GET /v1/me/topics`).
CREATE INDEX topic_subscribers_user ON topic_subscribers (user_id, topic);

-- A publish to be made at `deliver_at`. `request` is the publish as
-- accepted (checked once, when it was scheduled); `result` is its answer once
-- delivered. Delivery claims the row with FOR UPDATE SKIP LOCKED in the
-- transaction that creates the notifications and marks it delivered, so a
-- schedule is delivered once, or canceled, never both.
CREATE TABLE schedules (
    id           uuid PRIMARY KEY,
    created_by   text NOT NULL,
    deliver_at   timestamptz NOT NULL,
    status       text NOT NULL DEFAULT 'scheduled'
                 CHECK (status IN ('scheduled', 'delivered', 'canceled')),
    request      jsonb NOT NULL,
    result       jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);

-- The delivery worker's queue.
CREATE INDEX schedules_due ON schedules (deliver_at) WHERE status = 'scheduled';

-- A publish whose topics expand to more than 10,000 users is sent as a
-- broadcast to those users (and the recipients it names), not to everyone.
-- `request_hash`: set when the publish had an Idempotency-Key (the id then
-- comes from the key), so a retry finds this broadcast instead of sending
-- it again.
ALTER TABLE broadcasts
    ADD COLUMN topics       text[],
    ADD COLUMN named        text[],
    ADD COLUMN critical     boolean NOT NULL DEFAULT false,
    ADD COLUMN request_hash bytea;
