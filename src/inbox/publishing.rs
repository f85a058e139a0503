//! What publishing takes and answers: a request of one or more parts (a
//! batch has many), each a content and who it goes to.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{
    Actions, Body, Category, NotificationData, NotificationKey, Title, TopicName, UserId,
};

#[derive(Debug, Clone)]
pub struct Content {
    pub title: Title,
    pub body: Option<Body>,
    pub category: Option<Category>,
    pub data: Option<NotificationData>,
    pub expires_at: Option<DateTime<Utc>>,
    pub actions: Actions,
    /// Update the recipient's notification with this key in place, if any.
    pub key: Option<NotificationKey>,
    /// An update in place also makes it unread, unseen and unarchived again.
    pub renotify: bool,
    /// Ignore the recipients' preferences.
    pub critical: bool,
}

#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    /// SHA-256 of the request, to tell a retry from a different request.
    pub request_hash: Vec<u8>,
}

impl IdempotencyKey {
    pub fn new(key: String, canonical_request: &[u8]) -> Self {
        Self {
            key,
            request_hash: Sha256::digest(canonical_request).to_vec(),
        }
    }

    /// The id of what a publish with this key stores for later (a
    /// schedule, a broadcast): the same for the same publisher and key, so a
    /// retry finds the first one, and unlike any other (SHA-256 of both, as
    /// a version 8 UUID).
    pub fn id_for(&self, what: &str, publisher: &UserId) -> Uuid {
        let digest = Sha256::new()
            .chain_update(b"herald.")
            .chain_update(what)
            .chain_update(b"\0")
            .chain_update(publisher.as_str())
            .chain_update(b"\0")
            .chain_update(&self.key)
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }
}

/// One notification content and its addressees.
#[derive(Debug, Clone)]
pub struct Part {
    /// Distinct recipients, in the order given.
    pub recipients: Vec<UserId>,
    /// For each recipient, the topic it was reached through, when a
    /// broadcast expanded the topics beforehand (empty: none was).
    pub via: Vec<Option<TopicName>>,
    /// Topics whose subscribers (at commit time) get it too, each user
    /// once; a user named in `recipients` gets it as a recipient.
    pub topics: Vec<TopicName>,
    pub content: Content,
}

/// Everything that commits together: one publish, one batch (all of it or
/// nothing), one chunk of a broadcast, or one schedule coming due.
#[derive(Debug)]
pub struct PublishRequest {
    /// The publishing token's subject: idempotency keys are scoped to it.
    pub publisher: UserId,
    pub idempotency: Option<IdempotencyKey>,
    pub parts: Vec<Part>,
    /// Set when this request is one chunk of a broadcast.
    pub broadcast: Option<BroadcastChunk>,
    /// Set when this request delivers a schedule: it commits only if the
    /// schedule is still scheduled, and marks it delivered.
    pub schedule: Option<Uuid>,
}

impl PublishRequest {
    /// A request of one part.
    pub fn single(publisher: UserId, part: Part) -> Self {
        Self {
            publisher,
            idempotency: None,
            parts: vec![part],
            broadcast: None,
            schedule: None,
        }
    }
}

/// A broadcast's progress, recorded in the transaction that commits the
/// chunk's notifications: the chunk and the move of the broadcast's cursor
/// commit together or not at all, so a crash never repeats or skips a chunk.
#[derive(Debug, Clone)]
pub struct BroadcastChunk {
    pub id: Uuid,
    /// The broadcast's cursor before this chunk (`None`: nothing sent yet).
    pub from: Option<String>,
    /// The last user id of this chunk: the cursor after it.
    pub to: String,
}

/// The answer to one part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub notifications: Vec<PublishedItem>,
    /// Recipients who get nothing: they turned the category off.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedItem {
    pub id: Uuid,
    pub user_id: String,
    /// The seq of its event: `notification`, or `updated` for an update in
    /// place (the notification keeps its first seq).
    pub seq: i64,
    /// Present, and true, for an update in place by `key`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub updated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub user_id: String,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    Preferences,
}

/// A part as stored for later (a schedule): plain values, checked again
/// when read back.
#[derive(Debug, Serialize, Deserialize)]
struct StoredPart {
    recipients: Vec<String>,
    topics: Vec<String>,
    title: String,
    body: Option<String>,
    category: Option<String>,
    data: Option<Box<serde_json::value::RawValue>>,
    expires_at: Option<DateTime<Utc>>,
    actions: Vec<crate::domain::Action>,
    key: Option<String>,
    renotify: bool,
    critical: bool,
}

impl Part {
    /// The part as JSON, to store.
    pub fn to_stored(&self) -> serde_json::Value {
        let c = &self.content;
        let stored = StoredPart {
            recipients: self.recipients.iter().map(|u| u.to_string()).collect(),
            topics: self.topics.iter().map(|t| t.as_str().to_owned()).collect(),
            title: c.title.as_str().to_owned(),
            body: c.body.as_ref().map(|b| b.as_str().to_owned()),
            category: c.category.as_ref().map(|c| c.as_str().to_owned()),
            data: c
                .data
                .as_ref()
                .and_then(|d| serde_json::value::RawValue::from_string(d.as_json().into()).ok()),
            expires_at: c.expires_at,
            actions: c.actions.iter().cloned().collect(),
            key: c.key.as_ref().map(|k| k.as_str().to_owned()),
            renotify: c.renotify,
            critical: c.critical,
        };
        serde_json::to_value(stored).expect("a part serializes")
    }

    /// A stored part, checked again as a publish is.
    pub fn from_stored(value: serde_json::Value) -> Result<Self, String> {
        let s: StoredPart = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let data = match s.data {
            None => None,
            Some(raw) => Some(NotificationData::parse(
                serde_json::from_str(raw.get()).map_err(|e| e.to_string())?,
            )?),
        };
        Ok(Self {
            recipients: s
                .recipients
                .iter()
                .map(|u| UserId::parse(u).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
            via: Vec::new(),
            topics: s
                .topics
                .iter()
                .map(|t| TopicName::parse(t))
                .collect::<Result<_, _>>()?,
            content: Content {
                title: Title::parse(s.title)?,
                body: s.body.map(Body::parse).transpose()?,
                category: s.category.map(Category::parse).transpose()?,
                data,
                expires_at: s.expires_at,
                actions: Actions::parse(s.actions)?,
                key: s.key.map(NotificationKey::parse).transpose()?,
                renotify: s.renotify,
                critical: s.critical,
            },
        })
    }
}
