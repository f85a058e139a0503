//! Retention: old and expired rows go in small batches, and a client
//! resuming from before the horizon gets `reset`.

use serde_json::json;

use crate::support::{TestApp, data, wait_for};

#[tokio::test]
async fn old_notifications_events_and_keys_are_purged_in_batches() {
    let app = TestApp::spawn().await;
    for i in 1..=3 {
        app.publish(&["old-timer"], &format!("n{i}")).await;
    }
    let gone = app.publish(&["other"], "expires").await;
    sqlx::query("UPDATE notifications SET created_at = now() - interval '100 days' WHERE user_id = 'old-timer' AND seq <= 2")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE notifications SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind(gone[0]["id"].as_str().unwrap())
    .execute(&app.pool)
    .await
    .unwrap();
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(app.publisher())
        .header("Idempotency-Key", "old-key")
        .json(&json!({"recipients": ["keyed"], "title": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '2 days'")
        .execute(&app.pool)
        .await
        .unwrap();

    let mut settings = app.settings.retention.clone();
    settings.batch = 1;
    let purged = herald::jobs::purge::purge_once(&app.pool, &settings)
        .await
        .unwrap();
    assert_eq!(
        purged,
        herald::jobs::purge::Purged {
            events: 0,
            notifications: 3,
            idempotency_keys: 1
        }
    );
    let remaining: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM notifications WHERE user_id = 'old-timer'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(remaining, [3]);

    // Resuming from before the horizon: reset. From the horizon: the rest.
    let mut stale = app.sse("old-timer", Some("1"), None).await;
    let reset = stale.next().await.unwrap();
    assert_eq!(
        (reset.event.as_str(), data(&reset)),
        ("reset", json!({"last_seq": 3}))
    );
    let mut fresh = app.sse("old-timer", Some("2"), None).await;
    assert_eq!(fresh.next().await.unwrap().id, "3");
    // The expired notification did not move its user's horizon.
    let mut other = app.sse("other", Some("0"), None).await;
    app.publish(&["other"], "next").await;
    assert_eq!(other.next().await.unwrap().id, "2");
    // A forgotten idempotency key is free again.
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(app.publisher())
        .header("Idempotency-Key", "old-key")
        .json(&json!({"recipients": ["keyed"], "title": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["notifications"][0]["seq"],
        2
    );
}

#[tokio::test]
async fn the_background_purge_runs_by_itself() {
    let app = TestApp::spawn_with(|s| s.retention.interval_secs = 1).await;
    let items = app.publish(&["p"], "short-lived").await;
    sqlx::query(
        "UPDATE notifications SET expires_at = now() + interval '1 second' WHERE id = $1::uuid",
    )
    .bind(items[0]["id"].as_str().unwrap())
    .execute(&app.pool)
    .await
    .unwrap();
    wait_for(|| async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM notifications")
            .fetch_one(&app.pool)
            .await
            .unwrap()
            == 0
    })
    .await;
    assert_eq!(app.list("p", "").await["items"], json!([]));
}

/// Without an index on age, every purge run reads the whole table even when
/// nothing has aged out (RELIABILITY.md has the figures); with one, and the
/// batch fetched by row address, no statement scans its table.
#[tokio::test]
async fn purge_statements_find_aged_rows_through_indexes() {
    use herald::db::retention::{AgedLog, PURGE_IDEMPOTENCY_KEYS};
    let app = TestApp::spawn().await;
    let statements = [
        ("events", AgedLog::Events.purge_sql()),
        ("notifications", AgedLog::Notifications.purge_sql()),
        ("idempotency_keys", PURGE_IDEMPOTENCY_KEYS.to_owned()),
    ];
    for (table, sql) in statements {
        let mut tx = app.pool.begin().await.unwrap();
        // On a tiny table a scan would be cheapest; what matters is that
        // the planner has another way.
        sqlx::query("SET LOCAL enable_seqscan = off")
            .execute(&mut *tx)
            .await
            .unwrap();
        let plan: serde_json::Value =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (FORMAT JSON) {sql}")))
                .bind(chrono::Utc::now())
                .bind(1000_i64)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        tx.rollback().await.unwrap();
        let plan = plan.to_string();
        assert!(!plan.contains("\"Seq Scan\""), "{table}: {plan}");
        assert!(plan.contains("\"Tid Scan\""), "{table}: {plan}");
    }
}
