//! An identity provider's signing keys (a JWKS, RFC 7517), fetched from
//! `auth.jwks_url` and cached.
//!
//! The set is refreshed in the background when its `Cache-Control` lifetime
//! ends (held to `auth.jwks_cache_min_secs`..`auth.jwks_cache_max_secs`), and
//! on demand when a token names a `kid` the set lacks: a key rotated in at
//! the provider works without a restart. That demand refetch happens at
//! most once per `auth.jwks_refetch_secs`, so tokens with made-up `kid`s
//! cannot turn this service into a flood against the provider.
//!
//! A failed fetch, or an answer that is no usable key set, keeps the last
//! good keys; without any, requests that need a key answer 503 until a
//! background retry succeeds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::settings::AuthSettings;

/// A fetch that takes longer has failed (requests may be waiting on it).
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Key sets are a few KiB; a larger answer is not one.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Retries after failed fetches back off from 1 s to this (or to
/// `auth.jwks_cache_min_secs` if less).
const MAX_RETRY: Duration = Duration::from_secs(30);

/// One usable key: the algorithm tokens signed with it must name.
pub struct Key {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// What the set says about a `kid`.
pub enum Lookup {
    Found(Arc<Key>),
    /// The set (as last fetched) has no usable key with this `kid`.
    Unknown,
    /// No key set has been fetched yet; the next attempt is in about this
    /// many seconds.
    Unavailable {
        retry_after: u64,
    },
}

#[derive(Clone)]
pub struct Jwks {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    client: reqwest::Client,
    timing: Timing,
    state: RwLock<State>,
    /// Held while fetching: concurrent refreshes wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
    /// When a token's unknown `kid` last caused a fetch.
    last_demand: Mutex<Option<Instant>>,
}

struct Timing {
    default: Duration,
    min: Duration,
    max: Duration,
    refetch: Duration,
}

struct State {
    /// `None` until a fetch succeeds.
    keys: Option<Arc<HashMap<String, Arc<Key>>>>,
    /// Bumped by every completed fetch, good or bad.
    generation: u64,
    failures: u32,
    /// When the background task fetches next.
    next_fetch: Instant,
}

/// Why a fetch gave no keys (the metric's `outcome` label).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("the request failed: {0}")]
    Unreachable(String),
    #[error("the answer is HTTP {0}")]
    Status(u16),
    #[error("the answer is not a usable key set: {0}")]
    Invalid(String),
}

impl FetchError {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Status(_) => "status",
            Self::Invalid(_) => "invalid",
        }
    }
}

