//! Webhook endpoints: registering, listing and removing them, and the rule
//! on where an outbound request may go, which both registration and every
//! delivery apply (a name that resolved to a public address at registration
//! may resolve elsewhere later).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::db;
use crate::db::webhooks::Endpoint;
use crate::domain::webhook::{EventFilter, WebhookSecret, check_url, is_forbidden};
use crate::inbox::InboxError;

/// What `POST /v1/admin/webhooks` answers: the only time the secret is shown.
#[derive(Debug, Serialize)]
pub struct Created {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Webhooks {
    pool: PgPool,
    allow_private: bool,
}

impl Webhooks {
    pub fn new(pool: PgPool, allow_private: bool) -> Self {
        Self {
            pool,
            allow_private,
        }
    }

    /// Registers an endpoint. The URL must be http(s) and its host must
    /// resolve only to public addresses (unless private URLs are allowed).
    pub async fn create(&self, url: &str, events: &[String]) -> Result<Created, InboxError> {
        let parsed = check_url(url).map_err(InboxError::Invalid)?;
        let filter = EventFilter::parse(events).map_err(InboxError::Invalid)?;
        resolve_allowed(&parsed, self.allow_private)
            .await
            .map_err(InboxError::Invalid)?;
        let secret = WebhookSecret::generate()
            .map_err(|e| InboxError::Failed(format!("no randomness: {e}").into()))?;
        let id = Uuid::now_v7();
        let mut tx = self.pool.begin().await?;
        db::webhooks::limit_lock_wait(&mut tx).await?;
        let created_at = db::webhooks::create(
            &mut tx,
            id,
            parsed.as_str(),
            filter.entries(),
            secret.expose(),
        )
        .await?;
        db::webhooks::sync_triggers(&mut tx)
            .await
            .map_err(lock_wait)?;
        tx.commit().await?;
        Ok(Created {
            id,
            url: parsed.to_string(),
            events: filter.entries().to_vec(),
            secret: secret.expose().to_owned(),
            created_at,
        })
    }

    pub async fn list(&self) -> Result<Vec<Endpoint>, InboxError> {
        Ok(db::webhooks::list(&self.pool).await?)
    }

    /// Removes an endpoint with its pending deliveries.
    pub async fn delete(&self, id: Uuid) -> Result<(), InboxError> {
        let mut tx = self.pool.begin().await?;
        db::webhooks::limit_lock_wait(&mut tx).await?;
        if !db::webhooks::delete(&mut tx, id).await? {
            return Err(InboxError::NotFound("no such webhook"));
        }
        db::webhooks::sync_triggers(&mut tx)
            .await
            .map_err(lock_wait)?;
        tx.commit().await?;
        Ok(())
    }
}

/// Creating or dropping the outbox triggers waited too long for the
/// writers of the event tables: nothing changed, and a retry may pass.
fn lock_wait(e: sqlx::Error) -> InboxError {
    match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03") => {
            tracing::warn!("webhooks: the event tables stayed busy; endpoints unchanged");
            InboxError::Unavailable
        }
        _ => e.into(),
    }
}

/// The addresses `url`'s host resolves to, if a request may go there: all
/// of them public, unless `allow_private`. The message says why not.
pub async fn resolve_allowed(
    url: &url::Url,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, String> {
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(name)) => resolve(name, port).await?,
        None => return Err("url has no host".into()),
    };
    allowed(addrs, allow_private)
}

/// How long a name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves `name`; an error if it has no address.
pub async fn resolve(name: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
            .await
            .map_err(|_| format!("the host {name:?} did not resolve within {RESOLVE_TIMEOUT:?}"))?
            .map_err(|e| format!("the host {name:?} does not resolve: {e}"))?
            .collect();
    if addrs.is_empty() {
        return Err(format!("the host {name:?} has no address"));
    }
    Ok(addrs)
}

/// `addrs` unless one of them is forbidden: a name that resolves to one
/// private address among public ones is refused as a whole.
pub fn allowed(addrs: Vec<SocketAddr>, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    if !allow_private && let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
        return Err(format!(
            "url reaches {}, a loopback, private, link-local or unspecified address; webhooks must be public",
            bad.ip()
        ));
    }
    Ok(addrs)
}
