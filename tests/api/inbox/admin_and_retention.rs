//! Notifications removed from outside the user's own requests keep the
//! counts exact too: an admin's delete emits `deleted` with counts, and the
//! retention purge of old notifications emits `expired` with counts.

use serde_json::{Value, json};

use super::model::{Model, Note};
use super::{Me, Publisher, live_counts, recount, without_last_seq};
use crate::support::{TestApp, data};

async fn admin_delete(app: &TestApp, user: &str, id: &str) -> reqwest::Response {
    app.http
        .delete(app.url(&format!("/v1/admin/users/{user}/notifications/{id}")))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_admin_delete_emits_deleted_with_the_counts_after_it() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "managed");
    let unread = publisher
        .one("managed", "unread", json!({"category": "a"}))
        .await;
    let archived = publisher
        .one("managed", "archived", json!({"category": "a"}))
        .await;
    let kept = publisher.one("managed", "kept", json!({})).await;
    assert_eq!(me.op(&archived, "archive").await.status(), 200);
    let last_seq = me.counts().await["last_seq"].as_i64().unwrap();
    let mut stream = app.sse("managed", Some(&last_seq.to_string()), None).await;

    assert_eq!(admin_delete(&app, "managed", &unread).await.status(), 204);
    let event = stream.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), data(&event)),
        (
            "deleted",
            json!({"id": unread, "counts": {"unread": 1, "unseen": 1}})
        )
    );
    assert_eq!(data(&event)["counts"], live_counts(&me.counts().await));

    // An archived one is in no count, but its removal is still an event.
    assert_eq!(admin_delete(&app, "managed", &archived).await.status(), 204);
    let event = stream.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), data(&event)),
        (
            "deleted",
            json!({"id": archived, "counts": {"unread": 1, "unseen": 1}})
        )
    );
    let counts = me.counts().await;
    assert_eq!(
        without_last_seq(&counts),
        json!({"unread": 1, "unseen": 1, "total": 1, "archived": 0, "snoozed": 0,
               "categories": {"": {"unread": 1, "unseen": 1, "total": 1}}})
    );
    assert_eq!(recount(&me).await.0, without_last_seq(&counts));
    assert_eq!(me.ids("status=all").await, [kept]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_purge_emits_expired_with_exact_counts() {
    let app = TestApp::spawn_with(|s| s.retention.interval_secs = 1).await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "aged");
    let mut model = Model::default();
    let mut old = Vec::new();
    for (i, category) in ["a", "a", "b", "b"].into_iter().enumerate() {
        let items = publisher
            .publish(
                &json!({"recipients": ["aged"], "title": format!("n{i}"), "category": category}),
            )
            .await;
        let id = items[0]["id"].as_str().unwrap().to_owned();
        let mut note = Note::new(&id, items[0]["seq"].as_i64().unwrap());
        note.category = Some(category.to_owned());
        model.notes.insert(id.clone(), note);
        if i < 3 {
            old.push(id);
        }
    }
    // Of the three that age out: one unread, one read, one archived.
    assert_eq!(me.op(&old[1], "read").await.status(), 200);
    assert_eq!(me.op(&old[2], "archive").await.status(), 200);
    let note = model.notes.get_mut(&old[1]).unwrap();
    (note.read, note.seen) = (true, true);
    model.notes.get_mut(&old[2]).unwrap().archived = true;
    assert_eq!(without_last_seq(&me.counts().await), model.counts());

    // Live from now on: the purge may move the user's replay horizon past
    // the aged notifications' own seqs, but not past the current one.
    let last_seq = me.counts().await["last_seq"].as_i64().unwrap();
    let mut stream = app.sse("aged", Some(&last_seq.to_string()), None).await;
    sqlx::query("UPDATE notifications SET created_at = now() - interval '100 days' WHERE id = ANY($1::uuid[])")
        .bind(&old)
        .execute(&app.pool)
        .await
        .unwrap();
    let mut expired: Vec<String> = Vec::new();
    while expired.len() < old.len() {
        let event = stream.next().await.expect("the stream stays open");
        assert_eq!(event.event, "expired", "{event:?}");
        let data: Value = data(&event);
        let id = data["id"].as_str().unwrap().to_owned();
        assert!(old.contains(&id) && !expired.contains(&id), "{data}");
        model.notes.remove(&id);
        assert_eq!(data["counts"], model.live(), "after {id} left");
        expired.push(id);
    }
    // The purge runs every second: give it a few more runs to repeat itself.
    assert!(
        stream
            .next_within(std::time::Duration::from_secs(3))
            .await
            .is_err(),
        "no more events"
    );
    for id in &old {
        assert_eq!(me.notification(id).await.status(), 404);
    }
    let counts = me.counts().await;
    assert_eq!(without_last_seq(&counts), model.counts());
    assert_eq!(recount(&me).await.0, model.counts());
    let logged: Vec<Value> = me.events_after(last_seq).await;
    assert_eq!(logged.len(), 3, "{logged:?}");
}
