//! The per-user row: sequence counter and retention horizon.
//!
//! Why a per-user counter row: a connection that has delivered seq N reads
//! "seq > N" next time. With a global sequence, a transaction that drew 41
//! could commit after one that drew 42 had been delivered, and a client at 42
//! would never see 41. Here every change of a user's log increments
//! `users.last_seq` first, and that row lock is held until commit, so the
//! user's changes commit one after another in seq order: when seq N is
//! visible, every smaller seq of that user is visible too. Rolled-back
//! transactions give their number back, so seqs stay dense in practice; the
//! contract still lets clients rely only on order and uniqueness. Publishing
//! reserves seqs in the statement that inserts the notifications
//! (`db::notifications::publish_batch`).

use sqlx::PgConnection;

use crate::domain::UserId;

#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Positions {
    pub last_seq: i64,
    pub purged_seq: i64,
}

pub async fn positions(
    conn: &mut PgConnection,
    user: &UserId,
) -> Result<Option<Positions>, sqlx::Error> {
    sqlx::query_as("SELECT last_seq, purged_seq FROM users WHERE user_id = $1")
        .bind(user.as_str())
        .fetch_optional(conn)
        .await
}

/// Records a user as known (they opened a connection), so broadcasts reach them.
pub async fn ensure_known(conn: &mut PgConnection, user: &UserId) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO users (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING")
        .bind(user.as_str())
        .execute(conn)
        .await
        .map(|_| ())
}

/// Reserves the next seq of an existing user (a state change of one of their
/// notifications). `None` if the user has no row.
pub async fn reserve_next_seq(
    conn: &mut PgConnection,
    user: &UserId,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE users SET last_seq = last_seq + 1 WHERE user_id = $1 RETURNING last_seq",
    )
    .bind(user.as_str())
    .fetch_optional(conn)
    .await
}
