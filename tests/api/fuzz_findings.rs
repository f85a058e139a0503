//! What fuzzing the API against openapi.yaml (scripts/fuzz.sh) found, each
//! pinned by a test: undocumented methods answer 405 with `Allow`, U+0000
//! (which PostgreSQL cannot store) is refused up front instead of failing
//! with a 500, an `expires_at` that cannot be written back as RFC 3339
//! is refused, a body that is a JSON array is not read as an object, and an
//! action URL is stored as a well-formed URI.

use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem};

#[tokio::test]
async fn an_unsupported_method_on_a_listed_path_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let id = uuid::Uuid::new_v4();
    let cases = [
        (reqwest::Method::TRACE, "/healthz".to_owned(), "GET"),
        (reqwest::Method::POST, "/openapi.yaml".to_owned(), "GET"),
        (reqwest::Method::PUT, "/v1/notifications".to_owned(), "POST"),
        (
            reqwest::Method::PATCH,
            format!("/v1/me/notifications/{id}"),
            "GET, DELETE",
        ),
        // Not a malformed `{id}`: read-all is a resource of its own.
        (
            reqwest::Method::GET,
            "/v1/me/notifications/read-all".to_owned(),
            "POST",
        ),
        (
            reqwest::Method::DELETE,
            "/v1/admin/users/alice/disconnect".to_owned(),
            "POST",
        ),
    ];
    for (method, path, allow) in cases {
        let r = app
            .http
            .request(method.clone(), app.url(&path))
            .bearer_auth(app.admin())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some(allow),
            "{method} {path}"
        );
        let body = assert_problem(r, 405, &format!("{method} is not supported here")).await;
        assert_eq!(
            body["type"], "https://herald.example/problems/method-not-allowed",
            "{method} {path}"
        );
        assert_eq!(body["title"], "Method not allowed");
    }
    // The routes themselves still answer, and unknown paths stay 404.
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.post_as("u", "/v1/me/notifications/read-all").await;
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .request(reqwest::Method::TRACE, app.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("allow").is_none());
    assert_problem(r, 404, "no route for TRACE /v1/nothing-here").await;
}

#[tokio::test]
async fn u0000_in_content_is_422_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"title": "a\u{0}b"}), "title must not contain U+0000"),
        (
            json!({"title": "t", "body": "b\u{0}"}),
            "body must not contain U+0000",
        ),
        (
            json!({"title": "t", "category": "\u{0}"}),
            "category must not contain U+0000",
        ),
        (
            json!({"title": "t", "data": {"k": "v\u{0}"}}),
            "data must not contain U+0000",
        ),
        (
            json!({"title": "t", "data": {"k\u{0}": 1}}),
            "data must not contain U+0000",
        ),
        (
            json!({"title": "t", "data": {"deep": [1, {"k": ["\u{0}"]}]}}),
            "data must not contain U+0000",
        ),
    ];
    let before = app.row_counts().await;
    for (content, detail) in cases {
        let mut publish = content.clone();
        publish["recipients"] = json!(["u"]);
        let r = app
            .http
            .post(app.url("/v1/notifications"))
            .bearer_auth(app.publisher())
            .header("Idempotency-Key", "nul-check")
            .json(&publish)
            .send()
            .await
            .unwrap();
        assert_problem(r, 422, detail).await;
        let r = app
            .http
            .post(app.url("/v1/broadcasts"))
            .bearer_auth(app.admin())
            .json(&content)
            .send()
            .await
            .unwrap();
        assert_problem(r, 422, detail).await;
    }
    assert_eq!(app.row_counts().await, before);
    let (broadcasts,): (i64,) = sqlx::query_as("SELECT count(*) FROM broadcasts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(broadcasts, 0);
    // The same content without U+0000 is fine, `\u0000` spelled out too.
    let r = app
        .post_notification(&json!({
            "recipients": ["u"], "title": "a b", "data": {"k": "\\u0000"}
        }))
        .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn u0000_in_the_category_filter_is_400() {
    let app = TestApp::spawn().await;
    app.publish(&["u"], "hello").await;
    let r = app.get_as("u", "/v1/me/notifications?category=a%00b").await;
    assert_problem(r, 400, "category must not contain U+0000").await;
    let r = app
        .http
        .get(app.url("/v1/admin/users/u/notifications?category=%00"))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "category must not contain U+0000").await;
    assert_eq!(
        app.list("u", "?category=").await["items"][0]["title"],
        "hello"
    );
}

