//! A user's preferences: which categories they want. Setting one is an
//! event of the user's log (`preferences`, carrying the whole document), so
//! every device's settings follow live, and publishing reads them under the
//! same row lock (`db::publish`).

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::db;
use crate::domain::event::{Counts, EventKind};
use crate::domain::{Category, UserId};
use crate::inbox::changes::commit_change;
use crate::inbox::{Inbox, InboxError};

/// `{"categories": {"<category>": {"enabled": bool}}}`: the categories the
/// user has set; every other one is enabled.
#[derive(Debug, Serialize)]
pub struct Preferences {
    pub categories: Map<String, Value>,
}

fn document(stored: Map<String, Value>) -> Preferences {
    let categories = stored
        .into_iter()
        .map(|(category, enabled)| (category, json!({ "enabled": enabled })))
        .collect();
    Preferences { categories }
}

impl Inbox {
    pub async fn preferences(&self, user: &UserId) -> Result<Preferences, InboxError> {
        let mut conn = self.pool.acquire().await?;
        Ok(document(
            db::preferences::get(&mut conn, user.as_str()).await?,
        ))
    }

    /// Sets one category on or off and emits `preferences` with the whole
    /// document.
    pub async fn set_preference(
        &self,
        user: &UserId,
        category: &Category,
        enabled: bool,
    ) -> Result<Preferences, InboxError> {
        let mut tx = self.pool.begin().await?;
        let seq = db::users::reserve_next_seq_creating(&mut tx, user).await?;
        let stored =
            db::preferences::set(&mut tx, user.as_str(), category.as_str(), enabled).await?;
        let (_, counts): (i64, Counts) = db::notifications::summary(&mut tx, user).await?;
        let preferences = document(stored);
        let data = serde_json::to_value(&preferences).expect("serializes");
        commit_change(self, tx, user, seq, EventKind::Preferences, data, counts).await?;
        Ok(preferences)
    }
}
