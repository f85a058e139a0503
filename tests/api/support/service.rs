//! A client of the service under test, whether it runs in this process
//! (`TestApp`) or as a child process (`Herald`): its address, tokens and an
//! HTTP client for long streams.

use herald::http::auth::Scope;
use std::sync::Arc;
use std::time::Duration;

use herald::http::auth::Signer;
use serde_json::{Value, json};

use super::app::{TestApp, test_settings};

/// Where clients connect: an in-process application or a child process.
#[derive(Clone)]
pub struct Service {
    pub base: String,
    signer: Arc<Signer>,
    /// No overall timeout (streams are long); no idle connections kept, so
    /// no request races the server closing an idle keep-alive connection.
    pub http: reqwest::Client,
}

impl Service {
    pub fn new(base: String) -> Self {
        Self {
            base,
            signer: Arc::new(Signer::from_settings(&test_settings().auth).unwrap()),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        }
    }

    pub fn of(app: &TestApp) -> Self {
        Self::new(app.address.clone())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token(&self, user: &str) -> String {
        self.signer.token_for(user, &[], 3600).unwrap()
    }

    pub fn admin(&self) -> String {
        self.signer
            .token_for("fault-operator", &[Scope::Admin], 3600)
            .unwrap()
    }

    pub fn publisher(&self) -> String {
        self.signer
            .token_for("fault-publisher", &[Scope::Publish], 3600)
            .unwrap()
    }

    pub async fn get(&self, user: Option<&str>, path: &str) -> reqwest::Response {
        let mut request = self.http.get(self.url(path));
        if let Some(user) = user {
            request = request.bearer_auth(self.token(user));
        }
        request.send().await.unwrap()
    }

    pub async fn post_notification(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/notifications"))
            .bearer_auth(self.publisher())
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Publishes one notification per recipient; the created items.
    pub async fn publish(&self, recipients: &[&str], title: &str) -> Vec<Value> {
        let r = self
            .post_notification(&json!({"recipients": recipients, "title": title}))
            .await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        let body: Value = r.json().await.unwrap();
        body["notifications"].as_array().unwrap().clone()
    }
}
