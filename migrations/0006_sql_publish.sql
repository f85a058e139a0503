-- Publishing from SQL, inside the application's own transaction: the
-- notifications exist, and are delivered live, if and only if the caller's
-- transaction commits. The rules are those of `POST /v1/notifications`
-- (src/db/publish.rs): the same limits, the same counter-row lock taken in
-- the same (user id) order, the same preferences and the same updates in
-- place by `key`. tests/api/integrations/sql_publish.rs proves that the two
-- paths leave identical rows and events.

-- A UUID version 7 (time-ordered, as the HTTP path makes them), so rows
-- written from SQL sit in the primary key's index as the others do.
CREATE FUNCTION herald_uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::int8)
                                      FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

-- A time as the server's JSON writes it (RFC 3339 in UTC, `Z`, with 0, 3 or
-- 6 fractional digits), so an event written here reads like the others.
CREATE FUNCTION herald_rfc3339(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM t)::int8 % 1000000 = 0 THEN ''
                WHEN extract(microseconds FROM t)::int8 % 1000 = 0
                    THEN '.' || to_char(t AT TIME ZONE 'UTC', 'MS')
                ELSE '.' || to_char(t AT TIME ZONE 'UTC', 'US') END
        || 'Z'
$$;

-- The data of a `notification` or `updated` event: the notification object
-- of the contract, then the user's counts just after the event.
CREATE FUNCTION herald_notification_json(n notifications, unread int8, unseen int8) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT row_to_json(o)::text
    FROM (SELECT n.id, n.seq, n.title, n.body, n.category, n.data,
                 herald_rfc3339(n.created_at) AS created_at,
                 herald_rfc3339(n.read_at) AS read_at,
                 herald_rfc3339(n.expires_at) AS expires_at,
                 herald_rfc3339(n.seen_at) AS seen_at,
                 herald_rfc3339(n.archived_at) AS archived_at,
                 herald_rfc3339(n.snoozed_until) AS snoozed_until,
                 n.actions, n.action_taken, n.key,
                 herald_rfc3339(n.updated_at) AS updated_at,
                 n.topic,
                 (SELECT row_to_json(c) FROM (SELECT unread, unseen) AS c) AS counts) AS o
$$;

-- The contract's limits (src/domain): a violation is SQLSTATE 22023
-- (invalid_parameter_value) with the same words as the HTTP answer.
CREATE FUNCTION herald_publish_check(recipients text[], title text, body text, category text,
                                     data jsonb, expires_at timestamptz, key text,
                                     checked_at timestamptz) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    bad int8;
    problem text;
BEGIN
    IF recipients IS NULL OR cardinality(recipients) NOT BETWEEN 1 AND 10000 THEN
        problem := 'recipients must list 1 to 10000 user ids';
    ELSE
        SELECT i - 1 INTO bad
        FROM unnest(recipients) WITH ORDINALITY AS r(u, i)
        WHERE u IS NULL OR octet_length(u) NOT BETWEEN 1 AND 128
           OR u ~ '[\u0001-\u001f\u007f-\u009f]'
        ORDER BY i LIMIT 1;
        IF FOUND THEN
            problem := format('recipients[%s]: a user id must be 1 to 128 bytes long '
                              'without control characters', bad);
        END IF;
    END IF;
    IF problem IS NULL THEN
        problem := CASE
            WHEN title IS NULL OR char_length(title) = 0 THEN 'title must not be empty'
            WHEN char_length(title) > 256 THEN 'title is longer than 256 characters'
            WHEN char_length(body) > 4096 THEN 'body is longer than 4096 characters'
            WHEN char_length(category) = 0 THEN 'category must not be empty'
            WHEN char_length(category) > 64 THEN 'category is longer than 64 characters'
            WHEN jsonb_typeof(data) <> 'object' THEN 'data must be a JSON object'
            -- As PostgreSQL prints it, which is a little longer than the
            -- compact form the HTTP path measures.
            WHEN octet_length(data::text) > 16384 THEN 'data is larger than 16384 bytes'
            WHEN expires_at <= checked_at THEN 'expires_at must be in the future'
            WHEN expires_at >= '10000-01-01T00:00:00Z' THEN
                'expires_at must be before the year 10000 (UTC)'
            WHEN char_length(key) NOT BETWEEN 1 AND 128 THEN 'key must be 1–128 characters without U+0000'
        END;
    END IF;
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'herald_publish: %', problem USING ERRCODE = '22023';
    END IF;
END
$$;

CREATE FUNCTION herald_publish(recipients text[], title text, body text DEFAULT NULL,
                               category text DEFAULT NULL, data jsonb DEFAULT NULL,
                               expires_at timestamptz DEFAULT NULL, key text DEFAULT NULL)
