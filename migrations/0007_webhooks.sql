-- Webhooks (Standard Webhooks): endpoints, and a durable outbox of the
-- events still to be POSTed to them.

-- An endpoint. `events`: the event types it receives, or '{*}' for all.
-- `secret`: the signing key as shown once at creation (`whsec_<base64>`);
-- the delivery worker needs it to sign, so it is stored as is.
-- `failing_since`: the first failure since the last accepted delivery; an
-- endpoint still failing `webhooks.disable_after_secs` later is disabled
-- (`disabled_at`, `disabled_reason`) and gets no more outbox rows.
CREATE TABLE webhooks (
    id              uuid PRIMARY KEY,
    url             text NOT NULL,
    events          text[] NOT NULL,
    secret          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    failing_since   timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    disabled_at     timestamptz,
    disabled_reason text
);

-- One row per (endpoint, event) still to be delivered; deleted once a 2xx
-- accepted it. `payload` is a snapshot taken in the statement that wrote the
-- event, so a later change or delete of the notification loses nothing: the
-- `events` row's data, or the whole `notifications` row (`to_json`), which
-- the worker turns into the event's data with the code that builds the live
-- event. `next_attempt_at` is also the lease of a claimed row: a claim moves
-- it past the attempt's timeout, so a crashed instance's claim expires.
-- Delivery follows seq order per (endpoint, user): only the row with the
-- lowest seq of its (endpoint, user) is ever claimed.
CREATE TABLE webhook_outbox (
    webhook_id      uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    user_id         text NOT NULL,
    seq             bigint NOT NULL,
    kind            text NOT NULL,
    payload         json NOT NULL,
    created_at      timestamptz NOT NULL,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claim           uuid,
    last_error      text,
    PRIMARY KEY (webhook_id, user_id, seq)
);

-- The worker's queue, per endpoint.
CREATE INDEX webhook_outbox_due ON webhook_outbox (webhook_id, next_attempt_at);

-- The outbox is filled in the statement that writes the events, by
-- statement-level triggers: one set-based INSERT per statement, whatever
-- wrote the rows (publish, batch, keyed update, timers, schedules,
-- broadcasts, SQL publishes). The triggers exist only while an endpoint is
-- enabled (`herald_webhooks_sync` below): a trigger with a transition table
-- costs every insert the capture of its rows even when it has nothing to
-- do, which measurably slowed publishing. While they exist but every
-- endpoint is disabled, they return at once.
CREATE FUNCTION herald_webhooks_notifications() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM webhooks WHERE disabled_at IS NULL LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_outbox (webhook_id, user_id, seq, kind, payload, created_at)
    SELECT w.id, n.user_id, n.seq, 'notification', to_json(n), n.created_at
    FROM herald_new_notifications n
    JOIN webhooks w ON w.disabled_at IS NULL
                   AND ('*' = ANY (w.events) OR 'notification' = ANY (w.events));
    IF FOUND THEN
        PERFORM pg_notify('herald_webhooks', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION herald_webhooks_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM webhooks WHERE disabled_at IS NULL LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_outbox (webhook_id, user_id, seq, kind, payload, created_at)
    SELECT w.id, e.user_id, e.seq, e.kind, e.data, e.created_at
    FROM herald_new_events e
    JOIN webhooks w ON w.disabled_at IS NULL
                   AND ('*' = ANY (w.events) OR e.kind = ANY (w.events));
    IF FOUND THEN
        PERFORM pg_notify('herald_webhooks', '');
    END IF;
    RETURN NULL;
END
$$;

-- Creates the triggers when an enabled endpoint exists and drops them when
-- none does. Called in the transaction that changed `webhooks`, after the
-- change: the advisory lock serializes callers, and each check below sees
-- every change committed before it. Creating or dropping a trigger waits
-- for the writes in progress on the table and holds new ones back until the
-- transaction ends, so callers set a short lock_timeout.
CREATE FUNCTION herald_webhooks_sync() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    wanted boolean;
    present boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('herald_webhooks_sync'));
    wanted := EXISTS (SELECT 1 FROM webhooks WHERE disabled_at IS NULL);
    present := EXISTS (SELECT 1 FROM pg_trigger
                       WHERE tgname = 'herald_webhooks_notifications'
                         AND tgrelid = 'notifications'::regclass);
    IF wanted AND NOT present THEN
        CREATE TRIGGER herald_webhooks_notifications
            AFTER INSERT ON notifications
            REFERENCING NEW TABLE AS herald_new_notifications
            FOR EACH STATEMENT EXECUTE FUNCTION herald_webhooks_notifications();
        CREATE TRIGGER herald_webhooks_events
            AFTER INSERT ON events
            REFERENCING NEW TABLE AS herald_new_events
            FOR EACH STATEMENT EXECUTE FUNCTION herald_webhooks_events();
    ELSIF present AND NOT wanted THEN
        DROP TRIGGER herald_webhooks_notifications ON notifications;
        DROP TRIGGER herald_webhooks_events ON events;
    END IF;
END
$$;
