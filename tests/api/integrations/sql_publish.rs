//! `herald_publish(...)` called from SQL inside the application's own
//! transaction: nothing exists or is delivered unless that transaction
//! commits; what it writes is what `POST /v1/notifications` writes; seqs stay
//! in order when both paths publish to one user at once; a transaction that
//! stays open holds up only its own recipients.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::inbox::{Me, Publisher, id_of, rfc3339};
use crate::support::{TestApp, data, wait_within};
use crate::targeting::set_preference;

type Row = (Uuid, String, i64);

/// Publishes the content of an HTTP publish body with `herald_publish`.
async fn sql_publish(conn: &mut PgConnection, body: &Value) -> Result<Vec<Row>, sqlx::Error> {
    let recipients: Vec<&str> = body["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    sqlx::query_as(
        "SELECT id, user_id, seq
         FROM herald_publish($1, $2, $3, $4, $5, $6::timestamptz, $7)",
    )
    .bind(recipients)
    .bind(body["title"].as_str())
    .bind(body["body"].as_str())
    .bind(body["category"].as_str())
    .bind(body.get("data").cloned().map(sqlx::types::Json))
    .bind(body["expires_at"].as_str())
    .bind(body["key"].as_str())
    .fetch_all(conn)
    .await
}

async fn sql_publish_ok(app: &TestApp, body: &Value) -> Vec<Row> {
    let mut conn = app.pool.acquire().await.unwrap();
    sql_publish(&mut conn, body).await.unwrap()
}

/// Replaces `{1}` and `{2}` in the recipients with the world's users.
fn recipients_of(body: &Value, users: &[&str; 2]) -> Value {
    let mut body = body.clone();
    for r in body["recipients"].as_array_mut().unwrap() {
        let i: usize = r
            .as_str()
            .unwrap()
            .trim_matches(['{', '}'])
            .parse()
            .unwrap();
        *r = json!(users[i - 1]);
    }
    body
}

/// What differs between two identical sequences made at different times for
/// different users: ids and times of creation, change and reading, masked.
fn masked(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let mask = matches!(
                    k.as_str(),
                    "id" | "user_id" | "created_at" | "updated_at" | "read_at" | "seen_at"
                );
                *v = if mask && !v.is_null() {
                    json!("<masked>")
                } else {
                    masked(v.take())
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| *i = masked(i.take())),
        _ => {}
    }
    v
}

/// A user's rows as the database holds them, and their events as the API
/// replays them.
async fn state_of(app: &TestApp, user: &str) -> (Value, Value, Vec<Value>) {
    let rows: Value = sqlx::query_scalar(
        "SELECT coalesce(json_agg(x ORDER BY x.seq), '[]') FROM (
             SELECT seq, title, body, category, data, expires_at, read_at IS NOT NULL AS read,
                    seen_at IS NOT NULL AS seen, archived_at, snoozed_until, actions,
                    action_taken, key, topic, counts_unread, counts_unseen,
                    updated_at IS NOT NULL AS was_updated
             FROM notifications WHERE user_id = $1) AS x",
    )
    .bind(user)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let counters: Value = sqlx::query_scalar(
        "SELECT json_build_object('last_seq', last_seq, 'unread', unread, 'unseen', unseen,
                                  'preferences', preferences)
         FROM users WHERE user_id = $1",
    )
    .bind(user)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let events = Me::of(app, user).events_after(0).await;
    (rows, counters, events)
}

