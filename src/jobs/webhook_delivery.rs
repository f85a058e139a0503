//! One delivery attempt: the Standard Webhooks request for one outbox row,
//! sent through a client that only connects to permitted addresses.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::db::webhooks::Delivery;
use crate::domain::webhook::WebhookSecret;
use crate::inbox::webhooks::{allowed, resolve, resolve_allowed};

/// The body of a webhook request.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    user_id: &'a str,
    seq: i64,
    data: &'a RawValue,
    created_at: DateTime<Utc>,
}

/// A request ready to send: its body and headers. The id is the same on
/// every attempt, so receivers can drop duplicates.
pub struct Message {
    pub id: String,
    pub body: String,
}

impl Message {
    pub fn of(delivery: &Delivery) -> Result<Self, String> {
        let data = delivery
            .event_data()
            .map_err(|e| format!("unreadable outbox row: {e}"))?;
        let data: Box<RawValue> =
            RawValue::from_string(data).map_err(|e| format!("unreadable event data: {e}"))?;
        let body = serde_json::to_string(&Body {
            kind: &delivery.kind,
            user_id: &delivery.user_id,
            seq: delivery.seq,
            data: &data,
            created_at: delivery.created_at,
        })
        .map_err(|e| e.to_string())?;
        Ok(Self {
            id: format!("{}:{}", delivery.user_id, delivery.seq),
            body,
        })
    }
}

/// Resolves names for the delivery client and refuses forbidden addresses
/// at connection time, so a name cannot be pointed at a private address
/// after it was registered.
struct PublicOnly {
    allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve(&host, 0).await?;
            let addrs = allowed(addrs, allow_private)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Sends webhook requests.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    pub fn new(timeout: Duration, allow_private: bool) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicOnly { allow_private }))
            // A redirect could lead anywhere: an answer of 3xx is a failure.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("herald-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    /// One attempt; `Err` says why it did not count as accepted.
    pub async fn send(
        &self,
        url: &str,
        secret: &WebhookSecret,
        message: &Message,
    ) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("bad url: {e}"))?;
        // Names are checked by the resolver as they are connected to; an
        // address literal never reaches a resolver, so it is checked here.
        if !matches!(parsed.host(), Some(url::Host::Domain(_))) {
            resolve_allowed(&parsed, self.allow_private).await?;
        }
        let timestamp = Utc::now().timestamp();
        let signature = secret.sign(&message.id, timestamp, &message.body);
        let response = self
            .client
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", &message.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(message.body.clone())
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
}

/// A transport error with its causes (reqwest's own message is terse).
fn describe(e: reqwest::Error) -> String {
    // Without the URL: it may carry a credential of the receiver's.
    let e = e.without_url();
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
