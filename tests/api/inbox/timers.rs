//! The server's own events: a snooze ends with exactly one `unsnoozed`
//! within 5 s of `until` (also with two instances on one database), and a
//! notification leaves the center with exactly one `expired` within 5 s of
//! `expires_at`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Me, Publisher, live_counts, rfc3339};
use crate::support::{TestApp, assert_problem};

/// How late the server may be (the contract's 5 s).
const LATE: chrono::Duration = chrono::Duration::seconds(5);

/// Long-polls `me`'s log from `after` until an event of `kind` about `id`
/// arrives; the event and when it was seen, which must be by `deadline`
/// (plus half a second for the answer to travel).
pub async fn wait_for_event(
    me: &Me,
    mut after: i64,
    kind: &str,
    id: &str,
    deadline: DateTime<Utc>,
) -> (Value, DateTime<Utc>) {
    let slack = chrono::Duration::milliseconds(500);
    loop {
        let left = (deadline + slack - Utc::now()).num_seconds().clamp(0, 59) as u64 + 1;
        let answer = me.poll(after, left).await;
        let seen = Utc::now();
        let events = answer["events"].as_array().unwrap();
        if let Some(event) = events
            .iter()
            .find(|e| e["type"] == kind && e["data"]["id"] == id)
        {
            assert!(
                seen <= deadline + slack,
                "{kind} for {id} seen at {seen}, due by {deadline}"
            );
            return (event.clone(), seen);
        }
        assert!(
            seen <= deadline + slack,
            "no {kind} for {id} by {deadline}: {answer}"
        );
        if let Some(last) = events.last() {
            after = last["seq"].as_i64().unwrap();
        }
    }
}

/// The events of `kind` about `id` in `me`'s whole log.
pub async fn occurrences(me: &Me, kind: &str, id: &str) -> Vec<Value> {
    me.events_after(0)
        .await
        .into_iter()
        .filter(|e| e["type"] == kind && e["data"]["id"] == id)
        .collect()
}

