//! Test harness: one private PostgreSQL per test binary (or the server of
//! `DATABASE_URL`), a fresh database per test cloned from a migrated
//! template, and the application on a random port.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use eventsource_stream::{Event as SseEvent, Eventsource};
use futures_util::{Stream, StreamExt};
use herald::app::embedded_pg::{EmbeddedPostgres, Options, connect_with_retry};
use herald::app::startup::{AppHandle, Application};
use herald::http::auth::{Claims, Signer};
use herald::settings::Settings;
use serde_json::{Value, json};
use sqlx::{Connection, PgPool};
use std::pin::Pin;

pub const WAIT: Duration = Duration::from_secs(10);

/// The server every test database lives on: `base_url` + database name.
struct Server {
    base: String,
    query: String,
}

impl Server {
    fn url(&self, db: &str) -> String {
        format!("{}/{db}{}", self.base, self.query)
    }
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            let pg = start_private_postgres("shared");
            let url = pg.url("postgres");
            // Never stopped: it dies with this process (parent-death signal).
            std::mem::forget(pg);
            url
        });
        let (path, query) = url.split_at(url.find('?').unwrap_or(url.len()));
        let (base, _db) = path
            .rsplit_once('/')
            .expect("the database URL names a database");
        Server {
            base: base.to_owned(),
            query: query.to_owned(),
        }
    })
}

/// A private PostgreSQL in a fresh directory of this test process.
pub fn start_private_postgres(name: &str) -> EmbeddedPostgres {
    EmbeddedPostgres::start(Options {
        data_dir: scratch_dir(name),
        fsync: false,
        max_connections: 400,
    })
    .expect("private PostgreSQL starts")
}

pub fn scratch_dir(name: &str) -> PathBuf {
    remove_stale_scratch_dirs();
    let dir = scratch_dir_path(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    dir
}

/// Where `scratch_dir(name)` lives, without clearing it.
pub fn scratch_dir_path(name: &str) -> PathBuf {
    std::env::temp_dir()
        .join(format!("herald-test-{}", std::process::id()))
        .join(name)
}

/// Scratch directories of test processes that are gone.
fn remove_stale_scratch_dirs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("herald-test-")) else {
                continue;
            };
            if !PathBuf::from(format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}

/// A new database with the schema, cloned from a template migrated once.
pub async fn fresh_database() -> String {
    static TEMPLATE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let server = server();
    TEMPLATE
        .get_or_init(|| async {
            let mut admin = connect_with_retry(&server.url("postgres")).await.unwrap();
            sqlx::query("DROP DATABASE IF EXISTS herald_template")
                .execute(&mut admin)
                .await
                .unwrap();
            sqlx::query("CREATE DATABASE herald_template")
                .execute(&mut admin)
                .await
                .unwrap();
            admin.close().await.unwrap();
            let mut conn = sqlx::PgConnection::connect(&server.url("herald_template"))
                .await
                .unwrap();
            herald::db::MIGRATOR.run(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        })
        .await;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = connect_with_retry(&server.url("postgres")).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE herald_template"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    server.url(&name)
}

pub fn test_settings() -> Settings {
    let mut s =
        Settings::load_from(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")).unwrap();
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
            signer: Signer::from_settings(&settings.auth).unwrap(),
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

    pub fn token(&self, sub: &str, scope: Option<&str>) -> String {
        self.signer.token_for(sub, scope, 3600).unwrap()
    }

    pub fn sign(&self, claims: &Claims) -> String {
        self.signer.sign(claims).unwrap()
    }

    pub fn publisher(&self) -> String {
        self.token("publisher-service", Some("publish"))
    }

    pub fn admin(&self) -> String {
        self.token("operator", Some("admin"))
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
            .bearer_auth(self.token(user, None))
            .send()
            .await
            .unwrap()
    }

    pub async fn post_as(&self, user: &str, path: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(self.token(user, None))
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

    /// Opens an SSE stream for `user`, resuming via header and/or query.
    pub async fn sse(&self, user: &str, header: Option<&str>, query: Option<&str>) -> SseClient {
        let token = self.token(user, None);
        self.sse_with_token(&token, header, query).await
    }

    pub async fn sse_with_token(
        &self,
        token: &str,
        header: Option<&str>,
        query: Option<&str>,
    ) -> SseClient {
        let mut url = format!("{}?access_token={token}", self.url("/v1/me/stream"));
        if let Some(q) = query {
            url.push_str(&format!("&last_event_id={q}"));
        }
        let mut request = self.http.get(url);
        if let Some(h) = header {
            request = request.header("Last-Event-ID", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseClient {
            events: Box::pin(response.bytes_stream().eventsource()),
        }
    }

    /// Rows in the tables a failed request must not touch.
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

type EventStream = Pin<
    Box<
        dyn Stream<Item = Result<SseEvent, eventsource_stream::EventStreamError<reqwest::Error>>>
            + Send,
    >,
>;

pub struct SseClient {
    events: EventStream,
}

impl SseClient {
    /// The next event; panics after `WAIT`. `None` when the stream ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        tokio::time::timeout(WAIT, self.events.next())
            .await
            .expect("an SSE event within the timeout")
            .map(|r| r.expect("a well-formed SSE stream"))
    }

    pub async fn next_within(&mut self, wait: Duration) -> Result<Option<SseEvent>, ()> {
        match tokio::time::timeout(wait, self.events.next()).await {
            Ok(Some(Ok(e))) => Ok(Some(e)),
            Ok(Some(Err(_))) | Ok(None) => Ok(None),
            Err(_) => Err(()),
        }
    }

    /// `n` events, in order.
    pub async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.next().await.expect("stream still open"));
        }
        out
    }

    /// Waits until the server ends the stream.
    pub async fn ended(&mut self) {
        if let Some(e) = self.next().await {
            panic!("expected the stream to end, got {e:?}");
        }
    }
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

pub fn data(e: &SseEvent) -> Value {
    serde_json::from_str(&e.data).unwrap()
}

/// Polls `check` until it holds; panics after `WAIT`.
pub async fn wait_for<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    detail_contains: &str,
) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("https://herald.example/problems/"),
        "{body}"
    );
    assert!(!body["title"].as_str().unwrap().is_empty());
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(detail_contains),
        "detail {detail:?} should contain {detail_contains:?}"
    );
    body
}

/// Every log line of this test process, so tests can check what reaches
/// the logs (capped; also echoed to stdout with `TEST_LOG=1`).
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
const MAX_LOG_BYTES: usize = 256 * 1024 * 1024;

struct CaptureWriter;

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut logs = LOGS.lock().unwrap();
        if logs.len() + buf.len() <= MAX_LOG_BYTES {
            logs.extend_from_slice(buf);
        }
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stdout().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut settings = test_settings().log;
        settings.format = "json".into();
        herald::http::telemetry::init_logging(&settings, || CaptureWriter);
    });
}
