//! A user's preferences: `{"<category>": enabled}` on the user's row.

use sqlx::PgConnection;
use sqlx::types::Json;

/// The user's preferences (empty for an unknown user).
pub async fn get(
    conn: &mut PgConnection,
    user: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, sqlx::Error> {
    let row: Option<Json<serde_json::Map<String, serde_json::Value>>> =
        sqlx::query_scalar("SELECT preferences FROM users WHERE user_id = $1")
            .bind(user)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|j| j.0).unwrap_or_default())
}

/// Sets one category, under the user's row lock (taken by the caller with
/// `users::reserve_next_seq_creating`); returns the whole document.
pub async fn set(
    conn: &mut PgConnection,
    user: &str,
    category: &str,
    enabled: bool,
) -> Result<serde_json::Map<String, serde_json::Value>, sqlx::Error> {
    let Json(doc): Json<serde_json::Map<String, serde_json::Value>> = sqlx::query_scalar(
        "UPDATE users SET preferences = preferences || jsonb_build_object($2::text, $3::bool)
         WHERE user_id = $1 RETURNING preferences",
    )
    .bind(user)
    .bind(category)
    .bind(enabled)
    .fetch_one(conn)
    .await?;
    Ok(doc)
}
