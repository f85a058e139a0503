//! A rolling restart behind nginx, one instance after the other, as
//! `systemctl restart herald@1`, then `herald@2`, would do it, while a
//! publisher and subscribers on every transport keep going.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::cluster::{Deployment, token};

const USER: &str = "roll";

#[derive(Clone, Copy, Debug)]
enum Via {
    SseHeader,
    SseQuery,
    Ws,
    Poll,
}

/// What one subscriber received: every notification `(seq, id)` in arrival
/// order, duplicates included, and how many connections it opened.
#[derive(Default)]
struct Received {
    events: Mutex<Vec<(i64, String)>>,
    connections: AtomicUsize,
    /// Why connections were refused (status or error), for the report.
    refused: Mutex<Vec<String>>,
}

impl Received {
    fn last(&self) -> i64 {
        self.events.lock().unwrap().last().map_or(0, |e| e.0)
    }

    fn take(&self, seq: i64, kind: &str, data: &Value) {
        assert_eq!(kind, "notification", "unexpected {kind} event: {data}");
        let id = data["id"].as_str().unwrap().to_owned();
        self.events.lock().unwrap().push((seq, id));
    }
}

/// A client that stays subscribed: on every end or error it reconnects
/// through the proxy from the last seq it saw.
fn subscribe(base: String, via: Via, stop: Arc<AtomicBool>) -> Arc<Received> {
    let received = Arc::new(Received::default());
    let r = received.clone();
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let user_token = token(USER, None);
        while !stop.load(Ordering::Relaxed) {
            r.connections.fetch_add(1, Ordering::Relaxed);
            match via {
                Via::SseHeader | Via::SseQuery => {
                    let request = match via {
                        Via::SseHeader => http
                            .get(format!("{base}/v1/me/stream"))
                            .bearer_auth(&user_token)
                            .header("Last-Event-ID", r.last().to_string()),
                        _ => http.get(format!(
                            "{base}/v1/me/stream?access_token={user_token}&last_event_id={}",
                            r.last()
                        )),
                    };
                    match request.send().await {
                        Ok(response) if response.status() == 200 => {
                            let mut events = response.bytes_stream().eventsource();
                            while let Some(Ok(e)) = events.next().await {
                                let data: Value = serde_json::from_str(&e.data).unwrap();
                                r.take(e.id.parse().unwrap(), &e.event, &data);
                            }
                        }
                        Ok(response) => r
                            .refused
                            .lock()
                            .unwrap()
                            .push(response.status().to_string()),
                        Err(e) => r.refused.lock().unwrap().push(e.to_string()),
                    }
                }
                Via::Ws => {
                    let url = format!(
                        "{}/v1/me/ws?last_event_id={}&access_token={user_token}",
                        base.replacen("http", "ws", 1),
                        r.last()
                    );
                    if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url).await {
                        while let Some(Ok(message)) = socket.next().await {
                            if let Message::Text(text) = message {
                                let f: Value = serde_json::from_str(&text).unwrap();
                                r.take(
                                    f["seq"].as_i64().unwrap(),
                                    f["type"].as_str().unwrap(),
                                    &f["data"],
                                );
                            }
                        }
                    }
                }
                Via::Poll => {
                    let answer = http
                        .get(format!("{base}/v1/me/events?after={}&wait=5", r.last()))
                        .bearer_auth(&user_token)
                        .send()
                        .await;
                    if let Ok(answer) = answer
                        && answer.status() == 200
                        && let Ok(body) = answer.json::<Value>().await
                    {
                        for e in body["events"].as_array().unwrap() {
                            r.take(
                                e["seq"].as_i64().unwrap(),
                                e["type"].as_str().unwrap(),
                                &e["data"],
                            );
                        }
                        continue;
                    }
                }
            }
            // Ended or refused (an instance going away): back off briefly.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    received
}

