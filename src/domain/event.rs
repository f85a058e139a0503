//! What the log holds and what live connections receive.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::types::Json;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Notification,
    /// A notification changed in place by its `key`; data is the whole
    /// notification.
    Updated,
    Read,
    Unread,
    Seen,
    Archived,
    Unarchived,
    Snoozed,
    /// By the user, or by the server when `until` came.
    Unsnoozed,
    Action,
    Deleted,
    /// Left the center at `expires_at`, or aged out by retention.
    Expired,
    ReadAll,
    SeenAll,
    ArchivedAll,
    DeletedAll,
    /// The user's preferences changed; data is the whole document.
    Preferences,
    /// Not in the log: what a client gets instead of its events when its
    /// resume point is unusable (see [`Event::reset`]).
    Reset,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notification => "notification",
            Self::Updated => "updated",
            Self::Read => "read",
            Self::Unread => "unread",
            Self::Seen => "seen",
            Self::Archived => "archived",
            Self::Unarchived => "unarchived",
            Self::Snoozed => "snoozed",
            Self::Unsnoozed => "unsnoozed",
            Self::Action => "action",
            Self::Deleted => "deleted",
            Self::Expired => "expired",
            Self::ReadAll => "read_all",
            Self::SeenAll => "seen_all",
            Self::ArchivedAll => "archived_all",
            Self::DeletedAll => "deleted_all",
            Self::Preferences => "preferences",
            Self::Reset => "reset",
        }
    }

    /// Every kind the log holds (all but `reset`).
    pub const LOGGED: [EventKind; 17] = [
        EventKind::Notification,
        EventKind::Updated,
        EventKind::Read,
        EventKind::Unread,
        EventKind::Seen,
        EventKind::Archived,
        EventKind::Unarchived,
        EventKind::Snoozed,
        EventKind::Unsnoozed,
        EventKind::Action,
        EventKind::Deleted,
        EventKind::Expired,
        EventKind::ReadAll,
        EventKind::SeenAll,
        EventKind::ArchivedAll,
        EventKind::DeletedAll,
        EventKind::Preferences,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::LOGGED.into_iter().find(|k| k.as_str() == s)
    }
}

/// One committed change of a user's message center. `data` is JSON text, so
/// transports frame it without parsing it again.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: i64,
    pub kind: EventKind,
    pub data: Arc<str>,
    /// When the publish request that created it arrived, if this process
    /// took it (events read from the log do not know).
    pub published_at: Option<std::time::Instant>,
}

/// `{"seq", "type", "data"}`: the frame of WebSocket and long-poll clients.
#[derive(Serialize)]
pub struct EventFrame<'a> {
    pub seq: i64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub data: &'a RawValue,
}

impl Event {
    /// The `reset` every transport sends when a resume point is unusable:
    /// reload through REST, then continue after `last_seq`. Built here only,
    /// so SSE, WebSocket and long-poll say exactly the same.
    pub fn reset(last_seq: i64, counts: Counts) -> Self {
        Self {
            seq: last_seq,
            kind: EventKind::Reset,
            data: with_counts(format!(r#"{{"last_seq":{last_seq}}}"#), counts).into(),
            published_at: None,
        }
    }

    /// [`Event::frame`] as JSON text, written directly: `data` is JSON
    /// already (serde_json wrote it) and the type is a fixed name, so
    /// nothing is parsed again; the same bytes serde_json writes.
    pub fn frame_json(&self) -> String {
        let kind = self.kind.as_str();
        let mut out = String::with_capacity(self.data.len() + kind.len() + 40);
        out.push_str("{\"seq\":");
        out.push_str(itoa_i64(self.seq).as_str());
        out.push_str(",\"type\":\"");
        out.push_str(kind);
        out.push_str("\",\"data\":");
        out.push_str(&self.data);
        out.push('}');
        out
    }

    pub fn frame(&self) -> EventFrame<'_> {
        EventFrame {
            seq: self.seq,
            kind: self.kind.as_str(),
            // `data` was produced by serde_json, so it is valid JSON.
            data: serde_json::from_str(&self.data).expect("event data is JSON"),
        }
    }
}

/// An integer's decimal digits without a heap allocation.
fn itoa_i64(n: i64) -> Digits {
    let mut digits = Digits {
        bytes: [0; 20],
        start: 20,
    };
    let negative = n < 0;
    let mut rest = n.unsigned_abs();
    loop {
        digits.start -= 1;
        digits.bytes[digits.start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if negative {
        // i64::MIN has 19 digits, so the sign still fits.
        digits.start -= 1;
        digits.bytes[digits.start] = b'-';
    }
    digits
}

struct Digits {
    bytes: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[self.start..]).expect("ASCII digits")
    }
}

/// A user's live counts: notifications in the center that are neither
/// archived nor snoozed, and not read (`unread`) or not seen (`unseen`).
/// Every event carries them as of just after itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Counts {
    pub unread: i64,
    pub unseen: i64,
}

/// Adds `"counts"` as the last member of a JSON object's text. Event data
/// is built once and stored as text, so this splices rather than reparses.
pub fn with_counts(mut object: String, counts: Counts) -> String {
    debug_assert!(object.ends_with('}'));
    object.pop();
    if !object.ends_with('{') {
        object.push(',');
    }
    object.push_str(&format!(
        r#""counts":{{"unread":{},"unseen":{}}}}}"#,
        counts.unread, counts.unseen
    ));
    object
}

/// `{"id": action id, "at": time}`: the action a user took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ActionTaken {
    pub id: String,
    pub at: DateTime<Utc>,
}

/// The notification object of the contract. It also reads back from a
/// stored row's JSON (a webhook's snapshot; unknown members are ignored),
/// so a snapshot becomes event data through the same serializer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct Notification {
    pub id: Uuid,
    pub seq: i64,
    pub title: String,
    pub body: Option<String>,
    pub category: Option<String>,
    pub data: Option<Json<Box<RawValue>>>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub seen_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    pub snoozed_until: Option<DateTime<Utc>>,
    pub actions: Json<Box<RawValue>>,
    pub action_taken: Option<Json<ActionTaken>>,
    pub key: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    pub topic: Option<String>,
}

impl Notification {
    /// Its event: `notification` when it was created, `updated` when it was
    /// changed in place; either way the whole object and the counts.
    pub fn to_event(&self, kind: EventKind, seq: i64, counts: Counts) -> Event {
        let json = serde_json::to_string(self).expect("a notification serializes");
        Event {
            seq,
            kind,
            data: with_counts(json, counts).into(),
            published_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_last() {
        let c = Counts {
            unread: 2,
            unseen: 3,
        };
        assert_eq!(
            with_counts(r#"{"id":1}"#.into(), c),
            r#"{"id":1,"counts":{"unread":2,"unseen":3}}"#
        );
        assert_eq!(
            with_counts("{}".into(), c),
            r#"{"counts":{"unread":2,"unseen":3}}"#
        );
    }
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    #[test]
    fn frame_json_is_what_serde_json_writes() {
        for seq in [0, 7, 1234567890123, i64::MAX, -1, i64::MIN] {
            for (kind, data) in [
                (
                    EventKind::Notification,
                    r#"{"id":"x","title":"T \"q\" é","n":[1,2]}"#,
                ),
                (EventKind::ReadAll, r#"{"counts":{"unread":0,"unseen":0}}"#),
            ] {
                let event = Event {
                    seq,
                    kind,
                    data: data.into(),
                    published_at: None,
                };
                assert_eq!(
                    event.frame_json(),
                    serde_json::to_string(&event.frame()).unwrap()
                );
            }
        }
    }
}
