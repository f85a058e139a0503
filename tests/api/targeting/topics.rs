//! Topics: the membership API, and publishing to the subscribers of
//! topics (each user once, through the first listed topic they belong to).

use reqwest::Method;
use serde_json::{Value, json};

use super::{call, expect, last_seq, publish_ok, subscribe, targeting_rows, unsubscribe};
use crate::support::{TestApp, assert_problem, data};

async fn subscribers(app: &TestApp, topic: &str, query: &str) -> Value {
    let path = format!("/v1/topics/{topic}/subscribers{query}");
    expect(
        call(app, Method::GET, &path, &app.publisher(), None).await,
        200,
    )
    .await
}

async fn topics(app: &TestApp, query: &str) -> Value {
    let path = format!("/v1/topics{query}");
    expect(
        call(app, Method::GET, &path, &app.publisher(), None).await,
        200,
    )
    .await
}

#[tokio::test]
async fn added_and_removed_count_only_real_changes() {
    let app = TestApp::spawn().await;
    // A user named twice in one request counts once.
    assert_eq!(
        subscribe(&app, "news", &["a", "b", "c", "a"]).await,
        json!({"added": 3})
    );
    assert_eq!(
        subscribe(&app, "news", &["b", "c", "d"]).await,
        json!({"added": 1}),
        "b and c were subscribed already"
    );
    assert_eq!(
        unsubscribe(&app, "news", &["a", "x", "a"]).await,
        json!({"removed": 1}),
        "x was never subscribed"
    );
    assert_eq!(
        unsubscribe(&app, "news", &["a"]).await,
        json!({"removed": 0})
    );
    assert_eq!(
        subscribers(&app, "news", "").await,
        json!({"users": ["b", "c", "d"], "next_after": null})
    );
    // Membership is per topic.
    assert_eq!(subscribe(&app, "sport", &["b"]).await, json!({"added": 1}));
    assert_eq!(
        subscribers(&app, "sport", "").await,
        json!({"users": ["b"], "next_after": null})
    );
}

#[tokio::test]
async fn subscribers_page_by_byte_order_with_next_after() {
    let app = TestApp::spawn().await;
    // By byte value: '0' < 'B' < '_' < 'a' < "a-1" < 'b' (a locale
    // collation would put them otherwise).
    subscribe(&app, "t", &["b", "a-1", "_", "B", "a", "0"]).await;
    assert_eq!(
        subscribers(&app, "t", "?limit=2").await,
        json!({"users": ["0", "B"], "next_after": "B"})
    );
    assert_eq!(
        subscribers(&app, "t", "?limit=2&after=B").await,
        json!({"users": ["_", "a"], "next_after": "a"})
    );
    // A full last page still says where to go on; the next one is empty.
    assert_eq!(
        subscribers(&app, "t", "?limit=2&after=a").await,
        json!({"users": ["a-1", "b"], "next_after": "b"})
    );
    assert_eq!(
        subscribers(&app, "t", "?limit=2&after=b").await,
        json!({"users": [], "next_after": null})
    );
    assert_eq!(
        subscribers(&app, "t", "?limit=4&after=_").await,
        json!({"users": ["a", "a-1", "b"], "next_after": null})
    );
    // The default limit takes them all here.
    assert_eq!(
        subscribers(&app, "t", "").await["users"],
        json!(["0", "B", "_", "a", "a-1", "b"])
    );
    assert_eq!(
        subscribers(&app, "never-used", "").await,
        json!({"users": [], "next_after": null})
    );
    for (query, detail) in [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=x", "invalid query parameter"),
    ] {
        let path = format!("/v1/topics/t/subscribers{query}");
        let r = call(&app, Method::GET, &path, &app.publisher(), None).await;
        assert_problem(r, 400, detail).await;
    }
}

#[tokio::test]
async fn the_topic_list_counts_subscribers_and_pages() {
    let app = TestApp::spawn().await;
    subscribe(&app, "gamma", &["u1", "u2", "u3"]).await;
    subscribe(&app, "alpha", &["u1", "u2"]).await;
    subscribe(&app, "Beta", &["u3"]).await;
    // A topic whose last subscriber left is no longer listed.
    subscribe(&app, "delta", &["u9"]).await;
    unsubscribe(&app, "delta", &["u9"]).await;
    assert_eq!(
        topics(&app, "").await,
        json!({"topics": [
            {"name": "Beta", "subscribers": 1},
            {"name": "alpha", "subscribers": 2},
            {"name": "gamma", "subscribers": 3},
        ], "next_after": null})
    );
    assert_eq!(
        topics(&app, "?limit=2").await,
        json!({"topics": [
            {"name": "Beta", "subscribers": 1},
            {"name": "alpha", "subscribers": 2},
        ], "next_after": "alpha"})
    );
    assert_eq!(
        topics(&app, "?limit=2&after=alpha").await,
        json!({"topics": [{"name": "gamma", "subscribers": 3}], "next_after": null})
    );
}

