//! The writer (and the readers) of the per-user log: publishing with group
//! commit, chunked broadcasts, the state changes a user makes, and the
//! consistent reads a client resumes from.
//!
//! Every change takes the user's next seq under the user's counter-row lock
//! and appends its event in the same transaction, which also queues the
//! NOTIFY that wakes other instances. After the commit, this process's
//! connections are woken through `live`.
//!
//! Owns: the rules of a message center. It may use `db`, `live` (to wake
//! connections), `domain` and `settings`; never HTTP.

mod batch_write;
pub mod broadcaster;
pub mod changes;
mod error;
pub mod group_commit;
pub mod preferences;
pub mod publishing;
pub mod reads;
pub mod schedules;
mod timers;
pub mod webhooks;

use std::sync::Arc;

use sqlx::PgPool;

use crate::live::Hub;

pub use error::InboxError;

/// What a user's own changes and reads need: the database, this process's
/// hub (to wake its connections after a commit) and this instance's id (so
/// other instances know it has woken its own).
#[derive(Clone)]
pub struct Inbox {
    pool: PgPool,
    hub: Arc<Hub>,
    instance: Arc<str>,
}

impl Inbox {
    pub fn new(pool: PgPool, hub: Arc<Hub>, instance: &str) -> Self {
        Self {
            pool,
            hub,
            instance: instance.into(),
        }
    }
}
