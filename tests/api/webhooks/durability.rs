//! The outbox is durable: what was committed is delivered after a kill and
//! restart of Herald, after a receiver outage, and after the notification
//! itself was deleted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Admin, FAST_ENV, fast, official_verify, outbox_rows, user_seq, wait_requests};
use crate::inbox::{Me, Publisher};
use crate::support::receiver::Receiver;
use crate::support::{Herald, Service, TestApp, data, fresh_database, wait_within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_a_kill_and_restart_and_a_receiver_outage() {
    let db_url = fresh_database().await;
    let mut herald = Herald::start_with(&db_url, FAST_ENV).await;
    let service = Service::new(herald.base());
    let down = Arc::new(AtomicBool::new(true));
    let receiver = Receiver::scripted({
        let down = Arc::clone(&down);
        move |_, _| {
            if down.load(Ordering::SeqCst) {
                503
            } else {
                200
            }
        }
    })
    .await;
    let hook = Admin::on(&service).create(&receiver.url, &["*"]).await;
    let publisher = Publisher::on(&service);
    for i in 0..5 {
        publisher.one("hal", &format!("n{i}"), json!({})).await;
    }
    wait_requests(
        "attempts during the outage",
        || receiver.requests(),
        |r| r.len() >= 2,
    )
    .await;

    herald.kill().await;
    herald.restart().await;
    // Still down for a while after the restart: retried from the outbox.
    let before = receiver.requests().len();
    wait_requests(
        "attempts after the restart",
        || receiver.requests(),
        |r| r.len() >= before + 2,
    )
    .await;
    down.store(false, Ordering::SeqCst);

    let accepted = wait_requests(
        "all five accepted",
        || receiver.accepted(),
        |r| r.len() >= 5,
    )
    .await;
    let seqs: Vec<i64> = accepted.iter().map(|r| user_seq(r).1).collect();
    // At least once and in order: a repeat (a lease the kill left behind)
    // may only repeat what was already sent, never run ahead.
    let mut distinct = seqs.clone();
    distinct.dedup();
    assert_eq!(distinct, [1, 2, 3, 4, 5], "{seqs:?}");
    let secret = hook["secret"].as_str().unwrap();
    assert!(official_verify(secret, &accepted[4], &accepted[4].body).await);
    let pool = sqlx::PgPool::connect(&db_url).await.unwrap();
    wait_within("the outbox drained", Duration::from_secs(10), async || {
        outbox_rows(&pool).await == 0
    })
    .await;
}

#[tokio::test]
async fn a_deleted_notifications_event_is_still_delivered_whole() {
    let app = TestApp::spawn_with(fast).await;
    let down = Arc::new(AtomicBool::new(true));
    let receiver = Receiver::scripted({
        let down = Arc::clone(&down);
        move |_, _| {
            if down.load(Ordering::SeqCst) {
                503
            } else {
                204
            }
        }
    })
    .await;
    Admin::of(&app)
        .create(&receiver.url, &["notification", "deleted"])
        .await;
    let me = Me::of(&app, "ivy");
    let mut stream = app.sse("ivy", None, None).await;
    let id = Publisher::of(&app)
        .one(
            "ivy",
            "soon gone",
            json!({"body": "b", "data": {"z": 0, "a": "é"}, "category": "c"}),
        )
        .await;
    let live = stream.next().await.unwrap();
    wait_requests("an attempt", || receiver.requests(), |r| !r.is_empty()).await;
    // Gone before the receiver took it.
    assert_eq!(me.remove(&id).await.status(), 204);
    let deleted = stream.next().await.unwrap();
    assert_eq!(me.notification(&id).await.status(), 404);
    down.store(false, Ordering::SeqCst);

    let got = wait_requests("both accepted", || receiver.accepted(), |r| r.len() == 2).await;
    let body: Value = got[0].json();
    assert_eq!(body["type"], "notification");
    assert_eq!(body["data"]["title"], "soon gone");
    assert_eq!(body["data"]["id"], json!(id));
    // The data SSE sent, though the notification is gone now.
    assert_eq!(body["data"], data(&live));
    assert_eq!(got[1].json()["data"], data(&deleted));
    assert_eq!(got[1].json()["type"], "deleted");
}