#[tokio::test]
async fn a_user_lists_their_own_topics() {
    let app = TestApp::spawn().await;
    subscribe(&app, "z", &["me", "other"]).await;
    subscribe(&app, "m.x", &["me"]).await;
    subscribe(&app, "A:1", &["me"]).await;
    subscribe(&app, "only-other", &["other"]).await;
    let mine = expect(app.get_as("me", "/v1/me/topics").await, 200).await;
    assert_eq!(mine, json!({"topics": ["A:1", "m.x", "z"]}));
    let none = expect(app.get_as("nobody", "/v1/me/topics").await, 200).await;
    assert_eq!(none, json!({"topics": []}));
}

#[tokio::test]
async fn membership_requests_are_checked_and_a_refused_one_changes_nothing() {
    let app = TestApp::spawn().await;
    subscribe(&app, "kept", &["u1"]).await;
    let before = targeting_rows(&app.pool).await;
    let put = |path: String, body: Value| {
        let app = &app;
        async move { call(app, Method::PUT, &path, &app.publisher(), Some(&body)).await }
    };
    let long = "t".repeat(129);
    for topic in ["a%20b", "a%2Fb", "caf%C3%A9", long.as_str()] {
        let r = put(
            format!("/v1/topics/{topic}/subscribers"),
            json!({"users": ["u2"]}),
        )
        .await;
        assert_problem(r, 400, "topic name").await;
    }
    let many: Vec<String> = (0..10_001).map(|i| format!("u{i}")).collect();
    for (body, detail) in [
        (json!({"users": []}), "1 to 10000"),
        (json!({"users": many}), "1 to 10000"),
        (json!({"users": ["u2", ""]}), "users[1]"),
        (json!({"users": ["x".repeat(129)]}), "users[0]"),
    ] {
        let r = put("/v1/topics/kept/subscribers".into(), body).await;
        assert_problem(r, 422, detail).await;
    }
    // Publishers and administrators manage topics; users do not.
    let r = call(
        &app,
        Method::PUT,
        "/v1/topics/kept/subscribers",
        &app.token("u2", &[]),
        Some(&json!({"users": ["u2"]})),
    )
    .await;
    assert_problem(r, 403, "").await;
    let r = call(
        &app,
        Method::PUT,
        "/v1/topics/kept/subscribers",
        &app.admin(),
        Some(&json!({"users": ["u2"]})),
    )
    .await;
    assert_eq!(expect(r, 200).await, json!({"added": 1}));
    unsubscribe(&app, "kept", &["u2"]).await;
    assert_eq!(targeting_rows(&app.pool).await, before);
    assert_eq!(subscribers(&app, "kept", "").await["users"], json!(["u1"]));
}