#[tokio::test]
async fn expires_at_must_be_writable_back_as_rfc_3339() {
    let app = TestApp::spawn().await;
    // 9999-12-31T23:59:59-12:00 is 10000-01-01T11:59:59Z, which RFC 3339
    // cannot write (it would come back as "+10000-01-01T11:59:59Z").
    let r = app
        .post_notification(&json!({
            "recipients": ["u"], "title": "t", "expires_at": "9999-12-31T23:59:59-12:00"
        }))
        .await;
    assert_problem(r, 422, "expires_at must be before the year 10000 (UTC)").await;
    let r = app
        .http
        .post(app.url("/v1/broadcasts"))
        .bearer_auth(app.admin())
        .json(&json!({"title": "t", "expires_at": "9999-12-31T23:00:00-01:00"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "expires_at must be before the year 10000 (UTC)").await;
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));

    // The last instant that still is year 9999 in UTC is accepted.
    let r = app
        .post_notification(&json!({
            "recipients": ["u"], "title": "t", "expires_at": "9999-12-31T23:59:59.999999Z"
        }))
        .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["notifications"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app.get_as("u", &format!("/v1/me/notifications/{id}")).await;
    assert_eq!(r.status(), 200);
    let notification: Value = r.json().await.unwrap();
    assert_eq!(notification["expires_at"], "9999-12-31T23:59:59.999999Z");
}

/// serde reads a struct from an array member by member; fuzzing found
/// `[null, null]` accepted as a bulk body (it deleted everything) and an
/// array accepted as a publish. Every object body now refuses arrays.
#[tokio::test]
async fn array_bodies_are_invalid_content_and_change_nothing() {
    let app = TestApp::spawn().await;
    let item = app.publish(&["arr"], "keep").await.remove(0);
    let id = item["id"].as_str().unwrap();
    let before = app.row_counts().await;
    let user = app.token("arr", &[]);
    let publisher = app.publisher();
    let cases: Vec<(reqwest::Method, String, &String, Value)> = vec![
        (
            reqwest::Method::POST,
            "/v1/me/notifications/delete-all".into(),
            &user,
            json!([null, null]),
        ),
        (
            reqwest::Method::POST,
            "/v1/me/notifications/read-all".into(),
            &user,
            json!([null, 0]),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/me/notifications/{id}/snooze"),
            &user,
            json!(["2030-01-01T00:00:00Z"]),
        ),
        (
            reqwest::Method::PUT,
            "/v1/me/preferences/categories/news".into(),
            &user,
            json!([false]),
        ),
        (
            reqwest::Method::POST,
            "/v1/notifications".into(),
            &publisher,
            json!([["arr"], "array body"]),
        ),
        (
            reqwest::Method::POST,
            "/v1/notifications/batch".into(),
            &publisher,
            json!([[{"recipients": ["arr"], "title": "t"}]]),
        ),
        (
            reqwest::Method::PUT,
            "/v1/topics/t/subscribers".into(),
            &publisher,
            json!([["arr"]]),
        ),
    ];
    for (method, path, token, body) in cases {
        let r = app
            .http
            .request(method.clone(), app.url(&path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{method} {path}");
        assert_problem(r, 422, "a JSON object").await;
    }
    assert_eq!(app.row_counts().await, before);
    let topics: i64 = sqlx::query_scalar("SELECT count(*) FROM topic_subscribers")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(topics, 0);
}

/// The URL parser accepts what is not a URI (spaces, non-ASCII, a leading
/// space); what is stored and sent is its normalised, encoded form.
#[tokio::test]
async fn action_urls_are_stored_as_well_formed_uris() {
    let app = TestApp::spawn().await;
    let r = app
        .post_notification(&json!({
            "recipients": ["url"], "title": "t",
            "actions": [
                {"id": "a", "label": "A", "url": " https://a.example/b c"},
                {"id": "b", "label": "B", "url": "https://ä.example/ä"}
            ]
        }))
        .await;
    assert_eq!(r.status(), 201);
    let listed = app.list("url", "").await;
    let actions = &listed["items"][0]["actions"];
    assert_eq!(
        actions,
        &json!([
            {"id": "a", "url": "https://a.example/b%20c", "label": "A"},
            {"id": "b", "url": "https://xn--4ca.example/%C3%A4", "label": "B"}
        ])
    );
}
