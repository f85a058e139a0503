//! Per user, an endpoint gets events in seq order: a later event is not
//! sent before the earlier one was accepted, however often that one fails.
//! A retry is the same message: same `webhook-id`, same body.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use super::{Admin, fast, user_seq, wait_requests};
use crate::inbox::Publisher;
use crate::support::receiver::{HANG, Receiver};

/// Failed attempts before each message is accepted.
const FAILURES: usize = 2;

#[tokio::test]
async fn a_later_event_waits_until_the_earlier_is_accepted_and_retries_keep_their_id() {
    let app = crate::support::TestApp::spawn_with(fast).await;
    let tries: Mutex<HashMap<String, usize>> = Mutex::default();
    let receiver = Receiver::scripted(move |r, _| {
        let mut tries = tries.lock().unwrap();
        let n = tries.entry(r.id().to_owned()).or_default();
        *n += 1;
        if *n <= FAILURES { 503 } else { 200 }
    })
    .await;
    Admin::of(&app).create(&receiver.url, &["*"]).await;
    let publisher = Publisher::of(&app);
    for i in 0..3 {
        // One request for both users: their events commit together.
        publisher
            .publish(&json!({"recipients": ["ann", "ben"], "title": format!("n{i}")}))
            .await;
    }

    let all = wait_requests(
        "three events per user accepted",
        || receiver.requests(),
        |r| r.iter().filter(|r| r.accepted()).count() == 6,
    )
    .await;
    for user in ["ann", "ben"] {
        let mine: Vec<_> = all.iter().filter(|r| user_seq(r).0 == user).collect();
        let seqs: Vec<i64> = mine.iter().map(|r| user_seq(r).1).collect();
        // Each event: FAILURES refusals, then its acceptance; then the next.
        let expected: Vec<i64> = (1..=3).flat_map(|s| [s; FAILURES + 1]).collect();
        assert_eq!(seqs, expected, "{user}");
        let accepted: Vec<bool> = mine.iter().map(|r| r.accepted()).collect();
        let expected: Vec<bool> = (0..3)
            .flat_map(|_| (0..=FAILURES).map(|i| i == FAILURES))
            .collect();
        assert_eq!(accepted, expected, "{user}");
        // Retries repeat the message exactly (only the timestamp and so
        // the signature may change).
        for attempts in mine.chunks(FAILURES + 1) {
            assert!(attempts.iter().all(|r| r.id() == attempts[0].id()));
            assert!(attempts.iter().all(|r| r.body == attempts[0].body));
        }
    }
    let (unfinished,): (i64,) = sqlx::query_as("SELECT count(*) FROM webhook_outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(unfinished, 0);
}

#[tokio::test]
async fn an_attempt_the_receiver_does_not_answer_times_out_and_is_retried() {
    let app = crate::support::TestApp::spawn_with(|s| {
        fast(s);
        s.webhooks.timeout_ms = 300;
    })
    .await;
    let receiver = Receiver::scripted(|_, before| if before == 0 { HANG } else { 204 }).await;
    let admin = Admin::of(&app);
    admin.create(&receiver.url, &["notification"]).await;
    Publisher::of(&app).one("ted", "slow", json!({})).await;

    let got = wait_requests(
        "the retry accepted",
        || receiver.requests(),
        |r| r.iter().any(|r| r.accepted()),
    )
    .await;
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].id(), got[1].id()), ("ted:1", "ted:1"));
    assert_eq!(got[0].body, got[1].body);
    let listed = admin.list().await;
    assert!(
        listed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{}",
        listed[0]
    );
    // Healthy again since the retry was accepted.
    assert_eq!(listed[0]["failing_since"], serde_json::Value::Null);
}

#[tokio::test]
async fn an_endpoint_gets_at_most_its_concurrency_of_requests_at_once() {
    const TIMEOUT: Duration = Duration::from_millis(1_500);
    let app = crate::support::TestApp::spawn_with(|s| {
        fast(s);
        s.webhooks.timeout_ms = TIMEOUT.as_millis() as u64;
        s.webhooks.concurrency_per_endpoint = 2;
    })
    .await;
    // The first four requests hang until the sender gives up on them.
    let receiver = Receiver::scripted(|_, before| if before < 4 { HANG } else { 204 }).await;
    Admin::of(&app)
        .create(&receiver.url, &["notification"])
        .await;
    Publisher::of(&app)
        .publish(&json!({"recipients": ["c1", "c2", "c3", "c4"], "title": "at once"}))
        .await;

    let got = wait_requests(
        "four users' events accepted",
        || receiver.accepted(),
        |r| r.len() == 4,
    )
    .await;
    let all = receiver.requests();
    // Two slots: the third request waited for one of the first two to time
    // out, the fifth for one of the next two.
    let first = all[0].at;
    assert!(all[1].at - first < TIMEOUT, "{all:?}");
    assert!(
        all[2].at - first >= TIMEOUT - Duration::from_millis(100),
        "{all:?}"
    );
    assert!(
        all[4].at - all[2].at >= TIMEOUT - Duration::from_millis(100),
        "{all:?}"
    );
    assert_eq!(got.len(), 4);
}
