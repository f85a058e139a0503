//! A client that stops reading next to a healthy one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use herald::live::connection_stats::Transport;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Service, TestApp, wait_within};

/// An SSE client that reads the response head and then nothing: a raw socket
/// with a tiny receive buffer, so only the server's side buffers anything.
struct StalledSse {
    socket: tokio::net::TcpStream,
    received: Vec<u8>,
}

impl StalledSse {
    async fn open(app: &TestApp, user: &str) -> Self {
        let addr: SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut socket = socket.connect(addr).await.unwrap();
        let request = format!(
            "GET /v1/me/stream?last_event_id=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
            app.token(user, &[])
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut received = Vec::new();
        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = tokio::time::timeout(crate::support::WAIT, socket.read(&mut byte))
                .await
                .expect("the response head in time")
                .unwrap();
            assert_eq!(n, 1, "the connection closed during the response head");
            received.push(byte[0]);
        }
        let head = String::from_utf8(received.clone())
            .unwrap()
            .to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        Self { socket, received }
    }

    /// Reads everything the server still sends until it closes; the seqs of
    /// the complete events, and whether the response ended properly.
    async fn drain(mut self) -> (Vec<i64>, bool) {
        tokio::time::timeout(
            Duration::from_secs(30),
            self.socket.read_to_end(&mut self.received),
        )
        .await
        .expect("the server ends the stalled stream")
        .unwrap();
        let start = self
            .received
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap()
            + 4;
        let (body, complete) = dechunk(&self.received[start..]);
        let events: Vec<_> = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(body)])
            .eventsource()
            .collect()
            .await;
        let seqs = events
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                assert_eq!(e.event, "notification");
                e.id.parse().unwrap()
            })
            .collect();
        (seqs, complete)
    }
}

/// Decodes an HTTP/1.1 chunked body; whether it ended with the last chunk.
fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let line = std::str::from_utf8(&body[..eol]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        body = &body[eol + 2..];
        if size == 0 {
            return (out, true);
        }
        if body.len() < size + 2 {
            out.extend_from_slice(&body[..size.min(body.len())]);
            return (out, false);
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// Enough large notifications (about 19 kB each) to overflow what the stalled
/// connection can absorb: the client's tiny receive buffer, the queue, and
/// the server's send buffer, which grows up to the kernel's `tcp_wmem` maximum.
fn stall_count() -> i64 {
    let wmem_max: i64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().last()?.parse().ok())
        .unwrap_or(4 << 20);
    (wmem_max / 19_000 + 100).max(200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_does_not_hold_up_another_and_resumes_with_everything() {
    let n = stall_count();
    let app = TestApp::spawn_with(|s| {
        s.stream.buffer = 4;
        s.stream.slow_client_timeout_ms = 10_000;
    })
    .await;
    let stats = &app.handle.state().hub.stats;
    let stalled = StalledSse::open(&app, "stalled").await;
    let mut reader = app.sse("reader", Some("0"), None).await;
    wait_within("both streams open", Duration::from_secs(10), async || {
        stats.connections(Transport::Sse) == 2
    })
    .await;

    // Large notifications, each to both users, from concurrent publishers.
    let next = Arc::new(AtomicI64::new(0));
    let publishing: Vec<_> = (0..8)
        .map(|_| {
            let (service, next) = (Service::of(&app), next.clone());
            tokio::spawn(async move {
                let token = service.publisher();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    let r = service
                        .http
                        .post(service.url("/v1/notifications"))
                        .bearer_auth(&token)
                        .json(&json!({
                            "recipients": ["stalled", "reader"],
                            "title": format!("n{i}"),
                            "body": "b".repeat(4000),
                            "data": {"pad": "d".repeat(15000)},
                        }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                }
            })
        })
        .collect();

    // The reader gets every one of its events, in order...
    for seq in 1..=n {
        let event = reader.next().await.expect("the reader's stream stays open");
        assert_eq!(event.id, seq.to_string());
    }
    // ...while the stalled stream is still open and far behind: its queue is
    // full and its pump waits (the reader took n of the deliveries).
    let to_stalled = stats.deliveries() as i64 - n;
    assert_eq!(
        stats.connections(Transport::Sse),
        2,
        "the stalled stream must still be open when the reader is done"
    );
    assert!(
        to_stalled < n,
        "the stalled client took {to_stalled} of {n}: it was not stalled"
    );
    for p in publishing {
        p.await.unwrap();
    }

    // Then the server gives up on the stalled one, and its stream ends.
    wait_within(
        "the slow-client disconnect",
        Duration::from_secs(30),
        async || stats.connections(Transport::Sse) == 1,
    )
    .await;
    let (seqs, complete) = stalled.drain().await;
    assert!(
        complete,
        "the stalled stream ends with a proper end of body"
    );
    let last = seqs.last().copied().unwrap_or(0);
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    assert!(last < n, "got {last}");
    // Resuming from what it saw delivers exactly the rest.
    let mut resumed = app.sse("stalled", Some(&last.to_string()), None).await;
    let rest: Vec<String> = resumed
        .take((n - last) as usize)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    let expected: Vec<String> = (last + 1..=n).map(|s| s.to_string()).collect();
    assert_eq!(rest, expected);
    assert!(
        resumed
            .next_within(Duration::from_millis(300))
            .await
            .is_err(),
        "nothing more"
    );
    // The healthy stream was never disturbed.
    assert!(
        reader
            .next_within(Duration::from_millis(100))
            .await
            .is_err()
    );
    eprintln!(
        "stalled client: {last} events before the disconnect, {to_stalled} queued when the reader finished"
    );
}
