//! Publishing: the answer, validation, idempotency, and that a failed
//! request changes nothing.

use herald::http::auth::Scope;
use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem};

#[tokio::test]
async fn publish_to_several_users_answers_ids_and_per_user_seqs() {
    let app = TestApp::spawn().await;
    app.publish(&["b"], "first for b").await;
    let r = app
        .post_notification(&json!({"recipients": ["a", "b", "a", "c"], "title": "hello", "expires_at": "2999-01-01T00:00:00Z"}))
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    let items = body["notifications"].as_array().unwrap();
    let pairs: Vec<_> = items
        .iter()
        .map(|i| (i["user_id"].as_str().unwrap(), i["seq"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [("a", 1), ("b", 2), ("c", 1)],
        "a repeated recipient gets one notification"
    );
    let ids: std::collections::HashSet<_> =
        items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    let listed = app.list("b", "").await;
    assert_eq!(listed["items"][0]["id"], items[1]["id"]);
    assert_eq!(listed["items"][0]["expires_at"], "2999-01-01T00:00:00Z");
    assert_eq!(
        (listed["last_seq"].as_i64(), listed["unread_count"].as_i64()),
        (Some(2), Some(2))
    );
}

#[tokio::test]
async fn invalid_publishes_answer_422_or_400_and_change_nothing() {
    let app = TestApp::spawn().await;
    let big_data = json!({"blob": "x".repeat(16 * 1024)});
    let too_many: Vec<String> = (0..10_001).map(|i| format!("u{i}")).collect();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"recipients": [], "title": "t"}), 422, "1 to 10000"),
        (
            json!({"recipients": too_many, "title": "t"}),
            422,
            "1 to 10000",
        ),
        (
            json!({"recipients": ["ok", ""], "title": "t"}),
            422,
            "recipients[1]",
        ),
        (
            json!({"recipients": ["x".repeat(129)], "title": "t"}),
            422,
            "1 to 128 bytes",
        ),
        (
            json!({"recipients": ["a\u{0}b"], "title": "t"}),
            422,
            "control characters",
        ),
        (json!({"title": "t"}), 422, "recipients"),
        (json!({"recipients": ["a"]}), 422, "title"),
        (
            json!({"recipients": ["a"], "title": ""}),
            422,
            "title must not be empty",
        ),
        (
            json!({"recipients": ["a"], "title": "é".repeat(257)}),
            422,
            "longer than 256",
        ),
        (
            json!({"recipients": ["a"], "title": "t", "body": "b".repeat(4097)}),
            422,
            "longer than 4096",
        ),
        (
            json!({"recipients": ["a"], "title": "t", "category": ""}),
            422,
            "category",
        ),
        (
            json!({"recipients": ["a"], "title": "t", "data": [1, 2]}),
            422,
            "JSON object",
        ),
        (
            json!({"recipients": ["a"], "title": "t", "data": big_data}),
            422,
            "larger than 16384",
        ),
        (
            json!({"recipients": ["a"], "title": "t", "expires_at": "2001-01-01T00:00:00Z"}),
            422,
            "future",
        ),
        (
            json!({"recipients": ["a"], "title": "t", "expires_at": "tomorrow"}),
            422,
            "expires_at",
        ),
        (
            json!({"recipients": ["a"], "title": 5}),
            422,
            "invalid type",
        ),
        (
            json!({"recipients": ["a"], "title": "t", "colour": "red"}),
            422,
            "unknown field",
        ),
        (json!(["not", "an", "object"]), 422, "invalid type"),
    ];
    for (body, status, detail) in cases {
        let r = app.post_notification(&body).await;
        assert_problem(r, status, detail).await;
    }
    let raw = |body: &'static str, content_type: &'static str| {
        app.http
            .post(app.url("/v1/notifications"))
            .bearer_auth(app.publisher())
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_problem(
        raw("{\"recipients\": [", "application/json").await.unwrap(),
        400,
        "not valid JSON",
    )
    .await;
    assert_problem(
        raw("recipients=a", "application/x-www-form-urlencoded")
            .await
            .unwrap(),
        415,
        "application/json",
    )
    .await;
    let huge = format!(
        "{{\"recipients\":[\"a\"],\"title\":\"{}\"}}",
        "x".repeat(3 * 1024 * 1024)
    );
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(app.publisher())
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_problem(r, 413, "limit").await;
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
}

