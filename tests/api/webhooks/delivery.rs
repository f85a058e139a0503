//! What a webhook request is: the matching events only, each with the body
//! and headers of the contract, its data exactly what SSE sends for that
//! seq, signed so that the official Standard Webhooks library accepts it.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{Admin, fast, official_verify, wait_requests};
use crate::inbox::{Me, Publisher};
use crate::support::receiver::Receiver;
use crate::support::{TestApp, wait_for};

#[tokio::test]
async fn matching_events_are_posted_with_the_sse_data_signed_and_verified_by_the_official_library()
{
    let app = TestApp::spawn_with(fast).await;
    let admin = Admin::of(&app);
    let all = Receiver::start().await;
    let some = Receiver::start().await;
    let all_hook = admin.create(&all.url, &["*"]).await;
    let some_hook = admin.create(&some.url, &["read", "deleted"]).await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "ada");
    let mut stream = app.sse("ada", None, None).await;

    // notification, updated (same key), read, deleted; and an event of
    // another user in between.
    let id = publisher
        .one(
            "ada",
            "v1",
            json!({"key": "k", "data": {"b": 1, "a": [1, 2]}, "body": "x"}),
        )
        .await;
    publisher.one("ada", "v2", json!({"key": "k"})).await;
    publisher
        .one(
            "bob",
            "for bob",
            json!({"data": {"z": [1, {"y": null}], "a": "é"}}),
        )
        .await;
    assert_eq!(me.op(&id, "read").await.status(), 200);
    assert_eq!(me.remove(&id).await.status(), 204);

    let mut sse: HashMap<i64, (String, String)> = HashMap::new();
    for _ in 0..4 {
        let e = stream.next().await.unwrap();
        sse.insert(e.id.parse().unwrap(), (e.event, e.data));
    }
    let kinds = |seqs: &[i64]| -> Vec<String> { seqs.iter().map(|s| sse[s].0.clone()).collect() };
    assert_eq!(
        kinds(&[1, 2, 3, 4]),
        ["notification", "updated", "read", "deleted"]
    );

    let got = wait_requests("every event at *", || all.accepted(), |r| r.len() == 5).await;
    let ada: Vec<_> = got
        .iter()
        .filter(|r| r.json()["user_id"] == "ada")
        .collect();
    assert_eq!(ada.len(), 4);
    for (r, seq) in ada.iter().zip(1..) {
        let (kind, data) = &sse[&seq];
        // Exactly the contract's members, the data byte for byte as SSE sent it.
        let body = r.json();
        let members: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(members, ["created_at", "data", "seq", "type", "user_id"]);
        assert_eq!(
            (&body["type"], &body["user_id"], &body["seq"]),
            (&json!(kind), &json!("ada"), &json!(seq))
        );
        assert!(
            r.body.contains(&format!(r#""data":{data},"#)),
            "{} vs {data}",
            r.body
        );
        assert_eq!(r.id(), format!("ada:{seq}"));
        assert_eq!(r.header("content-type"), "application/json");
        let timestamp: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert!((timestamp - chrono::Utc::now().timestamp()).abs() < 30);
        assert!(r.header("webhook-signature").starts_with("v1,"));
        assert_eq!(r.path, "/hook");
    }
    // A notification's created_at is its own.
    let first: Value = serde_json::from_str(&sse[&1].1).unwrap();
    assert_eq!(ada[0].json()["created_at"], first["created_at"]);
    // Byte for byte the data a replay from the log sends.
    let bob = got.iter().find(|r| r.id() == "bob:1").unwrap();
    let replayed = app.sse("bob", Some("0"), None).await.next().await.unwrap();
    assert_eq!(replayed.id, "1");
    assert!(
        bob.body.contains(&format!(r#""data":{},"#, replayed.data)),
        "{} vs {}",
        bob.body,
        replayed.data
    );

    // The official verifier accepts the requests as sent, and refuses a
    // tampered body or another endpoint's secret.
    let secret = all_hook["secret"].as_str().unwrap();
    for r in &ada {
        assert!(official_verify(secret, r, &r.body).await, "{}", r.body);
    }
    let tampered = ada[0].body.replace("v1", "v9");
    assert!(!official_verify(secret, ada[0], &tampered).await);
    let other = some_hook["secret"].as_str().unwrap();
    assert!(!official_verify(other, ada[0], &ada[0].body).await);

    // The filtered endpoint got only read and deleted, in order.
    let got = wait_requests("read and deleted", || some.accepted(), |r| r.len() == 2).await;
    let kinds: Vec<Value> = got.iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(kinds, [json!("read"), json!("deleted")]);
    assert_eq!(got[0].body, ada[2].body);
    assert!(official_verify(other, &got[1], &got[1].body).await);

    // Delivered rows leave the outbox; the metrics count them.
    wait_for(|| async { super::outbox_rows(&app.pool).await == 0 }).await;
    let metrics = app.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("herald_webhook_deliveries_total ")),
        "{metrics}"
    );
}

/// The outbox is filled by the database itself, so a publish from SQL
/// (`herald_publish`, in the application's own transaction) is delivered
/// too, and only if that transaction commits.
#[tokio::test]
async fn a_publish_from_sql_is_delivered_once_committed() {
    let app = TestApp::spawn_with(fast).await;
    let receiver = Receiver::start().await;
    Admin::of(&app).create(&receiver.url, &["*"]).await;
    let mut rolled_back = app.pool.begin().await.unwrap();
    sqlx::query("SELECT * FROM herald_publish(ARRAY['sql'], 'never')")
        .execute(&mut *rolled_back)
        .await
        .unwrap();
    rolled_back.rollback().await.unwrap();
    let mut committed = app.pool.begin().await.unwrap();
    sqlx::query("SELECT * FROM herald_publish(ARRAY['sql'], 'from sql', key => 'k')")
        .execute(&mut *committed)
        .await
        .unwrap();
    sqlx::query("SELECT * FROM herald_publish(ARRAY['sql'], 'updated from sql', key => 'k')")
        .execute(&mut *committed)
        .await
        .unwrap();
    committed.commit().await.unwrap();

    let got = wait_requests("both events", || receiver.accepted(), |r| r.len() == 2).await;
    let bodies: Vec<Value> = got.iter().map(|r| r.json()).collect();
    assert_eq!(
        bodies
            .iter()
            .map(|b| (
                b["type"].clone(),
                b["seq"].clone(),
                b["data"]["title"].clone()
            ))
            .collect::<Vec<_>>(),
        [
            (json!("notification"), json!(1), json!("from sql")),
            (json!("updated"), json!(2), json!("updated from sql")),
        ]
    );
}
