//! Bulk operations with `category` and `up_to_seq`: they cover exactly the
//! matching notifications, archived and snoozed ones included, and each
//! emits exactly one event, also when nothing matched, whose data names its
//! `up_to_seq` and `category` (null when not given).

use chrono::Utc;
use serde_json::{Value, json};

use super::{Me, Publisher, live_counts};
use crate::support::TestApp;

/// Runs a bulk operation, which must answer 200 and emit exactly one event
/// of `kind`; the answer and the event's data.
async fn bulk(me: &Me, route: &str, body: Option<Value>, kind: &str) -> (Value, Value) {
    let before = me.counts().await["last_seq"].as_i64().unwrap();
    let r = me.bulk(route, body.as_ref()).await;
    assert_eq!(r.status(), 200, "{route} {body:?}: {:?}", r.text().await);
    let answer: Value = r.json().await.unwrap();
    let events = me.events_after(before).await;
    assert_eq!(
        events.len(),
        1,
        "{route} {body:?}: exactly one event: {events:?}"
    );
    assert_eq!(events[0]["type"], kind);
    let data = events[0]["data"].clone();
    assert_eq!(
        data["counts"],
        live_counts(&me.counts().await),
        "{route}: the event's counts"
    );
    assert_eq!(
        (answer["up_to_seq"].clone(), answer["category"].clone()),
        (data["up_to_seq"].clone(), data["category"].clone())
    );
    (answer, data)
}

/// Whether each of `ids` has `field` set.
async fn set(me: &Me, ids: &[String], field: &str) -> Vec<bool> {
    let mut out = Vec::new();
    for id in ids {
        let r = me.notification(id).await;
        assert_eq!(r.status(), 200);
        out.push(!r.json::<Value>().await.unwrap()[field].is_null());
    }
    out
}

