//! Webhooks as the Standard Webhooks specification defines them: the
//! signing secret, the signature, which events an endpoint takes, and which
//! addresses an outbound request may reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use super::event::EventKind;

/// The prefix of a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a new secret (the specification asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// An endpoint's signing secret: `whsec_` and the base64 of its key.
#[derive(Clone)]
pub struct WebhookSecret {
    text: String,
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// A new random secret.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = vec![0u8; SECRET_BYTES];
        getrandom::fill(&mut key)?;
        Ok(Self {
            text: format!("{SECRET_PREFIX}{}", STANDARD.encode(&key)),
            key,
        })
    }

    /// A stored secret; `None` if it is not `whsec_<base64>`.
    pub fn parse(text: &str) -> Option<Self> {
        let key = STANDARD.decode(text.strip_prefix(SECRET_PREFIX)?).ok()?;
        Some(Self {
            text: text.to_owned(),
            key,
        })
    }

    /// `whsec_<base64>`, as shown to the administrator once.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The `webhook-signature` header: `v1,<base64 HMAC-SHA256 of
    /// "id.timestamp.body">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The event types an endpoint receives: some types, or `*` for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter(Vec<String>);

impl EventFilter {
    /// At least one entry, each an event type of the log or `*`; duplicates
    /// are dropped, the order kept.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        if entries.is_empty() {
            return Err("events must name at least one event type, or \"*\"".into());
        }
        let mut kept: Vec<String> = Vec::new();
        for entry in entries {
            let known = entry == "*" || EventKind::parse(entry).is_some();
            if !known {
                return Err(format!(
                    "unknown event type {entry:?} in events; use \"*\" or any of: {}",
                    event_types().join(", ")
                ));
            }
            if !kept.contains(entry) {
                kept.push(entry.clone());
            }
        }
        Ok(Self(kept))
    }

    pub fn entries(&self) -> &[String] {
        &self.0
    }
}

/// Every event type a webhook can receive (all of the log's).
pub fn event_types() -> Vec<&'static str> {
    EventKind::LOGGED
        .into_iter()
        .map(EventKind::as_str)
        .collect()
}

/// An endpoint URL: absolute, http or https, with a host, no credentials.
pub fn check_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("url is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("url must be http or https, not {:?}", url.scheme()));
    }
    if url.host().is_none() {
        return Err("url has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not carry credentials".into());
    }
    if text.len() > 2048 {
        return Err("url is longer than 2048 bytes".into());
    }
    Ok(url)
}

/// Addresses a webhook must not reach unless private URLs are allowed: this
/// machine, private and shared networks, link-local (cloud metadata),
/// unspecified, broadcast and multicast.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        // 0.0.0.0/8 and the shared address space of carrier-grade NAT.
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local fc00::/7 and link-local fe80::/10.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // IPv4-compatible (deprecated) ::a.b.c.d.
        || ip.to_ipv4().is_some_and(|v4| ip.segments()[..6] == [0; 6] && forbidden_v4(v4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_specification_example() {
        // The example of the Standard Webhooks specification.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn generated_secrets_parse_back() {
        let s = WebhookSecret::generate().unwrap();
        assert!(s.expose().starts_with("whsec_"));
        assert_eq!(WebhookSecret::parse(s.expose()).unwrap().key.len(), 32);
        assert!(WebhookSecret::parse("whsec_!!").is_none());
        assert!(WebhookSecret::parse("abc").is_none());
    }

    #[test]
    fn filters() {
        let f = EventFilter::parse(&["read".into(), "read".into(), "*".into()]).unwrap();
        assert_eq!(f.entries(), ["read", "*"]);
        assert!(EventFilter::parse(&[]).is_err());
        assert!(EventFilter::parse(&["reset".into()]).is_err());
        assert!(EventFilter::parse(&["nope".into()]).is_err());
    }

    #[test]
    fn forbidden_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls() {
        assert!(check_url("https://example.com/hook").is_ok());
        assert!(check_url("ftp://example.com/").is_err());
        assert!(check_url("example.com").is_err());
        assert!(check_url("https://u:p@example.com/").is_err());
    }
}
