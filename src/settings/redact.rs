//! Secrets as `herald config` shows them: whether they are set, never what
//! they are.

use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;

use super::DEVELOPMENT_SECRET;

const REDACTED: &str = "REDACTED";

pub fn secret<S: Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    let value = value.expose_secret();
    if value == DEVELOPMENT_SECRET {
        s.serialize_str("(the development secret)")
    } else if value.is_empty() {
        s.serialize_str("")
    } else {
        s.serialize_str(&format!("({REDACTED}, {} bytes)", value.len()))
    }
}

/// The URL with its password (in the user part or as a `password` query
/// parameter) replaced; the rest says where the database is.
pub fn database_url<S: Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(value.expose_secret()))
}

fn redact_url(raw: &str) -> String {
    if raw.is_empty() {
        return String::new();
    }
    let Ok(mut url) = url::Url::parse(raw) else {
        return REDACTED.to_owned();
    };
    if url.password().is_some() && url.set_password(Some(REDACTED)).is_err() {
        return REDACTED.to_owned();
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let hide = k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword");
            (
                k.into_owned(),
                if hide {
                    REDACTED.into()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    if !pairs.is_empty() {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.into()
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_leave_database_urls() {
        assert_eq!(
            redact_url("postgres://herald:s3cret@db.internal:5432/herald"),
            "postgres://herald:REDACTED@db.internal:5432/herald"
        );
        assert_eq!(
            redact_url("postgres://herald@db/herald?password=s3cret&sslmode=require"),
            "postgres://herald@db/herald?password=REDACTED&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://u@localhost/herald?host=/run/pg"),
            "postgres://u@localhost/herald?host=%2Frun%2Fpg"
        );
        assert_eq!(redact_url("not a url s3cret"), "REDACTED");
        assert_eq!(redact_url(""), "");
    }
}