RETURNS TABLE (id uuid, user_id text, seq int8)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    published_at timestamptz := clock_timestamp();
    targets text[];
    out_ids uuid[];
    out_users text[];
    out_seqs int8[];
BEGIN
    PERFORM herald_publish_check(herald_publish.recipients, herald_publish.title,
                                 herald_publish.body, herald_publish.category,
                                 herald_publish.data, herald_publish.expires_at,
                                 herald_publish.key, published_at);
    -- Each recipient once, in the order given.
    SELECT array_agg(u ORDER BY first) INTO targets
    FROM (SELECT u, min(i) AS first
          FROM unnest(herald_publish.recipients) WITH ORDINALITY AS r(u, i)
          GROUP BY u) AS d;

    -- The counter rows, locked in user order as every publish locks them
    -- (so publishes cannot deadlock each other) and held until the caller
    -- commits: each user's changes commit in seq order.
    INSERT INTO users AS u (user_id) SELECT t FROM unnest(targets) AS t ORDER BY t
    ON CONFLICT (user_id) DO UPDATE SET last_seq = u.last_seq;

    -- With the rows locked: drop the recipients who turned the category off,
    -- update the key's notification in place or insert a new one, take the
    -- next seq and move the counts, append the `updated` events.
    WITH wanted AS (
        SELECT l.user_id, l.last_seq + 1 AS seq, l.unread, l.unseen, t.ord
        FROM unnest(targets) WITH ORDINALITY AS t(user_id, ord)
        JOIN users l ON l.user_id = t.user_id
        WHERE NOT coalesce(l.preferences -> herald_publish.category = 'false'::jsonb, false)
    ), old AS (
        SELECT DISTINCT ON (n.user_id) n.user_id, n.id
        FROM wanted w
        JOIN notifications n ON n.user_id = w.user_id AND n.key = herald_publish.key
        WHERE n.expires_at IS NULL OR n.expires_at > published_at
        ORDER BY n.user_id, n.seq DESC
    ), plan AS (
        -- An update in place without renotify keeps the notification's
        -- state, so only a new notification moves the counts.
        SELECT w.user_id, w.seq, w.ord, o.id AS old_id,
               w.unread + (o.id IS NULL)::int4 AS unread,
               w.unseen + (o.id IS NULL)::int4 AS unseen
        FROM wanted w LEFT JOIN old o ON o.user_id = w.user_id
    ), moved AS (
        UPDATE users u SET last_seq = p.seq, unread = p.unread, unseen = p.unseen
        FROM plan p WHERE u.user_id = p.user_id
    ), inserted AS (
        INSERT INTO notifications (id, user_id, seq, title, body, category, data, created_at,
                                   expires_at, actions, key, counts_unread, counts_unseen)
        SELECT herald_uuid_v7(), p.user_id, p.seq, herald_publish.title, herald_publish.body,
               herald_publish.category, herald_publish.data, published_at, herald_publish.expires_at,
               '[]', herald_publish.key, p.unread, p.unseen
        FROM plan p WHERE p.old_id IS NULL
        RETURNING id, user_id
    ), updated AS (
        UPDATE notifications n
        SET title = herald_publish.title, body = herald_publish.body,
            category = herald_publish.category, data = herald_publish.data,
            expires_at = herald_publish.expires_at, actions = '[]', topic = NULL,
            updated_at = published_at
        FROM plan p
        WHERE p.old_id IS NOT NULL AND n.id = p.old_id
        RETURNING n.id, n.user_id, p.seq, herald_notification_json(n, p.unread, p.unseen) AS event
    ), logged AS (
        INSERT INTO events (user_id, seq, kind, data, created_at)
        SELECT n.user_id, n.seq, 'updated', n.event::json, published_at FROM updated n
    )
    SELECT array_agg(w.id ORDER BY p.ord), array_agg(p.user_id ORDER BY p.ord),
           array_agg(p.seq ORDER BY p.ord)
    INTO out_ids, out_users, out_seqs
    FROM plan p
    JOIN (SELECT i.id, i.user_id FROM inserted i
          UNION ALL SELECT u.id, u.user_id FROM updated u) AS w ON w.user_id = p.user_id;

    -- Wake every instance's connections once this commits: the wake-up
    -- payload of src/live/wakeup.rs, from no instance (so each reads the log),
    -- 40 users per NOTIFY to stay under PostgreSQL's 8000 bytes.
    PERFORM pg_notify('herald_events',
                      '{"i":"sql","w":[' || string_agg('[' || to_json(w.u)::text || ',' || w.s || ']',
                                                       ',')
                      || ']}')
    FROM unnest(out_users, out_seqs) WITH ORDINALITY AS w(u, s, i)
    GROUP BY (w.i - 1) / 40;

    RETURN QUERY SELECT * FROM unnest(out_ids, out_users, out_seqs);
END
$$;
