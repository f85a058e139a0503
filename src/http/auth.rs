//! JWT verification and the request extractors that carry who is calling.
//!
//! The algorithm is pinned by configuration, or with a key set
//! (`auth.jwks_url`) by the key the token's `kid` names: a token's own `alg`
//! header never chooses how it is checked, which rules out `none` and
//! algorithm confusion.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::domain::UserId;
use crate::http::error::ApiError;
use crate::http::jwks::{Jwks, Lookup};
use crate::settings::{AuthSettings, JwtAlgorithm, Settings};

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// `aud` is one string or an array of them (RFC 7519, 4.1.3); which one
/// must hold the configured audience is checked by `jsonwebtoken`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl From<&str> for Audience {
    fn from(aud: &str) -> Self {
        Self::One(aud.to_owned())
    }
}

impl From<Vec<String>> for Audience {
    fn from(aud: Vec<String>) -> Self {
        Self::Many(aud)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Publish,
    Admin,
}

/// The verified caller: its user id, what it may do, and until when.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserId,
    pub publish: bool,
    pub admin: bool,
    /// `exp`, seconds since the epoch: live connections end here.
    pub expires_at: i64,
}

impl Principal {
    /// `admin` may do everything.
    pub fn has(&self, scope: Scope) -> bool {
        self.admin || (scope == Scope::Publish && self.publish)
    }
}

/// The `scope` words that grant each right. The configured names always;
/// the short v1 names `publish`/`admin` only in the local environment, so
/// a token minted for some other service with a generic `admin` scope
/// means nothing to a deployed Herald.
#[derive(Debug, Clone)]
pub struct ScopeNames {
    publish: String,
    admin: String,
    short_names: bool,
}

impl ScopeNames {
    pub fn new(s: &AuthSettings, local: bool) -> Self {
        Self {
            publish: s.scope_publish.clone(),
            admin: s.scope_admin.clone(),
            short_names: local,
        }
    }

    pub fn name(&self, scope: Scope) -> &str {
        match scope {
            Scope::Publish => &self.publish,
            Scope::Admin => &self.admin,
        }
    }

    fn short(scope: Scope) -> &'static str {
        match scope {
            Scope::Publish => "publish",
            Scope::Admin => "admin",
        }
    }

    fn grants(&self, word: &str, scope: Scope) -> bool {
        word == self.name(scope) || (self.short_names && word == Self::short(scope))
    }

    fn require(&self, principal: Principal, scope: Scope) -> Result<Principal, ApiError> {
        if principal.has(scope) {
            return Ok(principal);
        }
        let (short, name) = (Self::short(scope), self.name(scope));
        let also = if self.short_names {
            format!(" (or `{short}` in the local environment)")
        } else {
            String::new()
        };
        Err(ApiError::Forbidden(format!(
            "this operation needs the `{short}` scope: `{name}`{also} in the token's `scope` claim"
        )))
    }
}

fn algorithm(configured: JwtAlgorithm) -> Algorithm {
    match configured {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, badly signed, expired, not for this service: 401.
    #[error("{0}")]
    Invalid(String),
    /// The identity provider's keys could not be fetched yet: 503.
    #[error(
        "the identity provider's signing keys could not be fetched yet, so no token can be checked; retry later"
    )]
    KeysUnavailable { retry_after: u64 },
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(why) => Self::Unauthorized(why),
            AuthError::KeysUnavailable { retry_after } => Self::KeysUnavailable {
                detail: e.to_string(),
                retry_after,
            },
        }
    }
}

fn invalid(why: impl Into<String>) -> AuthError {
    AuthError::Invalid(why.into())
}

/// Where the key a token is checked with comes from.
enum Keys {
    /// The configured secret or public key, for the configured algorithm.
    Fixed(DecodingKey),
    /// The identity provider's key set: the key the token's `kid` names.
    Set(Jwks),
}

pub struct Verifier {
    keys: Keys,
    /// With a key set, its `algorithms` are replaced by the chosen key's.
    validation: Validation,
    scopes: ScopeNames,
}

