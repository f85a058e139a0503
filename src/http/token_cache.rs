//! Tokens verified once, not on every request.
//!
//! A publisher sends thousands of requests with one token; checking its
//! signature and claims each time was a tenth of a publish's instructions.
//! Only successful verifications are kept, and each for at most
//! [`MAX_AGE`] and never past the token's `exp`: a token that has expired
//! is verified again (and refused), and a key that changes (a new secret, a
//! rotated key set) stops being trusted for a cached token within
//! [`MAX_AGE`] at most, or at once when its owner calls [`TokenCache::clear`].
//! A refusal is never kept, `KeysUnavailable` included: it passes when the
//! key set arrives.
//!
//! The cache never holds a token: entries are found by a keyed 128-bit
//! hash of it, with keys drawn at random when the process starts, so no
//! one can make up a token whose hash matches a cached one. Nothing here
//! logs.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::http::auth::{AuthError, Principal, Verifier};

/// The longest a verification is trusted without checking again.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// The most tokens kept; beyond it, the expired ones are dropped and, if
/// that was not enough, all of them (a flood of distinct valid tokens is
/// then verified as if there were no cache).
pub const MAX_ENTRIES: usize = 10_000;

pub struct TokenCache {
    keys: [(u64, u64); 2],
    entries: Mutex<HashMap<u128, Entry>>,
}

struct Entry {
    principal: Principal,
    /// The earlier of verification + [`MAX_AGE`] and `exp`.
    until: Instant,
}

impl TokenCache {
    pub fn new() -> anyhow::Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8"));
        Ok(Self {
            keys: [(word(0), word(1)), (word(2), word(3))],
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// SipHash-2-4 under two independent random keys: a 128-bit PRF of the
    /// token. (std's `SipHasher` is deprecated only in favour of a hasher
    /// that cannot be given keys, which this needs.)
    #[allow(deprecated)]
    fn key(&self, token: &str) -> u128 {
        let hash = |(k0, k1): (u64, u64)| {
            let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
            h.write(token.as_bytes());
            h.finish()
        };
        (hash(self.keys[0]) as u128) << 64 | hash(self.keys[1]) as u128
    }

    /// `verifier.verify(token)`, from the cache while it may be trusted.
    pub async fn verify(&self, verifier: &Verifier, token: &str) -> Result<Principal, AuthError> {
        let key = self.key(token);
        let now = Instant::now();
        if let Some(entry) = self.entries.lock().expect("not poisoned").get(&key)
            && entry.until > now
        {
            return Ok(entry.principal.clone());
        }
        let principal = verifier.verify(token).await?;
        // To the millisecond: an entry ends no later than `exp` itself.
        let to_exp = principal.expires_at * 1000 - chrono::Utc::now().timestamp_millis();
        if to_exp > 0 {
            let until = now + MAX_AGE.min(Duration::from_millis(to_exp as u64));
            let mut entries = self.entries.lock().expect("not poisoned");
            if entries.len() >= MAX_ENTRIES {
                entries.retain(|_, e| e.until > now);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(
                key,
                Entry {
                    principal: principal.clone(),
                    until,
                },
            );
        }
        Ok(principal)
    }

    /// Forgets every verification, e.g. when the keys that made them change.
    pub fn clear(&self) {
        self.entries.lock().expect("not poisoned").clear();
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("not poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::auth::{Scope, Signer};

    fn setup() -> (Verifier, Signer) {
        let settings = crate::settings::Settings::load_with(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
            std::iter::empty::<(String, String)>(),
        )
        .expect("settings");
        (
            Verifier::from_settings(&settings).expect("verifier"),
            Signer::from_settings(&settings.auth).expect("signer"),
        )
    }

    #[tokio::test]
    async fn a_token_is_kept_once_verified_and_others_are_not_mistaken_for_it() {
        let (verifier, signer) = setup();
        let cache = TokenCache::new().unwrap();
        let a = signer.token_for("alice", &[Scope::Publish], 600).unwrap();
        let b = signer.token_for("bob", &[], 600).unwrap();
        assert_eq!(
            cache.verify(&verifier, &a).await.unwrap().user.as_str(),
            "alice"
        );
        assert_eq!(cache.len(), 1);
        let again = cache.verify(&verifier, &a).await.unwrap();
        assert!(again.publish && again.user.as_str() == "alice");
        assert_eq!(cache.len(), 1);
        let bob = cache.verify(&verifier, &b).await.unwrap();
        assert!(!bob.publish && bob.user.as_str() == "bob");
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn a_refused_token_is_not_kept_and_a_tampered_one_is_still_refused() {
        let (verifier, signer) = setup();
        let cache = TokenCache::new().unwrap();
        let good = signer.token_for("alice", &[], 600).unwrap();
        cache.verify(&verifier, &good).await.unwrap();
        let mut tampered = good.clone();
        tampered.pop();
        tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
        assert!(cache.verify(&verifier, &tampered).await.is_err());
        let expired = signer.token_for("alice", &[], -3600).unwrap();
        assert!(cache.verify(&verifier, &expired).await.is_err());
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn an_entry_never_outlives_exp() {
        let (verifier, signer) = setup();
        let cache = TokenCache::new().unwrap();
        // Expires within the leeway: accepted by the verifier, not kept.
        let past = signer.token_for("alice", &[], -5).unwrap();
        assert!(cache.verify(&verifier, &past).await.is_ok());
        assert!(cache.is_empty());
        let soon = signer.token_for("alice", &[], 2).unwrap();
        cache.verify(&verifier, &soon).await.unwrap();
        let key = cache.key(&soon);
        let until = cache.entries.lock().unwrap()[&key].until;
        assert!(until <= Instant::now() + Duration::from_secs(2));
        cache.clear();
        assert!(cache.is_empty());
    }
}
