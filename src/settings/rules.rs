//! Checks of single values (for `garde`) and across settings, each with a
//! message saying what is accepted.

use std::net::SocketAddr;

use secrecy::ExposeSecret;

use super::{DEVELOPMENT_SECRET, JwtAlgorithm, MIN_SECRET_BYTES, Settings};

/// `host:port`, as `HERALD_LISTEN` is given.
pub fn host_port(value: &str, _: &()) -> garde::Result {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(garde::Error::new(format!(
            "{value:?} is not host:port (e.g. 127.0.0.1:8080)"
        ))),
    }
}

/// Whether `listen` (`host:port`) can only be reached from this machine.
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    listen
        .rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

/// One word of a JWT `scope` claim (RFC 8693: space-separated).
pub fn scope_name(value: &str, _: &()) -> garde::Result {
    if value.is_empty() || value.len() > 128 || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(garde::Error::new(format!(
            "{value:?} is not a scope name (1-128 printable ASCII characters, no spaces)"
        )));
    }
    Ok(())
}

/// Empty, or an http(s) URL without credentials (they would be logged
/// with fetch errors and shown by `herald config`).
pub fn jwks_url(value: &str, _: &()) -> garde::Result {
    if value.is_empty() {
        return Ok(());
    }
    match url::Url::parse(value) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.username().is_empty()
                && url.password().is_none() =>
        {
            Ok(())
        }
        _ => Err(garde::Error::new(format!(
            "{value:?} is not an http(s) URL without credentials (e.g. https://id.example/.well-known/jwks.json)"
        ))),
    }
}

/// Whether `url` names this machine (an identity provider run beside the
/// service, or a test's).
fn is_loopback_url(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The key-set settings, when a key set is configured.
fn jwks(s: &Settings) -> Result<(), String> {
    let a = &s.auth;
    if a.jwks_url.starts_with("http:") && !s.is_local() && !is_loopback_url(&a.jwks_url) {
        // Whoever can change the answer on the way can sign any token.
        return Err(format!(
            "auth.jwks_url must be https outside the local environment (HERALD_ENV={:?}) unless it names a loopback host",
            s.environment
        ));
    }
    if !a.public_key_file.is_empty() {
        return Err(
            "auth.jwks_url and auth.public_key_file are both set: tokens are checked against one or the other; unset one".into(),
        );
    }
    if a.jwks_cache_min_secs > a.jwks_cache_max_secs {
        return Err(format!(
            "auth.jwks_cache_min_secs ({}) must not exceed auth.jwks_cache_max_secs ({})",
            a.jwks_cache_min_secs, a.jwks_cache_max_secs
        ));
    }
    // An identity provider signs for many services: only `aud` says a
    // token is meant for this one.
    if !s.is_local() && a.audience.is_empty() {
        return Err(format!(
            "auth.audience must be set with auth.jwks_url outside the local environment (HERALD_ENV={:?})",
            s.environment
        ));
    }
    Ok(())
}

/// `scheme://host[:port]` exactly as a browser sends it in `Origin`:
/// lowercase, http or https, no path, no trailing slash; or `*`.
pub fn origin(value: &str, _: &()) -> garde::Result {
    if value == "*" || is_origin(value) {
        Ok(())
    } else {
        Err(garde::Error::new(format!(
            "{value:?} is not an origin like \"https://app.example.com\" (lowercase scheme://host[:port], no path) or \"*\""
        )))
    }
}

pub(super) fn is_origin(s: &str) -> bool {
    let Some((scheme, host)) = s.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | ':' | '[' | ']')
        })
}

/// The shipped HS256 secret is public (it is in the repository): it may
/// sign tokens only for the local demo, which nobody else can reach.
pub fn across(s: &Settings) -> Result<(), String> {
    let hooks = &s.webhooks;
    if hooks.backoff_initial_ms > hooks.backoff_max_ms {
        return Err(format!(
            "webhooks.backoff_initial_ms ({}) must not exceed webhooks.backoff_max_ms ({})",
            hooks.backoff_initial_ms, hooks.backoff_max_ms
        ));
    }
    if hooks.allow_private_urls && s.environment == "production" {
        return Err(
            "webhooks.allow_private_urls must not be set in production: it lets webhooks reach the service's own network"
                .into(),
        );
    }
    if s.auth.scope_admin == s.auth.scope_publish {
        return Err(format!(
            "auth.scope_admin and auth.scope_publish must differ (both are {:?})",
            s.auth.scope_admin
        ));
    }
    if s.auth.jwks() {
        // The secret is not accepted then, so it needs no checks.
        return jwks(s);
    }
    if s.auth.algorithm != JwtAlgorithm::HS256 {
        // An identity provider signs for many services: only `aud` says a
        // token is meant for this one.
        if !s.is_local() && s.auth.audience.is_empty() {
            return Err(format!(
                "auth.audience must be set with {:?} outside the local environment (HERALD_ENV={:?})",
                s.auth.algorithm, s.environment
            ));
        }
        return Ok(());
    }
    let secret = s.auth.secret.expose_secret();
    const HOW: &str =
        "set HERALD_JWT_SECRET to at least 32 random bytes, e.g. $(openssl rand -base64 48)";
    if secret == DEVELOPMENT_SECRET {
        let why = if !s.is_local() {
            Some(format!("HERALD_ENV is {:?}", s.environment))
        } else if s.database_url().is_some() {
            Some("DATABASE_URL names an external database".to_owned())
        } else if !s.server.listens_on_loopback_only() {
            Some(format!(
                "server.listen {:?} is reachable beyond this machine",
                s.server.listen
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(format!(
                "auth.secret: the development secret is public and only allowed for the local demo, but {why}; {HOW}"
            ));
        }
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "auth.secret: an HS256 secret must be at least {MIN_SECRET_BYTES} bytes (this one has {}); {HOW}",
            secret.len()
        ));
    }
    Ok(())
}