impl Verifier {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let s = &settings.auth;
        // With a public key the tokens come from an identity provider that
        // signs for many services: only `aud` says a token is meant for us.
        if (s.jwks() || s.algorithm != JwtAlgorithm::HS256)
            && !settings.is_local()
            && s.audience.is_empty()
        {
            anyhow::bail!(
                "auth.audience must be set with {} outside the local environment (HERALD_ENV={:?})",
                if s.jwks() {
                    "auth.jwks_url".to_owned()
                } else {
                    format!("{:?}", s.algorithm)
                },
                settings.environment
            );
        }
        let algorithm = algorithm(s.algorithm);
        let keys = if s.jwks() {
            Keys::Set(Jwks::new(s)?)
        } else {
            Keys::Fixed(match algorithm {
                Algorithm::HS256 => DecodingKey::from_secret(s.secret.expose_secret().as_bytes()),
                Algorithm::RS256 => DecodingKey::from_rsa_pem(&std::fs::read(&s.public_key_file)?)?,
                _ => DecodingKey::from_ec_pem(&std::fs::read(&s.public_key_file)?)?,
            })
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = s.leeway_secs;
        validation.validate_nbf = true;
        // A configured issuer or audience must also be present: a token
        // without the claim would otherwise pass unchecked.
        let mut required = vec!["exp"];
        if !s.issuer.is_empty() {
            validation.set_issuer(&[&s.issuer]);
            required.push("iss");
        }
        if s.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&s.audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            keys,
            validation,
            scopes: ScopeNames::new(s, settings.is_local()),
        })
    }

    /// The key set, when tokens are checked against one: its refresh task
    /// runs beside the server.
    pub fn key_set(&self) -> Option<&Jwks> {
        match &self.keys {
            Keys::Set(jwks) => Some(jwks),
            Keys::Fixed(_) => None,
        }
    }

    /// Who `token` says the caller is, if it is valid. The answer depends
    /// only on the token, the keys and the clock: a cache in front of this
    /// may keep an `Ok` until the token's `exp` (with a key set, also past
    /// the removal of its key, for as long as the cache keeps it), but not a
    /// `KeysUnavailable`, which passes when the key set arrives.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid(format!(
                "the token is larger than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let data = match &self.keys {
            Keys::Fixed(key) => jsonwebtoken::decode::<Claims>(token, key, &self.validation),
            Keys::Set(jwks) => {
                let (key, validation) = self.key_from_set(jwks, token).await?;
                jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            }
        }
        .map_err(|e| invalid(describe(e.kind())))?;
        // Header fields that name keys (`jku`, `jwk`, `x5u`, `x5c`, and
        // `kid` but with a key set) are ignored: the configured key or key
        // set is the only source. `crit` lists extensions that must be
        // understood (RFC 7515), and none are.
        if data.header.crit.is_some() {
            return Err(invalid(
                "the token's `crit` header names extensions this service does not support",
            ));
        }
        self.principal(data.claims)
    }

    /// The key of the set the token's `kid` names, and the validation for
    /// the algorithm that key is for.
    async fn key_from_set(
        &self,
        jwks: &Jwks,
        token: &str,
    ) -> Result<(std::sync::Arc<crate::http::jwks::Key>, Validation), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(describe(e.kind())))?;
        let kid = header.kid.as_deref().unwrap_or_default();
        if kid.is_empty() {
            return Err(invalid(
                "the token has no `kid` header naming one of the identity provider's keys",
            ));
        }
        let key = match jwks.key(kid).await {
            Lookup::Found(key) => key,
            Lookup::Unknown => {
                return Err(invalid(
                    "the token's `kid` names no key of the identity provider's key set",
                ));
            }
            Lookup::Unavailable { retry_after } => {
                return Err(AuthError::KeysUnavailable { retry_after });
            }
        };
        if header.alg != key.algorithm {
            return Err(invalid(
                "the token's `alg` is not the algorithm of the key its `kid` names",
            ));
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![key.algorithm];
        Ok((key, validation))
    }

    fn principal(&self, claims: Claims) -> Result<Principal, AuthError> {
        // `jsonwebtoken` does not check `iat`; a token from the future
        // (beyond clock skew) was not issued by a sound clock.
        if let Some(iat) = claims.iat
            && iat > chrono::Utc::now().timestamp() + self.validation.leeway as i64
        {
            return Err(invalid("the token was issued in the future (iat)"));
        }
        let sub = claims
            .sub
            .ok_or_else(|| invalid("the token has no `sub` claim"))?;
        let user = UserId::parse(&sub)
            .map_err(|e| invalid(format!("the token's `sub` is not a valid user id: {e}")))?;
        let scopes = claims.scope.unwrap_or_default();
        let mut principal = Principal {
            user,
            publish: false,
            admin: false,
            expires_at: claims.exp,
        };
        for word in scopes.split_ascii_whitespace() {
            principal.publish |= self.scopes.grants(word, Scope::Publish);
            principal.admin |= self.scopes.grants(word, Scope::Admin);
        }
        Ok(principal)
    }

    /// 403 unless `principal` has `scope`.
    pub fn require(&self, principal: Principal, scope: Scope) -> Result<Principal, ApiError> {
        self.scopes.require(principal, scope)
    }
}

