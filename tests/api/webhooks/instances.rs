//! Several instances share the outbox: with a receiver that always accepts,
//! each event is delivered exactly once, in order per user.

use std::collections::HashMap;

use serde_json::json;

use super::{Admin, fast, outbox_rows, user_seq, wait_requests};
use crate::inbox::Publisher;
use crate::support::receiver::Receiver;
use crate::support::{TestApp, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_each_event_once() {
    let first = TestApp::spawn_with(fast).await;
    let second = TestApp::spawn_on(&first.db_url, fast).await;
    let receiver = Receiver::start().await;
    Admin::of(&first).create(&receiver.url, &["*"]).await;
    let users = ["u0", "u1", "u2", "u3", "u4"];
    let publishers = [Publisher::of(&first), Publisher::of(&second)];
    let mut sent = 0;
    for round in 0..8 {
        publishers[round % 2]
            .publish(&json!({"recipients": users, "title": format!("r{round}")}))
            .await;
        sent += users.len();
    }

    wait_requests("every event", || receiver.accepted(), |r| r.len() >= sent).await;
    wait_for(|| async { outbox_rows(&first.pool).await == 0 }).await;
    let got = receiver.accepted();
    assert_eq!(got.len(), sent, "no duplicates");
    let mut per_user: HashMap<String, Vec<i64>> = HashMap::new();
    for r in &got {
        let (user, seq) = user_seq(r);
        per_user.entry(user).or_default().push(seq);
    }
    for user in users {
        assert_eq!(per_user[user], (1..=8).collect::<Vec<i64>>(), "{user}");
    }
}
