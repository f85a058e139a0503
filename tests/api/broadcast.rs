//! Broadcasts: every known user gets the notification exactly once, in
//! chunks, resumable after a crash, one instance at a time.

use herald::domain::{Title, UserId};
use herald::inbox::publishing::{BroadcastChunk, Content, Part, PublishRequest};
use serde_json::{Value, json};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::support::{TestApp, assert_problem, data, fresh_database, wait_for};

async fn create(app: &TestApp, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/broadcasts"))
        .bearer_auth(app.admin())
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get(app: &TestApp, id: &str) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/v1/admin/broadcasts/{id}")))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap()
}

/// Polls the broadcast until it is done and returns it.
async fn wait_until_done(app: &TestApp, id: &str) -> Value {
    wait_for(|| async {
        let r = get(app, id).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["status"] == "done"
    })
    .await;
    get(app, id).await.json().await.unwrap()
}

/// How many notifications titled `title` each user has, by user.
async fn received(pool: &PgPool, title: &str) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT u.user_id, count(n.id) FROM users u
         LEFT JOIN notifications n ON n.user_id = u.user_id AND n.title = $1
         GROUP BY u.user_id ORDER BY u.user_id",
    )
    .bind(title)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_online_users_live_and_offline_users_on_replay_exactly_once() {
    // Chunks of two users: five known users take three chunks.
    let app = TestApp::spawn_with(|s| s.publish.broadcast_chunk = 2).await;
    for user in ["off-1", "off/2", "ünïcode"] {
        app.publish(&[user], "earlier").await;
    }
    // Known by a connection only.
    drop(app.sse("quiet", None, None).await);
    let mut online = app.sse("online", None, None).await;

    let r = create(
        &app,
        &json!({
            "title": "Maintenance tonight", "body": "Read-only from 22:00",
            "category": "system", "data": {"window": "22:00-22:30"}
        }),
    )
    .await;
    assert_eq!(r.status(), 202);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    Uuid::parse_str(&id).unwrap();
    assert_eq!(created["status"], "pending");
    assert_eq!(created["recipients"], 0);
    chrono::DateTime::parse_from_rfc3339(created["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(created.as_object().unwrap().len(), 4, "{created}");

    let done = wait_until_done(&app, &id).await;
    let known: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(known, 5);
    assert_eq!(
        done,
        json!({"id": id, "status": "done", "recipients": known, "created_at": created["created_at"]})
    );

    // Live: the online user's stream gets it as an ordinary notification.
    let event = online.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.id.as_str()),
        ("notification", "1")
    );
    let mut live = data(&event);
    let counts = live.as_object_mut().unwrap().remove("counts");
    assert_eq!(counts, Some(json!({"unread": 1, "unseen": 1})));
    assert_eq!(live["title"], "Maintenance tonight");
    assert_eq!(live["body"], "Read-only from 22:00");
    assert_eq!(live["category"], "system");
    assert_eq!(live["data"], json!({"window": "22:00-22:30"}));
    assert_eq!(app.list("online", "").await["items"][0], live);

    // Offline: replayed after what the user had, with its own seq.
    let mut replay = app.sse("off/2", Some("1"), None).await;
    let event = replay.next().await.unwrap();
    assert_eq!(event.id, "2");
    assert_eq!(data(&event)["title"], "Maintenance tonight");
    let quiet = app.list("quiet", "").await;
    assert_eq!(quiet["last_seq"], 1);
    assert_eq!(quiet["unread_count"], 1);
    // Read state works as for any notification.
    let nid = quiet["items"][0]["id"].as_str().unwrap();
    let r = app
        .post_as("quiet", &format!("/v1/me/notifications/{nid}/read"))
        .await;
    assert_eq!(r.status(), 200);

    // Exactly one each.
    let counts = received(&app.pool, "Maintenance tonight").await;
    assert_eq!(counts.len(), 5);
    assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
    assert_eq!(app.stats().await["publishes_since_start"], 3 + 5);
}

