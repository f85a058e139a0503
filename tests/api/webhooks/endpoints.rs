//! The endpoint's life: disabled after failing for the whole window (and
//! shown so), deleted (and its deliveries stop).

use std::time::Duration;

use serde_json::json;

use super::{Admin, fast, outbox_rows, wait_requests};
use crate::inbox::Publisher;
use crate::support::receiver::Receiver;
use crate::support::{TestApp, assert_problem, wait_within};

#[tokio::test]
async fn an_endpoint_failing_for_the_whole_window_is_disabled_and_listed_so() {
    let app = TestApp::spawn_with(|s| {
        fast(s);
        s.webhooks.disable_after_secs = 2;
    })
    .await;
    let admin = Admin::of(&app);
    let receiver = Receiver::scripted(|_, _| 500).await;
    let healthy = Receiver::start().await;
    let hook = admin.create(&receiver.url, &["*"]).await;
    admin.create(&healthy.url, &["*"]).await;
    let publisher = Publisher::of(&app);
    publisher.one("dee", "first", json!({})).await;

    wait_within(
        "the endpoint disabled",
        Duration::from_secs(20),
        async || admin.list().await[0]["enabled"] == false,
    )
    .await;
    let listed = admin.list().await;
    let it = &listed[0];
    assert_eq!(it["id"], hook["id"]);
    assert!(it["disabled_at"].is_string(), "{it}");
    let reason = it["disabled_reason"].as_str().unwrap();
    assert!(
        reason.contains("failed for 2 s") && reason.contains("500"),
        "{reason}"
    );
    assert!(it["last_error"].as_str().unwrap().contains("500"), "{it}");
    assert_eq!(it["pending"], 0);
    assert!(it.get("secret").is_none());
    assert!(receiver.requests().len() >= 2, "it was retried");
    // The other endpoint is not affected.
    assert_eq!(listed[1]["enabled"], true);
    assert!(
        herald::db::webhooks::triggers_armed(&app.pool)
            .await
            .unwrap()
    );
    assert_eq!(listed[1]["disabled_at"], json!(null));

    // A disabled endpoint gets no more outbox rows (the trigger writes them
    // in the publish's own statement, so they would be there now).
    let before = receiver.requests().len();
    publisher.one("dee", "second", json!({})).await;
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_outbox WHERE webhook_id = $1::uuid")
            .bind(hook["id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(rows, 0);
    wait_requests(
        "the healthy endpoint got both",
        || healthy.accepted(),
        |r| r.len() == 2,
    )
    .await;
    assert_eq!(receiver.requests().len(), before);
}

#[tokio::test]
async fn a_deleted_endpoint_gets_nothing_more() {
    let app = TestApp::spawn_with(fast).await;
    let admin = Admin::of(&app);
    let receiver = Receiver::scripted(|_, _| 503).await;
    let hook = admin.create(&receiver.url, &["*"]).await;
    let id = hook["id"].as_str().unwrap();
    let publisher = Publisher::of(&app);
    publisher.one("eve", "queued", json!({})).await;
    wait_requests("an attempt", || receiver.requests(), |r| !r.is_empty()).await;
    assert_eq!(outbox_rows(&app.pool).await, 1);

    assert_eq!(admin.delete(id).await.status(), 204);
    assert_eq!(outbox_rows(&app.pool).await, 0);
    assert!(admin.list().await.is_empty());
    assert_problem(admin.delete(id).await, 404, "no such webhook").await;
    // Nothing is queued for it any more, so nothing more is sent (an
    // attempt in flight at the delete may still land).
    publisher.one("eve", "after", json!({})).await;
    assert_eq!(outbox_rows(&app.pool).await, 0);
    assert!(receiver.requests().iter().all(|r| r.id() == "eve:1"));
}

#[tokio::test]
async fn the_last_endpoint_disabled_takes_the_outbox_triggers_with_it() {
    let app = TestApp::spawn_with(|s| {
        fast(s);
        s.webhooks.disable_after_secs = 1;
    })
    .await;
    let receiver = Receiver::scripted(|_, _| 500).await;
    Admin::of(&app).create(&receiver.url, &["*"]).await;
    let armed = async || {
        herald::db::webhooks::triggers_armed(&app.pool)
            .await
            .unwrap()
    };
    assert!(armed().await);
    Publisher::of(&app).one("kay", "doomed", json!({})).await;
    wait_within(
        "the triggers dropped",
        Duration::from_secs(20),
        async || !armed().await,
    )
    .await;
    assert_eq!(Admin::of(&app).list().await[0]["enabled"], false);
    // Events are written as before, and queue nothing.
    Publisher::of(&app).one("kay", "after", json!({})).await;
    assert_eq!(outbox_rows(&app.pool).await, 0);
}
