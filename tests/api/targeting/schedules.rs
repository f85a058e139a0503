//! Scheduled delivery: accepted with 202, delivered at `deliver_at` (not
//! before, soon after) exactly once, with topics resolved then; what GET
//! shows; and what is refused.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use super::{
    call, delivered, expect, get_schedule, in_ms, last_seq, log_of, publish_ok, schedule,
    sleep_past, subscribe, targeting_rows, titled, unsubscribe,
};
use crate::support::{TestApp, assert_problem, data};

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn a_schedule_is_delivered_once_at_its_time() {
    let app = TestApp::spawn().await;
    let mut live = app.sse("sched", None, None).await;
    let (at, at_text) = in_ms(2000);
    let s = schedule(
        &app,
        &json!({"recipients": ["sched"], "title": "at two", "body": "b",
                "category": "c", "data": {"k": 1}, "deliver_at": at_text}),
    )
    .await;
    let id = s["id"].as_str().unwrap().to_owned();
    uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(s["status"], "scheduled");
    assert_eq!(time(&s["deliver_at"]), at);
    assert_eq!(s.as_object().unwrap().len(), 3, "{s}");
    assert_eq!(
        expect(get_schedule(&app, &id, &app.publisher()).await, 200).await,
        s
    );
    assert_eq!(
        last_seq(&app, "sched").await,
        0,
        "nothing before deliver_at"
    );

    let event = live.next().await.unwrap();
    let arrived = Utc::now();
    assert_eq!(
        (event.event.as_str(), event.id.as_str()),
        ("notification", "1")
    );
    let n = data(&event);
    assert_eq!(n["title"], "at two");
    assert_eq!(n["body"], "b");
    assert_eq!(n["category"], "c");
    assert_eq!(n["data"], json!({"k": 1}));
    assert_eq!(n["topic"], Value::Null);
    let created = time(&n["created_at"]);
    assert!(created >= at, "created {created} before deliver_at {at}");
    assert!(arrived >= at);
    let lag = (arrived - at).to_std().unwrap();
    assert!(
        lag < Duration::from_secs(3),
        "delivered {lag:?} after deliver_at"
    );
    eprintln!("schedule: delivered {lag:?} after deliver_at");

    // Several more rounds of the delivery loop add nothing.
    sleep_past(at, Duration::from_millis(2000)).await;
    assert_eq!(log_of(&app.pool, "sched").await, [(1, "at two".to_owned())]);
    assert_eq!(last_seq(&app, "sched").await, 1);
    let done = expect(get_schedule(&app, &id, &app.publisher()).await, 200).await;
    assert_eq!(
        done,
        json!({"id": id, "deliver_at": s["deliver_at"], "status": "delivered",
               "notifications": [{"id": n["id"], "user_id": "sched", "seq": 1}],
               "skipped": []})
    );
    assert!(
        live.next_within(Duration::from_millis(200)).await.is_err(),
        "one event only"
    );
}

