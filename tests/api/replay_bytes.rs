//! Replay is bounded in bytes as well as in events: a page of maximal
//! notifications is ~20 KiB an event, so a bound in rows alone let one
//! replaying connection hold megabytes.

use serde_json::{Value, json};

use crate::support::TestApp;

/// A notification of about 16 KiB.
fn large(i: usize) -> Value {
    json!({"recipients": ["big"], "title": format!("large {i}"), "data": {"blob": "x".repeat(16_000)}})
}

async fn publish_large(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let r = app.post_notification(&large(i)).await;
        assert_eq!(r.status(), 201);
        let answer: Value = r.json().await.unwrap();
        ids.push(
            answer["notifications"][0]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids
}

#[tokio::test]
async fn a_stream_replays_large_notifications_in_byte_bounded_pages_exactly_once() {
    let app = TestApp::spawn_with(|s| {
        // About two large notifications a page, three in the queue.
        s.stream.replay_page_bytes = 40_000;
        s.stream.buffer_bytes = 50_000;
    })
    .await;
    let ids = publish_large(&app, 25).await;
    let mut stream = app.sse("big", Some("0"), None).await;
    let events = stream.take(25).await;
    let seqs: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let expected: Vec<String> = (1..=25).map(|s: i64| s.to_string()).collect();
    assert_eq!(seqs, expected);
    let got: Vec<String> = events
        .iter()
        .map(|e| crate::support::data(e)["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ids);
    // Nothing more: one more publish is the very next event.
    let next = app.publish(&["big"], "small").await;
    let event = stream.next().await.unwrap();
    assert_eq!(event.id, "26");
    assert_eq!(crate::support::data(&event)["id"], next[0]["id"]);
}

#[tokio::test]
async fn a_poll_answer_is_bounded_in_bytes_and_the_rest_follows() {
    let app = TestApp::spawn_with(|s| s.stream.replay_page_bytes = 40_000).await;
    publish_large(&app, 10).await;
    let mut after = 0;
    let mut answers = Vec::new();
    while after < 10 {
        let r = app
            .get_as("big", &format!("/v1/me/events?after={after}&limit=500"))
            .await;
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.unwrap();
        let seqs: Vec<i64> = answer["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert!(!seqs.is_empty() && seqs.len() <= 3, "{seqs:?}");
        assert_eq!(seqs[0], after + 1);
        assert_eq!(answer["last_seq"], 10);
        after = *seqs.last().unwrap();
        answers.push(seqs);
    }
    assert_eq!(after, 10);
    assert!(
        answers.len() >= 4,
        "the bytes, not the limit, cut the pages"
    );
}
