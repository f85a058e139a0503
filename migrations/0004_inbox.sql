-- The full inbox: seen, archive, snooze, actions, updates in place by key,
-- and exact live counts.

ALTER TABLE notifications
    ADD COLUMN seen_at       timestamptz,
    ADD COLUMN archived_at   timestamptz,
    -- Set only while snoozed; also the due time of the wake-up, which the
    -- timer worker claims with FOR UPDATE SKIP LOCKED (src/db/timers.rs).
    ADD COLUMN snoozed_until timestamptz,
    ADD COLUMN actions       jsonb NOT NULL DEFAULT '[]',
    -- {"id": action id, "at": time}: the first action taken wins.
    ADD COLUMN action_taken  jsonb,
    ADD COLUMN key           text,
    ADD COLUMN updated_at    timestamptz,
    ADD COLUMN topic         text,
    -- The user's counts just after this notification's own event, so a
    -- replayed `notification` event carries the counts of its moment.
    ADD COLUMN counts_unread bigint NOT NULL DEFAULT 0,
    ADD COLUMN counts_unseen bigint NOT NULL DEFAULT 0;

-- Until now, reading was the only state: what was read counts as seen.
UPDATE notifications SET seen_at = read_at WHERE read_at IS NOT NULL;

-- The user's live counts, kept by every statement that changes the center
-- (never recounted per event): notifications in the center that are not
-- archived and not snoozed, and of those the unread and the unseen ones.
ALTER TABLE users
    ADD COLUMN unread bigint NOT NULL DEFAULT 0,
    ADD COLUMN unseen bigint NOT NULL DEFAULT 0;

UPDATE users u SET unread = c.unread, unseen = c.unread
FROM (SELECT user_id, count(*) FILTER (WHERE read_at IS NULL) AS unread
      FROM notifications GROUP BY user_id) AS c
WHERE c.user_id = u.user_id;

-- An update in place finds the user's notification by key. Not unique: the
-- user's row lock already serializes publishes with one key, and an expired
-- notification keeps its key until its `expired` event removes it.
CREATE INDEX notifications_key ON notifications (user_id, key) WHERE key IS NOT NULL;

-- The snooze timer's queue: only snoozed notifications are in it.
CREATE INDEX notifications_snoozed ON notifications (snoozed_until) WHERE snoozed_until IS NOT NULL;

-- List filters that leave out archived and snoozed notifications.
CREATE INDEX notifications_archived ON notifications (user_id, seq) WHERE archived_at IS NOT NULL;

-- A broadcast takes the same content as a publish.
ALTER TABLE broadcasts
    ADD COLUMN actions  jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN key      text,
    ADD COLUMN renotify boolean NOT NULL DEFAULT false;
