use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

/// A user id: 1–128 bytes of UTF-8 without control characters (PostgreSQL
/// text cannot hold NUL, and control characters have no business in ids).
/// Cheap to clone: live connections and wake-ups share it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(Arc<str>);

impl UserId {
    pub const MAX_BYTES: usize = 128;

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > Self::MAX_BYTES {
            return Err(format!(
                "a user id must be 1 to {} bytes long",
                Self::MAX_BYTES
            ));
        }
        if s.chars().any(char::is_control) {
            return Err("a user id must not contain control characters".into());
        }
        Ok(Self(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Owned: an escaped JSON string cannot be borrowed.
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_odd_but_printable_ids() {
        for ok in ["a", "ü/%20..", &"x".repeat(128), "名前"] {
            assert_eq!(UserId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_empty_long_and_control() {
        for bad in ["", &"x".repeat(129), "a\0b", "a\nb"] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
