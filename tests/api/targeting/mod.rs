//! Targeting and timing (issue #12): topics, preferences, critical
//! publishes, scheduled delivery, batches, and their metrics. One concern
//! per file; what they share is here.

mod batch;
mod broadcasts;
mod cancel;
mod instances;
mod metrics;
mod preferences;
mod schedules;
mod skipped;
mod topics;

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::{TestApp, wait_within};

/// A moment `ms` milliseconds from now, and how a publish names it.
pub fn in_ms(ms: i64) -> (DateTime<Utc>, String) {
    // Whole milliseconds, so the moment is exactly what the text says.
    let at = (Utc::now() + chrono::Duration::milliseconds(ms)).trunc_subsecs(3);
    (at, at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Sleeps until `at` plus `margin`: only to prove that something did
/// *not* happen by then.
pub async fn sleep_past(at: DateTime<Utc>, margin: Duration) {
    let left = (at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + margin).await;
}

/// Any request, with a bearer token and an optional JSON body.
pub async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

/// The answer's JSON body, after checking its status.
pub async fn expect(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// `PUT /v1/topics/{topic}/subscribers`; the answer.
pub async fn subscribe(app: &TestApp, topic: &str, users: &[&str]) -> Value {
    let path = format!("/v1/topics/{topic}/subscribers");
    let r = call(
        app,
        Method::PUT,
        &path,
        &app.publisher(),
        Some(&json!({ "users": users })),
    )
    .await;
    expect(r, 200).await
}

/// `DELETE /v1/topics/{topic}/subscribers`; the answer.
pub async fn unsubscribe(app: &TestApp, topic: &str, users: &[&str]) -> Value {
    let path = format!("/v1/topics/{topic}/subscribers");
    let r = call(
        app,
        Method::DELETE,
        &path,
        &app.publisher(),
        Some(&json!({ "users": users })),
    )
    .await;
    expect(r, 200).await
}

/// The user turns `category` on or off; the whole document.
pub async fn set_preference(app: &TestApp, user: &str, category: &str, enabled: bool) -> Value {
    let path = format!("/v1/me/preferences/categories/{category}");
    let r = call(
        app,
        Method::PUT,
        &path,
        &app.token(user, &[]),
        Some(&json!({ "enabled": enabled })),
    )
    .await;
    expect(r, 200).await
}

/// A publish that must succeed with 201; the answer.
pub async fn publish_ok(app: &TestApp, body: &Value) -> Value {
    expect(app.post_notification(body).await, 201).await
}

/// A publish scheduled for later (202); its `schedule` member.
pub async fn schedule(app: &TestApp, body: &Value) -> Value {
    let answer = expect(app.post_notification(body).await, 202).await;
    assert_eq!(answer.as_object().unwrap().len(), 1, "{answer}");
    answer["schedule"].clone()
}

/// `GET /v1/schedules/{id}` as `token`.
pub async fn get_schedule(app: &TestApp, id: &str, token: &str) -> reqwest::Response {
    call(
        app,
        Method::GET,
        &format!("/v1/schedules/{id}"),
        token,
        None,
    )
    .await
}

/// `DELETE /v1/schedules/{id}` as `token`.
pub async fn cancel_schedule(app: &TestApp, id: &str, token: &str) -> reqwest::Response {
    call(
        app,
        Method::DELETE,
        &format!("/v1/schedules/{id}"),
        token,
        None,
    )
    .await
}

/// Waits until the publisher's schedule `id` is delivered (or `within`
/// runs out) and returns it.
pub async fn delivered(app: &TestApp, id: &str, within: Duration) -> Value {
    wait_within("the schedule's delivery", within, async || {
        let s = expect(get_schedule(app, id, &app.publisher()).await, 200).await;
        s["status"] == "delivered"
    })
    .await;
    expect(get_schedule(app, id, &app.publisher()).await, 200).await
}

/// The user's current seq, as the user sees it.
pub async fn last_seq(app: &TestApp, user: &str) -> i64 {
    let r = app.get_as(user, "/v1/me/counts").await;
    expect(r, 200).await["last_seq"].as_i64().unwrap()
}

/// How many notifications titled `title` the user has.
pub async fn titled(pool: &PgPool, user: &str, title: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM notifications WHERE user_id = $1 AND title = $2")
        .bind(user)
        .bind(title)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The user's notifications as stored, by seq: (seq, title).
pub async fn log_of(pool: &PgPool, user: &str) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT seq, title FROM notifications WHERE user_id = $1 ORDER BY seq")
        .bind(user)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Rows of the targeting tables: subscriptions, schedules, broadcasts.
pub async fn targeting_rows(pool: &PgPool) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM topic_subscribers), (SELECT count(*) FROM schedules),
                (SELECT count(*) FROM broadcasts)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}
