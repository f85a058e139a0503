//! Cross-origin access: none by default, exactly the configured origins,
//! a wildcard never with credentials, malformed origins refused at startup.
//! SECURITY.md says what each test shows.

use crate::support::{TestApp, assert_problem};

pub(super) fn preflight(
    app: &TestApp,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> reqwest::RequestBuilder {
    app.http
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header("Access-Control-Request-Headers", headers)
}

/// The REST, publish and streaming endpoints a cross-origin page would
/// call, with the method and headers its preflight announces.
const PREFLIGHTS: &[(&str, &str, &str)] = &[
    ("/v1/me/notifications", "GET", "authorization"),
    (
        "/v1/me/notifications/read-all",
        "POST",
        "authorization,content-type",
    ),
    (
        "/v1/me/notifications/00000000-0000-0000-0000-000000000000",
        "DELETE",
        "authorization",
    ),
    (
        "/v1/notifications",
        "POST",
        "authorization,content-type,idempotency-key",
    ),
    ("/v1/me/stream", "GET", "authorization,last-event-id"),
    ("/v1/me/events", "GET", "authorization"),
];

fn assert_no_cors_grant(r: &reqwest::Response, context: &str) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
    ] {
        assert!(
            r.headers().get(name).is_none(),
            "{context}: unexpected {name}: {:?}",
            r.headers().get(name)
        );
    }
}

#[tokio::test]
async fn by_default_no_origin_gets_cross_origin_access() {
    let app = TestApp::spawn().await;
    assert!(app.settings.cors.allowed_origins.is_empty());
    for (path, method, headers) in PREFLIGHTS {
        let r = preflight(&app, path, "https://evil.example", method, headers)
            .send()
            .await
            .unwrap();
        assert_no_cors_grant(&r, path);
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_problem(r, 400, "not allowed").await;
    }
    // A simple cross-origin request is answered (a browser would not let
    // the page read it) but grants nothing.
    let r = app
        .http
        .get(app.url("/v1/me/notifications"))
        .header("Origin", "https://evil.example")
        .bearer_auth(app.token("carol", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_no_cors_grant(&r, "GET");
    // Same-origin pages send Origin on every POST: still served.
    let r = app
        .http
        .post(app.url("/v1/me/notifications/read-all"))
        .header("Origin", &app.address)
        .bearer_auth(app.token("carol", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_no_cors_grant(&r, "same-origin POST");
}

#[tokio::test]
async fn a_configured_origin_is_allowed_and_no_other() {
    let allowed = "https://app.example";
    let app = TestApp::spawn_with(|s| {
        s.cors.allowed_origins = vec![allowed.into(), "http://localhost:3000".into()];
    })
    .await;
    for (path, method, headers) in PREFLIGHTS {
        let r = preflight(&app, path, allowed, method, headers)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], allowed);
        assert!(h.get("access-control-allow-credentials").is_none());
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains(method), "{methods}");
        let allowed_headers = h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        for header in headers.split(',') {
            assert!(allowed_headers.contains(header), "{allowed_headers}");
        }
        assert_eq!(h["access-control-max-age"], "600");
        assert!(h["vary"].to_str().unwrap().contains("Origin"));
    }
    // The actual request: the origin is echoed, Retry-After is readable.
    let r = app
        .http
        .get(app.url("/v1/me/notifications"))
        .header("Origin", allowed)
        .bearer_auth(app.token("dave", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], allowed);
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed}");
    // Errors carry the grant too, so the page can read the problem.
    let r = app
        .http
        .get(app.url("/v1/me/notifications"))
        .header("Origin", allowed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], allowed);
    assert_problem(r, 401, "Bearer").await;
    // The stream too.
    let r = app
        .http
        .get(app.url("/v1/me/stream"))
        .header("Origin", allowed)
        .bearer_auth(app.token("dave", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], allowed);
    drop(r);

    // Look-alikes and other origins get nothing.
    for origin in [
        "https://evil.example",
        "http://app.example",
        "https://app.example.evil.example",
        "https://app.example:8443",
        "https://APP.example",
        "null",
    ] {
        let r = preflight(&app, "/v1/me/notifications", origin, "GET", "authorization")
            .send()
            .await
            .unwrap();
        assert_no_cors_grant(&r, origin);
        assert_problem(r, 400, "not allowed").await;
        let r = app
            .http
            .get(app.url("/v1/me/notifications"))
            .header("Origin", origin)
            .bearer_auth(app.token("dave", &[]))
            .send()
            .await
            .unwrap();
        assert_no_cors_grant(&r, origin);
    }
    // Methods and headers outside the list are refused even for it.
    let r = preflight(
        &app,
        "/v1/me/notifications",
        allowed,
        "PUT",
        "authorization",
    )
    .send()
    .await
    .unwrap();
    assert_no_cors_grant(&r, "PUT");
    assert_problem(r, 400, "cross-origin request refused").await;
    let r = preflight(
        &app,
        "/v1/me/notifications",
        allowed,
        "GET",
        "x-forwarded-user",
    )
    .send()
    .await
    .unwrap();
    assert_no_cors_grant(&r, "x-forwarded-user");
    assert_problem(r, 400, "cross-origin request refused").await;
}

#[tokio::test]
async fn a_wildcard_allows_any_origin_but_never_credentials() {
    let app = TestApp::spawn_with(|s| s.cors.allowed_origins = vec!["*".into()]).await;
    let r = preflight(
        &app,
        "/v1/me/stream",
        "https://anyone.example",
        "GET",
        "authorization",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let r = app
        .http
        .get(app.url("/v1/me/notifications"))
        .header("Origin", "https://anyone.example")
        .bearer_auth(app.token("erin", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
}

#[tokio::test]
async fn malformed_origins_are_refused_at_startup() {
    for bad in ["https://app.example/", "app.example", "https://App.example"] {
        let dir = crate::support::scratch_dir(&format!("cors-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("base.toml"),
            format!("[cors]\nallowed_origins = [{bad:?}]\n"),
        )
        .unwrap();
        let err = herald::settings::Settings::load_from(&dir).unwrap_err();
        assert!(err.to_string().contains("cors.allowed_origins"), "{err}");
    }
}
