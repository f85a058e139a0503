//! Request bodies that more than one route takes, parsed into the engine's
//! types: a publish and a broadcast share the notification content.

use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

use crate::domain::{Body, Category, NotificationData, Title};
use crate::http::error::ApiError;
use crate::inbox::group_commit::Content;

/// The body of a publish, and (without `recipients`) of a broadcast.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationBody {
    #[serde(default)]
    pub recipients: Option<Vec<String>>,
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    expires_at: Option<String>,
}

impl NotificationBody {
    /// The notification content, validated.
    pub fn content(self) -> Result<Content, ApiError> {
        let invalid = ApiError::Unprocessable;
        let expires_at = match self.expires_at {
            None => None,
            Some(raw) => {
                let t = DateTime::parse_from_rfc3339(&raw)
                    .map_err(|e| invalid(format!("expires_at must be an RFC 3339 date-time: {e}")))?
                    .with_timezone(&Utc);
                if t <= Utc::now() {
                    return Err(invalid("expires_at must be in the future".into()));
                }
                // Later ones cannot be written back as RFC 3339 (the year
                // would need five digits).
                if t.year() > 9999 {
                    return Err(invalid(
                        "expires_at must be before the year 10000 (UTC)".into(),
                    ));
                }
                Some(t)
            }
        };
        Ok(Content {
            title: Title::parse(self.title).map_err(invalid)?,
            body: self.body.map(Body::parse).transpose().map_err(invalid)?,
            category: self
                .category
                .map(Category::parse)
                .transpose()
                .map_err(invalid)?,
            data: match self.data {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(NotificationData::parse(v).map_err(invalid)?),
            },
            expires_at,
        })
    }
}
