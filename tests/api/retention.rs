//! Retention: old rows go in small batches, and a client resuming from
//! before the horizon gets `reset`. Notifications leave with an event, so
//! counts and devices follow.

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
    // The expired one leaves by its timer, with its event, not by the purge.
    let mut other = app.sse("other", Some("1"), None).await;
    let expired = other.next().await.unwrap();
    assert_eq!(expired.event, "expired");
    assert_eq!(
        data(&expired),
        json!({"id": gone[0]["id"], "counts": {"unread": 0, "unseen": 0}})
    );
    let purged = herald::jobs::purge::purge_once(&app.pool, &app.inbox(), &settings)
        .await
        .unwrap();
    assert_eq!(
        purged,
        herald::jobs::purge::Purged {
            events: 0,
            notifications: 2,
            idempotency_keys: 1
        }
    );
    let remaining: Vec<i64> =
        sqlx::query_scalar("SELECT seq FROM notifications WHERE user_id = 'old-timer'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(remaining, [3]);

    // Each purged notification left with its `expired` event (seqs 4 and
    // 5), and the counts went down with it.
    let counts: serde_json::Value = app
        .get_as("old-timer", "/v1/me/counts")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (counts["last_seq"].as_i64(), counts["unread"].as_i64()),
        (Some(5), Some(1))
    );
    // Resuming from before the horizon: reset. From the horizon: the rest.
    let mut stale = app.sse("old-timer", Some("1"), None).await;
    let reset = stale.next().await.unwrap();
    assert_eq!(
        (reset.event.as_str(), data(&reset)),
        (
            "reset",
            json!({"last_seq": 5, "counts": {"unread": 1, "unseen": 1}})
        )
    );
    let mut fresh = app.sse("old-timer", Some("2"), None).await;
    let rest: Vec<String> = [
        fresh.next().await.unwrap(),
        fresh.next().await.unwrap(),
        fresh.next().await.unwrap(),
    ]
    .iter()
    .map(|e| format!("{} {}", e.id, e.event))
    .collect();
    assert_eq!(rest, ["3 notification", "4 expired", "5 expired"]);
    // An expiry does not move its user's horizon.
    let mut other = app.sse("other", Some("0"), None).await;
    assert_eq!(other.next().await.unwrap().event, "expired");
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
async fn expired_notifications_leave_by_themselves() {
    let app = TestApp::spawn().await;
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
    use herald::db::timers::CLAIM_AGED;
    let app = TestApp::spawn().await;
    let statements = [
        ("events", AgedLog::Events.purge_sql()),
        ("notifications", CLAIM_AGED.to_owned()),
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
        // The notifications are claimed in age order, from their index.
        let by_address = plan.contains("\"Tid Scan\"") || plan.contains("notifications_created_at");
        assert!(by_address, "{table}: {plan}");
    }
}