/// Why a token was refused, without repeating any of it.
fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token is not signed with the configured algorithm"
        }
        ErrorKind::MissingRequiredClaim(_) => {
            "the token lacks a required claim (exp, or the configured iss/aud)"
        }
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
        ErrorKind::InvalidAudience => "the token's audience is not accepted",
        _ => "the token is malformed",
    }
}

/// Signs tokens for `herald token`, the demo page and tests.
pub struct Signer {
    key: EncodingKey,
    header: Header,
    publish: String,
    admin: String,
}

impl Signer {
    pub fn from_settings(s: &AuthSettings) -> anyhow::Result<Self> {
        if s.jwks() {
            anyhow::bail!(
                "auth.jwks_url is set: tokens are signed by the identity provider, and this service has none of its private keys; get tokens from the identity provider"
            );
        }
        let algorithm = algorithm(s.algorithm);
        let key = match algorithm {
            Algorithm::HS256 => EncodingKey::from_secret(s.secret.expose_secret().as_bytes()),
            _ if s.private_key_file.is_empty() => {
                anyhow::bail!(
                    "auth.private_key_file is needed to sign {:?} tokens",
                    s.algorithm
                )
            }
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&std::fs::read(&s.private_key_file)?)?,
            _ => EncodingKey::from_ec_pem(&std::fs::read(&s.private_key_file)?)?,
        };
        Ok(Self {
            key,
            header: Header::new(algorithm),
            publish: s.scope_publish.clone(),
            admin: s.scope_admin.clone(),
        })
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(&self.header, claims, &self.key)?)
    }

    /// A token for `sub` with the given scopes (by their configured
    /// names), valid for `ttl_secs`.
    pub fn token_for(&self, sub: &str, scopes: &[Scope], ttl_secs: i64) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let scope = scopes
            .iter()
            .map(|s| match s {
                Scope::Publish => self.publish.as_str(),
                Scope::Admin => self.admin.as_str(),
            })
            .collect::<Vec<_>>()
            .join(" ");
        self.sign(&Claims {
            sub: Some(sub.to_owned()),
            exp: now + ttl_secs,
            nbf: None,
            iat: Some(now),
            iss: None,
            aud: None,
            scope: (!scope.is_empty()).then_some(scope),
        })
    }
}

fn bearer(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not valid text".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`".into(),
        )),
    }
}

#[derive(Deserialize)]
struct AccessTokenQuery {
    access_token: Option<String>,
}

fn query_token(req: &HttpRequest) -> Option<String> {
    web::Query::<AccessTokenQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().access_token)
}

fn has_query_token(req: &HttpRequest) -> bool {
    req.query_string()
        .split('&')
        .any(|pair| pair.split('=').next() == Some("access_token"))
}

fn verifier(req: &HttpRequest) -> web::Data<Verifier> {
    req.app_data::<web::Data<Verifier>>()
        .expect("the verifier is registered as app data")
        .clone()
}

/// The token the request carries, or why it carries none.
fn token(req: &HttpRequest, allow_query_token: bool) -> Result<String, ApiError> {
    if let Some(token) = bearer(req)? {
        return Ok(token.to_owned());
    }
    if allow_query_token {
        if let Some(token) = query_token(req) {
            return Ok(token);
        }
    } else if has_query_token(req) {
        return Err(ApiError::Unauthorized(
            "the access_token query parameter is accepted only on the streaming endpoints; use the Authorization header".into(),
        ));
    }
    Err(ApiError::Unauthorized(
        "this endpoint needs `Authorization: Bearer <token>`".into(),
    ))
}

/// The caller `token` names, if it is valid and has `scope` (if any).
async fn authenticate(
    verifier: web::Data<Verifier>,
    token: Result<String, ApiError>,
    scope: Option<Scope>,
) -> Result<Principal, ApiError> {
    let principal = verifier.verify(&token?).await?;
    match scope {
        Some(s) => verifier.require(principal, s),
        None => Ok(principal),
    }
}

macro_rules! principal_extractor {
    ($(#[$doc:meta])* $name:ident, $query:expr, $scope:expr) => {
        $(#[$doc])*
        pub struct $name(pub Principal);

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                let checked = authenticate(verifier(req), token(req, $query), $scope);
                Box::pin(async move { checked.await.map($name) })
            }
        }
    };
}

principal_extractor!(
    /// Any valid token, from the Authorization header.
    User, false, None
);
principal_extractor!(
    /// Any valid token, from the header or the `access_token` query parameter
    /// (EventSource and WebSocket cannot set headers).
    StreamUser, true, None
);
principal_extractor!(
    /// A token with the `publish` (or `admin`) scope.
    Publisher, false, Some(Scope::Publish)
);
principal_extractor!(
    /// A token with the `admin` scope.
    Admin, false, Some(Scope::Admin)
);
