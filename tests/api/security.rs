//! The security pass: cross-origin access, headers and limits, slow
//! clients, token headers, user-id isolation on every transport, admin
//! scope on every admin route. SECURITY.md says what each test shows.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use herald::http::auth::Claims;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{TestApp, WAIT, assert_problem, captured_logs, data, wait_for};

// ---------------------------------------------------------------------------
// Helpers

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Percent-encodes everything but unreserved characters, as a client must
/// for a user id in a path.
fn enc(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Unpadded base64url.
fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A token with exactly this header and payload text, HS256-signed with
/// `secret` (so claims the typed API cannot express can be tried).
fn raw_token(header: &str, payload: &str, secret: &[u8]) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

const DEV_SECRET: &[u8] = b"herald-development-secret-change-me";

fn host(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Writes `request` on a fresh connection (write errors are ignored: the
/// server may stop reading early) and returns everything the server sends
/// until it closes the connection.
async fn raw_exchange(app: &TestApp, request: Vec<u8>) -> String {
    let stream = TcpStream::connect(host(app)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let answer = read_until_closed(&mut read).await;
    drop(writer.await);
    answer
}

/// Everything readable until the peer closes; panics after `WAIT`.
async fn read_until_closed(read: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(WAIT, read.read(&mut buf))
            .await
            .expect("the server closes the connection in time")
        {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&answer).into_owned(),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

async fn healthy(app: &TestApp) {
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Waits for the server's close frame and returns its code.
async fn close_code(socket: &mut Socket) -> CloseCode {
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code,
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// 1. CORS

fn preflight(
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
        .bearer_auth(app.token("carol", None))
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
        .bearer_auth(app.token("carol", None))
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
        .bearer_auth(app.token("dave", None))
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
        .bearer_auth(app.token("dave", None))
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
            .bearer_auth(app.token("dave", None))
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
        .bearer_auth(app.token("erin", None))
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
        let dir = crate::helpers::scratch_dir(&format!("cors-{}", uuid::Uuid::new_v4().simple()));
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

// ---------------------------------------------------------------------------
// 2. Headers and limits

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
        .bearer_auth(app.token("fay", None))
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
    let mut socket = crate::ws::connect(&app, &app.token("hal", None), None).await;
    let fits = format!(r#"{{"op":"ping","ref":"{}"}}"#, "r".repeat(60 * 1024));
    socket.send(Message::text(fits)).await.unwrap();
    assert_eq!(crate::ws::next_json(&mut socket).await["type"], "pong");
    let huge = format!(r#"{{"op":"ping","ref":"{}"}}"#, "r".repeat(70 * 1024));
    socket.send(Message::text(huge)).await.unwrap();
    assert_eq!(close_code(&mut socket).await, CloseCode::Protocol);
    healthy(&app).await;
}

// ---------------------------------------------------------------------------
// 2b. Slow clients

const SLOW_MS: u64 = 1000;

/// actix measures the deadline with a clock that ticks every 500 ms, so a
/// slow client may be cut up to that much early, never later.
fn cut_in_time(elapsed: Duration) -> bool {
    elapsed >= Duration::from_millis(SLOW_MS - 500) && elapsed < WAIT
}

#[tokio::test]
async fn a_client_that_sends_its_request_head_slowly_gets_408_and_is_disconnected() {
    let app = TestApp::spawn_with(|s| s.server.client_request_timeout_ms = SLOW_MS).await;
    let host = host(&app);

    // A partial request line and headers, then silence.
    let started = Instant::now();
    let stream = TcpStream::connect(&host).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes())
        .await
        .unwrap();
    let answer = read_until_closed(&mut read).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(cut_in_time(started.elapsed()), "{:?}", started.elapsed());

    // A client that keeps trickling bytes does not extend its deadline.
    let started = Instant::now();
    let stream = TcpStream::connect(&host).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let trickle = tokio::spawn(async move {
        let _ = write.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").await;
        // Bounded: at most 10 s of one byte every 50 ms.
        for _ in 0..200 {
            if write.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let answer = read_until_closed(&mut read).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(cut_in_time(started.elapsed()), "{:?}", started.elapsed());
    trickle.abort();

    // A connection that sends nothing at all is closed too.
    let stream = TcpStream::connect(&host).await.unwrap();
    let (mut read, _write) = stream.into_split();
    let answer = read_until_closed(&mut read).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408 "),
        "{answer:?}"
    );
    healthy(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_long_polls_outlive_the_request_timeout() {
    let app = TestApp::spawn_with(|s| {
        s.server.client_request_timeout_ms = SLOW_MS;
        s.server.heartbeat_secs = 1;
    })
    .await;
    let mut sse = app.sse("ivy", None, None).await;
    let mut socket = crate::ws::connect(&app, &app.token("ivy", None), None).await;
    let poll = {
        let (http, url, token) = (
            app.http.clone(),
            app.url("/v1/me/events?after=0&wait=30"),
            app.token("ivy", None),
        );
        tokio::spawn(async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        })
    };
    wait_for(|| async {
        app.handle
            .state()
            .hub
            .stats
            .connections(herald::live::connection_stats::Transport::Poll)
            == 1
    })
    .await;
    // Proof that the timeout has passed since all three opened: a
    // connection opened after them has been cut for being slow.
    let stream = TcpStream::connect(host(&app)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let answer = read_until_closed(&mut read).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");

    let item = app.publish(&["ivy"], "still here").await.remove(0);
    let event = sse.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), data(&event)["id"].clone()),
        ("notification", item["id"].clone())
    );
    let frame = crate::ws::next_json(&mut socket).await;
    assert_eq!(frame["data"]["id"], item["id"]);
    let answer = tokio::time::timeout(WAIT, poll).await.unwrap().unwrap();
    assert_eq!(answer["events"][0]["data"]["id"], item["id"]);
    assert_eq!(answer["last_seq"], 1);
}

/// Sends a publish request head announcing `length` bytes and `first` of
/// them, then `trickle` one byte every 50 ms (bounded), and returns what
/// the server answers until it closes the connection.
async fn slow_publish(
    app: &TestApp,
    head_extra: &str,
    first: &str,
    trickle: bool,
) -> (String, Duration) {
    let host = host(app);
    let started = Instant::now();
    let stream = TcpStream::connect(&host).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /v1/notifications HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n{head_extra}\r\n{first}",
        app.publisher()
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        for _ in 0..200 {
            if !trickle || write.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Keep the connection open (silently) until the test ends.
        std::future::pending::<()>().await;
    });
    let answer = read_until_closed(&mut read).await;
    let elapsed = started.elapsed();
    writer.abort();
    (answer, elapsed)
}

#[tokio::test]
async fn a_body_that_arrives_too_slowly_gets_408_and_the_connection_closes() {
    let app = TestApp::spawn_with(|s| s.server.client_request_timeout_ms = SLOW_MS).await;
    for trickle in [false, true] {
        let (answer, elapsed) = slow_publish(
            &app,
            "Content-Length: 100000\r\n",
            r#"{"recipients":["jo"],"#,
            trickle,
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
            "{answer:?}"
        );
        assert!(answer.contains("application/problem+json"), "{answer:?}");
        assert!(
            answer.contains("did not arrive within 1000 ms"),
            "{answer:?}"
        );
        assert!(
            elapsed >= Duration::from_millis(SLOW_MS) && elapsed < WAIT,
            "{elapsed:?}"
        );
    }
    // Chunked: the same answer.
    let chunk = r#"{"recipients":["jo"],"#;
    let (answer, _) = slow_publish(
        &app,
        "Transfer-Encoding: chunked\r\n",
        &format!("{:x}\r\n{chunk}\r\n", chunk.len()),
        false,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
    // A body that arrives in time is fine.
    app.publish(&["jo"], "in time").await;
}

/// Requests whose handler never reads the body (a 401 before any body is
/// needed, `/healthz` with a body): a client trickling that body must not
/// keep the connection beyond the body deadline.
#[tokio::test]
async fn a_body_nobody_reads_cannot_keep_the_connection_open() {
    // After such an answer actix lingers, reading and discarding, for up to
    // the disconnect timeout (so the client reads the answer rather than a
    // reset); kept short here so the close is due well within the deadline.
    let app = TestApp::spawn_with(|s| {
        s.server.client_request_timeout_ms = SLOW_MS;
        s.server.client_disconnect_timeout_ms = 250;
    })
    .await;
    let host = host(&app);
    let item = app.publish(&["ned"], "to delete").await.remove(0);
    let delete = format!(
        "DELETE /v1/me/notifications/{}",
        item["id"].as_str().unwrap()
    );
    let ned = format!("Authorization: Bearer {}\r\n", app.token("ned", None));
    let chunked = "Transfer-Encoding: chunked";
    let cases = [
        ("POST /v1/notifications", "", chunked, true, "401"),
        ("GET /healthz", "", chunked, true, "200"),
        (
            "POST /v1/notifications",
            "",
            "Content-Length: 100000",
            false,
            "401",
        ),
        // An answer without a body (204) holds the connection no longer.
        (delete.as_str(), ned.as_str(), chunked, true, "204"),
    ];
    for (request, auth, framing, chunked, status) in cases {
        let started = Instant::now();
        let stream = TcpStream::connect(&host).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let head = format!(
            "{request} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n{framing}\r\n\r\n"
        );
        write.write_all(head.as_bytes()).await.unwrap();
        let writer = tokio::spawn(async move {
            // Bounded: at most 10 s of one byte every 50 ms.
            let piece: &[u8] = if chunked { b"1\r\n \r\n" } else { b" " };
            for _ in 0..200 {
                if write.write_all(piece).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            std::future::pending::<()>().await;
        });
        let answer = read_until_closed(&mut read).await;
        let elapsed = started.elapsed();
        writer.abort();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request} {framing}: {answer:?}"
        );
        assert!(
            elapsed < Duration::from_millis(SLOW_MS),
            "{request} {framing}: closed after {elapsed:?}"
        );
    }
    healthy(&app).await;
}

// ---------------------------------------------------------------------------
// 3. Tokens

async fn list_with(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .get(app.url("/v1/me/notifications"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn key_naming_headers_never_choose_the_key() {
    let app = TestApp::spawn().await;
    let claims = Claims {
        sub: Some("kim".into()),
        exp: now() + 3600,
        nbf: None,
        iat: Some(now()),
        iss: None,
        aud: None,
        scope: Some("admin".into()),
    };
    let attacker = EncodingKey::from_secret(b"attacker's own secret");
    let mut headers = Vec::new();
    for kid in [
        "herald",
        "0",
        "default",
        "../../../../dev/null",
        "' OR 1=1 --",
        "",
    ] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(kid.into());
        headers.push(h);
    }
    let mut h = Header::new(Algorithm::HS256);
    h.jku = Some("http://127.0.0.1:9/keys.json".into());
    h.kid = Some("attacker".into());
    headers.push(h);
    let mut h = Header::new(Algorithm::HS256);
    h.x5u = Some("http://127.0.0.1:9/cert.pem".into());
    headers.push(h);
    for header in &headers {
        let forged = jsonwebtoken::encode(header, &claims, &attacker).unwrap();
        assert_problem(list_with(&app, &forged).await, 401, "signature").await;
    }
    // An embedded "key" in the header (an HMAC secret posing as a JWK)
    // is not used either.
    let forged = raw_token(
        r#"{"alg":"HS256","typ":"JWT","jwk":{"kty":"oct","k":"YXR0YWNrZXI"}}"#,
        &serde_json::to_string(&claims).unwrap(),
        b"attacker",
    );
    assert_eq!(list_with(&app, &forged).await.status(), 401);

    // With the configured key, a `kid` changes nothing: it is ignored.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("some-other-key".into());
    let genuine = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(DEV_SECRET)).unwrap();
    assert_eq!(list_with(&app, &genuine).await.status(), 200);

    // `crit` names extensions that must be understood; none are.
    let crit = raw_token(
        r#"{"alg":"HS256","typ":"JWT","crit":["b64"],"b64":false}"#,
        &serde_json::to_string(&claims).unwrap(),
        DEV_SECRET,
    );
    assert_problem(list_with(&app, &crit).await, 401, "`crit`").await;
}

#[tokio::test]
async fn claims_cannot_smuggle_scopes_or_odd_users() {
    let app = TestApp::spawn().await;
    let exp = now() + 3600;
    let stats = |token: String| {
        let app = &app;
        async move {
            app.http
                .get(app.url("/v1/admin/stats"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    // Scope spelled otherwise, or in another claim: no admin.
    for payload in [
        json!({"sub": "u", "exp": exp, "scope": "Admin"}),
        json!({"sub": "u", "exp": exp, "scope": "publish,admin"}),
        json!({"sub": "u", "exp": exp, "scope": "administrator"}),
        json!({"sub": "u", "exp": exp, "scp": "admin"}),
        json!({"sub": "u", "exp": exp, "scopes": ["admin"], "roles": ["admin"]}),
    ] {
        let token = raw_token(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &payload.to_string(),
            DEV_SECRET,
        );
        assert_problem(stats(token).await, 403, "`admin` scope").await;
    }
    // Wrong types, duplicate claims, odd subjects: refused outright.
    let too_long = "x".repeat(129);
    for payload in [
        json!({"sub": "u", "exp": exp, "scope": ["admin"]}).to_string(),
        json!({"sub": 42, "exp": exp}).to_string(),
        json!({"sub": "u", "exp": exp.to_string()}).to_string(),
        format!(r#"{{"sub":"u","sub":"operator","exp":{exp},"scope":"admin"}}"#),
        format!(r#"{{"sub":"u","exp":{exp},"scope":"user","scope":"admin"}}"#),
        json!({"sub": "", "exp": exp}).to_string(),
        json!({"sub": too_long, "exp": exp}).to_string(),
        json!({"sub": "a\nb", "exp": exp}).to_string(),
        json!({"sub": "a\u{0}b", "exp": exp}).to_string(),
        json!({"sub": "a\u{1b}[31mb", "exp": exp}).to_string(),
        json!({"sub": "a\u{85}b", "exp": exp}).to_string(),
    ] {
        let token = raw_token(r#"{"alg":"HS256","typ":"JWT"}"#, &payload, DEV_SECRET);
        let r = stats(token).await;
        assert_eq!(r.status(), 401, "{payload}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

// ---------------------------------------------------------------------------
// 4. Isolation of odd user ids

/// Ids that a careless decoder, router, SQL builder or logger would mix up.
fn confusable_ids() -> Vec<String> {
    vec![
        "a/b".into(),
        "a%2Fb".into(),
        "a%252Fb".into(),
        "a%2fb".into(),
        "A/B".into(),
        "a".into(),
        "a/b/".into(),
        "../a".into(),
        "..".into(),
        "%".into(),
        "*".into(),
        "%_".into(),
        "a b".into(),
        "a+b".into(),
        "ü/名前".into(),
        "u\u{308}".into(),
        "ü".into(),
        "' OR '1'='1".into(),
        "x'); DROP TABLE notifications; --".into(),
        "a\"b\\c".into(),
        "{\"user\":\"operator\"}".into(),
        format!("{}é", "z".repeat(126)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confusable_user_ids_reach_only_their_own_data_on_every_transport() {
    let app = TestApp::spawn().await;
    // WebSockets on a second instance: their wake-ups and the disconnect
    // travel through the database (NOTIFY), with the ids in them.
    let other = TestApp::spawn_on(&app.db_url, |_| {}).await;
    let ids = confusable_ids();
    assert_eq!(ids.last().unwrap().len(), 128);
    for user in &ids {
        app.publish(&[user.as_str()], &format!("first for {user}"))
            .await;
    }
    let mut streams = Vec::new();
    let mut sockets = Vec::new();
    for user in &ids {
        // REST: exactly their own notification.
        let page = app.list(user, "").await;
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{user}: {page}");
        assert_eq!(items[0]["title"], format!("first for {user}"));
        assert_eq!(page["last_seq"], 1);
        // Long-poll: the same, as events.
        let r = app.get_as(user, "/v1/me/events?after=0").await;
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.unwrap();
        let events = answer["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{user}: {answer}");
        assert_eq!(events[0]["data"]["title"], format!("first for {user}"));
        // Admin, through the percent-encoded path: the same page. (Clients
        // cannot send `..` as a segment; see the next test.)
        if user != ".." {
            let r = app
                .http
                .get(app.url(&format!("/v1/admin/users/{}/notifications", enc(user))))
                .bearer_auth(app.admin())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{user}");
            assert_eq!(r.json::<Value>().await.unwrap(), page, "{user}");
        }
        // SSE and WebSocket, replaying from 0.
        let mut sse = app.sse(user, None, Some("0")).await;
        let first = sse.next().await.unwrap();
        assert_eq!(data(&first)["title"], format!("first for {user}"));
        streams.push(sse);
        let mut socket = crate::ws::connect(&other, &app.token(user, None), Some("0")).await;
        let frame = crate::ws::next_json(&mut socket).await;
        assert_eq!(frame["data"]["title"], format!("first for {user}"));
        sockets.push(socket);
    }
    // Live: each connection gets its own user's next event, nobody else's.
    for user in &ids {
        app.publish(&[user.as_str()], &format!("second for {user}"))
            .await;
    }
    for (i, user) in ids.iter().enumerate() {
        let event = streams[i].next().await.unwrap();
        assert_eq!(event.id, "2", "{user}");
        assert_eq!(data(&event)["title"], format!("second for {user}"));
        let frame = crate::ws::next_json(&mut sockets[i]).await;
        assert_eq!(frame["seq"], 2, "{user}");
        assert_eq!(frame["data"]["title"], format!("second for {user}"));
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(DISTINCT user_id) FROM notifications")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, ids.len() as i64);

    // An admin disconnect of "a%2Fb" ends that user's connections only.
    let target = ids.iter().position(|u| u == "a%2Fb").unwrap();
    let r = app
        .http
        .post(app.url(&format!("/v1/admin/users/{}/disconnect", enc("a%2Fb"))))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    streams[target].ended().await;
    assert_eq!(
        close_code(&mut sockets[target]).await,
        CloseCode::Library(4002)
    );
    for user in &ids {
        app.publish(&[user.as_str()], &format!("third for {user}"))
            .await;
    }
    for (i, user) in ids.iter().enumerate() {
        if i == target {
            continue;
        }
        let event = streams[i].next().await.unwrap();
        assert_eq!(data(&event)["title"], format!("third for {user}"));
        let frame = crate::ws::next_json(&mut sockets[i]).await;
        assert_eq!(frame["data"]["title"], format!("third for {user}"));
    }
}

#[tokio::test]
async fn dot_segment_ids_are_addressed_by_their_raw_admin_path() {
    // WHATWG URL parsers (browsers, reqwest) and most proxies remove `.`
    // and `..` segments, even as %2E%2E; the server itself never does, and
    // reads the raw segment.
    let app = TestApp::spawn().await;
    app.publish(&[".."], "for dot-dot").await;
    app.publish(&["."], "for dot").await;
    for (segment, user) in [("..", ".."), ("%2E%2E", ".."), (".", "."), ("%2e", ".")] {
        let request = format!(
            "GET /v1/admin/users/{segment}/notifications HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            host(&app),
            app.admin()
        );
        let answer = raw_exchange(&app, request.into_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        let page: Value = serde_json::from_str(body).unwrap();
        let title = if user == ".." {
            "for dot-dot"
        } else {
            "for dot"
        };
        assert_eq!(page["items"][0]["title"], title, "{segment}");
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn odd_ids_keep_log_lines_intact_and_control_characters_are_refused() {
    let app = TestApp::spawn().await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let user = format!("q\"{marker}\\\",\"user\":\"operator\"}}\n{{");
    // A newline anywhere: refused as a subject, a recipient and a path.
    let newline = app.token(&user, None);
    assert_problem(list_with(&app, &newline).await, 401, "control characters").await;
    let r = app
        .post_notification(&json!({"recipients": [user], "title": "t"}))
        .await;
    assert_problem(r, 422, "control characters").await;
    let r = app
        .http
        .get(app.url(&format!("/v1/admin/users/{}/notifications", enc(&user))))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "control characters").await;
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));

    // Without the newline the id is valid, and still cannot forge a field.
    let user = user.replace('\n', " ");
    app.publish(&[user.as_str()], "hello").await;
    let mut sse = app.sse(&user, None, Some("0")).await;
    sse.next().await.unwrap();
    // An administrator's disconnect ends it at once (and logs the close).
    let r = app
        .http
        .post(app.url(&format!("/v1/admin/users/{}/disconnect", enc(&user))))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    sse.ended().await;
    let r = app
        .http
        .get(app.url(&format!("/v1/admin/users/{}/notifications", enc(&user))))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for(|| async {
        captured_logs()
            .lines()
            .any(|l| l.contains(&marker) && l.contains("live connection closed"))
    })
    .await;
    let logs = captured_logs();
    let mine: Vec<Value> = logs
        .lines()
        .filter(|l| l.contains(&marker))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for message in ["live connection opened", "live connection closed"] {
        let line = mine
            .iter()
            .find(|v| v["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line"));
        assert_eq!(line["user"], user.as_str(), "{line}");
    }
    // The admin request line names the user only in its encoded path.
    assert!(
        mine.iter()
            .any(|v| v["span"]["path"] == format!("/v1/admin/users/{}/notifications", enc(&user))),
        "{mine:?}"
    );
}

// ---------------------------------------------------------------------------
// 5. Admin scope on every admin route

/// Routes that answer without a token; a new one must be added here on
/// purpose.
const PUBLIC_ROUTES: &[&str] = &[
    "/",
    "/app.js",
    "/app.css",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.yaml",
];

fn is_admin_route(path: &str) -> bool {
    path.starts_with("/v1/admin/") || path == "/v1/broadcasts"
}

#[tokio::test]
async fn every_admin_route_needs_the_admin_scope() {
    let app = TestApp::spawn().await;
    let item = app.publish(&["victim"], "keep me").await.remove(0);
    let id = item["id"].as_str().unwrap().to_owned();
    let mut stream = app.sse("victim", Some("1"), None).await;
    let before = app.row_counts().await;
    let fill = |path: &str| path.replace("{user_id}", "victim").replace("{id}", &id);

    let admin_routes: Vec<(&str, &str)> = herald::http::routes::ROUTES
        .iter()
        .copied()
        .filter(|(_, path)| is_admin_route(path))
        .collect();
    assert!(admin_routes.len() >= 6, "{admin_routes:?}");
    let user = app.token("victim", None);
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
            .json(&json!({ "title": "everyone" }))
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
