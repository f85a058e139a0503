//! Webhooks: endpoints under `/v1/admin/webhooks`, and every matching event
//! POSTed to them, signed, in order per user, at least once.

mod admin;
mod delivery;
mod durability;
mod endpoints;
mod instances;
mod order;

use std::time::Duration;

use herald::settings::Settings;
use serde_json::{Value, json};

use crate::support::receiver::Received;
use crate::support::{Service, TestApp, wait_within};

/// Settings for delivery tests: loopback receivers allowed, quick polls
/// and retries.
pub fn fast(s: &mut Settings) {
    s.webhooks.allow_private_urls = true;
    s.webhooks.poll_ms = 100;
    s.webhooks.backoff_initial_ms = 50;
    s.webhooks.backoff_max_ms = 400;
    s.webhooks.timeout_ms = 2_000;
}

/// The same as environment variables, for a `herald serve` process.
pub const FAST_ENV: &[(&str, &str)] = &[
    ("HERALD__WEBHOOKS__ALLOW_PRIVATE_URLS", "true"),
    ("HERALD__WEBHOOKS__POLL_MS", "100"),
    ("HERALD__WEBHOOKS__BACKOFF_INITIAL_MS", "50"),
    ("HERALD__WEBHOOKS__BACKOFF_MAX_MS", "400"),
    ("HERALD__WEBHOOKS__TIMEOUT_MS", "2000"),
];

/// The admin side of `/v1/admin/webhooks`.
pub struct Admin {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    pub fn of(app: &TestApp) -> Self {
        Self {
            base: app.address.clone(),
            token: app.admin(),
            http: app.http.clone(),
        }
    }

    pub fn on(service: &Service) -> Self {
        Self {
            base: service.base.clone(),
            token: service.admin(),
            http: service.http.clone(),
        }
    }

    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/admin/webhooks", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Registers `url` for `events`; the 201 answer.
    pub async fn create(&self, url: &str, events: &[&str]) -> Value {
        let r = self.post(&json!({ "url": url, "events": events })).await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        r.json().await.unwrap()
    }

    /// `GET /v1/admin/webhooks`'s list.
    pub async fn list(&self) -> Vec<Value> {
        let r = self
            .http
            .get(format!("{}/v1/admin/webhooks", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        body["webhooks"].as_array().unwrap().clone()
    }

    pub async fn delete(&self, id: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}/v1/admin/webhooks/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }
}

/// Waits until `check` holds for what `requests` returns, for up to 20 s
/// (retries with backoff take a few seconds).
pub async fn wait_requests(
    what: &str,
    requests: impl Fn() -> Vec<Received>,
    check: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    wait_within(what, Duration::from_secs(20), async || check(&requests())).await;
    requests()
}

/// The `(user, seq)` a request carries, from its `webhook-id`.
pub fn user_seq(r: &Received) -> (String, i64) {
    let (user, seq) = r.id().rsplit_once(':').unwrap();
    (user.to_owned(), seq.parse().unwrap())
}

/// Runs the official Standard Webhooks verifier (npm `standardwebhooks`, in
/// tests/webhook_verifier) on a request; whether it accepts it.
pub async fn official_verify(secret: &str, request: &Received, body: &str) -> bool {
    use tokio::io::AsyncWriteExt;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhook_verifier");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/standardwebhooks")
            .exists(),
        "run `npm ci` in tests/webhook_verifier (scripts/test.sh does)"
    );
    let headers = json!({
        "webhook-id": request.header("webhook-id"),
        "webhook-timestamp": request.header("webhook-timestamp"),
        "webhook-signature": request.header("webhook-signature"),
    });
    let input = json!({ "secret": secret, "headers": headers, "body": body }).to_string();
    let mut child = tokio::process::Command::new("node")
        .arg("verify.mjs")
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    child.wait().await.unwrap().success()
}

/// Rows of the outbox.
pub async fn outbox_rows(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM webhook_outbox")
        .fetch_one(pool)
        .await
        .unwrap()
}