impl Jwks {
    /// The key set of `auth.jwks_url`; nothing is fetched until [`Jwks::run`].
    pub fn new(s: &AuthSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // The configured URL is the key set; a redirect elsewhere
            // (perhaps to plain http) is not followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                url: s.jwks_url.clone(),
                client,
                timing: Timing {
                    default: Duration::from_secs(s.jwks_cache_secs),
                    min: Duration::from_secs(s.jwks_cache_min_secs),
                    max: Duration::from_secs(s.jwks_cache_max_secs),
                    refetch: Duration::from_secs(s.jwks_refetch_secs),
                },
                state: RwLock::new(State {
                    keys: None,
                    generation: 0,
                    failures: 0,
                    next_fetch: Instant::now(),
                }),
                fetching: tokio::sync::Mutex::new(()),
                last_demand: Mutex::new(None),
            }),
        })
    }

    /// Fetches the set now, then whenever its lifetime ends or a retry is
    /// due, until `shutdown` (which also ends a fetch under way).
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let due = self.read().next_fetch;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.fetch_when_due(due) => {}
            }
        }
    }

    async fn fetch_when_due(&self, due: Instant) {
        tokio::time::sleep_until(due).await;
        let _fetching = self.inner.fetching.lock().await;
        // A fetch on demand may have moved the time meanwhile.
        if Instant::now() >= self.read().next_fetch {
            self.fetch_locked().await;
        }
    }

    /// The key `kid` names, refetching the set first if it lacks it (or has
    /// no keys yet) and the last such refetch is long enough ago.
    pub async fn key(&self, kid: &str) -> Lookup {
        let generation = match self.lookup(kid) {
            (Lookup::Found(key), _) => return Lookup::Found(key),
            (_, generation) => generation,
        };
        {
            let _fetching = self.inner.fetching.lock().await;
            // A fetch that ended while this waited is as fresh as one now;
            // the very first fetch is owed anyway and claims nothing.
            if self.read().generation == generation && (generation == 0 || self.claim_demand()) {
                self.fetch_locked().await;
            }
        }
        self.lookup(kid).0
    }

    fn lookup(&self, kid: &str) -> (Lookup, u64) {
        let state = self.read();
        let lookup = match &state.keys {
            Some(keys) => match keys.get(kid) {
                Some(key) => Lookup::Found(Arc::clone(key)),
                None => Lookup::Unknown,
            },
            None => Lookup::Unavailable {
                retry_after: state
                    .next_fetch
                    .saturating_duration_since(Instant::now())
                    .as_secs()
                    .max(1),
            },
        };
        (lookup, state.generation)
    }

    /// Whether a fetch on demand may happen now (and if so, records it).
    fn claim_demand(&self) -> bool {
        let mut last = self.inner.last_demand.lock().expect("not poisoned");
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < self.inner.timing.refetch) {
            return false;
        }
        *last = Some(now);
        true
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().expect("not poisoned")
    }

    /// Fetches the set and keeps it, or keeps the last good one. The
    /// caller holds `fetching`.
    async fn fetch_locked(&self) {
        let result = self.fetch().await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        metrics::counter!("herald_jwks_fetches_total", "outcome" => outcome).increment(1);
        let mut state = self.inner.state.write().expect("not poisoned");
        state.generation += 1;
        let now = Instant::now();
        match result {
            Ok((keys, lifetime)) => {
                let changed = state.keys.as_ref().is_none_or(|old| {
                    old.len() != keys.len() || keys.keys().any(|kid| !old.contains_key(kid))
                });
                if changed {
                    let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
                    kids.sort_unstable();
                    tracing::info!(url = %self.inner.url, ?kids, "identity provider keys loaded");
                }
                state.keys = Some(Arc::new(keys));
                state.failures = 0;
                state.next_fetch = now + lifetime;
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let backoff = Duration::from_secs(1 << state.failures.min(6).saturating_sub(1))
                    .min(MAX_RETRY)
                    .min(self.inner.timing.min);
                state.next_fetch = now + backoff;
                if state.keys.is_some() {
                    tracing::warn!(url = %self.inner.url, error = %e, "could not refresh the identity provider's key set; keeping the last good keys");
                } else {
                    tracing::warn!(url = %self.inner.url, error = %e, retry_in_secs = backoff.as_secs(), "could not fetch the identity provider's key set; requests that need a key answer 503 until it is fetched");
                }
            }
        }
    }

    async fn fetch(&self) -> Result<(HashMap<String, Arc<Key>>, Duration), FetchError> {
        let unreachable = |e: reqwest::Error| FetchError::Unreachable(e.without_url().to_string());
        let mut response = self
            .inner
            .client
            .get(&self.inner.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let lifetime = lifetime(response.headers(), &self.inner.timing);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(FetchError::Invalid(format!(
                    "larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        // The parser's message may quote the answer; only its kind and
        // place are logged.
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| {
            FetchError::Invalid(format!(
                "not a JWKS ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let keys: HashMap<String, Arc<Key>> = set
            .keys
            .iter()
            .filter_map(|jwk| usable(jwk).map(|(kid, key)| (kid, Arc::new(key))))
            .collect();
        if keys.is_empty() {
            return Err(FetchError::Invalid(format!(
                "none of its {} keys is an RS256, ES256 or EdDSA signing key with a kid",
                set.keys.len()
            )));
        }
        Ok((keys, lifetime))
    }
}

/// How long an answer with these headers is kept: its `max-age` (`no-cache`
/// and `no-store`: 0), else the configured default; within the bounds.
fn lifetime(headers: &reqwest::header::HeaderMap, timing: &Timing) -> Duration {
    let mut secs = None;
    for value in headers.get_all(reqwest::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            if directive == "no-cache" || directive == "no-store" {
                secs = Some(0);
            } else if let Some(age) = directive.strip_prefix("max-age=")
                && let Ok(age) = age.trim_matches('"').parse::<u64>()
            {
                secs = Some(secs.map_or(age, |s: u64| s.min(age)));
            }
        }
    }
    secs.map_or(timing.default, Duration::from_secs)
        .clamp(timing.min, timing.max)
}

/// The key's `kid` and decoding key if it is a signing key this service
/// verifies with: RS256, ES256 (P-256) or EdDSA (Ed25519). The algorithm is
/// the key's `alg`, or follows from its type when it has none.
fn usable(jwk: &Jwk) -> Option<(String, Key)> {
    let common = &jwk.common;
    let kid = common.key_id.clone().filter(|kid| !kid.is_empty())?;
    if matches!(common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    if let Some(ops) = &common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    if let Some(alg) = common.key_algorithm
        && Algorithm::try_from(alg).ok() != Some(by_type)
    {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((
        kid,
        Key {
            algorithm: by_type,
            key,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            default: Duration::from_secs(300),
            min: Duration::from_secs(30),
            max: Duration::from_secs(86_400),
            refetch: Duration::from_secs(30),
        }
    }

    fn with(cache_control: &[&str]) -> Duration {
        let mut headers = reqwest::header::HeaderMap::new();
        for value in cache_control {
            headers.append(
                reqwest::header::CACHE_CONTROL,
                value.parse().expect("a header value"),
            );
        }
        lifetime(&headers, &timing())
    }

    #[test]
    fn cache_control_sets_the_lifetime_within_bounds() {
        assert_eq!(with(&[]), Duration::from_secs(300));
        assert_eq!(with(&["public, max-age=600"]), Duration::from_secs(600));
        assert_eq!(with(&["max-age=\"120\""]), Duration::from_secs(120));
        assert_eq!(with(&["Max-Age=1"]), Duration::from_secs(30));
        assert_eq!(with(&["no-cache"]), Duration::from_secs(30));
        assert_eq!(with(&["max-age=600", "no-store"]), Duration::from_secs(30));
        assert_eq!(with(&["max-age=99999999"]), Duration::from_secs(86_400));
        assert_eq!(with(&["max-age=soon"]), Duration::from_secs(300));
    }

    fn jwk(value: serde_json::Value) -> Jwk {
        serde_json::from_value(value).expect("a JWK")
    }

    #[test]
    fn only_signing_keys_of_the_three_algorithms_are_kept() {
        // The RFC 7515 appendix A.2 key's modulus, shortened: it is not
        // checked until a signature is.
        let rsa = serde_json::json!({"kty": "RSA", "n": "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ", "e": "AQAB"});
        let with_fields = |extra: serde_json::Value| {
            let mut key = rsa.clone();
            key.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            usable(&jwk(key))
        };
        let (kid, key) = with_fields(serde_json::json!({"kid": "a"})).expect("usable");
        assert_eq!((kid.as_str(), key.algorithm), ("a", Algorithm::RS256));
        assert!(
            with_fields(serde_json::json!({"kid": "a", "alg": "RS256", "use": "sig"})).is_some()
        );
        // No kid, an encryption key, another algorithm, a mismatched one.
        assert!(with_fields(serde_json::json!({})).is_none());
        assert!(with_fields(serde_json::json!({"kid": "a", "use": "enc"})).is_none());
        assert!(with_fields(serde_json::json!({"kid": "a", "alg": "RSA-OAEP"})).is_none());
        assert!(with_fields(serde_json::json!({"kid": "a", "alg": "PS256"})).is_none());
        assert!(with_fields(serde_json::json!({"kid": "a", "alg": "ES256"})).is_none());
        assert!(with_fields(serde_json::json!({"kid": "a", "key_ops": ["encrypt"]})).is_none());
        // A symmetric key is never taken from a key set.
        assert!(
            usable(&jwk(
                serde_json::json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0", "alg": "HS256"})
            ))
            .is_none()
        );
    }
}