#[tokio::test]
async fn a_topic_publish_reaches_each_user_once_through_the_first_listed_topic() {
    let app = TestApp::spawn().await;
    // `both` belongs to both topics; `named` and `u4` are subscribers too
    // but are also named as recipients.
    subscribe(&app, "news", &["u1", "both", "named", "Z9"]).await;
    subscribe(&app, "sports", &["both", "u2", "u4"]).await;
    let mut live = app.sse("both", None, None).await;

    let answer = publish_ok(
        &app,
        &json!({
            "recipients": ["u4", "named"],
            "topics": ["sports", "news", "sports", "empty"],
            "title": "match day",
        }),
    )
    .await;
    let items = answer["notifications"].as_array().unwrap();
    let users: Vec<&str> = items
        .iter()
        .map(|i| i["user_id"].as_str().unwrap())
        .collect();
    // Named recipients in the given order, then subscribers by byte value
    // ('Z' sorts before 'b' and 'u').
    assert_eq!(users, ["u4", "named", "Z9", "both", "u1", "u2"]);
    assert!(items.iter().all(|i| i["seq"] == 1), "{answer}");
    assert_eq!(answer["skipped"], json!([]));

    let expected_topic = [
        ("u4", Value::Null),
        ("named", Value::Null),
        ("Z9", json!("news")),
        ("both", json!("sports")),
        ("u1", json!("news")),
        ("u2", json!("sports")),
    ];
    for (item, (user, topic)) in items.iter().zip(&expected_topic) {
        let listed = app.list(user, "").await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{user}");
        let n = &listed["items"][0];
        assert_eq!(n["id"], item["id"], "{user}");
        assert_eq!(n["topic"], *topic, "{user}");
        assert_eq!(n["title"], "match day");
    }
    let event = live.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.id.as_str()),
        ("notification", "1")
    );
    assert_eq!(data(&event)["topic"], "sports");

    // The order of the topics decides: now news comes first.
    let answer = publish_ok(
        &app,
        &json!({"topics": ["news", "sports"], "title": "second"}),
    )
    .await;
    let got: Vec<(String, i64)> = answer["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["user_id"].as_str().unwrap().to_owned(),
                i["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64)> = ["Z9", "both", "named", "u1", "u2", "u4"]
        .iter()
        .map(|u| (u.to_string(), 2))
        .collect();
    assert_eq!(got, want);
    let event = live.next().await.unwrap();
    assert_eq!(event.id, "2");
    assert_eq!(data(&event)["topic"], "news");
    assert_eq!(app.list("named", "").await["items"][0]["topic"], "news");
    assert_eq!(app.list("u4", "").await["items"][0]["topic"], "sports");

    // `recipients: []` is allowed beside topics; a topic nobody follows
    // reaches nobody.
    let answer = publish_ok(
        &app,
        &json!({"recipients": [], "topics": ["empty"], "title": "void"}),
    )
    .await;
    assert_eq!(answer, json!({"notifications": [], "skipped": []}));
    assert_eq!(last_seq(&app, "both").await, 2);
}

#[tokio::test]
async fn a_refused_topic_publish_changes_nothing() {
    let app = TestApp::spawn().await;
    subscribe(&app, "news", &["s1", "s2"]).await;
    app.publish(&["s1", "r1"], "before").await;
    let rows = app.row_counts().await;
    let targeting = targeting_rows(&app.pool).await;
    let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"topics": ["news", "bad name"], "title": "t"}),
            "topics[1]",
        ),
        (json!({"topics": ["a/b"], "title": "t"}), "topics[0]"),
        (
            json!({"topics": ["x".repeat(129)], "title": "t"}),
            "topics[0]",
        ),
        (
            json!({"topics": [""], "recipients": ["r1"], "title": "t"}),
            "topics[0]",
        ),
        (json!({"topics": eleven, "title": "t"}), "1 to 10"),
        (
            json!({"topics": [], "recipients": ["r1"], "title": "t"}),
            "1 to 10",
        ),
        (
            json!({"title": "t"}),
            "a publish needs `recipients`, `topics` or both",
        ),
        (json!({"recipients": null, "title": "t"}), "a publish needs"),
        (json!({"recipients": [], "title": "t"}), "recipients"),
        (
            json!({"topics": ["news"], "recipients": ["r1", ""], "title": "t"}),
            "recipients[1]",
        ),
        (json!({"topics": ["news"], "title": ""}), "title"),
        (json!({"topics": "news", "title": "t"}), ""),
    ];
    for (body, detail) in cases {
        let r = app.post_notification(&body).await;
        assert_problem(r, 422, detail).await;
    }
    assert_eq!(app.row_counts().await, rows);
    assert_eq!(targeting_rows(&app.pool).await, targeting);
    for (user, seq) in [("s1", 1), ("s2", 0), ("r1", 1)] {
        assert_eq!(last_seq(&app, user).await, seq, "{user}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_topic_publish_retried_with_its_idempotency_key_is_sent_once() {
    const BIG: usize = 10_000;
    let app = TestApp::spawn().await;
    let many: Vec<String> = (0..BIG).map(|i| format!("fan-{i:05}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    subscribe(&app, "fans", &refs).await;
    // Subscribed too, and named: it gets it as a recipient.
    subscribe(&app, "fans", &["named"]).await;
    let body = json!({"recipients": ["named"], "topics": ["fans"], "title": "big news"});
    let send = async |body: &Value| {
        app.http
            .post(app.url("/v1/notifications"))
            .bearer_auth(app.publisher())
            .header("Idempotency-Key", "fans-1")
            .json(body)
            .send()
            .await
            .unwrap()
    };
    let first = expect(send(&body).await, 202).await;
    let id = first["broadcast"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/admin/broadcasts/{id}");
    crate::support::wait_within(
        "the chunked publish",
        std::time::Duration::from_secs(60),
        async || {
            let r = call(&app, Method::GET, &path, &app.publisher(), None).await;
            expect(r, 200).await["status"] == "done"
        },
    )
    .await;
    // A retry after it was sent answers what the first attempt answered
    // (the broadcast as it was then) and sends nothing more.
    let again = expect(send(&body).await, 202).await;
    assert_eq!(again, first);
    let other = json!({"topics": ["fans"], "title": "other"});
    assert_problem(send(&other).await, 422, "Idempotency-Key").await;

    let broadcasts: i64 = sqlx::query_scalar("SELECT count(*) FROM broadcasts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(broadcasts, 1);
    let per_user: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT n, count(*) FROM (SELECT user_id, count(*) AS n FROM notifications
         GROUP BY user_id) AS c GROUP BY n",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(per_user, [(1, BIG as i64 + 1)], "each user exactly once");
    assert_eq!(
        app.list("named", "").await["items"][0]["topic"],
        Value::Null
    );
    assert_eq!(app.list("fan-09999", "").await["items"][0]["topic"], "fans");
}
