//! Topic names: what publishers address groups of users by.

/// 1–128 characters of `[A-Za-z0-9_.:-]`, so a name sits in a URL path
/// without escaping and sorts the same everywhere (by byte value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(String);

impl TopicName {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(s: &str) -> Result<Self, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
        if s.is_empty() || s.len() > Self::MAX_CHARS || !s.chars().all(allowed) {
            return Err(format!(
                "a topic name must be 1–{} characters of A–Z, a–z, 0–9, '_', '.', ':' and '-'",
                Self::MAX_CHARS
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_url_safe() {
        assert!(TopicName::parse("project:42.comments-new_x").is_ok());
        assert!(TopicName::parse("").is_err());
        assert!(TopicName::parse("a b").is_err());
        assert!(TopicName::parse("a/b").is_err());
        assert!(TopicName::parse(&"a".repeat(129)).is_err());
    }
}