#[tokio::test]
async fn a_sql_publish_leaves_the_same_rows_and_events_as_an_http_publish() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let expires_at = rfc3339(chrono::Utc::now() + chrono::Duration::hours(1));
    let steps = [
        // Recipient 2 turned "news" off; recipient 1 is named twice.
        json!({"recipients": ["{1}", "{2}", "{1}"], "title": "Order shipped",
               "body": "On its way", "category": "news",
               "data": {"order": 7, "tags": ["a", "b"]}, "expires_at": expires_at}),
        json!({"recipients": ["{1}", "{2}"], "title": "Upload 10%", "key": "upload"}),
        // (Recipient 1 reads it now.) An update in place keeps that state.
        json!({"recipients": ["{1}"], "title": "Upload 50%", "body": "half",
               "data": {"pct": 50}, "key": "upload"}),
        json!({"recipients": ["{2}"], "title": "Plain"}),
    ];
    let mut answers: [Vec<Value>; 2] = Default::default();
    let worlds = [["http-1", "http-2"], ["sql-1", "sql-2"]];
    for (w, users) in worlds.iter().enumerate() {
        set_preference(&app, users[1], "news", false).await;
        for (i, step) in steps.iter().enumerate() {
            let body = recipients_of(step, users);
            let items: Vec<Value> = if w == 0 {
                let items = publisher.publish(&body).await;
                // The SQL function answers id, user and seq of what it wrote.
                items
                    .iter()
                    .map(|i| json!({"id": i["id"], "user_id": i["user_id"], "seq": i["seq"]}))
                    .collect()
            } else {
                let rows = sql_publish_ok(&app, &body).await;
                rows.into_iter()
                    .map(|(id, user, seq)| json!({"id": id, "user_id": user, "seq": seq}))
                    .collect()
            };
            if i == 1 {
                let first = items.iter().find(|i| i["user_id"] == users[0]).unwrap();
                assert_eq!(
                    Me::of(&app, users[0])
                        .op(id_of(first), "read")
                        .await
                        .status(),
                    200
                );
            }
            answers[w].push(json!({ "step": i, "items": items }));
        }
    }
    assert_eq!(masked(json!(answers[0])), masked(json!(answers[1])));
    // The update in place kept its id, on both paths.
    for answer in &answers {
        assert_eq!(answer[1]["items"][0]["id"], answer[2]["items"][0]["id"]);
    }
    for (http_user, sql_user) in worlds[0].iter().zip(worlds[1]) {
        let (http_rows, http_counters, http_events) = state_of(&app, http_user).await;
        let (sql_rows, sql_counters, sql_events) = state_of(&app, sql_user).await;
        assert_eq!(sql_rows, http_rows, "{sql_user}'s rows");
        assert_eq!(sql_counters, http_counters, "{sql_user}'s counters");
        assert_eq!(
            masked(json!(sql_events)),
            masked(json!(http_events)),
            "{sql_user}'s events"
        );
    }
    // The `updated` event written by SQL spells its times as the server does.
    let me = Me::of(&app, "sql-1");
    let events = me.events_after(0).await;
    let updated = events.iter().find(|e| e["type"] == "updated").unwrap();
    let r = me
        .notification(updated["data"]["id"].as_str().unwrap())
        .await;
    let now: Value = r.json().await.unwrap();
    assert_eq!(updated["data"]["created_at"], now["created_at"]);
    assert_eq!(updated["data"]["updated_at"], now["updated_at"]);
    assert_eq!(updated["data"]["read_at"], now["read_at"]);
    assert_eq!(
        (updated["data"]["title"].as_str(), now["title"].as_str()),
        (Some("Upload 50%"), Some("Upload 50%"))
    );
}

