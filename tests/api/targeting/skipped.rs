//! A category the recipient turned off: skipped (listed, nothing stored,
//! no seq taken) on every way a notification can reach a user, unless the
//! publish is critical; a notification without a category always arrives.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{
    call, delivered, expect, in_ms, last_seq, publish_ok, schedule, set_preference, subscribe,
    titled,
};
use crate::support::{TestApp, wait_within};

/// `shy` turned `news` off (one event: seq 1); `keen` set nothing.
async fn opted_out() -> TestApp {
    let app = TestApp::spawn().await;
    set_preference(&app, "shy", "news", false).await;
    app
}

fn skipped(users: &[&str]) -> Value {
    users
        .iter()
        .map(|u| json!({"user_id": u, "reason": "preferences"}))
        .collect()
}

/// Items of an answer as (user, seq).
fn items(answer: &Value) -> Vec<(String, i64)> {
    answer["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["user_id"].as_str().unwrap().to_owned(),
                i["seq"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, i64)]) -> Vec<(String, i64)> {
    v.iter().map(|(u, s)| (u.to_string(), *s)).collect()
}

#[tokio::test]
async fn a_single_publish_skips_the_user_who_opted_out_unless_critical() {
    let app = opted_out().await;
    // Everything the shy user gets from here on arrives on this stream.
    let mut live = app.sse("shy", None, None).await;
    let answer = publish_ok(
        &app,
        &json!({"recipients": ["shy", "keen"], "title": "daily news", "category": "news"}),
    )
    .await;
    assert_eq!(items(&answer), pairs(&[("keen", 1)]));
    assert_eq!(answer["skipped"], skipped(&["shy"]));
    assert_eq!(titled(&app.pool, "shy", "daily news").await, 0);
    assert_eq!(last_seq(&app, "shy").await, 1, "no seq taken");

    // Other categories, no category, and critical ones all arrive.
    for (body, title) in [
        (json!({"category": "promo"}), "other category"),
        (json!({}), "no category"),
        (
            json!({"category": "news", "critical": true}),
            "critical news",
        ),
    ] {
        let mut body = body;
        body["recipients"] = json!(["shy"]);
        body["title"] = json!(title);
        let answer = publish_ok(&app, &body).await;
        assert_eq!(answer["skipped"], json!([]), "{title}");
        assert_eq!(answer["notifications"].as_array().unwrap().len(), 1);
    }
    let got: Vec<(String, String)> = live
        .take(3)
        .await
        .iter()
        .map(|e| {
            (
                e.id.clone(),
                crate::support::data(e)["title"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("2".to_owned(), "other category".to_owned()),
            ("3".to_owned(), "no category".to_owned()),
            ("4".to_owned(), "critical news".to_owned()),
        ]
    );
    // `critical: false` is the default, stated.
    let answer = publish_ok(
        &app,
        &json!({"recipients": ["shy"], "title": "t", "category": "news", "critical": false}),
    )
    .await;
    assert_eq!(
        answer,
        json!({"notifications": [], "skipped": skipped(&["shy"])})
    );
    assert_eq!(last_seq(&app, "shy").await, 4);
}

#[tokio::test]
async fn a_topic_publish_skips_subscribers_who_opted_out() {
    let app = opted_out().await;
    subscribe(&app, "daily", &["shy", "keen", "also"]).await;
    let answer = publish_ok(
        &app,
        &json!({"topics": ["daily"], "title": "topic news", "category": "news"}),
    )
    .await;
    assert_eq!(items(&answer), pairs(&[("also", 1), ("keen", 1)]));
    assert_eq!(answer["skipped"], skipped(&["shy"]));
    assert_eq!(titled(&app.pool, "shy", "topic news").await, 0);
    assert_eq!(last_seq(&app, "shy").await, 1);

    let answer = publish_ok(
        &app,
        &json!({"topics": ["daily"], "title": "urgent", "category": "news", "critical": true}),
    )
    .await;
    assert_eq!(
        items(&answer),
        pairs(&[("also", 2), ("keen", 2), ("shy", 2)])
    );
    assert_eq!(answer["skipped"], json!([]));
    assert_eq!(app.list("shy", "").await["items"][0]["topic"], "daily");
}

#[tokio::test]
async fn a_batch_skips_per_element() {
    let app = opted_out().await;
    let r = call(
        &app,
        Method::POST,
        "/v1/notifications/batch",
        &app.publisher(),
        Some(&json!({"notifications": [
            {"recipients": ["shy", "keen"], "title": "b0", "category": "news"},
            {"recipients": ["shy"], "title": "b1", "category": "news", "critical": true},
            {"recipients": ["shy"], "title": "b2"},
            {"recipients": ["shy"], "title": "b3", "category": "news"},
        ]})),
    )
    .await;
    let answer = expect(r, 201).await;
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(items(&results[0]), pairs(&[("keen", 1)]));
    assert_eq!(results[0]["skipped"], skipped(&["shy"]));
    assert_eq!(items(&results[1]), pairs(&[("shy", 2)]));
    assert_eq!(results[1]["skipped"], json!([]));
    assert_eq!(items(&results[2]), pairs(&[("shy", 3)]));
    assert_eq!(
        results[3],
        json!({"notifications": [], "skipped": skipped(&["shy"])})
    );
    let titles: Vec<Value> = app.list("shy", "").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].clone())
        .collect();
    assert_eq!(titles, [json!("b2"), json!("b1")]);
}

