//! `POST /v1/broadcasts` and the members a v2 publish gained: `critical`
//! applies (see `skipped.rs`); a member the broadcast does not act on must
//! not be silently dropped.

use std::time::Duration;

use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};

use super::{call, in_ms, subscribe, targeting_rows};
use crate::support::TestApp;

async fn everyone_got(app: &TestApp, title: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM notifications WHERE title = $1")
        .bind(title)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_broadcast_with_a_deliver_at_is_not_sent_before_it() {
    let app = TestApp::spawn().await;
    app.publish(&["k-1", "k-2"], "known").await;
    let (at, at_text) = in_ms(60_000);
    let r = call(
        &app,
        Method::POST,
        "/v1/broadcasts",
        &app.admin(),
        Some(&json!({"title": "tomorrow", "deliver_at": at_text})),
    )
    .await;
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap();
    // Refused (as a member it does not take), or held until its time:
    // either way, nobody has it now.
    if status == 422 {
        assert_eq!(targeting_rows(&app.pool).await, (0, 0, 0), "{answer}");
    } else {
        assert!(status == 202, "{status} {answer}");
        // Long enough for a broadcast sent at once to be done.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(Utc::now() < at);
    }
    assert_eq!(
        everyone_got(&app, "tomorrow").await,
        0,
        "answered {status} {answer}, and sent before its deliver_at"
    );
}

#[tokio::test]
async fn a_broadcast_naming_topics_does_not_go_to_everyone() {
    let app = TestApp::spawn().await;
    app.publish(&["member", "outsider"], "known").await;
    subscribe(&app, "club", &["member"]).await;
    let r = call(
        &app,
        Method::POST,
        "/v1/broadcasts",
        &app.admin(),
        Some(&json!({"title": "club only", "topics": ["club"]})),
    )
    .await;
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap();
    if status == 202 {
        // Honoured: sent to the topic's subscribers alone.
        let id = answer["id"].as_str().unwrap().to_owned();
        crate::support::wait_within("the broadcast", Duration::from_secs(20), async || {
            let path = format!("/v1/admin/broadcasts/{id}");
            let r = call(&app, Method::GET, &path, &app.admin(), None).await;
            r.json::<Value>().await.unwrap()["status"] == "done"
        })
        .await;
        assert_eq!(super::titled(&app.pool, "member", "club only").await, 1);
    } else {
        assert_eq!(status, 422, "{answer}");
    }
    assert_eq!(
        super::titled(&app.pool, "outsider", "club only").await,
        0,
        "answered {status} {answer}, and reached a user outside the topic"
    );
}
