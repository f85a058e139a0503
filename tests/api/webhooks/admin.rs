//! `/v1/admin/webhooks`: what is accepted, what is answered, and that a
//! refused request changes nothing; outbound addresses on this machine or a
//! private network are refused unless the setting allows them.

use base64::Engine;
use herald::http::auth::Scope;
use serde_json::{Value, json};

use super::{Admin, fast, wait_requests};
use crate::inbox::Publisher;
use crate::support::receiver::Receiver;
use crate::support::{TestApp, assert_problem, wait_for};

/// Whether the outbox triggers exist.
async fn armed(app: &TestApp) -> bool {
    herald::db::webhooks::triggers_armed(&app.pool)
        .await
        .unwrap()
}

async fn endpoints(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM webhooks")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn create_list_and_delete() {
    let app = TestApp::spawn_with(fast).await;
    let admin = Admin::of(&app);
    // Without endpoints, writing events costs nothing more: no triggers.
    assert!(!armed(&app).await);
    let created = admin
        .create("http://127.0.0.1:9/in", &["read", "notification", "read"])
        .await;
    let members: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert_eq!(members, ["created_at", "events", "id", "secret", "url"]);
    assert_eq!(created["url"], "http://127.0.0.1:9/in");
    assert_eq!(created["events"], json!(["read", "notification"]));
    let secret = created["secret"].as_str().unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert_eq!(key.len(), 32);
    let all = admin.create("https://192.0.2.1/hook", &["*"]).await;
    assert_ne!(all["secret"], created["secret"]);

    let listed = admin.list().await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], created["id"]);
    assert_eq!(
        listed[0],
        json!({
            "id": created["id"], "url": created["url"], "events": created["events"],
            "created_at": created["created_at"], "enabled": true, "disabled_at": null,
            "disabled_reason": null, "pending": 0, "failing_since": null,
            "last_error": null, "last_error_at": null,
        })
    );
    let text = serde_json::to_string(&listed).unwrap();
    assert!(
        !text.contains("whsec_"),
        "the secret is shown only at creation"
    );

    assert!(armed(&app).await);
    let id = created["id"].as_str().unwrap();
    assert_eq!(admin.delete(id).await.status(), 204);
    assert_eq!(admin.list().await.len(), 1);
    assert!(armed(&app).await, "one endpoint is left");
    let last = all["id"].as_str().unwrap();
    assert_eq!(admin.delete(last).await.status(), 204);
    assert!(!armed(&app).await, "no endpoint is left");
    assert_problem(admin.delete(id).await, 404, "no such webhook").await;
    let r = admin.delete("not-a-uuid").await;
    assert_problem(r, 400, "invalid path parameter").await;
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let app = TestApp::spawn_with(fast).await;
    let admin = Admin::of(&app);
    let cases: &[(Value, u16, &str)] = &[
        (
            json!({"url": "ftp://example.com/x", "events": ["*"]}),
            422,
            "http or https",
        ),
        (
            json!({"url": "example.com/x", "events": ["*"]}),
            422,
            "not an absolute URL",
        ),
        (
            json!({"url": "https://u:p@example.com/", "events": ["*"]}),
            422,
            "credentials",
        ),
        (
            json!({"url": "https://example.com/", "events": []}),
            422,
            "at least one",
        ),
        (
            json!({"url": "https://example.com/", "events": ["reset"]}),
            422,
            "unknown event type",
        ),
        (
            json!({"url": "https://example.com/", "events": ["nope", "*"]}),
            422,
            "unknown event type",
        ),
        (json!({"url": "https://example.com/"}), 422, "events"),
        (json!({"url": 5, "events": ["*"]}), 422, "invalid type"),
        (
            json!({"url": "https://example.com/", "events": ["*"], "x": 1}),
            422,
            "unknown field",
        ),
        (json!(["https://example.com/"]), 422, ""),
    ];
    for (body, status, detail) in cases {
        let r = admin.post(body).await;
        assert_problem(r, *status, detail).await;
    }
    let r = app
        .http
        .post(app.url("/v1/admin/webhooks"))
        .bearer_auth(app.admin())
        .header("content-type", "application/json")
        .body("{\"url\": ")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "not valid JSON").await;
    // Not an administrator.
    let r = app
        .http
        .post(app.url("/v1/admin/webhooks"))
        .bearer_auth(app.token("publisher", &[Scope::Publish]))
        .json(&json!({"url": "https://example.com/", "events": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .http
        .get(app.url("/v1/admin/webhooks"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(endpoints(&app).await, 0);
    assert!(admin.list().await.is_empty());
    assert!(!armed(&app).await);
}

#[tokio::test]
async fn loopback_and_private_urls_are_refused_without_the_setting() {
    let app = TestApp::spawn().await;
    assert!(!app.settings.webhooks.allow_private_urls, "the default");
    let admin = Admin::of(&app);
    let receiver = Receiver::start().await;
    for url in [
        receiver.url.as_str(),
        "http://localhost:8080/x",
        "http://[::1]/x",
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/x",
        "http://[::ffff:127.0.0.1]/x",
    ] {
        let r = admin.post(&json!({"url": url, "events": ["*"]})).await;
        assert_problem(r, 422, "webhooks must be public").await;
    }
    assert_eq!(endpoints(&app).await, 0);

    // An endpoint whose address became private after it was registered
    // (stored directly here) is refused at delivery, before connecting.
    sqlx::query(
        "INSERT INTO webhooks (id, url, events, secret)
         VALUES (gen_random_uuid(), $1, '{*}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')",
    )
    .bind(&receiver.url)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO webhooks (id, url, events, secret)
         VALUES (gen_random_uuid(), $1, '{*}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')",
    )
    .bind(receiver.url.replace("127.0.0.1", "localhost"))
    .execute(&app.pool)
    .await
    .unwrap();
    // Stored behind the API's back: arm the triggers as the API would.
    sqlx::query("SELECT herald_webhooks_sync()")
        .execute(&app.pool)
        .await
        .unwrap();
    Publisher::of(&app).one("fay", "hello", json!({})).await;
    wait_for(|| async {
        let errors: Vec<Option<String>> =
            sqlx::query_scalar("SELECT last_error FROM webhook_outbox ORDER BY webhook_id")
                .fetch_all(&app.pool)
                .await
                .unwrap();
        errors.len() == 2
            && errors.iter().all(|e| {
                e.as_deref()
                    .is_some_and(|e| e.contains("webhooks must be public"))
            })
    })
    .await;
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn delivery_metrics_are_exported() {
    let app = TestApp::spawn_with(fast).await;
    let receiver = Receiver::start().await;
    Admin::of(&app)
        .create(&receiver.url, &["notification"])
        .await;
    Publisher::of(&app).one("gus", "metered", json!({})).await;
    wait_requests("a delivery", || receiver.accepted(), |r| r.len() == 1).await;
    wait_for(|| async {
        let text = app.metrics_text().await;
        [
            "herald_webhook_deliveries_total",
            "herald_webhook_delivery_failures_total",
            "herald_webhook_outbox_pending",
            "herald_webhook_outbox_lag_seconds",
        ]
        .iter()
        .all(|name| text.contains(name))
    })
    .await;
}
