//! The server's timers racing the user: an unsnooze sent just as `until`
//! comes, and operations sent just as `expires_at` comes. Whoever wins,
//! each snooze ends with exactly one `unsnoozed`, each expiry is exactly one
//! `expired` after which nothing more happens to that notification, and the
//! counts stay exact.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use super::model::{Model, Note};
use super::{Me, Publisher, live_counts, recount, rfc3339, without_last_seq};
use crate::support::{TestApp, wait_within};

/// Sends `op` on every id every 20 ms from 300 ms before `at` to 700 ms
/// after it; the statuses seen.
async fn hammer(me: &Me, ids: &[String], op: &str, at: chrono::DateTime<Utc>) -> Vec<u16> {
    let start = at - chrono::Duration::milliseconds(300);
    tokio::time::sleep((start - Utc::now()).to_std().unwrap_or_default()).await;
    let mut statuses = Vec::new();
    while Utc::now() < at + chrono::Duration::milliseconds(700) {
        for id in ids {
            statuses.push(me.op(id, op).await.status().as_u16());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    statuses
}

/// Applies the log after `after` to `model` (what the user had by then):
/// every event's counts must be what it computes. The log and the model.
async fn check_log(me: &Me, after: i64, mut model: Model) -> (Vec<Value>, Model) {
    let log = me.events_after(after).await;
    for event in &log {
        model.apply(event);
        assert_eq!(event["data"]["counts"], model.live(), "counts of {event}");
    }
    (log, model)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsnooze_racing_the_wake_up_ends_each_snooze_once() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "racer");
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(publisher.one("racer", &format!("n{i}"), json!({})).await);
    }
    let until = Utc::now() + chrono::Duration::milliseconds(1500);
    for id in &ids {
        assert_eq!(me.snooze(id, until).await.status(), 200);
    }
    let statuses = hammer(&me, &ids, "unsnooze", until).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Whoever ended it, the timer must not fire later on its own.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Nothing is deleted: the replay from 0 holds every event.
    let (log, model) = check_log(&me, 0, Model::default()).await;
    for id in &ids {
        let ends = log
            .iter()
            .filter(|e| e["type"] == "unsnoozed" && e["data"]["id"] == id.as_str())
            .count();
        assert_eq!(ends, 1, "{id}: one unsnoozed: {log:?}");
    }
    let counts = me.counts().await;
    assert_eq!(without_last_seq(&counts), model.counts());
    assert_eq!(
        (counts["unread"].clone(), counts["snoozed"].clone()),
        (json!(4), json!(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_racing_an_expiry_stop_at_expired() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "late");
    // The expired ones' `notification` events leave the replay with them:
    // the model starts from the publishes' answers instead.
    let mut model = Model::default();
    let stays = publisher.one("late", "stays", json!({})).await;
    model.notes.insert(stays.clone(), Note::new(&stays, 1));
    let expires_at = Utc::now() + chrono::Duration::milliseconds(1500);
    let mut ids = Vec::new();
    for i in 0..3 {
        let extra = json!({"expires_at": rfc3339(expires_at), "category": "c"});
        let id = publisher.one("late", &format!("n{i}"), extra).await;
        let mut note = Note::new(&id, i + 2);
        note.category = Some("c".into());
        model.notes.insert(id.clone(), note);
        ids.push(id);
    }
    assert_eq!(me.counts().await["last_seq"], 4);
    let (reads, archives) = tokio::join!(hammer(&me, &ids, "read", expires_at), async {
        let other = me.clone();
        // Read and unread alternate with archive and unarchive.
        let mut statuses = hammer(&other, &ids, "archive", expires_at).await;
        statuses.extend(hammer(&other, &ids, "unread", expires_at).await);
        statuses
    });
    for s in reads.iter().chain(&archives) {
        assert!(matches!(s, 200 | 404), "{s}");
    }
    wait_within("every expiry", Duration::from_secs(10), async || {
        let log = me.events_after(0).await;
        ids.iter().all(|id| {
            log.iter()
                .any(|e| e["type"] == "expired" && e["data"]["id"] == id.as_str())
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (log, model) = check_log(&me, 4, model).await;
    for id in &ids {
        let about: Vec<&Value> = log
            .iter()
            .filter(|e| e["data"]["id"] == id.as_str())
            .collect();
        let expired = about.iter().position(|e| e["type"] == "expired").unwrap();
        assert_eq!(
            expired,
            about.len() - 1,
            "{id}: nothing after expired: {about:?}"
        );
        assert_eq!(me.notification(id).await.status(), 404);
    }
    let counts = me.counts().await;
    assert_eq!(without_last_seq(&counts), model.counts());
    assert_eq!(recount(&me).await.0, model.counts());
    assert_eq!(live_counts(&counts), json!({"unread": 1, "unseen": 1}));
}
