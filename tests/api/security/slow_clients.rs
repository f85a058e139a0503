//! Slow clients: a request head or body that arrives too slowly is cut off
//! with 408, while streams and long-polls outlive the request timeout.
//! SECURITY.md says what each test shows.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::raw_http::{host, read_until_closed};
use crate::support::{TestApp, WAIT, data, healthy, wait_for, ws};

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

/// One whole answer with a `Content-Length` body, read from a connection
/// that stays open.
async fn read_one_answer(read: &mut (impl tokio::io::AsyncReadExt + Unpin)) -> String {
    let mut answer = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .expect("the answer has a Content-Length");
            if answer.len() >= end + 4 + length {
                return text;
            }
        }
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, read.read(&mut buf))
            .await
            .expect("the answer arrives in time")
            .unwrap();
        assert!(n > 0, "the connection stays open until the answer is whole");
        answer.extend_from_slice(&buf[..n]);
    }
}

/// actix times only a connection's first request head: on a kept-alive
/// connection, the next head could be trickled for ever. Every head has
/// the deadline, and a connection used again at once works as before.
#[tokio::test]
async fn a_second_request_head_trickled_on_a_kept_alive_connection_is_cut_off() {
    let app = TestApp::spawn_with(|s| s.server.client_request_timeout_ms = SLOW_MS).await;
    let host = host(&app);
    let stream = TcpStream::connect(&host).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let first = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");

    // Kept alive and used again at once: both answered, each read whole
    // (head and `Content-Length` body) before the next is sent.
    for _ in 0..2 {
        write.write_all(first.as_bytes()).await.unwrap();
        let answer = read_one_answer(&mut read).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
    }

    // Then a head a byte every 100 ms: at most 20 s of it.
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: "
            .iter()
            .chain([b'a'; 200].iter())
        {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let rest = read_until_closed(&mut read).await;
    let elapsed = started.elapsed();
    trickle.abort();
    assert!(!rest.contains("HTTP/1.1 200"), "{rest:?}");
    // The deadline (1 s) plus the sweep's period (1 s), well before the
    // 20 s the client would go on.
    assert!(elapsed < Duration::from_secs(5), "closed after {elapsed:?}");
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
    let mut socket = ws::connect(&app, &app.token("ivy", &[]), None).await;
    let poll = {
        let (http, url, token) = (
            app.http.clone(),
            app.url("/v1/me/events?after=0&wait=30"),
            app.token("ivy", &[]),
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
    let frame = ws::next_json(&mut socket).await;
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
    let ned = format!("Authorization: Bearer {}\r\n", app.token("ned", &[]));
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
