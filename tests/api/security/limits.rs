//! Response headers and request limits: no inline code, no framing or
//! sniffing; oversized heads, bodies and WebSocket frames refused.
//! SECURITY.md says what each test shows.

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::cors::preflight;
use crate::support::raw_http::{host, raw_exchange};
use crate::support::ws::close_code;
use crate::support::{TestApp, assert_problem, healthy, ws};

#[tokio::test]
async fn the_page_runs_no_inline_code_and_no_response_can_be_framed_or_sniffed() {
    let app = TestApp::spawn().await;
    let r = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    for expected in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(directives.contains(&expected), "{expected} in {csp}");
    }
    for unsafe_source in ["unsafe-inline", "unsafe-eval", "*", "http:", "https:"] {
        assert!(
            !directives
                .iter()
                .flat_map(|d| d.split(' '))
                .any(|s| s.trim_matches('\'') == unsafe_source),
            "{unsafe_source} in {csp}"
        );
    }
    // Which the page can live with: no inline script, style or handler.
    let page = r.text().await.unwrap();
    let lower = page.to_ascii_lowercase();
    for (i, _) in lower.match_indices("<script") {
        let tag = &lower[i..i + lower[i..].find('>').unwrap()];
        assert!(tag.contains(" src="), "inline script: {tag}");
        assert!(lower[i..].contains("></script>"));
    }
    assert!(!lower.contains("<style"));
    assert!(!lower.contains(" style="));
    assert!(!lower.contains("javascript:"));
    for handler in [" onclick=", " onload=", " onerror=", " onsubmit="] {
        assert!(!lower.contains(handler), "{handler}");
    }

    // Every kind of answer: page, script, health, problem, unknown route,
    // stream, refused preflight.
    let stream = app
        .http
        .get(app.url("/v1/me/stream"))
        .bearer_auth(app.token("fay", &[]))
        .send()
        .await
        .unwrap();
    let mut responses = vec![
        ("/", app.http.get(app.url("/")).send().await.unwrap()),
        (
            "/app.js",
            app.http.get(app.url("/app.js")).send().await.unwrap(),
        ),
        (
            "/healthz",
            app.http.get(app.url("/healthz")).send().await.unwrap(),
        ),
        (
            "401",
            app.http
                .get(app.url("/v1/me/notifications"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "404",
            app.http.get(app.url("/nowhere")).send().await.unwrap(),
        ),
        ("stream", stream),
    ];
    responses.push((
        "preflight",
        preflight(
            &app,
            "/v1/me/notifications",
            "https://x.example",
            "GET",
            "authorization",
        )
        .send()
        .await
        .unwrap(),
    ));
    for (what, r) in &responses {
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
    }
}

#[tokio::test]
async fn oversized_request_heads_get_431_and_the_server_carries_on() {
    let app = TestApp::spawn().await;
    let host = host(&app);
    // One huge header (actix reads at most 128 KiB of head).
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    // A huge request target.
    let long_uri = format!(
        "GET /healthz?{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
        "q".repeat(256 * 1024)
    );
    // More than 96 header fields, in a small head.
    let mut many = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    for request in [many, big, long_uri] {
        let answer = raw_exchange(&app, request.into_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 431 "),
            "{:?}",
            &answer[..answer.len().min(200)]
        );
        healthy(&app).await;
    }
    // Garbage instead of a request line: 400, and still alive.
    let answer = raw_exchange(
        &app,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
    healthy(&app).await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_with_or_without_a_length() {
    let app = TestApp::spawn_with(|s| s.server.max_body_bytes = 4096).await;
    let title = "x".repeat(5000);
    // With Content-Length, refused before reading.
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(app.publisher())
        .json(&json!({"recipients": ["gus"], "title": title}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 413, "limit").await;
    // Chunked, without a length: refused once the limit is crossed.
    let body = serde_json::to_vec(&json!({"title": title})).unwrap();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let r = app
        .http
        .post(app.url("/v1/broadcasts"))
        .bearer_auth(app.admin())
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_problem(r, 413, "limit").await;
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
    healthy(&app).await;
}

#[tokio::test]
async fn websocket_frames_over_64_kib_close_the_socket() {
    let app = TestApp::spawn().await;
    let mut socket = ws::connect(&app, &app.token("hal", &[]), None).await;
    let fits = format!(r#"{{"op":"ping","ref":"{}"}}"#, "r".repeat(60 * 1024));
    socket.send(Message::text(fits)).await.unwrap();
    assert_eq!(ws::next_json(&mut socket).await["type"], "pong");
    let huge = format!(r#"{{"op":"ping","ref":"{}"}}"#, "r".repeat(70 * 1024));
    socket.send(Message::text(huge)).await.unwrap();
    assert_eq!(close_code(&mut socket).await, CloseCode::Protocol);
    healthy(&app).await;
}
