//! Canceling a schedule: who may, what it answers in each state, that a
//! canceled schedule is never delivered, and that a cancel racing the
//! delivery ends one way or the other, never both and never neither.

use std::time::Duration;

use herald::http::auth::Scope;
use serde_json::{Value, json};

use super::{
    cancel_schedule, delivered, expect, get_schedule, in_ms, last_seq, schedule, sleep_past, titled,
};
use crate::support::{TestApp, assert_problem, wait_within};

#[tokio::test]
async fn a_canceled_schedule_is_never_delivered() {
    let app = TestApp::spawn().await;
    let mut live = app.sse("c", None, None).await;
    let (at, at_text) = in_ms(2000);
    let s = schedule(
        &app,
        &json!({"recipients": ["c"], "title": "never", "deliver_at": at_text}),
    )
    .await;
    let id = s["id"].as_str().unwrap();
    let r = cancel_schedule(&app, id, &app.publisher()).await;
    assert_eq!(r.status(), 204);
    assert!(r.text().await.unwrap().is_empty());
    let canceled = json!({"id": id, "deliver_at": s["deliver_at"], "status": "canceled"});
    assert_eq!(
        expect(get_schedule(&app, id, &app.publisher()).await, 200).await,
        canceled
    );
    // Canceling again is no error and changes nothing.
    assert_eq!(
        cancel_schedule(&app, id, &app.publisher()).await.status(),
        204
    );

    // Well past the time, with several rounds of the delivery loop.
    sleep_past(at, Duration::from_millis(2000)).await;
    assert!(live.next_within(Duration::from_millis(100)).await.is_err());
    assert_eq!(titled(&app.pool, "c", "never").await, 0);
    assert_eq!(last_seq(&app, "c").await, 0);
    assert_eq!(
        expect(get_schedule(&app, id, &app.publisher()).await, 200).await,
        canceled
    );
}

#[tokio::test]
async fn a_delivered_schedule_cannot_be_canceled() {
    let app = TestApp::spawn().await;
    let (_, at) = in_ms(1000);
    let s = schedule(
        &app,
        &json!({"recipients": ["d"], "title": "delivered", "deliver_at": at}),
    )
    .await;
    let id = s["id"].as_str().unwrap();
    let done = delivered(&app, id, Duration::from_secs(10)).await;
    let r = cancel_schedule(&app, id, &app.publisher()).await;
    assert_problem(r, 409, "delivered").await;
    assert_eq!(
        expect(get_schedule(&app, id, &app.publisher()).await, 200).await,
        done
    );
    assert_eq!(titled(&app.pool, "d", "delivered").await, 1);
}