async fn publish_with_key(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/notifications"))
        .bearer_auth(app.publisher())
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_returns_the_first_answer_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let body = json!({"recipients": ["a", "b"], "title": "once", "data": {"x": 1, "y": 2}});
    let first = publish_with_key(&app, "order-17", &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    // The same request with its keys in another order is the same request.
    let reordered = json!({"data": {"y": 2, "x": 1}, "title": "once", "recipients": ["a", "b"]});
    let again = publish_with_key(&app, "order-17", &reordered).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.row_counts().await, (2, 2, 0, 1));
    // Another publisher's identical key is its own.
    let other = app.token("other-service", &[Scope::Publish]);
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(other)
        .header("Idempotency-Key", "order-17")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(app.row_counts().await.1, 4);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let r = publish_with_key(&app, "k1", &json!({"recipients": ["a"], "title": "one"})).await;
    assert_eq!(r.status(), 201);
    let before = app.row_counts().await;
    let r = publish_with_key(&app, "k1", &json!({"recipients": ["a"], "title": "two"})).await;
    assert_problem(r, 422, "different request body").await;
    assert_eq!(app.row_counts().await, before);
    let r = publish_with_key(
        &app,
        "bad key with spaces",
        &json!({"recipients": ["a"], "title": "x"}),
    )
    .await;
    assert_problem(r, 400, "Idempotency-Key").await;
    assert_eq!(app.row_counts().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_create_once() {
    let app = TestApp::spawn().await;
    let body = json!({"recipients": ["a", "b", "c"], "title": "race"});
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (http, url, token, body) = (
            app.http.clone(),
            app.url("/v1/notifications"),
            app.publisher(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", "same")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "every retry gets the first answer"
    );
    assert_eq!(app.row_counts().await, (3, 3, 0, 1));
}

/// Bodies of more than 64 KiB are decoded away from the HTTP workers; they
/// answer exactly as small ones do, an idempotent retry included.
#[tokio::test]
async fn large_bodies_are_decoded_and_answered_like_small_ones() {
    let app = TestApp::spawn().await;
    // A refused `data` of 150,000 keys (1.7 MB): 422, nothing stored.
    let keys: Vec<String> = (0..150_000).map(|i| format!(r#""k{i}":1"#)).collect();
    let refused = format!(
        r#"{{"recipients":["lara"],"title":"t","data":{{{}}}}}"#,
        keys.join(",")
    );
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(app.publisher())
        .header("Content-Type", "application/json")
        .body(refused)
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "data").await;
    // A number no JSON value can hold, in a large body: malformed, 400.
    let many: Vec<String> = (0..5_000).map(|i| format!("\"large-{i}\"")).collect();
    let huge_number = format!(
        r#"{{"recipients":[{}],"title":"t","data":{{"x":1e999999}}}}"#,
        many.join(",")
    );
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(app.publisher())
        .header("Content-Type", "application/json")
        .body(huge_number)
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "not valid JSON").await;
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));

    // 5,000 recipients (about 80 KB), with an idempotency key.
    let recipients: Vec<String> = (0..5_000).map(|i| format!("large-{i}")).collect();
    let body = json!({"recipients": recipients, "title": "to many"});
    let first = publish_with_key(&app, "large-body", &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["notifications"].as_array().unwrap().len(), 5_000);
    let again = publish_with_key(&app, "large-body", &body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.row_counts().await.1, 5_000);
}

/// A member named twice is ambiguous: refused, not resolved by whichever
/// came last.
#[tokio::test]
async fn a_member_named_twice_is_refused() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(app.publisher())
        .header("Content-Type", "application/json")
        .body(r#"{"recipients":["dup"],"title":"t","title":"u"}"#)
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "duplicate field `title`").await;
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
}
