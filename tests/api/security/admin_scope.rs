//! The admin scope on every admin route, a token on every API route, and
//! only the operations routes public.
//! SECURITY.md says what each test shows.

use serde_json::json;

use crate::support::{TestApp, assert_problem, data};

/// Routes that answer without a token; a new one must be added here on
/// purpose.
const PUBLIC_ROUTES: &[&str] = &[
    "/",
    "/app.js",
    "/i18n.js",
    "/app.css",
    // The JavaScript client: public code, the same for everyone.
    "/client/herald.js",
    "/client/miniprogram.js",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.yaml",
];

/// A broadcast's progress is readable by its publisher too (a publish to
/// topics of more than 10,000 users becomes one), so that route needs the
/// `publish` scope, not `admin`.
fn is_admin_route(path: &str) -> bool {
    (path.starts_with("/v1/admin/") && path != "/v1/admin/broadcasts/{id}")
        || path == "/v1/broadcasts"
}

#[tokio::test]
async fn every_admin_route_needs_the_admin_scope() {
    let app = TestApp::spawn().await;
    let item = app.publish(&["victim"], "keep me").await.remove(0);
    let id = item["id"].as_str().unwrap().to_owned();
    let mut stream = app.sse("victim", Some("1"), None).await;
    let before = app.row_counts().await;
    let fill = |path: &str| {
        path.replace("{user_id}", "victim")
            .replace("{id}", &id)
            .replace("{category}", "news")
    };

    let admin_routes: Vec<(&str, &str)> = herald::http::routes::ROUTES
        .iter()
        .copied()
        .filter(|(_, path)| is_admin_route(path))
        .collect();
    assert!(admin_routes.len() >= 6, "{admin_routes:?}");
    let user = app.token("victim", &[]);
    let publisher = app.publisher();
    for (method, pattern) in &admin_routes {
        let path = fill(pattern);
        let request = |token: Option<&str>| {
            let mut r = app
                .http
                .request(method.to_uppercase().parse().unwrap(), app.url(&path))
                .json(&json!({ "title": "everyone" }));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r
        };
        let r = request(None).send().await.unwrap();
        assert_eq!(r.status(), 401, "{method} {pattern}");
        assert_problem(r, 401, "Bearer").await;
        for token in [&user, &publisher] {
            let r = request(Some(token)).send().await.unwrap();
            assert_eq!(r.status(), 403, "{method} {pattern}");
            assert_problem(r, 403, "needs the `admin` scope").await;
        }
    }
    // Nothing happened: no row, no broadcast, no disconnect.
    assert_eq!(app.row_counts().await, before);
    let broadcasts: i64 = sqlx::query_scalar("SELECT count(*) FROM broadcasts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(broadcasts, 0);
    let next = app.publish(&["victim"], "still connected").await.remove(0);
    assert_eq!(data(&stream.next().await.unwrap())["id"], next["id"]);
    // And the table names real routes: an admin token gets past the check.
    for (method, pattern) in &admin_routes {
        let r = app
            .http
            .request(
                method.to_uppercase().parse().unwrap(),
                app.url(&fill(pattern)),
            )
            .bearer_auth(app.admin())
            .json(&if pattern.contains("/preferences/") {
                json!({ "enabled": true })
            } else if pattern.contains("/webhooks") {
                // A public address (TEST-NET-1) that nothing answers.
                json!({ "url": "https://192.0.2.1/hook", "events": ["*"] })
            } else {
                json!({ "title": "everyone" })
            })
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(
            (200..300).contains(&status) || status == 404,
            "{method} {pattern}: {status}"
        );
        if status == 404 {
            assert_problem(r, 404, "no such").await;
        }
    }
}

#[tokio::test]
async fn every_api_route_needs_a_token_and_only_operations_are_public() {
    let app = TestApp::spawn().await;
    let nil = uuid::Uuid::nil().to_string();
    for (method, pattern) in herald::http::routes::ROUTES {
        let path = pattern.replace("{user_id}", "u").replace("{id}", &nil);
        let r = app
            .http
            .request(method.to_uppercase().parse().unwrap(), app.url(&path))
            .json(&json!({"recipients": ["u"], "title": "t"}))
            .send()
            .await
            .unwrap();
        if PUBLIC_ROUTES.contains(pattern) {
            assert_eq!(r.status(), 200, "{method} {pattern}");
        } else {
            assert!(
                pattern.starts_with("/v1/"),
                "{pattern} is neither public nor under /v1/"
            );
            assert_eq!(
                r.headers()["www-authenticate"],
                "Bearer",
                "{method} {pattern}"
            );
            assert_problem(r, 401, "Bearer").await;
        }
    }
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
}
