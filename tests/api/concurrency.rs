//! The replay promise under load: concurrent publishers, a subscriber that
//! keeps dropping and resuming, and not one event lost or repeated.

use std::collections::HashSet;
use std::time::Duration;

use rand::RngExt;
use serde_json::json;

use crate::support::{TestApp, data};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_subscriber_gets_every_event_once_in_order_under_concurrent_publishing() {
    const PUBLISHERS: usize = 8;
    const EACH: usize = 200;
    let app = TestApp::spawn().await;

    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (http, url, token) = (
            app.http.clone(),
            app.url("/v1/notifications"),
            app.publisher(),
        );
        publishers.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(EACH);
            for i in 0..EACH {
                // Other users in the same publishes keep batches mixed.
                let body = json!({"recipients": ["target", format!("other-{p}")], "title": format!("p{p}-{i}")});
                let r = http.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 201);
                let v: serde_json::Value = r.json().await.unwrap();
                ids.push(v["notifications"][0]["id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }

    let total = PUBLISHERS * EACH;
    let mut received: Vec<(i64, String)> = Vec::with_capacity(total);
    let mut last: Option<i64> = None;
    let mut reconnects = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while received.len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {total} events arrived",
            received.len()
        );
        let resume = last.map(|l| l.to_string());
        let mut stream = app
            .sse("target", Some(resume.as_deref().unwrap_or("0")), None)
            .await;
        reconnects += 1;
        let window = Duration::from_millis(rand::rng().random_range(5..80));
        let until = tokio::time::Instant::now() + window;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match stream.next_within(left).await {
                Ok(Some(event)) => {
                    assert_eq!(event.event, "notification");
                    let seq: i64 = event.id.parse().unwrap();
                    if let Some(prev) = last {
                        assert!(
                            seq > prev,
                            "seq {seq} after {prev}: not strictly increasing"
                        );
                    }
                    last = Some(seq);
                    received.push((seq, data(&event)["id"].as_str().unwrap().to_owned()));
                    if received.len() == total {
                        break;
                    }
                }
                Ok(None) => panic!("the server ended the stream"),
                Err(()) => break,
            }
        }
    }

    let mut published = HashSet::new();
    for p in publishers {
        published.extend(p.await.unwrap());
    }
    let got: HashSet<String> = received.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(got.len(), total, "duplicates were delivered");
    assert_eq!(
        got, published,
        "the delivered set differs from the published set"
    );
    assert!(
        reconnects > 5,
        "the subscriber should have reconnected many times, did {reconnects}"
    );
    // Nothing more arrives after the last one.
    let mut stream = app
        .sse("target", Some(&last.unwrap().to_string()), None)
        .await;
    assert!(
        stream
            .next_within(Duration::from_millis(300))
            .await
            .is_err()
    );
}
