//! Connection churn on every transport.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use herald::live::connection_stats::Transport;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Service, TestApp, wait_within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_churn_leaks_no_connections_users_or_database_sessions() {
    const USERS: usize = 400;
    const CYCLES: usize = 2000;
    const WORKERS: usize = 16;
    let app = TestApp::spawn_with(|s| {
        // A closed SSE client is noticed at the next heartbeat write.
        s.server.heartbeat_secs = 1;
        // Under a loaded machine, waiting for a pooled connection is not
        // what this test is about.
        s.database.acquire_timeout_ms = 5000;
    })
    .await;
    let state = app.handle.state();
    let users: Arc<Vec<String>> = Arc::new((0..USERS).map(|i| format!("churn-{i}")).collect());
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let service = Service::of(&app);
    service.publish(&names, "hello").await;
    // A fresh TCP connection for every cycle.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (service, http, users, next) =
                (service.clone(), http.clone(), users.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= CYCLES {
                        return;
                    }
                    churn_once(&service, &http, &users[i % USERS], i % 6).await;
                }
            })
        })
        .collect();
    let max = app.settings.database.max_connections;
    while next.load(Ordering::Relaxed) < CYCLES {
        assert!(state.pool.size() <= max, "pool size {}", state.pool.size());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in workers {
        w.await.unwrap();
    }

    // Everything the cycles opened is gone: closed SSE clients are noticed at
    // the next heartbeat, abandoned polls when their wait runs out at the latest.
    let hub = &state.hub;
    wait_within(
        "every connection gone",
        Duration::from_secs(20),
        async || {
            hub.stats.connections(Transport::Sse) == 0
                && hub.stats.connections(Transport::Ws) == 0
                && hub.stats.connections(Transport::Poll) == 0
                && hub.stream_count() == 0
                && hub.user_count() == 0
        },
    )
    .await;
    assert!(state.pool.size() <= max);
    wait_within(
        "pool connections returned",
        Duration::from_secs(20),
        async || state.pool.num_idle() == state.pool.size() as usize,
    )
    .await;
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'herald'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(sessions <= max as i64, "{sessions} database sessions");
    let metrics = service.get(None, "/metrics").await.text().await.unwrap();
    for transport in ["sse", "ws", "poll"] {
        assert!(
            metrics.contains(&format!("herald_connections{{transport=\"{transport}\"}}")),
            "{transport}"
        );
    }
    // And the service still works.
    let mut stream = app.sse("churn-7", None, None).await;
    service.publish(&["churn-7"], "after the churn").await;
    assert_eq!(stream.next().await.unwrap().id, "2");
}

/// One connect/disconnect cycle of one kind.
async fn churn_once(service: &Service, http: &reqwest::Client, user: &str, kind: usize) {
    let token = service.token(user);
    match kind {
        // SSE replaying seq 1, dropped after it.
        0 | 1 => {
            let mut request = http.get(service.url("/v1/me/stream")).bearer_auth(&token);
            if kind == 0 {
                request = request.header("Last-Event-ID", "0");
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            if kind == 0 {
                let mut events = response.bytes_stream().eventsource();
                let first = tokio::time::timeout(crate::support::WAIT, events.next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                assert_eq!(first.id, "1");
            }
        }
        // WebSocket: replay and a clean close, or just a dropped socket.
        2 | 3 => {
            let mut url = format!(
                "{}?access_token={token}",
                service.url("/v1/me/ws").replacen("http", "ws", 1)
            );
            if kind == 2 {
                url.push_str("&last_event_id=0");
            }
            let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            if kind == 2 {
                loop {
                    let m = tokio::time::timeout(crate::support::WAIT, socket.next())
                        .await
                        .unwrap()
                        .unwrap()
                        .unwrap();
                    if let Message::Text(t) = m {
                        assert_eq!(serde_json::from_str::<Value>(&t).unwrap()["seq"], 1);
                        break;
                    }
                }
                socket.close(None).await.unwrap();
            }
        }
        // A poll that answers at once.
        4 => {
            let r = http
                .get(service.url("/v1/me/events?after=0&wait=0"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["events"][0]["seq"], 1);
        }
        // A waiting long-poll the client abandons.
        _ => {
            let r = http
                .get(service.url("/v1/me/events?after=1&wait=2"))
                .bearer_auth(&token)
                .timeout(Duration::from_millis(50))
                .send()
                .await;
            assert!(r.is_err(), "the poll should still be waiting: {r:?}");
        }
    }
}
