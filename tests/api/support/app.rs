//! The application under test: in this process, on a fresh database, on a
//! random port.

use std::path::PathBuf;

use herald::app::startup::{AppHandle, Application};
use herald::http::auth::Signer;
use herald::settings::{AuthSettings, Settings};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::database::fresh_database;
use super::logs::init_test_logging;
use super::wait::wait_for;

pub fn test_settings() -> Settings {
    let env = std::env::vars().chain([(
        "HERALD_JWT_SECRET".to_owned(),
        super::tokens::TEST_SECRET.to_owned(),
    )]);
    let mut s = Settings::load_with(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"),
        env,
    )
    .unwrap();
    s.server.listen = "127.0.0.1:0".into();
    s.server.workers = 2;
    s.database.max_connections = 10;
    s.database.acquire_timeout_ms = 1000;
    s
}

pub struct TestApp {
    pub address: String,
    pub db_url: String,
    pub pool: PgPool,
    pub handle: AppHandle,
    pub signer: Signer,
    pub settings: Settings,
    pub http: reqwest::Client,
}

impl TestApp {
    /// The engine on this app's database, as another instance would have
    /// it: what it changes reaches the app's connections through NOTIFY.
    pub fn inbox(&self) -> herald::inbox::Inbox {
        let hub = herald::live::Hub::new(self.settings.stream.max_streams_per_user);
        herald::inbox::Inbox::new(self.pool.clone(), hub, "tests")
    }

    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let db = fresh_database().await;
        Self::spawn_on(&db, tweak).await
    }

    /// Another instance on an existing database.
    pub async fn spawn_on(db_url: &str, tweak: impl FnOnce(&mut Settings)) -> Self {
        init_test_logging();
        let mut settings = test_settings();
        tweak(&mut settings);
        let pool = PgPool::connect(db_url).await.unwrap();
        // Other instances on the same database listen already.
        let listening_before = listeners(&pool).await;
        let app = Application::build(settings.clone(), db_url)
            .await
            .expect("app builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        let app = Self {
            address,
            db_url: db_url.to_owned(),
            pool,
            handle,
            // With a key set the service signs nothing; the tests' own
            // tokens are then HS256 ones it must refuse.
            signer: Signer::from_settings(&AuthSettings {
                jwks_url: String::new(),
                ..settings.auth.clone()
            })
            .unwrap(),
            settings,
            http: reqwest::Client::new(),
        };
        // Its wake-up listener has run its LISTEN (its first catch-up
        // follows at once, before any stream a test opens afterwards).
        wait_for(|| async { listeners(&app.pool).await > listening_before }).await;
        app
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
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

    /// Publishes one notification per recipient and returns the created items.
    pub async fn publish(&self, recipients: &[&str], title: &str) -> Vec<Value> {
        let response = self
            .post_notification(&json!({ "recipients": recipients, "title": title }))
            .await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let body: Value = response.json().await.unwrap();
        body["notifications"].as_array().unwrap().clone()
    }

    pub async fn get_as(&self, user: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(self.token(user, &[]))
            .send()
            .await
            .unwrap()
    }

    pub async fn post_as(&self, user: &str, path: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(self.token(user, &[]))
            .send()
            .await
            .unwrap()
    }

    pub async fn list(&self, user: &str, query: &str) -> Value {
        let response = self
            .get_as(user, &format!("/v1/me/notifications{query}"))
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Rows in the tables a failed request must not touch.
    /// The text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        let r = self.http.get(self.url("/metrics")).send().await.unwrap();
        r.text().await.unwrap()
    }

    /// `GET /v1/admin/stats` of this instance.
    pub async fn stats(&self) -> serde_json::Value {
        let r = self
            .http
            .get(self.url("/v1/admin/stats"))
            .bearer_auth(self.admin())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn row_counts(&self) -> (i64, i64, i64, i64) {
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM notifications),
                    (SELECT count(*) FROM events), (SELECT count(*) FROM idempotency_keys)",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}

/// `GET /v1/me/notifications` with `token`: the request every token test makes.
pub async fn list_with(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .get(app.url("/v1/me/notifications"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Publishes `n` notifications to `user` from 16 concurrent publishers;
/// returns the created ids.
pub async fn publish_many(app: &TestApp, user: &str, n: i64, body: &str) -> Vec<String> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, url, token, next) = (
            app.http.clone(),
            app.url("/v1/notifications"),
            app.publisher(),
            next.clone(),
        );
        let (user, body) = (user.to_owned(), body.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return ids;
                }
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"recipients": [user], "title": format!("n{i}"), "body": body}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let v: Value = r.json().await.unwrap();
                ids.push(v["notifications"][0]["id"].as_str().unwrap().to_owned());
            }
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    ids
}

/// The server still answers.
pub async fn healthy(app: &TestApp) {
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Wake-up listeners that have run their LISTEN on `pool`'s database.
async fn listeners(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name = 'herald-listener' AND datname = current_database()
           AND state = 'idle' AND query LIKE 'LISTEN%'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}