async fn broadcast(app: &TestApp, body: &Value) -> String {
    let r = call(
        app,
        Method::POST,
        "/v1/broadcasts",
        &app.admin(),
        Some(body),
    )
    .await;
    let created = expect(r, 202).await;
    let id = created["id"].as_str().unwrap().to_owned();
    wait_within("the broadcast", Duration::from_secs(20), async || {
        let path = format!("/v1/admin/broadcasts/{id}");
        let r = call(app, Method::GET, &path, &app.admin(), None).await;
        expect(r, 200).await["status"] == "done"
    })
    .await;
    id
}

#[tokio::test]
async fn a_broadcast_skips_users_who_opted_out_unless_critical() {
    let app = opted_out().await;
    app.publish(&["keen"], "known").await;
    broadcast(&app, &json!({"title": "to all", "category": "news"})).await;
    assert_eq!(titled(&app.pool, "keen", "to all").await, 1);
    assert_eq!(titled(&app.pool, "shy", "to all").await, 0);
    assert_eq!(last_seq(&app, "shy").await, 1);

    broadcast(
        &app,
        &json!({"title": "to all, critical", "category": "news", "critical": true}),
    )
    .await;
    assert_eq!(titled(&app.pool, "keen", "to all, critical").await, 1);
    assert_eq!(titled(&app.pool, "shy", "to all, critical").await, 1);
    assert_eq!(last_seq(&app, "shy").await, 2);
}

#[tokio::test]
async fn a_schedule_applies_the_preferences_of_its_delivery_time() {
    let app = opted_out().await;
    let (_, at) = in_ms(1500);
    let s = schedule(
        &app,
        &json!({"recipients": ["shy", "keen", "late"], "title": "later news",
                "category": "news", "deliver_at": at}),
    )
    .await;
    // Turned off after the publish was accepted, before it is delivered.
    set_preference(&app, "late", "news", false).await;
    let id = s["id"].as_str().unwrap();
    let done = delivered(&app, id, Duration::from_secs(10)).await;
    assert_eq!(items(&done), pairs(&[("keen", 1)]));
    assert_eq!(done["skipped"], skipped(&["shy", "late"]));
    for user in ["shy", "late"] {
        assert_eq!(titled(&app.pool, user, "later news").await, 0, "{user}");
        assert_eq!(last_seq(&app, user).await, 1, "{user}");
    }
    assert_eq!(titled(&app.pool, "keen", "later news").await, 1);

    let (_, at) = in_ms(1000);
    let s = schedule(
        &app,
        &json!({"recipients": ["shy"], "title": "later, critical", "category": "news",
                "critical": true, "deliver_at": at}),
    )
    .await;
    let done = delivered(&app, s["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(items(&done), pairs(&[("shy", 2)]));
    assert_eq!(done["skipped"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_publish_of_more_than_ten_thousand_users_is_chunked_and_skips_too() {
    const BIG: usize = 10_000;
    let app = opted_out().await;
    let many: Vec<String> = (0..BIG).map(|i| format!("big-{i:05}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    // 10,001 subscribers: the most one request may add, then one more.
    assert_eq!(
        subscribe(&app, "everyone", &refs).await,
        json!({"added": BIG})
    );
    assert_eq!(
        subscribe(&app, "everyone", &["shy"]).await,
        json!({"added": 1})
    );

    let answer = expect(
        app.post_notification(
            &json!({"topics": ["everyone"], "title": "huge", "category": "news"}),
        )
        .await,
        202,
    )
    .await;
    let b = &answer["broadcast"];
    assert_eq!(answer.as_object().unwrap().len(), 1, "{answer}");
    assert_eq!(b["status"], "pending");
    let id = b["id"].as_str().unwrap().to_owned();
    // Its publisher follows its progress; another publisher cannot see it.
    let path = format!("/v1/admin/broadcasts/{id}");
    wait_within("the chunked publish", Duration::from_secs(60), async || {
        let r = call(&app, Method::GET, &path, &app.publisher(), None).await;
        expect(r, 200).await["status"] == "done"
    })
    .await;
    let stranger = app.token("another-service", &[herald::http::auth::Scope::Publish]);
    let r = call(&app, Method::GET, &path, &stranger, None).await;
    crate::support::assert_problem(r, 404, "no such broadcast").await;

    let per_user: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, count(*) FROM notifications WHERE title = 'huge'
         GROUP BY user_id ORDER BY user_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(per_user.len(), BIG, "everyone but the shy user");
    assert!(per_user.iter().all(|(_, n)| *n == 1));
    assert!(per_user.iter().all(|(u, _)| u.starts_with("big-")));
    assert_eq!(titled(&app.pool, "shy", "huge").await, 0);
    assert_eq!(last_seq(&app, "shy").await, 1);
    let first = app.list("big-00000", "").await;
    assert_eq!(first["items"][0]["topic"], "everyone");
    assert_eq!(first["last_seq"], 1);
}
