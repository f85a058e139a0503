//! Publishing with a `key` the recipient already has updates that
//! notification in place: same id, seq and created_at, every content field
//! replaced, state kept (or cleared by `renotify`), an `updated` event with
//! the whole notification; and concurrent publishes with one key never
//! make two.

use chrono::Utc;
use serde_json::{Value, json};

use super::{Me, NOTIFICATION_FIELDS, Publisher, live_counts, members, rfc3339, time};
use crate::support::{TestApp, data};

async fn get(me: &Me, id: &str) -> Value {
    let r = me.notification(id).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    r.json().await.unwrap()
}

#[tokio::test]
async fn an_update_by_key_replaces_the_content_and_keeps_the_state() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "kim");
    let expires_at = Utc::now() + chrono::Duration::hours(1);
    let first = publisher
        .publish(&json!({
            "recipients": ["kim"], "title": "v1", "body": "the body", "category": "orders",
            "data": {"order": 1}, "expires_at": rfc3339(expires_at), "key": "order-1",
            "actions": [{"id": "track", "label": "Track", "url": "https://example.com/track"}],
        }))
        .await;
    assert!(first[0].get("updated").is_none(), "a new one: {}", first[0]);
    let id = first[0]["id"].as_str().unwrap().to_owned();
    let original = get(&me, &id).await;
    assert_eq!(
        (
            original["seq"].as_i64(),
            original["key"].as_str(),
            original["updated_at"].clone()
        ),
        (Some(1), Some("order-1"), Value::Null)
    );
    // Read (through its action), seen and archived.
    assert_eq!(me.act(&id, "track").await.status(), 200);
    assert_eq!(me.op(&id, "archive").await.status(), 200);
    let before = get(&me, &id).await;
    assert!(
        before["read_at"].is_string()
            && before["seen_at"].is_string()
            && before["archived_at"].is_string()
    );
    let last_seq = me.counts().await["last_seq"].as_i64().unwrap();

    let mut stream = app.sse("kim", Some(&last_seq.to_string()), None).await;
    // Another recipient in the same request, without that key: a new one.
    let items = publisher
        .publish(&json!({"recipients": ["kim", "lee"], "title": "v2", "key": "order-1"}))
        .await;
    assert_eq!(items.len(), 2);
    let kim = items.iter().find(|i| i["user_id"] == "kim").unwrap();
    let lee = items.iter().find(|i| i["user_id"] == "lee").unwrap();
    assert_eq!(kim["id"], id.as_str());
    assert_eq!(kim["updated"], true);
    assert!(lee.get("updated").is_none(), "{lee}");
    assert_eq!(lee["seq"], 1);

    let event = stream.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.id.parse::<i64>().unwrap()),
        ("updated", kim["seq"].as_i64().unwrap())
    );
    assert!(kim["seq"].as_i64().unwrap() > last_seq);
    let now = get(&me, &id).await;
    let mut shown = data(&event);
    let counts = shown.as_object_mut().unwrap().remove("counts").unwrap();
    assert_eq!(shown, now, "the event carries the whole notification");
    assert_eq!(members(&now), {
        let mut m: Vec<String> = NOTIFICATION_FIELDS
            .iter()
            .map(|f| (*f).to_owned())
            .collect();
        m.sort();
        m
    });
    assert_eq!(counts, live_counts(&me.counts().await));
    assert_eq!(
        counts,
        json!({"unread": 0, "unseen": 0}),
        "still archived: counted nowhere"
    );

    // Same id, seq and created_at; content replaced, omitted ones emptied.
    for kept in [
        "id",
        "seq",
        "created_at",
        "key",
        "read_at",
        "seen_at",
        "archived_at",
        "action_taken",
        "snoozed_until",
    ] {
        assert_eq!(now[kept], before[kept], "{kept} is kept");
    }
    assert_eq!(
        (
            now["title"].clone(),
            now["body"].clone(),
            now["category"].clone(),
            now["data"].clone(),
            now["actions"].clone(),
            now["expires_at"].clone()
        ),
        (
            json!("v2"),
            Value::Null,
            Value::Null,
            Value::Null,
            json!([]),
            Value::Null
        )
    );
    assert!(time(&now["updated_at"]) >= time(&now["created_at"]));
    // Its place in the list is its original seq.
    assert_eq!(me.ids("status=archived").await, std::slice::from_ref(&id));
    assert_eq!(me.list_all("status=archived").await.0[0]["seq"], 1);

    // Renotify: read, seen, archived and the action taken are cleared.
    let items = publisher
        .publish(&json!({"recipients": ["kim"], "title": "v3", "category": "orders", "key": "order-1", "renotify": true}))
        .await;
    assert_eq!(
        (items[0]["id"].as_str(), items[0]["updated"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    let event = stream.next().await.unwrap();
    assert_eq!(event.event, "updated");
    let renotified = get(&me, &id).await;
    for cleared in ["read_at", "seen_at", "archived_at", "action_taken"] {
        assert_eq!(
            renotified[cleared],
            Value::Null,
            "{cleared} is cleared by renotify"
        );
    }
    assert_eq!(
        (
            renotified["seq"].clone(),
            renotified["created_at"].clone(),
            renotified["title"].clone()
        ),
        (json!(1), before["created_at"].clone(), json!("v3"))
    );
    assert_eq!(data(&event)["counts"], json!({"unread": 1, "unseen": 1}));
    assert_eq!(
        live_counts(&me.counts().await),
        json!({"unread": 1, "unseen": 1})
    );

    // Deleted, the key is free: the next publish creates a new one.
    assert_eq!(me.remove(&id).await.status(), 204);
    let items = publisher
        .publish(&json!({"recipients": ["kim"], "title": "v4", "key": "order-1"}))
        .await;
    assert!(items[0].get("updated").is_none());
    assert_ne!(items[0]["id"], id.as_str());
}

#[tokio::test]
async fn an_update_keeps_a_snooze_with_or_without_renotify() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "sol");
    let id = publisher.one("sol", "v1", json!({"key": "k"})).await;
    let until = Utc::now() + chrono::Duration::days(3);
    assert_eq!(me.snooze(&id, until).await.status(), 200);
    for renotify in [false, true] {
        let items = publisher
            .publish(&json!({"recipients": ["sol"], "title": format!("renotify {renotify}"), "key": "k", "renotify": renotify}))
            .await;
        assert_eq!(items[0]["id"], id.as_str());
        let now = get(&me, &id).await;
        assert_eq!(time(&now["snoozed_until"]), time(&json!(rfc3339(until))));
        assert_eq!(me.ids("status=snoozed").await, std::slice::from_ref(&id));
        assert_eq!(
            live_counts(&me.counts().await),
            json!({"unread": 0, "unseen": 0})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_with_one_key_make_exactly_one_notification() {
    const PUBLISHES: usize = 20;
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let mut tasks = Vec::new();
    for i in 0..PUBLISHES {
        let publisher = publisher.clone();
        tasks.push(tokio::spawn(async move {
            // Every fourth also goes to others in the same request.
            let mut recipients = vec!["racer".to_owned()];
            if i % 4 == 0 {
                recipients.extend([format!("bystander-{i}"), "bystander".to_owned()]);
            }
            let items = publisher
                .publish(&json!({"recipients": recipients, "title": format!("attempt {i}"), "key": "race"}))
                .await;
            assert_eq!(items.len(), recipients.len());
            items.into_iter().find(|item| item["user_id"] == "racer").unwrap()
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let id = answers[0]["id"].as_str().unwrap();
    assert!(
        answers.iter().all(|a| a["id"] == id),
        "every answer names one id: {answers:?}"
    );
    let created = answers
        .iter()
        .filter(|a| a.get("updated").is_none())
        .count();
    let updated = answers.iter().filter(|a| a["updated"] == true).count();
    assert_eq!((created, updated), (1, PUBLISHES - 1), "{answers:?}");

    let me = Me::of(&app, "racer");
    assert_eq!(me.ids("status=all").await, [id.to_owned()]);
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE user_id = 'racer' AND key = 'race'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, 1);
    let log = me.events_after(0).await;
    let kinds: Vec<&str> = log.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), PUBLISHES);
    assert_eq!(kinds[0], "notification");
    assert!(kinds[1..].iter().all(|k| *k == "updated"), "{kinds:?}");
    // Each answer's seq is one event of that log.
    let mut seqs: Vec<i64> = answers.iter().map(|a| a["seq"].as_i64().unwrap()).collect();
    seqs.sort_unstable();
    let logged: Vec<i64> = log.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, logged);
    // The notification is whichever publish came last in seq order.
    let last_title = log.last().unwrap()["data"]["title"].clone();
    assert_eq!(me.list_all("status=all").await.0[0]["title"], last_title);
    assert_eq!(
        live_counts(&me.counts().await),
        json!({"unread": 1, "unseen": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_with_one_key_racing_deletes_never_leave_two() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "flux");
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (publisher, me) = (publisher.clone(), me.clone());
            tokio::spawn(async move {
                for i in 0..8 {
                    let body = json!({"recipients": ["flux"], "title": format!("{t}-{i}"), "key": "same", "renotify": i % 2 == 0, "category": "c"});
                    let items = publisher.publish(&body).await;
                    if (t + i) % 3 == 0 {
                        let status = me.remove(items[0]["id"].as_str().unwrap()).await.status();
                        assert!(status == 204 || status == 404, "{status}");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE user_id = 'flux' AND key = 'same'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(stored <= 1, "{stored} notifications with one key");
    let listed = me.list_all("status=all").await.0;
    assert_eq!(listed.len() as i64, stored);
    let counts = me.counts().await;
    assert_eq!(
        super::without_last_seq(&counts),
        super::recount(&me).await.0
    );
    let log = me.events_after(0).await;
    assert_eq!(log.last().unwrap()["data"]["counts"], live_counts(&counts));
    // Nothing here is ever read or seen, so two alive at once would show
    // as counts of 2 in some event.
    for event in &log {
        let counts = &event["data"]["counts"];
        assert!(
            counts["unread"].as_i64().unwrap() <= 1 && counts["unseen"].as_i64().unwrap() <= 1,
            "two alive at {event}"
        );
    }
}
