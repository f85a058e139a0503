//! JWT verification and the request extractors that carry who is calling.
//!
//! The algorithm is pinned by configuration: a token's own `alg` header never
//! chooses how it is checked, which rules out `none` and algorithm confusion.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::domain::UserId;
use crate::http::error::ApiError;
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

pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    scopes: ScopeNames,
}

impl Verifier {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let s = &settings.auth;
        // With a public key the tokens come from an identity provider that
        // signs for many services: only `aud` says a token is meant for us.
        if s.algorithm != JwtAlgorithm::HS256 && !settings.is_local() && s.audience.is_empty() {
            anyhow::bail!(
                "auth.audience must be set with {:?} outside the local environment (HERALD_ENV={:?})",
                s.algorithm,
                settings.environment
            );
        }
        let algorithm = algorithm(s.algorithm);
        let key = match algorithm {
            Algorithm::HS256 => DecodingKey::from_secret(s.secret.expose_secret().as_bytes()),
            Algorithm::RS256 => DecodingKey::from_rsa_pem(&std::fs::read(&s.public_key_file)?)?,
            _ => DecodingKey::from_ec_pem(&std::fs::read(&s.public_key_file)?)?,
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
            key,
            validation,
            scopes: ScopeNames::new(s, settings.is_local()),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ApiError::Unauthorized(format!(
                "the token is larger than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| ApiError::Unauthorized(describe(e.kind()).into()))?;
        // Header fields that name keys (`kid`, `jku`, `jwk`, `x5u`, `x5c`)
        // are ignored: the configured key is the only one. `crit` lists
        // extensions that must be understood (RFC 7515), and none are.
        if data.header.crit.is_some() {
            return Err(ApiError::Unauthorized(
                "the token's `crit` header names extensions this service does not support".into(),
            ));
        }
        let claims = data.claims;
        // `jsonwebtoken` does not check `iat`; a token from the future
        // (beyond clock skew) was not issued by a sound clock.
        if let Some(iat) = claims.iat
            && iat > chrono::Utc::now().timestamp() + self.validation.leeway as i64
        {
            return Err(ApiError::Unauthorized(
                "the token was issued in the future (iat)".into(),
            ));
        }
        let sub = claims
            .sub
            .ok_or_else(|| ApiError::Unauthorized("the token has no `sub` claim".into()))?;
        let user = UserId::parse(&sub).map_err(|e| {
            ApiError::Unauthorized(format!("the token's `sub` is not a valid user id: {e}"))
        })?;
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

fn verifier(req: &HttpRequest) -> &Verifier {
    req.app_data::<web::Data<Verifier>>()
        .expect("the verifier is registered as app data")
}

fn authenticate(req: &HttpRequest, allow_query_token: bool) -> Result<Principal, ApiError> {
    let verifier = verifier(req);
    // Through the token cache (`token_cache`): a token is verified once.
    let verify = |token: &str| crate::http::token_cache::verify(req, verifier, token);
    if let Some(token) = bearer(req)? {
        return verify(token);
    }
    if allow_query_token {
        if let Some(token) = query_token(req) {
            return verify(&token);
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

macro_rules! principal_extractor {
    ($(#[$doc:meta])* $name:ident, $query:expr, $scope:expr) => {
        $(#[$doc])*
        pub struct $name(pub Principal);

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = Ready<Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                let scope: Option<Scope> = $scope;
                ready(authenticate(req, $query).and_then(|p| match scope {
                    Some(s) => verifier(req).require(p, s),
                    None => Ok(p),
                }).map($name))
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