#[tokio::test]
async fn a_publisher_sees_only_its_own_schedules_and_an_administrator_all() {
    let app = TestApp::spawn().await;
    let (at, at_text) = in_ms(3000);
    let s = schedule(
        &app,
        &json!({"recipients": ["o"], "title": "mine", "deliver_at": at_text}),
    )
    .await;
    let id = s["id"].as_str().unwrap();
    let other = app.token("another-service", &[Scope::Publish]);
    assert_problem(
        get_schedule(&app, id, &other).await,
        404,
        "no such schedule",
    )
    .await;
    assert_problem(
        cancel_schedule(&app, id, &other).await,
        404,
        "no such schedule",
    )
    .await;
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_problem(
        get_schedule(&app, &unknown, &app.publisher()).await,
        404,
        "no such schedule",
    )
    .await;
    assert_problem(
        cancel_schedule(&app, &unknown, &app.publisher()).await,
        404,
        "no such schedule",
    )
    .await;
    // The other publisher's attempt did not cancel it.
    let seen_by_admin = expect(get_schedule(&app, id, &app.admin()).await, 200).await;
    assert_eq!(seen_by_admin, s);
    assert_eq!(cancel_schedule(&app, id, &app.admin()).await.status(), 204);
    assert_eq!(
        expect(get_schedule(&app, id, &app.publisher()).await, 200).await["status"],
        "canceled"
    );
    // Another publisher's schedule is delivered to its recipients as usual.
    let (_, soon) = in_ms(1000);
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(&other)
        .json(&json!({"recipients": ["o"], "title": "theirs", "deliver_at": soon}))
        .send()
        .await
        .unwrap();
    let theirs = expect(r, 202).await["schedule"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_problem(get_schedule(&app, &theirs, &app.publisher()).await, 404, "").await;
    wait_within("their delivery", Duration::from_secs(10), async || {
        let s = expect(get_schedule(&app, &theirs, &other).await, 200).await;
        s["status"] == "delivered"
    })
    .await;
    assert_problem(
        cancel_schedule(&app, &theirs, &app.publisher()).await,
        404,
        "",
    )
    .await;
    sleep_past(at, Duration::from_millis(1500)).await;
    assert_eq!(titled(&app.pool, "o", "mine").await, 0);
    assert_eq!(titled(&app.pool, "o", "theirs").await, 1);
}

/// How one schedule of the race ended.
#[derive(Debug)]
struct Ended {
    cancel: u16,
    status: Value,
    notifications: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_the_delivery_wins_or_loses_cleanly() {
    const SCHEDULES: usize = 40;
    let app = TestApp::spawn().await;
    let (at, at_text) = in_ms(2500);
    let mut ids = Vec::new();
    for i in 0..SCHEDULES {
        let s = schedule(
            &app,
            &json!({"recipients": ["racer", format!("racer-{i}")], "title": format!("race-{i}"),
                    "deliver_at": at_text}),
        )
        .await;
        ids.push(s["id"].as_str().unwrap().to_owned());
    }
    // Each cancel is sent at its own moment around deliver_at, all at once
    // in flight: from 100 ms before it (not yet due) to 1.1 s after (the
    // delivery loop runs every 0.5 s), so cancels land before, during and
    // after the delivery transactions.
    let mut cancels = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (http, url, token) = (
            app.http.clone(),
            app.url(&format!("/v1/schedules/{id}")),
            app.publisher(),
        );
        let when = at - chrono::Duration::milliseconds(100)
            + chrono::Duration::milliseconds(30 * i as i64);
        cancels.push(tokio::spawn(async move {
            sleep_past(when, Duration::ZERO).await;
            let r = http.delete(url).bearer_auth(token).send().await.unwrap();
            r.status().as_u16()
        }));
    }
    let mut answers = Vec::new();
    for c in cancels {
        answers.push(c.await.unwrap());
    }
    // Past any delivery that could still come.
    sleep_past(at, Duration::from_millis(2500)).await;
    let mut ended = Vec::new();
    for (i, (id, cancel)) in ids.iter().zip(answers).enumerate() {
        let s = expect(get_schedule(&app, id, &app.publisher()).await, 200).await;
        let title = format!("race-{i}");
        let notifications = titled(&app.pool, "racer", &title).await
            + titled(&app.pool, &format!("racer-{i}"), &title).await;
        ended.push(Ended {
            cancel,
            status: s["status"].clone(),
            notifications,
        });
    }
    for (i, e) in ended.iter().enumerate() {
        let clean = match e.cancel {
            204 => e.status == "canceled" && e.notifications == 0,
            // One notification for each of its two recipients.
            409 => e.status == "delivered" && e.notifications == 2,
            _ => false,
        };
        assert!(clean, "schedule {i}: {e:?}");
    }
    let won = ended.iter().filter(|e| e.cancel == 204).count();
    eprintln!("cancel race: {won} canceled, {} delivered", SCHEDULES - won);
    // The first cancels came before the schedules were due, the last ones
    // long after the delivery loop's next rounds.
    assert!(ended[0].cancel == 204, "{:?}", ended[0]);
    assert!(
        ended[SCHEDULES - 1].cancel == 409,
        "{:?}",
        ended[SCHEDULES - 1]
    );
    // The shared recipient's log holds each delivered one once, in order.
    let seqs: Vec<i64> = super::log_of(&app.pool, "racer")
        .await
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(seqs, (1..=(SCHEDULES - won) as i64).collect::<Vec<_>>());
}
