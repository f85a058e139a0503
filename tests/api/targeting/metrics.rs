//! The schedule gauges in `/metrics`. The recorder is per process and the
//! tests of this binary share one, so this runs the service as its own
//! process, where the gauges describe this test's schedules alone.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;

use super::in_ms;
use crate::support::{Herald, Service, fresh_database, wait_within};

async fn gauge(service: &Service, name: &str) -> Option<f64> {
    let text = service.get(None, "/metrics").await.text().await.unwrap();
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn schedule(service: &Service, at: &str) -> String {
    let r = service
        .post_notification(&json!({"recipients": ["m"], "title": "metered", "deliver_at": at}))
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    v["schedule"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_schedules_and_the_lag_of_the_oldest_due_one_are_gauged() {
    let db_url = fresh_database().await;
    let herald = Herald::start(&db_url).await;
    let service = Service::new(herald.base());
    let pool = PgPool::connect(&db_url).await.unwrap();
    let both = async |pending: f64, lag: fn(f64) -> bool| {
        wait_within("the gauges", Duration::from_secs(10), async || {
            let p = gauge(&service, "herald_schedules_pending").await;
            let l = gauge(&service, "herald_schedules_due_lag_seconds").await;
            p == Some(pending) && l.is_some_and(lag)
        })
        .await;
    };
    both(0.0, |l| l == 0.0).await;

    for _ in 0..3 {
        schedule(&service, &in_ms(3_600_000).1).await;
    }
    // Pending, none due yet: no lag.
    both(3.0, |l| l == 0.0).await;

    // One comes due while a transaction holds its row, so no instance can
    // claim it: it stays pending and its lag grows.
    let (at, at_text) = in_ms(500);
    let held = schedule(&service, &at_text).await;
    let mut hold = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM schedules WHERE id = $1::uuid FOR UPDATE")
        .bind(&held)
        .execute(&mut *hold)
        .await
        .unwrap();
    super::sleep_past(at, Duration::ZERO).await;
    both(4.0, |l| l >= 1.0).await;
    let lag = gauge(&service, "herald_schedules_due_lag_seconds")
        .await
        .unwrap();
    let late = (chrono::Utc::now() - at).num_milliseconds() as f64 / 1000.0;
    assert!(
        lag <= late + 0.1,
        "lag {lag} s, but only {late} s since it was due"
    );

    // Released, it is delivered; the rest are still pending, none late.
    hold.rollback().await.unwrap();
    both(3.0, |l| l == 0.0).await;
    let status: String = sqlx::query_scalar("SELECT status FROM schedules WHERE id = $1::uuid")
        .bind(&held)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "delivered");
}
