//! What can go wrong when writing or reading a user's log. The HTTP layer
//! turns each variant into its problem+json answer.

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The thing named does not exist for this user.
    #[error("{0}")]
    NotFound(&'static str),
    /// The request conflicts with what was stored before (an idempotency key
    /// reused with another body, a broadcast chunk already sent).
    #[error("{0}")]
    Rejected(&'static str),
    /// The request asks for something the rules do not allow (a snooze
    /// in the past, a position beyond the user's log).
    #[error("{0}")]
    Invalid(String),
    /// The request lost a race that only one may win (a second action).
    #[error("{0}")]
    Conflict(&'static str),
    /// The database cannot be reached now; retrying later may work.
    #[error("the database is unavailable; retry later")]
    Unavailable,
    /// The service is stopping and takes no more work.
    #[error("the service is shutting down")]
    ShuttingDown,
    /// Anything else: a bug or a database fault. The cause is for the log.
    #[error("{0}")]
    Failed(Arc<str>),
}

impl From<sqlx::Error> for InboxError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            Self::Unavailable
        } else {
            Self::Failed(e.to_string().into())
        }
    }
}