#[tokio::test]
async fn bulk_operations_cover_exactly_the_matching_notifications() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "bulky");
    // seq 1..8; 5 gets archived and 6 snoozed.
    let categories = [
        Some("a"),
        Some("b"),
        Some("a"),
        None,
        Some("a"),
        Some("a"),
        Some("b"),
        Some("a"),
    ];
    let mut ids = Vec::new();
    for (i, category) in categories.iter().enumerate() {
        let extra = category.map_or(json!({}), |c| json!({"category": c}));
        ids.push(publisher.one("bulky", &format!("n{}", i + 1), extra).await);
    }
    assert_eq!(me.op(&ids[4], "archive").await.status(), 200);
    assert_eq!(
        me.snooze(&ids[5], Utc::now() + chrono::Duration::days(2))
            .await
            .status(),
        200
    );

    // Category a up to seq 6: 1, 3, the archived 5 and the snoozed 6.
    let (answer, data) = bulk(
        &me,
        "read-all",
        Some(json!({"category": "a", "up_to_seq": 6})),
        "read_all",
    )
    .await;
    assert_eq!(
        (
            answer["up_to_seq"].clone(),
            answer["category"].clone(),
            answer["updated"].clone()
        ),
        (json!(6), json!("a"), json!(4))
    );
    assert_eq!(data["read_at"], answer["read_at"]);
    assert_eq!(
        set(&me, &ids, "read_at").await,
        [true, false, true, false, true, true, false, false]
    );
    // Reading implies seeing.
    assert_eq!(
        set(&me, &ids, "seen_at").await,
        [true, false, true, false, true, true, false, false]
    );
    assert_eq!(
        data["counts"],
        json!({"unread": 4, "unseen": 4}),
        "2, 4, 7 and 8; 5 and 6 are not counted"
    );

    // Category b, up to the current seq.
    let current = me.counts().await["last_seq"].clone();
    let (answer, data) = bulk(&me, "seen-all", Some(json!({"category": "b"})), "seen_all").await;
    assert_eq!(
        (
            answer["up_to_seq"].clone(),
            answer["category"].clone(),
            answer["updated"].clone()
        ),
        (current, json!("b"), json!(2))
    );
    assert_eq!(data["seen_at"], answer["seen_at"]);
    assert_eq!(
        set(&me, &ids, "seen_at").await,
        [true, true, true, false, true, true, true, false]
    );
    assert!(!set(&me, &ids, "read_at").await[1], "seen is not read");

    // Every category up to seq 2.
    let (answer, data) = bulk(
        &me,
        "archive-all",
        Some(json!({"up_to_seq": 2})),
        "archived_all",
    )
    .await;
    assert_eq!(
        (answer["category"].clone(), answer["updated"].clone()),
        (Value::Null, json!(2))
    );
    assert_eq!(data["archived_at"], answer["archived_at"]);
    assert_eq!(
        set(&me, &ids, "archived_at").await,
        [true, true, false, false, true, false, false, false]
    );

    // Nothing matches: still exactly one event, nothing changed.
    let counts = me.counts().await;
    let (answer, data) = bulk(
        &me,
        "delete-all",
        Some(json!({"category": "z"})),
        "deleted_all",
    )
    .await;
    assert_eq!(
        (answer["updated"].clone(), data["category"].clone()),
        (json!(0), json!("z"))
    );
    assert_eq!(me.counts().await["total"], counts["total"]);
    let (answer, _) = bulk(
        &me,
        "archive-all",
        Some(json!({"up_to_seq": 0})),
        "archived_all",
    )
    .await;
    assert_eq!(
        (answer["up_to_seq"].clone(), answer["updated"].clone()),
        (json!(0), json!(0))
    );
    // Already read: nothing to do, still an event.
    bulk(
        &me,
        "read-all",
        Some(json!({"category": "a", "up_to_seq": 3})),
        "read_all",
    )
    .await;

    // Category a, everything: 1, 3, 5 (archived), 6 (snoozed) and 8 go.
    let (answer, data) = bulk(
        &me,
        "delete-all",
        Some(json!({"category": "a"})),
        "deleted_all",
    )
    .await;
    assert_eq!(answer["updated"], 5);
    assert_eq!(data["category"], "a");
    for (i, id) in ids.iter().enumerate() {
        let status = me.notification(id).await.status();
        let gone = categories[i] == Some("a");
        assert_eq!(status, if gone { 404 } else { 200 }, "n{}", i + 1);
    }
    let counts = me.counts().await;
    assert_eq!(
        super::without_last_seq(&counts),
        json!({"unread": 2, "unseen": 1, "total": 2, "archived": 1, "snoozed": 0,
               "categories": {"": {"unread": 1, "unseen": 1, "total": 1}, "b": {"unread": 1, "unseen": 0, "total": 1}}})
    );
}

#[tokio::test]
async fn bulk_operations_take_no_body_an_empty_body_or_an_empty_object() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "plain");
    publisher
        .one("plain", "one", json!({"category": "x"}))
        .await;
    publisher.one("plain", "two", json!({})).await;
    let (answer, data) = bulk(&me, "seen-all", None, "seen_all").await;
    assert_eq!(
        (
            answer["up_to_seq"].clone(),
            answer["category"].clone(),
            answer["updated"].clone()
        ),
        (json!(2), Value::Null, json!(2))
    );
    assert_eq!(
        (data["up_to_seq"].clone(), data["category"].clone()),
        (json!(2), Value::Null)
    );
    let (answer, _) = bulk(&me, "read-all", Some(json!({})), "read_all").await;
    assert_eq!(answer["updated"], 2);
    // A body of zero bytes with a JSON content type.
    let before = me.counts().await["last_seq"].as_i64().unwrap();
    let r = app
        .http
        .post(app.url("/v1/me/notifications/archive-all"))
        .bearer_auth(app.token("plain", &[]))
        .header("content-type", "application/json")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(me.events_after(before).await.len(), 1);
    // A user who never had anything: one event, seq 1.
    let (answer, data) = bulk(&Me::of(&app, "newcomer"), "read-all", None, "read_all").await;
    assert_eq!(
        (
            answer["up_to_seq"].clone(),
            answer["updated"].clone(),
            data["counts"].clone()
        ),
        (json!(0), json!(0), json!({"unread": 0, "unseen": 0}))
    );
    assert_eq!(Me::of(&app, "newcomer").counts().await["last_seq"], 1);
}
