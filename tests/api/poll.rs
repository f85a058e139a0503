//! Polling and long-polling.

use std::time::{Duration, Instant};

use herald::live::connection_stats::Transport;
use serde_json::{Value, json};

use crate::support::{TestApp, wait_for, ws};

async fn poll(app: &TestApp, user: &str, query: &str) -> Value {
    let r = app.get_as(user, &format!("/v1/me/events?{query}")).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn seqs(answer: &Value) -> Vec<i64> {
    answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn answers_at_once_when_events_exist_and_pages_with_a_limit() {
    let app = TestApp::spawn().await;
    for i in 1..=7 {
        app.publish(&["pat"], &format!("n{i}")).await;
    }
    let started = Instant::now();
    let first = poll(&app, "pat", "after=0&wait=30&limit=3").await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        (seqs(&first), first["last_seq"].as_i64()),
        (vec![1, 2, 3], Some(7))
    );
    assert_eq!(first["events"][0]["type"], "notification");
    assert_eq!(first["events"][0]["data"]["title"], "n1");
    assert_eq!(seqs(&poll(&app, "pat", "after=3&limit=3").await), [4, 5, 6]);
    assert_eq!(seqs(&poll(&app, "pat", "after=6&limit=3").await), [7]);
}

#[tokio::test]
async fn times_out_with_an_empty_list_and_the_current_seq() {
    let app = TestApp::spawn().await;
    app.publish(&["quinn"], "old").await;
    let started = Instant::now();
    let answer = poll(&app, "quinn", "after=1&wait=1").await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(answer, json!({"events": [], "last_seq": 1}));
}

#[tokio::test]
async fn bad_parameters_and_unusable_resume_points() {
    let app = TestApp::spawn().await;
    app.publish(&["rae"], "x").await;
    assert_eq!(
        poll(&app, "rae", "after=zzz").await,
        json!({"events": [{"seq": 1, "type": "reset", "data": {"last_seq": 1, "counts": {"unread": 1, "unseen": 1}}}], "last_seq": 1})
    );
    assert_eq!(
        seqs(&poll(&app, "rae", "after=5").await),
        [1],
        "a future seq resets to the current one"
    );
    for q in ["wait=61", "limit=0", "limit=501", "wait=-1"] {
        let r = app.get_as("rae", &format!("/v1/me/events?{q}")).await;
        assert_eq!(r.status(), 400, "{q}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_poll_is_released_by_a_publish_on_another_instance() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.db_url, |_| {}).await;
    let http = b.http.clone();
    let url = b.url("/v1/me/events?after=0&wait=30");
    let token = b.token("sam", &[]);
    let started = Instant::now();
    let held = tokio::spawn(async move {
        http.get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    wait_for(|| async { b.handle.state().hub.stats.connections(Transport::Poll) == 1 }).await;
    let items = a.publish(&["sam"], "wake up").await;
    let answer = held.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "released by the publish, not the timeout"
    );
    assert_eq!(seqs(&answer), [1]);
    assert_eq!(answer["events"][0]["data"]["id"], items[0]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_waiting_polls_hold_no_database_connections() {
    const POLLS: usize = 300;
    let app = TestApp::spawn().await;
    let users: Vec<String> = (0..POLLS).map(|i| format!("poller-{i}")).collect();
    let mut held = Vec::new();
    for user in &users {
        let (http, url, token) = (
            app.http.clone(),
            app.url("/v1/me/events?after=0&wait=30"),
            app.token(user, &[]),
        );
        held.push(tokio::spawn(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }));
    }
    let state = app.handle.state();
    wait_for(|| async { state.hub.stats.connections(Transport::Poll) == POLLS as i64 }).await;
    assert!(
        state.pool.size() <= app.settings.database.max_connections,
        "polls wait without connections"
    );
    let recipients: Vec<&str> = users.iter().map(String::as_str).collect();
    app.publish(&recipients, "everyone").await;
    for poll in held {
        let answer = poll.await.unwrap();
        assert_eq!(seqs(&answer), [1]);
        assert_eq!(answer["events"][0]["data"]["title"], "everyone");
    }
    wait_for(|| async { state.hub.stats.connections(Transport::Poll) == 0 }).await;
}

#[tokio::test]
async fn switching_transports_mid_stream_loses_and_repeats_nothing() {
    let app = TestApp::spawn().await;
    let user = "switcher";
    let mut seen: Vec<i64> = Vec::new();
    for i in 1..=3 {
        app.publish(&[user], &format!("a{i}")).await;
    }
    // SSE until seq 3...
    let mut sse = app.sse(user, Some("0"), None).await;
    for e in sse.take(3).await {
        seen.push(e.id.parse().unwrap());
    }
    drop(sse);
    for i in 1..=3 {
        app.publish(&[user], &format!("b{i}")).await;
    }
    // ...then WebSocket from 3 until 6...
    let mut socket = ws::connect(&app, &app.token(user, &[]), Some("3")).await;
    for _ in 0..3 {
        seen.push(ws::next_json(&mut socket).await["seq"].as_i64().unwrap());
    }
    drop(socket);
    for i in 1..=3 {
        app.publish(&[user], &format!("c{i}")).await;
    }
    // ...then long-poll from 6.
    let answer = poll(&app, user, "after=6&wait=5").await;
    seen.extend(seqs(&answer));
    assert_eq!(seen, (1..=9).collect::<Vec<_>>());
    assert_eq!(answer["last_seq"], 9);
}

/// One user holding thousands of long-polls: beyond the per-user cap they
/// are refused at once with 429, the ones held cost no database connection,
/// and other users' publishes and streams go on as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_polls_from_one_user_are_capped_and_leave_other_users_unaffected() {
    const POLLS: usize = 2000;
    let app = TestApp::spawn().await;
    let cap = app.settings.stream.max_streams_per_user;
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let token = app.token("hog", &[]);
    // At most this many requests on the wire at once (refused ones return
    // their connection for the next), so the client's sockets stay few.
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut held = Vec::new();
    for _ in 0..POLLS {
        let (http, url, token, refused, in_flight) = (
            app.http.clone(),
            app.url("/v1/me/events?after=0&wait=30"),
            token.clone(),
            refused.clone(),
            in_flight.clone(),
        );
        held.push(tokio::spawn(async move {
            let _slot = in_flight.acquire_owned().await.unwrap();
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            if r.status() == 429 {
                assert_eq!(r.headers()["content-type"], "application/problem+json");
                assert!(r.headers().contains_key("retry-after"));
                refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                return None;
            }
            assert_eq!(r.status(), 200);
            Some(r.json::<Value>().await.unwrap())
        }));
    }
    let state = app.handle.state();
    wait_for(|| async {
        refused.load(std::sync::atomic::Ordering::SeqCst) == POLLS - cap
            && state.hub.stats.connections(Transport::Poll) == cap as i64
    })
    .await;

    // Everyone else: publishes answer, a stream gets its events.
    let mut bystander = app.sse("bystander", None, None).await;
    for i in 0..20 {
        let items = app
            .publish(&["bystander", &format!("other-{i}")], &format!("n{i}"))
            .await;
        let event = bystander.next().await.unwrap();
        assert_eq!(crate::support::data(&event)["id"], items[0]["id"]);
    }
    assert!(state.pool.size() <= app.settings.database.max_connections);

    // The held polls are still there, and a publish to their user answers
    // every one of them.
    assert_eq!(state.hub.stats.connections(Transport::Poll), cap as i64);
    app.publish(&["hog"], "at last").await;
    let mut answered = 0;
    for poll in held {
        if let Some(answer) = poll.await.unwrap() {
            assert_eq!(seqs(&answer), [1]);
            answered += 1;
        }
    }
    assert_eq!(answered, cap);
}