#[tokio::test]
async fn topics_are_resolved_when_the_schedule_is_delivered() {
    let app = TestApp::spawn().await;
    subscribe(&app, "later", &["leaver", "stayer"]).await;
    let (_, at) = in_ms(1500);
    let s = schedule(
        &app,
        &json!({"recipients": ["named"], "topics": ["later"], "title": "resolved then",
                "deliver_at": at}),
    )
    .await;
    subscribe(&app, "later", &["joiner"]).await;
    unsubscribe(&app, "later", &["leaver"]).await;
    let done = delivered(&app, s["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    let users: Vec<&str> = done["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["named", "joiner", "stayer"]);
    assert_eq!(titled(&app.pool, "leaver", "resolved then").await, 0);
    assert_eq!(app.list("joiner", "").await["items"][0]["topic"], "later");
    assert_eq!(
        app.list("named", "").await["items"][0]["topic"],
        Value::Null
    );
}

#[tokio::test]
async fn a_deliver_at_now_or_past_publishes_at_once() {
    let app = TestApp::spawn().await;
    let (_, past) = in_ms(-60_000);
    let answer = publish_ok(
        &app,
        &json!({"recipients": ["now"], "title": "past", "deliver_at": past}),
    )
    .await;
    assert_eq!(answer["notifications"][0]["seq"], 1);
    assert_eq!(answer["skipped"], json!([]));
    assert_eq!(targeting_rows(&app.pool).await.1, 0, "no schedule stored");
    assert_eq!(last_seq(&app, "now").await, 1);
}

#[tokio::test]
async fn a_deliver_at_too_far_or_an_expiry_before_it_is_refused_and_stores_nothing() {
    let app = TestApp::spawn().await;
    app.publish(&["u"], "before").await;
    let rows = app.row_counts().await;
    let (at, at_text) = in_ms(60_000);
    let day = 24 * 3600 * 1000;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"deliver_at": in_ms(366 * day).1}), "365 days"),
        (
            json!({"deliver_at": in_ms(365 * day + 60_000).1}),
            "365 days",
        ),
        (json!({"deliver_at": "tomorrow"}), "deliver_at"),
        (json!({"deliver_at": 1_800_000_000}), ""),
        (
            json!({"deliver_at": at_text, "expires_at": (at - chrono::Duration::seconds(1)).to_rfc3339()}),
            "expires_at must be after deliver_at",
        ),
        (
            json!({"deliver_at": at_text, "expires_at": at_text}),
            "expires_at must be after deliver_at",
        ),
        (
            json!({"deliver_at": at_text, "expires_at": in_ms(30_000).1}),
            "expires_at must be after deliver_at",
        ),
        (
            json!({"deliver_at": at_text, "recipients": []}),
            "recipients",
        ),
        (json!({"deliver_at": at_text, "title": ""}), "title"),
        (
            json!({"deliver_at": at_text, "topics": ["bad name"]}),
            "topics[0]",
        ),
    ];
    for (fields, detail) in cases {
        let mut body = json!({"recipients": ["u"], "title": "t"});
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = app.post_notification(&body).await;
        assert_problem(r, 422, detail).await;
    }
    assert_eq!(app.row_counts().await, rows);
    assert_eq!(targeting_rows(&app.pool).await, (0, 0, 0));
    // Just inside the limits both ways is accepted.
    let s = schedule(
        &app,
        &json!({"recipients": ["u"], "title": "t", "deliver_at": in_ms(364 * day).1,
                "expires_at": in_ms(364 * day + 1000).1}),
    )
    .await;
    assert_eq!(s["status"], "scheduled");
}

#[tokio::test]
async fn a_scheduled_publish_retried_with_its_idempotency_key_is_scheduled_once() {
    let app = TestApp::spawn().await;
    let (at, at_text) = in_ms(1500);
    let body = json!({"recipients": ["idem"], "title": "once", "deliver_at": at_text});
    let send = async || {
        app.http
            .post(app.url("/v1/notifications"))
            .bearer_auth(app.publisher())
            .header("Idempotency-Key", "schedule-1")
            .json(&body)
            .send()
            .await
            .unwrap()
    };
    let first = expect(send().await, 202).await;
    let again = expect(send().await, 202).await;
    assert_eq!(again, first, "a retry answers the first answer again");
    let other = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(app.publisher())
        .header("Idempotency-Key", "schedule-1")
        .json(&json!({"recipients": ["idem"], "title": "other", "deliver_at": at_text}))
        .send()
        .await
        .unwrap();
    assert_problem(other, 422, "Idempotency-Key").await;
    sleep_past(at, Duration::from_millis(1500)).await;
    assert_eq!(targeting_rows(&app.pool).await.1, 1, "one schedule stored");
    assert_eq!(titled(&app.pool, "idem", "once").await, 1);
}

#[tokio::test]
async fn schedules_need_the_publish_scope() {
    let app = TestApp::spawn().await;
    let (_, at) = in_ms(60_000);
    let s = schedule(
        &app,
        &json!({"recipients": ["u"], "title": "t", "deliver_at": at}),
    )
    .await;
    let path = format!("/v1/schedules/{}", s["id"].as_str().unwrap());
    let user = app.token("u", &[]);
    for method in [Method::GET, Method::DELETE] {
        let r = call(&app, method, &path, &user, None).await;
        assert_problem(r, 403, "").await;
    }
    let r = call(
        &app,
        Method::GET,
        "/v1/schedules/nope",
        &app.publisher(),
        None,
    )
    .await;
    assert_problem(r, 400, "invalid path parameter").await;
    let r = expect(
        get_schedule(&app, s["id"].as_str().unwrap(), &app.publisher()).await,
        200,
    )
    .await;
    assert_eq!(r["status"], "scheduled");
}