#[tokio::test]
async fn a_broadcast_to_nobody_is_done_at_once() {
    let app = TestApp::spawn().await;
    let r = create(&app, &json!({ "title": "anyone?" })).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(wait_until_done(&app, &id).await["recipients"], 0);
}

#[tokio::test]
async fn invalid_broadcasts_are_refused_and_create_nothing() {
    let app = TestApp::spawn().await;
    app.publish(&["someone"], "earlier").await;
    let before = app.row_counts().await;
    for (body, detail) in [
        (
            json!({"recipients": ["someone"], "title": "t"}),
            "recipients",
        ),
        (json!({"recipients": null, "title": "t"}), "recipients"),
        (json!({"title": ""}), "title"),
        (json!({"body": "no title"}), "title"),
        (json!({"title": "t", "colour": "red"}), "colour"),
        (json!({"title": "t", "data": [1]}), "object"),
        (
            json!({"title": "t", "expires_at": "2000-01-01T00:00:00Z"}),
            "future",
        ),
        (json!(["t"]), ""),
    ] {
        assert_problem(create(&app, &body).await, 422, detail).await;
    }
    let r = app
        .http
        .post(app.url("/v1/broadcasts"))
        .bearer_auth(app.admin())
        .header("Content-Type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "not valid JSON").await;
    assert_eq!(app.row_counts().await, before);
    let broadcasts: i64 = sqlx::query_scalar("SELECT count(*) FROM broadcasts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(broadcasts, 0);
}

#[tokio::test]
async fn unknown_and_malformed_broadcast_ids() {
    let app = TestApp::spawn().await;
    assert_problem(
        get(&app, &Uuid::now_v7().to_string()).await,
        404,
        "no such broadcast",
    )
    .await;
    assert_problem(get(&app, "nope").await, 400, "invalid path parameter").await;
}

async fn seed_users(pool: &PgPool, users: &[&str]) {
    sqlx::query("INSERT INTO users (user_id) SELECT * FROM unnest($1::text[])")
        .bind(users)
        .execute(pool)
        .await
        .unwrap();
}

/// A broadcast row as an instance leaves it: `cursor` is the last user done.
async fn seed_broadcast(pool: &PgPool, title: &str, cursor: Option<&str>, recipients: i64) -> Uuid {
    let id = Uuid::now_v7();
    let status = if cursor.is_some() {
        "running"
    } else {
        "pending"
    };
    sqlx::query(
        "INSERT INTO broadcasts (id, status, title, created_by, created_at, cursor, recipients)
         VALUES ($1, $2, $3, 'operator', now(), $4, $5)",
    )
    .bind(id)
    .bind(status)
    .bind(title)
    .bind(cursor)
    .bind(recipients)
    .execute(pool)
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn an_unfinished_broadcast_resumes_at_start_after_its_last_chunk() {
    let db = fresh_database().await;
    let pool = PgPool::connect(&db).await.unwrap();
    seed_users(&pool, &["a", "b", "c", "d", "e", "f"]).await;
    // An instance died after committing the chunk that ended at "c".
    let id = seed_broadcast(&pool, "resumed", Some("c"), 3).await;

    let app = TestApp::spawn_on(&db, |s| s.publish.broadcast_chunk = 2).await;
    let done = wait_until_done(&app, &id.to_string()).await;
    assert_eq!(done["recipients"], 6);
    let counts = received(&pool, "resumed").await;
    let expected: Vec<(String, i64)> = [("a", 0), ("b", 0), ("c", 0), ("d", 1), ("e", 1), ("f", 1)]
        .iter()
        .map(|(u, n)| (u.to_string(), *n))
        .collect();
    assert_eq!(counts, expected);
}

fn chunk(id: Uuid, from: Option<&str>, to: &str, recipients: &[&str]) -> PublishRequest {
    let part = Part {
        recipients: recipients
            .iter()
            .map(|u| UserId::parse(u).unwrap())
            .collect(),
        via: Vec::new(),
        topics: Vec::new(),
        content: Content {
            title: Title::parse("guarded".into()).unwrap(),
            body: None,
            category: None,
            data: None,
            expires_at: None,
            actions: Default::default(),
            key: None,
            renotify: false,
            critical: false,
        },
    };
    PublishRequest {
        broadcast: Some(BroadcastChunk {
            id,
            from: from.map(str::to_owned),
            to: to.to_owned(),
        }),
        ..PublishRequest::single(UserId::parse("operator").unwrap(), part)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_commits_only_from_the_cursor_it_was_read_at_and_the_lock_is_respected() {
    let db = fresh_database().await;
    let pool = PgPool::connect(&db).await.unwrap();
    seed_users(&pool, &["a", "b", "c", "d"]).await;
    let id = seed_broadcast(&pool, "guarded", Some("b"), 2).await;
    // Hold the broadcast's lock, as another instance working on it would.
    let mut holder = sqlx::PgConnection::connect(&db).await.unwrap();
    let locked: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_lock(hashtext('herald.broadcast'), hashtext($1::text))",
    )
    .bind(id)
    .fetch_one(&mut holder)
    .await
    .unwrap();
    assert!(locked);

    let app = TestApp::spawn_on(&db, |_| {}).await;
    let publisher = &app.handle.state().publisher;
    // A chunk read before the cursor moved to "b" (a worker that lost its
    // lock): refused, and none of it is stored.
    let stale = publisher.publish(chunk(id, Some("a"), "b", &["b"])).await;
    assert!(stale.is_err());
    assert_eq!(
        received(&pool, "guarded")
            .await
            .iter()
            .map(|r| r.1)
            .sum::<i64>(),
        0
    );
    // The chunk after the cursor commits, and moves it.
    let sent = publisher
        .publish(chunk(id, Some("b"), "c", &["c"]))
        .await
        .unwrap();
    assert_eq!(sent[0].notifications.len(), 1);
    let (cursor, recipients): (String, i64) =
        sqlx::query_as("SELECT cursor, recipients FROM broadcasts WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((cursor.as_str(), recipients), ("c", 3));
    // Sending the same chunk again is refused.
    assert!(
        publisher
            .publish(chunk(id, Some("b"), "c", &["c"]))
            .await
            .is_err()
    );

    // Released: an instance finishes it from "c" (at its next check).
    holder.close().await.unwrap();
    let done = wait_until_done(&app, &id.to_string()).await;
    assert_eq!(done["recipients"], 4);
    let counts = received(&pool, "guarded").await;
    let n: Vec<i64> = counts.iter().map(|r| r.1).collect();
    assert_eq!(n, [0, 0, 1, 1], "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_starting_together_send_a_broadcast_exactly_once() {
    let db = fresh_database().await;
    let pool = PgPool::connect(&db).await.unwrap();
    let users: Vec<String> = (0..500).map(|i| format!("user-{i:04}")).collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    seed_users(&pool, &refs).await;
    let id = seed_broadcast(&pool, "once", None, 0).await;

    let (a, b) = tokio::join!(
        TestApp::spawn_on(&db, |s| s.publish.broadcast_chunk = 7),
        TestApp::spawn_on(&db, |s| s.publish.broadcast_chunk = 7),
    );
    let done = wait_until_done(&a, &id.to_string()).await;
    assert_eq!(done["recipients"], 500);
    assert_eq!(
        get(&b, &id.to_string())
            .await
            .json::<Value>()
            .await
            .unwrap(),
        done
    );
    let counts = received(&pool, "once").await;
    assert_eq!(counts.len(), 500);
    assert!(counts.iter().all(|(_, n)| *n == 1));
    // Every user's log is dense: the broadcast is their seq 1.
    let max_seq: i64 = sqlx::query_scalar("SELECT max(last_seq) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(max_seq, 1);
}
