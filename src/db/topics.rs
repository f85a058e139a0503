//! Topic membership, and the expansion of a publish's topics.

use sqlx::PgConnection;

/// For each part `(part, topics in the listed order)`: the subscribers of
/// its topics, each once with the first listed topic they belong to, in
/// user order by byte value. One statement for the whole batch: an index
/// range scan per topic.
pub async fn expand(
    conn: &mut PgConnection,
    parts: &[i32],
    topics: &[&str],
    positions: &[i32],
) -> Result<Vec<(i32, String, String)>, sqlx::Error> {
    sqlx::query_as(
        r#"SELECT part, user_id, topic FROM (
             SELECT DISTINCT ON (t.part, s.user_id) t.part, s.user_id, t.topic
             FROM unnest($1::int4[], $2::text[], $3::int4[]) AS t(part, topic, pos)
             JOIN topic_subscribers s ON s.topic = t.topic
             ORDER BY t.part, s.user_id, t.pos
         ) AS m
         ORDER BY part, user_id COLLATE "C""#,
    )
    .bind(parts)
    .bind(topics)
    .bind(positions)
    .fetch_all(conn)
    .await
}

/// How many distinct users `recipients` and the subscribers of `topics`
/// are, counting no further than `cap` (enough to tell a publish from a
/// broadcast).
pub async fn audience_size(
    conn: &mut PgConnection,
    recipients: &[&str],
    topics: &[&str],
    cap: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (
             SELECT DISTINCT u FROM (
                 SELECT unnest($1::text[]) AS u
                 UNION ALL
                 SELECT user_id FROM topic_subscribers WHERE topic = ANY($2::text[])
             ) AS a
             LIMIT $3
         ) AS d",
    )
    .bind(recipients)
    .bind(topics)
    .bind(cap)
    .fetch_one(conn)
    .await
}

/// Subscribes users; how many were not subscribed yet.
pub async fn subscribe(
    conn: &mut PgConnection,
    topic: &str,
    users: &[&str],
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO topic_subscribers (topic, user_id)
         SELECT $1, u FROM unnest($2::text[]) AS u ORDER BY u
         ON CONFLICT DO NOTHING",
    )
    .bind(topic)
    .bind(users)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
}

/// Unsubscribes users; how many were subscribed.
pub async fn unsubscribe(
    conn: &mut PgConnection,
    topic: &str,
    users: &[&str],
) -> Result<u64, sqlx::Error> {
    sqlx::query("DELETE FROM topic_subscribers WHERE topic = $1 AND user_id = ANY($2::text[])")
        .bind(topic)
        .bind(users)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
}

/// A topic's subscribers after `after`, ascending by byte value.
pub async fn subscribers(
    conn: &mut PgConnection,
    topic: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT user_id FROM topic_subscribers
         WHERE topic = $1 AND ($2::text IS NULL OR user_id > $2)
         ORDER BY user_id LIMIT $3",
    )
    .bind(topic)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Topics after `after` with their subscriber counts, ascending.
pub async fn topics(
    conn: &mut PgConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT topic, count(*) FROM topic_subscribers
         WHERE $1::text IS NULL OR topic > $1
         GROUP BY topic ORDER BY topic LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The topics a user belongs to, ascending.
pub async fn of_user(conn: &mut PgConnection, user: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT topic FROM topic_subscribers WHERE user_id = $1 ORDER BY topic COLLATE \"C\"",
    )
    .bind(user)
    .fetch_all(conn)
    .await
}