#[tokio::test]
async fn a_rolled_back_sql_publish_leaves_nothing_and_sends_nothing() {
    let app = TestApp::spawn().await;
    let mut stream = app.sse("ann", Some("0"), None).await;
    let before = app.row_counts().await;

    let mut tx = app.pool.begin().await.unwrap();
    let rows = sql_publish(
        &mut tx,
        &json!({"recipients": ["ann", "bob"], "title": "Never"}),
    )
    .await
    .unwrap();
    assert_eq!(
        rows.iter()
            .map(|(_, u, s)| (u.as_str(), *s))
            .collect::<Vec<_>>(),
        [("ann", 1), ("bob", 1)]
    );
    tx.rollback().await.unwrap();

    assert_eq!(app.row_counts().await, before);
    // Events arrive in seq order, so the first one being a later publish
    // with seq 1 shows that nothing of the rolled-back one was delivered.
    Publisher::of(&app).one("ann", "After", json!({})).await;
    let first = stream.next().await.unwrap();
    assert_eq!(
        (first.id.as_str(), first.event.as_str()),
        ("1", "notification")
    );
    assert_eq!(data(&first)["title"], "After");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_sql_publish_is_delivered_live_on_every_instance() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.db_url, |_| {}).await;
    let mut on_a = a.sse("ann", Some("0"), None).await;
    let mut on_b = b.sse("ann", Some("0"), None).await;

    let mut tx = a.pool.begin().await.unwrap();
    let rows = sql_publish(
        &mut tx,
        &json!({"recipients": ["ann"], "title": "From the order's transaction",
                "category": "orders", "data": {"order": 42}}),
    )
    .await
    .unwrap();
    // Not visible before the commit.
    assert_eq!(Me::of(&a, "ann").counts().await["last_seq"], 0);
    tx.commit().await.unwrap();

    let id = rows[0].0.to_string();
    let r = Me::of(&b, "ann").notification(&id).await;
    assert_eq!(r.status(), 200);
    let mut expected: Value = r.json().await.unwrap();
    expected["counts"] = json!({"unread": 1, "unseen": 1});
    for stream in [&mut on_a, &mut on_b] {
        let e = stream.next().await.unwrap();
        assert_eq!((e.id.as_str(), e.event.as_str()), ("1", "notification"));
        assert_eq!(data(&e), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_order_holds_under_concurrent_http_and_sql_publishes_to_one_user() {
    const EACH: usize = 30;
    let app = TestApp::spawn().await;
    let mut stream = app.sse("ann", Some("0"), None).await;
    let publisher = Publisher::of(&app);
    let mut tasks = Vec::new();
    for i in 0..EACH {
        let publisher = publisher.clone();
        tasks.push(tokio::spawn(async move {
            let items = publisher
                .publish(&json!({"recipients": ["ann"], "title": format!("http {i}")}))
                .await;
            items[0]["seq"].as_i64().unwrap()
        }));
        let pool = app.pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await.unwrap();
            let body = json!({"recipients": ["ann"], "title": format!("sql {i}")});
            sql_publish(&mut conn, &body).await.unwrap()[0].2
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap());
    }
    seqs.sort_unstable();
    let total = 2 * EACH as i64;
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());

    let live: Vec<(i64, String)> = stream
        .take(2 * EACH)
        .await
        .iter()
        .map(|e| {
            (
                e.id.parse().unwrap(),
                data(e)["title"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        live.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "live in seq order, each once"
    );
    let titles: BTreeSet<&str> = live.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(titles.len(), 2 * EACH);
    let replayed: Vec<(i64, String)> = Me::of(&app, "ann")
        .events_after(0)
        .await
        .iter()
        .map(|e| {
            let title = e["data"]["title"].as_str().unwrap().to_owned();
            (e["seq"].as_i64().unwrap(), title)
        })
        .collect();
    assert_eq!(replayed, live);
}

async fn waiting_on_locks(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name = 'herald' AND datname = current_database()
           AND wait_event_type = 'Lock'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_application_transaction_holds_up_only_its_own_recipients() {
    let app = TestApp::spawn().await;
    assert_eq!(app.settings.publish.workers, 2);
    let publisher = Publisher::of(&app);
    let mut tx = app.pool.begin().await.unwrap();
    sql_publish(&mut tx, &json!({"recipients": ["ann"], "title": "Held"}))
        .await
        .unwrap();

    // Publishes to ann wait for the application's commit, one after the
    // other until both commit workers wait...
    let mut waiting = Vec::new();
    for n in 1..=2 {
        let publisher = publisher.clone();
        waiting.push(tokio::spawn(async move {
            publisher
                .publish(&json!({"recipients": ["ann"], "title": format!("Waits {n}")}))
                .await
        }));
        wait_within(
            &format!("{n} publishes to ann to wait for ann's row"),
            Duration::from_secs(10),
            async || waiting_on_locks(&app).await == n,
        )
        .await;
    }
    // ...while other users' publishes, over HTTP (on a spare worker:
    // without one this waits too) and from SQL, go through.
    let bob = tokio::time::timeout(
        Duration::from_secs(10),
        publisher.publish(&json!({"recipients": ["bob"], "title": "Free"})),
    )
    .await
    .expect("a publish to bob is not held up by ann's open transaction");
    assert_eq!(bob[0]["seq"], 1);
    let mut other = app.pool.acquire().await.unwrap();
    let carl = tokio::time::timeout(
        Duration::from_secs(10),
        sql_publish(
            &mut other,
            &json!({"recipients": ["carl"], "title": "Free"}),
        ),
    )
    .await
    .expect("a SQL publish to carl is not held up either")
    .unwrap();
    assert_eq!(carl[0].2, 1);
    assert!(waiting.iter().all(|w| !w.is_finished()));

    tx.commit().await.unwrap();
    let mut seqs = Vec::new();
    for w in waiting {
        seqs.push(w.await.unwrap()[0]["seq"].as_i64().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, [2, 3], "after the held one");
}

#[tokio::test]
async fn bad_input_is_an_sql_error_with_the_http_rules_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let long = |n: usize| "x".repeat(n);
    let past = rfc3339(chrono::Utc::now() - chrono::Duration::seconds(1));
    let many: Vec<String> = (0..10_001).map(|i| format!("u{i}")).collect();
    let big: serde_json::Map<String, Value> = (0..2_000)
        .map(|i| (format!("k{i}"), json!("vvvvv")))
        .collect();
    let cases = [
        (
            json!({"recipients": [], "title": "t"}),
            "recipients must list 1 to 10000 user ids",
        ),
        (
            json!({"recipients": many, "title": "t"}),
            "recipients must list 1 to 10000 user ids",
        ),
        (
            json!({"recipients": ["ok", "tab\there"], "title": "t"}),
            "recipients[1]: a user id",
        ),
        (
            json!({"recipients": [long(129)], "title": "t"}),
            "recipients[0]: a user id",
        ),
        (
            json!({"recipients": ["ann"], "title": ""}),
            "title must not be empty",
        ),
        (
            json!({"recipients": ["ann"], "title": long(257)}),
            "title is longer than 256",
        ),
        (
            json!({"recipients": ["ann"], "title": "t", "body": long(4097)}),
            "body is longer",
        ),
        (
            json!({"recipients": ["ann"], "title": "t", "category": ""}),
            "category must not be empty",
        ),
        (
            json!({"recipients": ["ann"], "title": "t", "category": long(65)}),
            "category is longer",
        ),
        (
            json!({"recipients": ["ann"], "title": "t", "data": [1]}),
            "data must be a JSON object",
        ),
        (
            json!({"recipients": ["ann"], "title": "t", "data": big}),
            "data is larger than 16384",
        ),
        (
            json!({"recipients": ["ann"], "title": "t", "expires_at": past}),
            "expires_at must be in the future",
        ),
        (
            json!({"recipients": ["ann"], "title": "t", "expires_at": "10000-01-01T00:00:00Z"}),
            "expires_at must be before the year 10000",
        ),
        (
            json!({"recipients": ["ann"], "title": "t", "key": ""}),
            "key must be 1–128 characters",
        ),
        (
            json!({"recipients": ["ann"], "title": "t", "key": long(129)}),
            "key must be 1–128 characters",
        ),
    ];
    let before = app.row_counts().await;
    let mut conn = app.pool.acquire().await.unwrap();
    for (body, words) in &cases {
        let error = sql_publish(&mut conn, body).await.unwrap_err();
        let error = error.as_database_error().expect("a database error");
        assert_eq!(error.code().as_deref(), Some("22023"), "{body}");
        assert!(
            error.message().starts_with("herald_publish: ") && error.message().contains(words),
            "{body}: {}",
            error.message()
        );
        // The HTTP publish refuses the same content.
        let status = publisher.send(body).await.status().as_u16();
        assert!(matches!(status, 400 | 422), "{body}: HTTP {status}");
    }
    drop(conn);
    assert_eq!(app.row_counts().await, before);
}
