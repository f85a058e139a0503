//! `/metrics` exposes the named series, and they move with traffic. The
//! recorder is shared by every test in this process, so values are checked
//! as "grew by at least", never as exact totals.

use crate::support::{TestApp, wait_for};
use herald::http::auth::Scope;

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
    let other = app.token("other-publisher", &[Scope::Publish]);
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

/// Label values of `herald_http_requests_total` come from closed sets, so
/// requests with invented methods and paths (no token needed) cannot grow
/// `/metrics` and the process without bound.
#[tokio::test]
async fn invented_methods_and_paths_do_not_grow_the_series() {
    let app = TestApp::spawn().await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let attack = |round: usize| {
        let (app, marker) = (&app, marker.clone());
        async move {
            for i in 0..100 {
                let method = format!("X{round}Y{i}{}", &marker[..8]).to_uppercase();
                let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                for path in [format!("/inv-{marker}-{round}-{i}"), "/healthz".to_owned()] {
                    let r = app
                        .http
                        .request(method.clone(), app.url(&path))
                        .send()
                        .await
                        .unwrap();
                    assert!(
                        r.status().is_client_error(),
                        "{method} {path}: {}",
                        r.status()
                    );
                }
            }
        }
    };
    let series = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("herald_http_requests_total{"))
            .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
            .collect()
    };
    attack(1).await;
    let after_one = scrape(&app).await;
    attack(2).await;
    let after_two = scrape(&app).await;
    assert!(
        !after_two.to_lowercase().contains(&marker[..8]),
        "a request's method or path became a label"
    );
    assert!(
        !after_two.contains("/inv-"),
        "an unmatched path became a label"
    );
    let methods = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
    ];
    for line in series(&after_two) {
        let method = line
            .split("method=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(methods.contains(&method), "{line}");
        let status = line
            .split("status=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(status.len() == 3, "{line}");
    }
    let other = |text: &str| {
        series(text)
            .into_iter()
            .filter(|l| l.contains("method=\"other\""))
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert!(
        !other(&after_one).is_empty(),
        "the invented methods were counted"
    );
    assert_eq!(
        other(&after_one),
        other(&after_two),
        "a second round added series"
    );
}