/// Publishes one notification after another to [`USER`] through the proxy,
/// each retried with its Idempotency-Key until acknowledged; returns every
/// acknowledged `(seq, id)`.
fn publish(
    base: String,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<(i64, String)>> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let publisher = token("roll-publisher", Some("publish"));
        let mut done = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let key = format!("roll-{n}");
            loop {
                let answer = http
                    .post(format!("{base}/v1/notifications"))
                    .bearer_auth(&publisher)
                    .header("Idempotency-Key", &key)
                    .json(&json!({"recipients": [USER], "title": key}))
                    .send()
                    .await;
                if let Ok(answer) = answer
                    && answer.status() == 201
                {
                    let body: Value = answer.json().await.unwrap();
                    let item = &body["notifications"][0];
                    done.push((
                        item["seq"].as_i64().unwrap(),
                        item["id"].as_str().unwrap().to_owned(),
                    ));
                    acked.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // A steady stream, not a flood: the point is continuity.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done
    })
}

/// Waits until `acked` has grown by `more`.
async fn progress(acked: &AtomicUsize, more: usize) {
    let target = acked.load(Ordering::Relaxed) + more;
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.load(Ordering::Relaxed) < target {
        assert!(Instant::now() < deadline, "publishing stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_behind_nginx_delivers_every_acknowledged_notification_once_in_order() {
    let mut d = Deployment::start("proxy-roll").await;
    let base = d.nginx.base();
    let stop_subscribers = Arc::new(AtomicBool::new(false));
    let vias = [Via::SseHeader, Via::SseQuery, Via::Ws, Via::Poll];
    let subscribers: Vec<_> = vias
        .iter()
        .map(|via| subscribe(base.clone(), *via, stop_subscribers.clone()))
        .collect();
    let stop_publisher = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let publisher = publish(base.clone(), stop_publisher.clone(), acked.clone());

    progress(&acked, 50).await;
    for n in 0..d.instances.len() {
        d.instances[n].stop().await;
        progress(&acked, 50).await;
        d.instances[n].restart().await;
        // As an operator would: the next one goes only when this one is
        // back in nginx's rotation.
        d.instances[n].wait_until_routed().await;
        progress(&acked, 50).await;
    }
    stop_publisher.store(true, Ordering::Relaxed);
    let expected = publisher.await.unwrap();

    // Wait until every subscriber has at least as many events as were
    // acknowledged, then compare exactly.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (via, r) in vias.iter().zip(&subscribers) {
        while r.events.lock().unwrap().len() < expected.len() {
            assert!(
                Instant::now() < deadline,
                "{via:?} has {} of {} events",
                r.events.lock().unwrap().len(),
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop_subscribers.store(true, Ordering::Relaxed);
    for (via, r) in vias.iter().zip(&subscribers) {
        let got = r.events.lock().unwrap().clone();
        assert_eq!(got.len(), expected.len(), "{via:?}: duplicates");
        assert!(
            got == expected,
            "{via:?} did not get every acknowledged notification once, in order"
        );
        println!(
            "proxy figures: rolling restart, {via:?}: delivered {}/{} acknowledged, {} connections, refused: {:?}",
            got.len(),
            expected.len(),
            r.connections.load(Ordering::Relaxed),
            r.refused.lock().unwrap()
        );
    }
    // The restarts really cut the streams: each streaming subscriber had to
    // reconnect at least once, and always found an instance behind nginx.
    for (via, r) in vias.iter().zip(&subscribers).take(3) {
        assert!(
            r.connections.load(Ordering::Relaxed) >= 2,
            "{via:?} was never cut"
        );
        assert_eq!(*r.refused.lock().unwrap(), Vec::<String>::new(), "{via:?}");
    }
    // Tokens travelled in stream URLs the whole time; no log has one.
    let logs = d.nginx.all_logs();
    assert!(logs.contains("GET /v1/me/stream"), "nothing logged");
    assert!(
        !logs.contains("access_token"),
        "a token reached nginx's logs"
    );
}
