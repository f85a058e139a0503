//! Actions: the first one taken wins, also when several race; taking one
//! reads the notification; an id it does not offer is 404.

use serde_json::{Value, json};

use super::{Me, Publisher, live_counts};
use crate::support::{TestApp, assert_problem};

fn offered() -> Value {
    json!([
        {"id": "accept", "label": "Accept", "url": "https://example.com/accept"},
        {"id": "decline", "label": "Decline"},
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_actions_exactly_one_wins() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    for racers in [2, 10] {
        let user = format!("racing-{racers}");
        let me = Me::of(&app, &user);
        let id = publisher
            .one(&user, "choose", json!({"actions": offered()}))
            .await;
        let before = me.counts().await["last_seq"].as_i64().unwrap();
        let tasks: Vec<_> = (0..racers)
            .map(|i| {
                let (me, id) = (me.clone(), id.clone());
                let action = if i % 2 == 0 { "accept" } else { "decline" };
                tokio::spawn(async move { (action, me.act(&id, action).await) })
            })
            .collect();
        let mut winners = Vec::new();
        let mut conflicts = 0;
        for task in tasks {
            let (action, r) = task.await.unwrap();
            match r.status().as_u16() {
                200 => winners.push((action, r.json::<Value>().await.unwrap())),
                409 => {
                    let problem = assert_problem(r, 409, "").await;
                    assert_eq!(problem["title"], "Conflict");
                    conflicts += 1;
                }
                other => panic!("{racers} racers: {other} {:?}", r.text().await),
            }
        }
        assert_eq!(
            (winners.len(), conflicts),
            (1, racers - 1),
            "{racers} racers"
        );
        let (won, answer) = &winners[0];
        assert_eq!(answer["action_taken"]["id"], *won);
        assert!(
            answer["read_at"].is_string() && answer["seen_at"].is_string(),
            "{answer}"
        );

        let log = me.events_after(before).await;
        assert_eq!(log.len(), 1, "exactly one event: {log:?}");
        let event = &log[0];
        assert_eq!(
            (
                event["type"].as_str(),
                event["data"]["id"].as_str(),
                event["data"]["action_id"].as_str()
            ),
            (Some("action"), Some(id.as_str()), Some(*won))
        );
        assert_eq!(event["data"]["at"], answer["action_taken"]["at"]);
        assert_eq!(event["data"]["read_at"], answer["read_at"]);
        assert_eq!(event["data"]["counts"], json!({"unread": 0, "unseen": 0}));
        assert_eq!(
            live_counts(&me.counts().await),
            json!({"unread": 0, "unseen": 0})
        );

        // Later ones, the same action included, are 409 and change nothing.
        for action in ["accept", "decline"] {
            assert_problem(me.act(&id, action).await, 409, "").await;
        }
        assert_eq!(me.events_after(before).await.len(), 1);
    }
}

#[tokio::test]
async fn an_action_reads_but_keeps_an_earlier_read_at_and_unknown_ids_are_404() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "ada");
    let read_first = publisher
        .one("ada", "read first", json!({"actions": offered()}))
        .await;
    let read: Value = me.op(&read_first, "read").await.json().await.unwrap();
    let acted: Value = me.act(&read_first, "decline").await.json().await.unwrap();
    assert_eq!(
        (acted["read_at"].clone(), acted["seen_at"].clone()),
        (read["read_at"].clone(), read["seen_at"].clone())
    );
    assert_eq!(acted["action_taken"]["id"], "decline");

    let fresh = publisher
        .one("ada", "fresh", json!({"actions": offered()}))
        .await;
    let plain = publisher.one("ada", "no actions", json!({})).await;
    let counts = me.counts().await;
    for (id, action) in [(&fresh, "maybe"), (&fresh, "ACCEPT"), (&plain, "accept")] {
        assert_problem(me.act(id, action).await, 404, "").await;
    }
    let unknown = "00000000-0000-7000-8000-000000000001";
    assert_problem(me.act(unknown, "accept").await, 404, "").await;
    // Another user's notification is unknown to them.
    assert_problem(Me::of(&app, "eve").act(&fresh, "accept").await, 404, "").await;
    assert_eq!(me.counts().await, counts, "404s change nothing");
    let got: Value = me.notification(&fresh).await.json().await.unwrap();
    assert_eq!(
        (got["action_taken"].clone(), got["read_at"].clone()),
        (Value::Null, Value::Null)
    );

    // An archived and snoozed one can still be acted on.
    assert_eq!(me.op(&fresh, "archive").await.status(), 200);
    assert_eq!(
        me.snooze(&fresh, chrono::Utc::now() + chrono::Duration::days(1))
            .await
            .status(),
        200
    );
    let acted: Value = me.act(&fresh, "accept").await.json().await.unwrap();
    assert_eq!(acted["action_taken"]["id"], "accept");
    assert!(acted["archived_at"].is_string() && acted["snoozed_until"].is_string());
    assert_eq!(
        live_counts(&me.counts().await),
        json!({"unread": 1, "unseen": 1}),
        "only `plain` is counted"
    );
}