/// Lets time pass on purpose: the server must not send a second event.
async fn linger() {
    tokio::time::sleep(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snooze_ends_by_itself_with_exactly_one_unsnoozed() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "nap");
    let id = publisher.one("nap", "later", json!({})).await;
    let until = Utc::now() + chrono::Duration::seconds(2);
    let r = me.snooze(&id, until).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert!(answer["snoozed_until"].is_string());
    let counts = me.counts().await;
    assert_eq!(
        (counts["unread"].clone(), counts["snoozed"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(me.ids("status=snoozed").await, std::slice::from_ref(&id));

    let after = counts["last_seq"].as_i64().unwrap();
    let (event, seen) = wait_for_event(&me, after, "unsnoozed", &id, until + LATE).await;
    assert!(
        seen >= until - chrono::Duration::milliseconds(10),
        "not before until: {seen} < {until}"
    );
    assert_eq!(
        event["data"],
        json!({"id": id, "counts": {"unread": 1, "unseen": 1}})
    );
    let got: Value = me.notification(&id).await.json().await.unwrap();
    assert_eq!(got["snoozed_until"], Value::Null);
    assert_eq!(me.ids("status=snoozed").await, Vec::<String>::new());
    assert_eq!(me.ids("status=unread").await, std::slice::from_ref(&id));
    linger().await;
    assert_eq!(
        occurrences(&me, "unsnoozed", &id).await.len(),
        1,
        "exactly once"
    );
    assert_eq!(
        live_counts(&me.counts().await),
        json!({"unread": 1, "unseen": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_instances_each_snooze_ends_exactly_once() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.db_url, |_| {}).await;
    let publisher = Publisher::of(&a);
    let until = Utc::now() + chrono::Duration::seconds(2);
    let mut snoozed = Vec::new();
    for i in 0..6 {
        let user = format!("twin-{}", i % 2);
        let id = publisher.one(&user, &format!("n{i}"), json!({})).await;
        // Snoozed through either instance.
        let me = if i % 3 == 0 {
            Me::of(&b, &user)
        } else {
            Me::of(&a, &user)
        };
        assert_eq!(me.snooze(&id, until).await.status(), 200);
        snoozed.push((me, id));
    }
    for (me, id) in &snoozed {
        wait_for_event(me, 0, "unsnoozed", id, until + LATE).await;
    }
    linger().await;
    for (me, id) in &snoozed {
        assert_eq!(
            occurrences(me, "unsnoozed", id).await.len(),
            1,
            "{id}: exactly once"
        );
    }
    for user in ["twin-0", "twin-1"] {
        let counts = Me::of(&a, user).counts().await;
        assert_eq!(
            (counts["unread"].clone(), counts["snoozed"].clone()),
            (json!(3), json!(0)),
            "{user}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_notification_leaves_with_exactly_one_expired() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "ephemera");
    publisher
        .one("ephemera", "stays", json!({"category": "x"}))
        .await;
    let expires_at = Utc::now() + chrono::Duration::seconds(2);
    let id = publisher
        .one(
            "ephemera",
            "goes",
            json!({"category": "x", "expires_at": rfc3339(expires_at)}),
        )
        .await;
    // Until its `expired` event it is in the center like any other.
    assert_eq!(me.notification(&id).await.status(), 200);
    let counts = me.counts().await;
    assert_eq!(
        counts["categories"]["x"],
        json!({"unread": 2, "unseen": 2, "total": 2})
    );

    let after = counts["last_seq"].as_i64().unwrap();
    let (event, seen) = wait_for_event(&me, after, "expired", &id, expires_at + LATE).await;
    assert!(
        seen >= expires_at - chrono::Duration::milliseconds(10),
        "not before expires_at"
    );
    assert_eq!(
        event["data"],
        json!({"id": id, "counts": {"unread": 1, "unseen": 1}})
    );
    assert_problem(me.notification(&id).await, 404, "").await;
    let counts = me.counts().await;
    assert_eq!(
        (counts["total"].clone(), counts["categories"]["x"].clone()),
        (json!(1), json!({"unread": 1, "unseen": 1, "total": 1}))
    );
    assert_eq!(me.list_all("status=all").await.0.len(), 1);
    linger().await;
    assert_eq!(
        occurrences(&me, "expired", &id).await.len(),
        1,
        "exactly once"
    );
}

/// Timers follow what the user and publishers do before they fire: a snooze
/// ended, moved or deleted early wakes nothing at the old `until`; an
/// archived one wakes without entering the counts; an update by key moves
/// or clears the expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_follow_changes_made_before_they_fire() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "changer");
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(publisher.one("changer", &format!("n{i}"), json!({})).await);
    }
    let (ended, moved, deleted, archived) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    // Expiring in 2 s, then updated without an expiry: it stays.
    let kept = publisher
        .one(
            "changer",
            "k1",
            json!({"key": "k1", "expires_at": rfc3339(Utc::now() + chrono::Duration::seconds(2))}),
        )
        .await;
    publisher
        .one("changer", "k1 again", json!({"key": "k1"}))
        .await;
    // Not expiring, then updated to expire in 2 s: it goes.
    let goes = publisher.one("changer", "k2", json!({"key": "k2"})).await;
    let until = Utc::now() + chrono::Duration::seconds(2);
    publisher
        .one(
            "changer",
            "k2 again",
            json!({"key": "k2", "expires_at": rfc3339(until)}),
        )
        .await;
    for id in &ids {
        assert_eq!(me.snooze(id, until).await.status(), 200);
    }
    assert_eq!(me.op(ended, "unsnooze").await.status(), 200);
    assert_eq!(
        me.snooze(moved, until + chrono::Duration::days(1))
            .await
            .status(),
        200
    );
    assert_eq!(me.remove(deleted).await.status(), 204);
    assert_eq!(me.op(archived, "archive").await.status(), 200);
    let after = me.counts().await["last_seq"].as_i64().unwrap();

    let (event, _) = wait_for_event(&me, after, "unsnoozed", archived, until + LATE).await;
    assert_eq!(
        event["data"]["counts"],
        json!({"unread": 2, "unseen": 2}),
        "still archived: ended and kept are counted"
    );
    wait_for_event(&me, after, "expired", &goes, until + LATE).await;
    linger().await;
    let log = me.events_after(after).await;
    let kinds: Vec<(&str, &str)> = log
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["data"]["id"].as_str().unwrap(),
            )
        })
        .collect();
    let mut expected = vec![("unsnoozed", archived.as_str()), ("expired", goes.as_str())];
    let mut got = kinds.clone();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        got, expected,
        "only the archived one wakes and only k2 expires: {log:?}"
    );
    assert_eq!(me.notification(&kept).await.status(), 200);
    let got: Value = me.notification(moved).await.json().await.unwrap();
    assert!(got["snoozed_until"].is_string(), "moved a day on: {got}");
    let got: Value = me.notification(archived).await.json().await.unwrap();
    assert_eq!(
        (got["snoozed_until"].clone(), got["archived_at"].is_string()),
        (Value::Null, true)
    );
    let counts = me.counts().await;
    assert_eq!(
        (
            counts["unread"].clone(),
            counts["archived"].clone(),
            counts["snoozed"].clone(),
            counts["total"].clone()
        ),
        (json!(2), json!(1), json!(1), json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_instances_each_expiry_happens_exactly_once() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.db_url, |_| {}).await;
    let publisher = Publisher::of(&b);
    let expires_at = Utc::now() + chrono::Duration::seconds(2);
    let items = publisher
        .publish(&json!({"recipients": ["e-0", "e-1", "e-2"], "title": "short", "expires_at": rfc3339(expires_at)}))
        .await;
    for item in &items {
        let me = Me::of(&a, item["user_id"].as_str().unwrap());
        let id = item["id"].as_str().unwrap();
        wait_for_event(&me, 0, "expired", id, expires_at + LATE).await;
    }
    linger().await;
    for item in &items {
        let me = Me::of(&b, item["user_id"].as_str().unwrap());
        let id = item["id"].as_str().unwrap();
        assert_eq!(
            occurrences(&me, "expired", id).await.len(),
            1,
            "{id}: exactly once"
        );
        assert_eq!(
            live_counts(&me.counts().await),
            json!({"unread": 0, "unseen": 0})
        );
    }
}
