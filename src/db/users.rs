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
use crate::domain::event::Counts;

#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Positions {
    pub last_seq: i64,
    pub purged_seq: i64,
    /// The counts at `last_seq`, for a `reset`.
    pub counts: Counts,
}

/// A user's positions, if the user is known.
pub async fn positions(
    conn: &mut PgConnection,
    user: &UserId,
) -> Result<Option<Positions>, sqlx::Error> {
    Ok(positions_many(conn, &[user.as_str()])
        .await?
        .pop()
        .flatten())
}

/// The positions of each of `users`, in their order (`None`: not known).
pub async fn positions_many(
    conn: &mut PgConnection,
    users: &[&str],
) -> Result<Vec<Option<Positions>>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        last_seq: Option<i64>,
        purged_seq: Option<i64>,
        unread: Option<i64>,
        unseen: Option<i64>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT u.last_seq, u.purged_seq, u.unread, u.unseen
         FROM unnest($1::text[]) WITH ORDINALITY AS q(user_id, i)
         LEFT JOIN users u ON u.user_id = q.user_id
         ORDER BY q.i",
    )
    .bind(users)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| match (r.last_seq, r.purged_seq) {
            (Some(last_seq), Some(purged_seq)) => Some(Positions {
                last_seq,
                purged_seq,
                counts: Counts {
                    unread: r.unread.unwrap_or_default(),
                    unseen: r.unseen.unwrap_or_default(),
                },
            }),
            _ => None,
        })
        .collect())
}

/// Records users as known (they opened a connection), so broadcasts reach them.
pub async fn ensure_known(conn: &mut PgConnection, users: &[&str]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (user_id) SELECT u FROM unnest($1::text[]) AS u ORDER BY u
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(users)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Reserves the next seq of a user, creating the user's row if there is
/// none (a bulk operation emits its event even on an empty center).
pub async fn reserve_next_seq_creating(
    conn: &mut PgConnection,
    user: &UserId,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO users (user_id, last_seq) VALUES ($1, 1)
         ON CONFLICT (user_id) DO UPDATE SET last_seq = users.last_seq + 1
         RETURNING last_seq",
    )
    .bind(user.as_str())
    .fetch_one(conn)
    .await
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
