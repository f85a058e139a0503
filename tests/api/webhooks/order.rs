//! Per user, an endpoint gets events in seq order: a later event is not
//! sent before the earlier one was accepted, however often that one fails.
//! A retry is the same message: same `webhook-id`, same body.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;

use super::{Admin, fast, user_seq, wait_requests};
use crate::inbox::Publisher;
use crate::support::receiver::Receiver;

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
