//! Herald through nginx with the committed configuration: TLS and HTTP/2,
//! the redirect, SSE unbuffered, WebSocket upgrade, `Last-Event-ID` resume,
//! a 55 s long-poll and an idle stream kept open by heartbeats, and an
//! access log without tokens.

use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::cluster::{Deployment, WAIT, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_http2_and_the_redirect_as_committed() {
    let d = Deployment::start("proxy-tls").await;
    let tls = d.nginx.tls;
    let cacert = d.nginx.dir.join("tls/fullchain.pem");
    let resolve = format!("localhost:{tls}:127.0.0.1");
    let curl = |args: &[&str]| {
        let mut c = tokio::process::Command::new("curl");
        c.args(["-sS", "--cacert"])
            .arg(&cacert)
            .args(["--resolve", &resolve])
            .args(args);
        c
    };

    // HTTPS with a verified certificate, over HTTP/2.
    let out = curl(&["-w", " %{http_version} %{http_code}"])
        .arg(format!("https://localhost:{tls}/healthz"))
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"{"status":"ok"} 2 200"#
    );

    // Plain HTTP only redirects to HTTPS (the query, and a token in it, is
    // not answered over plain HTTP).
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .arg(format!(
            "http://127.0.0.1:{}/v1/me/notifications",
            d.nginx.redirect
        ))
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "301 https://127.0.0.1/v1/me/notifications"
    );

    // SSE over TLS and HTTP/2, with the token in the query as EventSource
    // sends it: the replayed event arrives while the stream stays open.
    let user_token = token("tls-user", None);
    let seq = d.publish("tls-user", "over TLS").await;
    let mut stream = curl(&["-N", "--http2", "-H", "Last-Event-ID: 0"])
        .arg(format!(
            "https://localhost:{tls}/v1/me/stream?access_token={user_token}"
        ))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(stream.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.starts_with("data:");
            // Fields only: not the blank lines between events, nor the
            // heartbeat comments.
            if !line.is_empty() && !line.starts_with(':') {
                seen.push(line);
            }
            if done {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event over TLS; got {seen:?}"));
    assert_eq!(seen[0], "retry: 2000");
    assert_eq!(
        &seen[1..3],
        [format!("id: {seq}"), "event: notification".into()]
    );
    let data: Value = serde_json::from_str(seen[3].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(data["title"], "over TLS");
    stream.kill().await.unwrap();

    assert_no_token_logged(&d, &user_token, "GET /v1/me/stream HTTP/2.0\" 200").await;
}

/// The access log gets the request line `expected` (nginx writes it when
/// the request ends), and no log has the token or the `access_token`
/// parameter.
async fn assert_no_token_logged(d: &Deployment, user_token: &str, expected: &str) {
    let deadline = Instant::now() + WAIT;
    let log = loop {
        let log = d.nginx.access_log();
        if log.contains(expected) {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "{expected} is not logged:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(log.contains(expected));
    let all = d.nginx.all_logs();
    assert!(!all.contains(user_token), "a token is in nginx's logs");
    assert!(
        !all.contains("access_token"),
        "a token parameter is logged:\n{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_first_events_arrive_unbuffered_and_resume_by_last_event_id() {
    let d = Deployment::start("proxy-sse").await;

    // Live events: how long from sending a publish to its event arriving
    // through nginx (measured and printed, not asserted).
    let response = d
        .http
        .get(d.url("/v1/me/stream"))
        .bearer_auth(token("sse-user", None))
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = response.bytes_stream().eventsource();
    let mut latencies = Vec::new();
    for n in 1..=20 {
        let sent = Instant::now();
        let seq = d.publish("sse-user", &format!("live {n}")).await;
        let event = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("an event within 15 s: the proxy buffers")
            .unwrap()
            .unwrap();
        latencies.push(sent.elapsed());
        assert_eq!(
            (event.id, event.event),
            (seq.to_string(), "notification".into())
        );
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["title"], format!("live {n}"));
    }
    latencies.sort();
    println!(
        "proxy figures: SSE publish-to-event through nginx over {} events: median {:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    drop(events);

    // Resume: the header passes the proxy, and only what came after it is
    // replayed, then live events follow.
    let seqs = [
        d.publish("resume-user", "r1").await,
        d.publish("resume-user", "r2").await,
        d.publish("resume-user", "r3").await,
    ];
    let response = d
        .http
        .get(d.url("/v1/me/stream?last_event_id=0"))
        .bearer_auth(token("resume-user", None))
        .header("Last-Event-ID", seqs[0].to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = response.bytes_stream().eventsource();
    let mut next = async || {
        let e = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let data: Value = serde_json::from_str(&e.data).unwrap();
        (e.id, e.event, data["title"].as_str().unwrap().to_owned())
    };
    let n = |s: i64, t: &str| (s.to_string(), "notification".to_owned(), t.to_owned());
    assert_eq!(next().await, n(seqs[1], "r2"));
    assert_eq!(next().await, n(seqs[2], "r3"));
    let live = d.publish("resume-user", "r4").await;
    assert_eq!(next().await, n(live, "r4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_through_the_proxy() {
    let d = Deployment::start("proxy-ws").await;
    let user_token = token("ws-user", None);
    let first = d.publish("ws-user", "before").await;
    let url = format!(
        "ws://127.0.0.1:{}/v1/me/ws?last_event_id=0&access_token={user_token}",
        d.nginx.plain
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), 101);
    let mut next = async || loop {
        match tokio::time::timeout(WAIT, socket.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => return serde_json::from_str::<Value>(&text).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("the socket ended: {other:?}"),
        }
    };
    let frame = next().await;
    assert_eq!(
        (&frame["seq"], &frame["type"]),
        (&json!(first), &json!("notification"))
    );
    assert_eq!(frame["data"]["title"], "before");
    let live = d.publish("ws-user", "live").await;
    let frame = next().await;
    assert_eq!(
        (&frame["seq"], &frame["data"]["title"]),
        (&json!(live), &json!("live"))
    );
    // Client frames travel upstream too.
    socket
        .send(Message::text(r#"{"op":"ping","ref":7}"#))
        .await
        .unwrap();
    let frame = loop {
        match tokio::time::timeout(WAIT, socket.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => break serde_json::from_str::<Value>(&text).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("the socket ended: {other:?}"),
        }
    };
    assert_eq!(frame, json!({"type": "pong", "ref": 7}));
    // nginx logs a request when it ends.
    socket.close(None).await.unwrap();
    assert_no_token_logged(&d, &user_token, "GET /v1/me/ws HTTP/1.1\" 101").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_55_s_long_poll_and_an_idle_stream_are_not_cut() {
    let d = Deployment::start("proxy-idle").await;

    // An idle SSE stream beside the long-poll: heartbeats (every 2 s here)
    // must pass the proxy unbuffered, and the stream must still deliver.
    let response = d
        .http
        .get(d.url("/v1/me/stream"))
        .bearer_auth(token("idle-stream", None))
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let heartbeats = tokio::spawn(async move {
        let (mut text, mut count) = (String::new(), 0usize);
        while let Some(chunk) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
            while let Some(end) = text.find('\n') {
                let line: String = text.drain(..=end).collect();
                if line.starts_with(':') {
                    count += 1;
                } else if line.starts_with("data:") {
                    return (count, line);
                }
            }
        }
        panic!("the idle stream ended after {count} heartbeats");
    });

    let started = Instant::now();
    let answer = d
        .http
        .get(d.url("/v1/me/events?after=0&wait=55"))
        .bearer_auth(token("idle-poller", None))
        .timeout(Duration::from_secs(90))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        json!({"events": [], "last_seq": 0})
    );
    assert!(
        waited >= Duration::from_secs(55),
        "answered after {waited:?}"
    );
    println!("proxy figures: long-poll wait=55 answered through nginx after {waited:?}");

    // The stream has been idle for the whole wait and still delivers.
    d.publish("idle-stream", "after the wait").await;
    let (count, data) = tokio::time::timeout(WAIT, heartbeats)
        .await
        .expect("the idle stream delivers after 55 s")
        .unwrap();
    assert!(data.contains("after the wait"), "{data}");
    assert!(
        count >= 10,
        "only {count} heartbeats passed the proxy in 55 s"
    );
    println!("proxy figures: {count} heartbeats through nginx on a stream idle for {waited:?}");
}
