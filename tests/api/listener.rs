//! The wake-up listener: what an instance hears of commits, its own included,
//! and what it does when its LISTEN connection dies without a word.

use serde_json::{Value, json};

use crate::helpers::{TestApp, data};

/// This instance's id, as it signs its wake-ups.
async fn instance_id(app: &TestApp) -> String {
    let stats: Value = app
        .http
        .get(app.url("/v1/admin/stats"))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["instance"].as_str().unwrap().to_owned()
}

/// A commit whose outcome this instance never learned (the commit succeeded
/// but the connection broke before the answer): its streams were not woken
/// in-process, so its own NOTIFY must wake them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_still_reaches_this_instances_streams() {
    let app = TestApp::spawn().await;
    let first = app.publish(&["ida"], "seen through the normal path").await;
    let mut stream = app.sse("ida", Some("0"), None).await;
    assert_eq!(data(&stream.next().await.unwrap())["id"], first[0]["id"]);

    // The same statements a publish of this instance runs, committed behind
    // its back: seq reserved under the counter row, the row, the NOTIFY
    // signed with this instance's id.
    let me = instance_id(&app).await;
    let mut tx = app.pool.begin().await.unwrap();
    let seq: i64 = sqlx::query_scalar(
        "UPDATE users SET last_seq = last_seq + 1 WHERE user_id = 'ida' RETURNING last_seq",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO notifications (id, user_id, seq, title, created_at) VALUES ($1, 'ida', $2, 'lost answer', now())",
    )
    .bind(id)
    .bind(seq)
    .execute(&mut *tx)
    .await
    .unwrap();
    let payload = json!({"i": me, "w": [["ida", seq]]}).to_string();
    sqlx::query("SELECT pg_notify('herald_events', $1)")
        .bind(&payload)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let event = stream.next().await.expect("the stream is still open");
    assert_eq!(event.event, "notification");
    assert_eq!(event.id, seq.to_string());
    assert_eq!(data(&event)["id"], id.to_string());
}
