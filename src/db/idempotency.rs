//! Idempotency-Key records. A key is claimed by inserting its row inside the
//! publish transaction; a concurrent request with the same key waits on the
//! unique index until the first commits, then finds its stored answer.

use sqlx::PgConnection;
use sqlx::types::Json;

/// Inserts the keys that are free and returns the indexes (into the input)
/// of those that were; rows are taken in key order so batches cannot deadlock.
pub async fn claim(
    conn: &mut PgConnection,
    publishers: &[&str],
    keys: &[&str],
    hashes: &[Vec<u8>],
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH input AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) WITH ORDINALITY AS t(p, k, h, i)
         ), claimed AS (
             INSERT INTO idempotency_keys (publisher, key, request_hash)
             SELECT p, k, h FROM input ORDER BY p, k
             ON CONFLICT (publisher, key) DO NOTHING
             RETURNING publisher, key
         )
         SELECT input.i - 1 FROM input JOIN claimed ON claimed.publisher = input.p AND claimed.key = input.k",
    )
    .bind(publishers)
    .bind(keys)
    .bind(hashes)
    .fetch_all(conn)
    .await
}

#[derive(sqlx::FromRow)]
pub struct Stored {
    pub request_hash: Vec<u8>,
    pub response: Option<Json<serde_json::Value>>,
}

pub async fn find(
    conn: &mut PgConnection,
    publisher: &str,
    key: &str,
) -> Result<Option<Stored>, sqlx::Error> {
    sqlx::query_as(
        "SELECT request_hash, response FROM idempotency_keys WHERE publisher = $1 AND key = $2",
    )
    .bind(publisher)
    .bind(key)
    .fetch_optional(conn)
    .await
}

pub async fn store_responses(
    conn: &mut PgConnection,
    publishers: &[&str],
    keys: &[&str],
    responses: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE idempotency_keys AS k SET response = r.response::json
         FROM unnest($1::text[], $2::text[], $3::text[]) AS r(publisher, key, response)
         WHERE k.publisher = r.publisher AND k.key = r.key",
    )
    .bind(publishers)
    .bind(keys)
    .bind(responses)
    .execute(conn)
    .await
    .map(|_| ())
}
