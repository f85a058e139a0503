//! `/metrics` exposes the named series, and they move with traffic. The
//! recorder is shared by every test in this process, so values are checked
//! as "grew by at least", never as exact totals.

use crate::support::{TestApp, wait_for};

async fn scrape(app: &TestApp) -> String {
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    r.text().await.unwrap()
}

/// The sum of every sample whose series starts with `series`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_named_series_are_exposed_and_move_with_traffic() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let before = scrape(&app).await;
    for name in [
        "herald_http_requests_total",
        "herald_connections{transport=\"sse\"}",
        "herald_connections{transport=\"ws\"}",
        "herald_connections{transport=\"poll\"}",
        "herald_replayed_events_total",
        "herald_resets_total",
        "herald_slow_client_disconnects_total",
        "herald_listener_connects_total",
        "herald_db_pool_connections",
        "herald_db_pool_idle",
        "herald_users_online",
    ] {
        assert!(before.contains(name), "{name} is missing from /metrics");
    }

    let mut stream = app.sse("metered", None, None).await;
    for i in 0..3 {
        app.publish(&["metered"], &format!("m{i}")).await;
    }
    stream.take(3).await;
    let mut replay = app.sse("metered", Some("0"), None).await;
    replay.take(3).await;
    let mut reset = app.sse("metered", Some("garbage"), None).await;
    assert_eq!(reset.next().await.unwrap().event, "reset");

    let after = scrape(&app).await;
    let grew = |series: &str, by: f64| {
        let (b, a) = (value(&before, series), value(&after, series));
        assert!(a >= b + by, "{series}: {b} -> {a}, expected +{by}");
    };
    grew(
        "herald_http_requests_total{route=\"/v1/notifications\",method=\"POST\",status=\"201\"}",
        3.0,
    );
    grew("herald_publish_seconds_count", 3.0);
    grew("herald_publish_batch_requests_count", 1.0);
    grew("herald_publish_to_deliver_seconds_count", 3.0);
    grew("herald_delivered_events_total{transport=\"sse\"}", 6.0);
    grew("herald_replayed_events_total", 3.0);
    grew("herald_resets_total", 1.0);
    assert!(value(&after, "herald_connections{transport=\"sse\"}") >= 3.0);
    assert!(
        after.contains("herald_publish_to_deliver_seconds_bucket"),
        "a histogram, with buckets"
    );
    drop((stream, replay, reset));
}

#[tokio::test]
async fn the_publish_rate_limit_answers_429_and_recovers() {
    let app = TestApp::spawn_with(|s| {
        s.publish.rate_per_sec = 2;
        s.publish.burst = 2;
    })
    .await;
    let body = serde_json::json!({"recipients": ["limited"], "title": "t"});
    assert_eq!(app.post_notification(&body).await.status(), 201);
    assert_eq!(app.post_notification(&body).await.status(), 201);
    let r = app.post_notification(&body).await;
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    crate::support::assert_problem(r, 429, "publish rate").await;
    assert_eq!(
        app.list("limited", "").await["last_seq"],
        2,
        "the refused publish created nothing"
    );
    // Another publisher has its own budget.
    let other = app.token("other-publisher", Some("publish"));
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(other)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // The bucket refills.
    wait_for(|| async { app.post_notification(&body).await.status() == 201 }).await;
}
