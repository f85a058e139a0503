//! Action buttons and update keys: what a publisher may attach to a
//! notification, with the contract's limits.

use serde::{Deserialize, Serialize};

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// The id of an action: 1–64 characters of `[A-Za-z0-9_.-]`, so it can sit
/// in a URL path (`/actions/{action_id}`) without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionId(String);

impl ActionId {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(s: String) -> Result<Self, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if s.is_empty() || s.len() > Self::MAX_CHARS || !s.chars().all(allowed) {
            return Err(format!(
                "an action id must be 1–{} characters of A–Z, a–z, 0–9, '_', '.' and '-'",
                Self::MAX_CHARS
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One button: `{"id", "label", "url"}`. The URL, when there is one, is an
/// absolute http(s) URL: a `javascript:` or `data:` URL rendered as a link
/// would run in the page of whoever clicks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub id: ActionId,
    // In the order PostgreSQL's jsonb keeps members (shorter keys first),
    // so an action reads the same live and from the database.
    pub url: Option<String>,
    pub label: String,
}

impl Action {
    pub const MAX_LABEL_CHARS: usize = 64;
    pub const MAX_URL_BYTES: usize = 2048;

    pub fn parse(id: String, label: String, url: Option<String>) -> Result<Self, String> {
        let id = ActionId::parse(id)?;
        if label.contains('\0') || !(1..=Self::MAX_LABEL_CHARS).contains(&char_len(&label)) {
            return Err(format!(
                "an action label must be 1–{} characters without U+0000",
                Self::MAX_LABEL_CHARS
            ));
        }
        let url = match url {
            None => None,
            Some(u) => {
                if u.len() > Self::MAX_URL_BYTES {
                    return Err(format!(
                        "an action url is longer than {} bytes",
                        Self::MAX_URL_BYTES
                    ));
                }
                let parsed = url::Url::parse(&u)
                    .map_err(|e| format!("an action url must be an absolute URL: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
                    return Err("an action url must be an absolute http or https URL".into());
                }
                // Stored as parsed: spaces and non-ASCII percent-encoded, the
                // host in its ASCII form, so clients get a well-formed URI.
                let normal = String::from(parsed);
                if normal.len() > Self::MAX_URL_BYTES {
                    return Err(format!(
                        "an action url is longer than {} bytes once encoded",
                        Self::MAX_URL_BYTES
                    ));
                }
                Some(normal)
            }
        };
        Ok(Self { id, url, label })
    }
}

/// The buttons of a notification: at most 3, ids unique among them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Actions(Vec<Action>);

impl Actions {
    pub const MAX: usize = 3;

    pub fn parse(actions: Vec<Action>) -> Result<Self, String> {
        if actions.len() > Self::MAX {
            return Err(format!("at most {} actions are allowed", Self::MAX));
        }
        for (i, a) in actions.iter().enumerate() {
            if actions[..i].iter().any(|b| b.id == a.id) {
                return Err(format!("action id {:?} is used twice", a.id.as_str()));
            }
        }
        Ok(Self(actions))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Action> {
        self.0.iter()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|a| a.id.as_str() == id)
    }

    /// The JSON stored in the `actions` column.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("actions serialize")
    }
}

/// A publisher's key for updates in place: 1–128 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NotificationKey(String);

impl NotificationKey {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(s: String) -> Result<Self, String> {
        if s.contains('\0') || !(1..=Self::MAX_CHARS).contains(&char_len(&s)) {
            return Err(format!(
                "key must be 1–{} characters without U+0000",
                Self::MAX_CHARS
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(id: &str, url: Option<&str>) -> Result<Action, String> {
        Action::parse(id.into(), "Open".into(), url.map(Into::into))
    }

    #[test]
    fn only_http_urls_are_accepted() {
        assert!(action("open", Some("https://example.com/x")).is_ok());
        assert!(action("open", Some("http://example.com")).is_ok());
        assert!(action("open", None).is_ok());
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "/relative",
            "mailto:a@b.c",
            "https:",
        ] {
            assert!(action("open", Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_url_safe_and_unique() {
        assert!(action("a b", None).is_err());
        assert!(action("", None).is_err());
        assert!(action(&"a".repeat(65), None).is_err());
        let a = action("ok", None).unwrap();
        assert!(Actions::parse(vec![a.clone(), a.clone()]).is_err());
        assert!(Actions::parse(vec![a.clone(); 4]).is_err());
        assert!(Actions::parse(vec![a]).is_ok());
    }
}
