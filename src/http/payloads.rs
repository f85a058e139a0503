//! Request bodies that more than one route takes, parsed into the engine's
//! types: a publish and a broadcast share the notification content.

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::domain::{
    Action, Actions, Body, Category, NotificationData, NotificationKey, Title, TopicName,
};
use crate::http::error::ApiError;
use crate::inbox::publishing::Content;

/// The body of a publish, and (without `recipients`) of a broadcast.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationBody {
    /// `Some(None)`: present as `null` (a broadcast refuses the member
    /// whatever its value).
    #[serde(default, deserialize_with = "present")]
    pub recipients: Option<Option<Vec<String>>>,
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    category: Option<String>,
    /// Kept as text until its size is known: a `data` of megabytes is
    /// refused without building its tree.
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    actions: Option<Vec<ActionBody>>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    renotify: Option<bool>,
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    #[serde(default)]
    critical: Option<bool>,
    #[serde(default)]
    pub deliver_at: Option<String>,
}

/// One of `actions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    id: String,
    label: String,
    #[serde(default)]
    url: Option<String>,
}

/// A member that is present, `null` included.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The most topics one publish may name.
pub const MAX_TOPICS: usize = 10;

/// How far ahead a publish may be scheduled.
pub const MAX_SCHEDULE_DAYS: i64 = 365;

impl NotificationBody {
    /// `topics`, checked: 1–10 valid names when present.
    pub fn topics(&mut self) -> Result<Vec<TopicName>, ApiError> {
        let Some(raw) = self.topics.take() else {
            return Ok(Vec::new());
        };
        if raw.is_empty() || raw.len() > MAX_TOPICS {
            return Err(ApiError::Unprocessable(format!(
                "topics must list 1 to {MAX_TOPICS} topic names"
            )));
        }
        let mut topics: Vec<TopicName> = Vec::with_capacity(raw.len());
        for (i, name) in raw.iter().enumerate() {
            let topic = TopicName::parse(name)
                .map_err(|e| ApiError::Unprocessable(format!("topics[{i}]: {e}")))?;
            // A repeated topic adds nobody.
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        Ok(topics)
    }

    /// `deliver_at`, checked: `Some` only when it is in the future (at most
    /// 365 days ahead); one in the past or now means at once.
    pub fn deliver_at(&mut self) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(raw) = self.deliver_at.take() else {
            return Ok(None);
        };
        let t = DateTime::parse_from_rfc3339(&raw)
            .map_err(|e| {
                ApiError::Unprocessable(format!("deliver_at must be an RFC 3339 date-time: {e}"))
            })?
            .with_timezone(&Utc);
        let now = Utc::now();
        if t > now + chrono::Duration::days(MAX_SCHEDULE_DAYS) {
            return Err(ApiError::Unprocessable(format!(
                "deliver_at must be at most {MAX_SCHEDULE_DAYS} days ahead"
            )));
        }
        Ok((t > now).then(|| t.trunc_subsecs(6)))
    }

    /// The notification content, validated: `expires_at` must lie after
    /// `not_before` (now, or when a schedule delivers it).
    pub fn content(self) -> Result<Content, ApiError> {
        self.content_after(Utc::now())
    }

    pub fn content_after(self, not_before: DateTime<Utc>) -> Result<Content, ApiError> {
        let invalid = ApiError::Unprocessable;
        let expires_at = match self.expires_at {
            None => None,
            Some(raw) => {
                let t = DateTime::parse_from_rfc3339(&raw)
                    .map_err(|e| invalid(format!("expires_at must be an RFC 3339 date-time: {e}")))?
                    .with_timezone(&Utc);
                if t <= not_before {
                    return Err(invalid(if not_before > Utc::now() {
                        "expires_at must be after deliver_at".into()
                    } else {
                        "expires_at must be in the future".into()
                    }));
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
        let actions = self
            .actions
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                Action::parse(a.id, a.label, a.url)
                    .map_err(|e| invalid(format!("actions[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key = self
            .key
            .map(NotificationKey::parse)
            .transpose()
            .map_err(invalid)?;
        let renotify = self.renotify.unwrap_or(false);
        if renotify && key.is_none() {
            return Err(invalid(
                "renotify needs a key: it applies to an update in place".into(),
            ));
        }
        Ok(Content {
            critical: self.critical.unwrap_or(false),
            actions: Actions::parse(actions).map_err(invalid)?,
            key,
            renotify,
            title: Title::parse(self.title).map_err(invalid)?,
            body: self.body.map(Body::parse).transpose().map_err(invalid)?,
            category: self
                .category
                .map(Category::parse)
                .transpose()
                .map_err(invalid)?,
            data: match self.data {
                None => None,
                Some(raw) => data(&raw)?,
            },
            expires_at,
        })
    }
}

/// `data` as sent, checked. Its limit is on the compact form
/// ([`NotificationData::MAX_BYTES`]); whitespace and escapes aside, a text
/// of more than four times that cannot be within it, and is refused before
/// it is parsed.
fn data(raw: &RawValue) -> Result<Option<NotificationData>, ApiError> {
    let invalid = ApiError::Unprocessable;
    let text = raw.get();
    if text == "null" {
        return Ok(None);
    }
    if text.len() > 4 * NotificationData::MAX_BYTES {
        return Err(invalid(format!(
            "data is larger than {} bytes",
            NotificationData::MAX_BYTES
        )));
    }
    NotificationData::parse(json_value(text)?)
        .map(Some)
        .map_err(invalid)
}

/// A notification body read straight from the request's text, answered as
/// the JSON extractor answers: a value that cannot be represented (a number
/// out of range) is malformed JSON, anything else wrong is invalid content.
pub fn notification_body(text: &str) -> Result<NotificationBody, ApiError> {
    serde_json::from_str(text)
        .map(|Object(body)| body)
        .map_err(|e| {
            if e.is_data() {
                ApiError::Unprocessable(e.to_string())
            } else {
                ApiError::BadRequest(format!("the body is not valid JSON: {e}"))
            }
        })
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
    // As many at a time as there are cores: more would only add threads,
    // each with its own allocator arena, for the same CPU.
    static LARGE: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let permits = std::thread::available_parallelism().map_or(2, |n| n.get());
    let _turn = LARGE
        .get_or_init(|| tokio::sync::Semaphore::new(permits))
        .acquire()
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("decoding a body failed: {e}")))?;
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

/// An optional JSON body: none (or an empty one) is `None`; one that is
/// there must be JSON, and is answered as the JSON extractor answers.
pub fn optional_json<T: serde::de::DeserializeOwned>(
    req: &actix_web::HttpRequest,
    body: &[u8],
) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<actix_web::mime::Mime>().ok())
        .is_some_and(|m| {
            m.subtype() == actix_web::mime::JSON || m.suffix() == Some(actix_web::mime::JSON)
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "the body must be sent as `Content-Type: application/json`".into(),
        ));
    }
    serde_json::from_slice(body)
        .map(|Object(t)| Some(t))
        .map_err(|e| {
            if e.is_data() {
                ApiError::Unprocessable(e.to_string())
            } else {
                ApiError::BadRequest(format!("the body is not valid JSON: {e}"))
            }
        })
}

/// A request body that must be a JSON object. serde reads a struct from an
/// array too, member by member in order (`[["u"], "title"]` would be a
/// publish); wrapped in this, anything but an object is invalid content.
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Members<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Members(std::marker::PhantomData))
            .map(Object)
    }
}
