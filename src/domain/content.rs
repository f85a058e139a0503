//! The content of a notification, with the contract's limits.

use serde_json::value::RawValue;

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// PostgreSQL stores no U+0000 in `text` or `jsonb`: refused up front, so
/// such input is invalid content rather than a database error.
fn refuse_nul(field: &str, s: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err(format!("{field} must not contain U+0000"));
    }
    Ok(())
}

fn has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub const MAX_CHARS: usize = 256;

    pub fn parse(s: String) -> Result<Self, String> {
        refuse_nul("title", &s)?;
        match char_len(&s) {
            0 => Err("title must not be empty".into()),
            n if n > Self::MAX_CHARS => Err(format!(
                "title is longer than {} characters",
                Self::MAX_CHARS
            )),
            _ => Ok(Self(s)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body(String);

impl Body {
    pub const MAX_CHARS: usize = 4096;

    pub fn parse(s: String) -> Result<Self, String> {
        refuse_nul("body", &s)?;
        if char_len(&s) > Self::MAX_CHARS {
            return Err(format!(
                "body is longer than {} characters",
                Self::MAX_CHARS
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A category: 1–64 characters, so clients can filter and style by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category(String);

impl Category {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(s: String) -> Result<Self, String> {
        refuse_nul("category", &s)?;
        match char_len(&s) {
            0 => Err("category must not be empty".into()),
            n if n > Self::MAX_CHARS => Err(format!(
                "category is longer than {} characters",
                Self::MAX_CHARS
            )),
            _ => Ok(Self(s)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free-form data attached to a notification: a JSON object of at most
/// 16 KiB, kept as its JSON text.
#[derive(Debug, Clone)]
pub struct NotificationData(Box<RawValue>);

impl NotificationData {
    pub const MAX_BYTES: usize = 16 * 1024;

    pub fn parse(value: serde_json::Value) -> Result<Self, String> {
        if !value.is_object() {
            return Err("data must be a JSON object".into());
        }
        if has_nul(&value) {
            return Err("data must not contain U+0000 in any string or key".into());
        }
        let text = serde_json::to_string(&value).map_err(|e| e.to_string())?;
        if text.len() > Self::MAX_BYTES {
            return Err(format!("data is larger than {} bytes", Self::MAX_BYTES));
        }
        RawValue::from_string(text)
            .map(Self)
            .map_err(|e| e.to_string())
    }

    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// The form notifications carry when serialized.
    pub fn to_raw(&self) -> sqlx::types::Json<Box<RawValue>> {
        sqlx::types::Json(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_counts_characters_not_bytes() {
        assert!(Title::parse("é".repeat(256)).is_ok());
        assert!(Title::parse("é".repeat(257)).is_err());
        assert!(Title::parse(String::new()).is_err());
    }

    #[test]
    fn data_must_be_a_small_object() {
        assert!(NotificationData::parse(serde_json::json!({"a": 1})).is_ok());
        assert!(NotificationData::parse(serde_json::json!([1])).is_err());
        let big = "x".repeat(NotificationData::MAX_BYTES);
        assert!(NotificationData::parse(serde_json::json!({ "a": big })).is_err());
    }
}
