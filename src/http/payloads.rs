//! Request bodies that more than one route takes, parsed into the engine's
//! types: a publish and a broadcast share the notification content.

use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

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

/// Bodies larger than this are decoded on the blocking pool. Decoding and
/// checking a body of megabytes (10,000 recipients, or a `data` of 150,000
/// keys that is then refused) takes tens of milliseconds; on an HTTP worker
/// it would hold up every other request that worker serves.
const DECODE_INLINE_MAX: usize = 64 * 1024;

/// Runs `decode` on a JSON body whose syntax the extractor has checked, on
/// the blocking pool when the body is large. `decode` also drops what it
/// built there, which for a large body costs as much again.
pub async fn decode<T, F>(raw: Box<RawValue>, decode: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&str) -> Result<T, ApiError> + Send + 'static,
{
    if raw.get().len() <= DECODE_INLINE_MAX {
        return decode(raw.get());
    }
    tokio::task::spawn_blocking(move || decode(raw.get()))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("decoding a body failed: {e}")))?
}

/// The body as a JSON value, answered as the JSON extractor answers: a
/// value that cannot be represented (a number out of range, nesting over
/// the limit) is malformed JSON here too.
pub fn json_value(text: &str) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            ApiError::Unprocessable(e.to_string())
        } else {
            ApiError::BadRequest(format!("the body is not valid JSON: {e}"))
        }
    })
}
