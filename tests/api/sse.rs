//! The SSE transport: live delivery, replay, reset, limits, endings.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use crate::support::{TestApp, assert_problem, data};

#[tokio::test]
async fn a_published_notification_reaches_a_live_stream_with_id_event_and_data() {
    let app = TestApp::spawn().await;
    let mut stream = app.sse("alice", None, None).await;
    let created = app
        .post_notification(&json!({
            "recipients": ["alice"], "title": "Build finished", "body": "All green",
            "category": "ci", "data": {"run": 42, "url": "/runs/42"}
        }))
        .await;
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    let item = &created["notifications"][0];

    let event = stream.next().await.unwrap();
    assert_eq!(event.event, "notification");
    assert_eq!(event.id, "1");
    let d = data(&event);
    assert_eq!(d["id"], item["id"]);
    assert_eq!(d["seq"], 1);
    assert_eq!(d["title"], "Build finished");
    assert_eq!(d["body"], "All green");
    assert_eq!(d["category"], "ci");
    assert_eq!(d["data"], json!({"run": 42, "url": "/runs/42"}));
    assert_eq!(d["read_at"], serde_json::Value::Null);
    assert_eq!(d["expires_at"], serde_json::Value::Null);
    // The live copy equals what the REST API (and a replay) says, and
    // carries the user's counts just after it.
    let listed = app.list("alice", "").await;
    let mut d = d;
    let counts = d.as_object_mut().unwrap().remove("counts");
    assert_eq!(counts, Some(json!({"unread": 1, "unseen": 1})));
    assert_eq!(listed["items"][0], d);
}

#[tokio::test]
async fn the_stream_starts_with_retry_and_sets_proxy_headers() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .get(app.url(&format!(
            "/v1/me/stream?access_token={}",
            app.token("bob", &[])
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-cache");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"retry: 2000\n"), "{first:?}");
}

#[tokio::test]
async fn heartbeats_arrive_at_the_configured_interval() {
    let app = TestApp::spawn_with(|s| s.server.heartbeat_secs = 1).await;
    let response = app
        .http
        .get(app.url("/v1/me/stream"))
        .bearer_auth(app.token("hb", &[]))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    // retry, the immediate heartbeat, then at least two more within ~2 s.
    while seen.matches(": keep-alive").count() < 3 {
        let chunk = tokio::time::timeout(Duration::from_secs(3), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

async fn seed(app: &TestApp, user: &str, n: usize) -> Vec<serde_json::Value> {
    let mut items = Vec::new();
    for i in 1..=n {
        items.extend(app.publish(&[user], &format!("n{i}")).await);
    }
    items
}

#[tokio::test]
async fn replay_by_header_sends_exactly_what_was_missed_then_live() {
    let app = TestApp::spawn().await;
    let items = seed(&app, "carol", 5).await;
    let mut stream = app.sse("carol", Some("2"), None).await;
    let replayed = stream.take(3).await;
    let ids: Vec<_> = replayed.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, ["3", "4", "5"]);
    for (event, item) in replayed.iter().zip(&items[2..]) {
        assert_eq!(data(event)["id"], item["id"]);
    }
    app.publish(&["carol"], "live").await;
    let live = stream.next().await.unwrap();
    assert_eq!(
        (live.id.as_str(), data(&live)["title"].as_str()),
        ("6", Some("live"))
    );
}

#[tokio::test]
async fn replay_by_query_parameter() {
    let app = TestApp::spawn().await;
    seed(&app, "dave", 3).await;
    let mut stream = app.sse("dave", None, Some("1")).await;
    let ids: Vec<_> = stream.take(2).await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["2", "3"]);
}

#[tokio::test]
async fn resume_from_zero_replays_everything() {
    let app = TestApp::spawn().await;
    seed(&app, "erin", 3).await;
    let mut stream = app.sse("erin", Some("0"), None).await;
    let ids: Vec<_> = stream.take(3).await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["1", "2", "3"]);
}

#[tokio::test]
async fn the_header_wins_over_the_query_parameter() {
    let app = TestApp::spawn().await;
    seed(&app, "frank", 4).await;
    // A reconnecting browser: the original URL said 1, the header says 3.
    let mut stream = app.sse("frank", Some("3"), Some("1")).await;
    let first = stream.next().await.unwrap();
    assert_eq!(first.id, "4");
    app.publish(&["frank"], "next").await;
    assert_eq!(stream.next().await.unwrap().id, "5");
}

#[tokio::test]
async fn no_resume_point_means_live_only() {
    let app = TestApp::spawn().await;
    seed(&app, "gina", 2).await;
    let mut stream = app.sse("gina", None, None).await;
    app.publish(&["gina"], "new").await;
    let event = stream.next().await.unwrap();
    assert_eq!(event.id, "3");
}

#[tokio::test]
async fn garbage_and_future_resume_points_get_reset_then_live() {
    let app = TestApp::spawn().await;
    seed(&app, "hank", 2).await;
    for bad in ["abc", "-1", "1.5", "3", "999999"] {
        let mut stream = app.sse("hank", Some(bad), None).await;
        let reset = stream.next().await.unwrap();
        assert_eq!(reset.event, "reset", "for {bad}");
        assert_eq!(reset.id, "2", "for {bad}");
        assert_eq!(
            data(&reset),
            json!({"last_seq": 2, "counts": {"unread": 2, "unseen": 2}}),
            "for {bad}"
        );
    }
    let mut stream = app.sse("hank", Some("nonsense"), None).await;
    assert_eq!(stream.next().await.unwrap().event, "reset");
    app.publish(&["hank"], "after reset").await;
    let live = stream.next().await.unwrap();
    assert_eq!(
        (live.event.as_str(), live.id.as_str()),
        ("notification", "3")
    );
}

#[tokio::test]
async fn a_resume_point_older_than_retained_history_gets_reset() {
    let app = TestApp::spawn().await;
    let items = seed(&app, "ivy", 2).await;
    let id = items[0]["id"].as_str().unwrap();
    // seq 3: a `read` event, which retention may purge.
    assert_eq!(
        app.post_as("ivy", &format!("/v1/me/notifications/{id}/read"))
            .await
            .status(),
        200
    );
    sqlx::query("UPDATE events SET created_at = now() - interval '40 days'")
        .execute(&app.pool)
        .await
        .unwrap();
    let purged = herald::jobs::purge::purge_once(&app.pool, &app.inbox(), &app.settings.retention)
        .await
        .unwrap();
    assert_eq!(purged.events, 1);

    let mut stream = app.sse("ivy", Some("1"), None).await;
    let reset = stream.next().await.unwrap();
    assert_eq!(
        (reset.event.as_str(), data(&reset)),
        (
            "reset",
            json!({"last_seq": 3, "counts": {"unread": 1, "unseen": 1}})
        )
    );
    // At the horizon itself nothing is missing: no reset.
    let mut stream = app.sse("ivy", Some("3"), None).await;
    app.publish(&["ivy"], "fresh").await;
    let event = stream.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.id.as_str()),
        ("notification", "4")
    );
}

#[tokio::test]
async fn state_changes_are_streamed_as_events() {
    let app = TestApp::spawn().await;
    let items = seed(&app, "jack", 2).await;
    let (a, b) = (
        items[0]["id"].as_str().unwrap(),
        items[1]["id"].as_str().unwrap(),
    );
    let mut stream = app.sse("jack", Some("2"), None).await;

    assert_eq!(
        app.post_as("jack", &format!("/v1/me/notifications/{a}/read"))
            .await
            .status(),
        200
    );
    let read = stream.next().await.unwrap();
    assert_eq!((read.event.as_str(), read.id.as_str()), ("read", "3"));
    assert_eq!(data(&read)["id"], a);
    assert!(data(&read)["read_at"].is_string());

    assert_eq!(
        app.post_as("jack", &format!("/v1/me/notifications/{a}/unread"))
            .await
            .status(),
        200
    );
    let unread = stream.next().await.unwrap();
    assert_eq!(
        (unread.event.as_str(), data(&unread)),
        (
            "unread",
            json!({"id": a, "read_at": null, "counts": {"unread": 2, "unseen": 1}})
        )
    );

    let all = app.post_as("jack", "/v1/me/notifications/read-all").await;
    let all: serde_json::Value = all.json().await.unwrap();
    assert_eq!(
        (all["up_to_seq"].as_i64(), all["updated"].as_i64()),
        (Some(4), Some(2))
    );
    let read_all = stream.next().await.unwrap();
    assert_eq!(read_all.event, "read_all");
    assert_eq!(data(&read_all)["up_to_seq"], 4);
    assert_eq!(data(&read_all)["read_at"], all["read_at"]);

    let deleted = app
        .http
        .delete(app.url(&format!("/v1/me/notifications/{b}")))
        .bearer_auth(app.token("jack", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let event = stream.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.id.as_str(), data(&event)),
        (
            "deleted",
            "6",
            json!({"id": b, "counts": {"unread": 0, "unseen": 0}})
        )
    );

    // A replay from the start gives the same log (the deleted notification's
    // own event is gone with it).
    let mut replay = app.sse("jack", Some("0"), None).await;
    let kinds: Vec<_> = replay
        .take(5)
        .await
        .into_iter()
        .map(|e| (e.id, e.event))
        .collect();
    let expected = [
        ("1", "notification"),
        ("3", "read"),
        ("4", "unread"),
        ("5", "read_all"),
        ("6", "deleted"),
    ];
    assert_eq!(kinds, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
}

#[tokio::test]
async fn streams_per_user_are_capped() {
    let app = TestApp::spawn_with(|s| {
        s.stream.max_streams_per_user = 2;
        // A closed connection is noticed at the next write: the heartbeat.
        s.server.heartbeat_secs = 1;
    })
    .await;
    let _a = app.sse("kim", None, None).await;
    let b = app.sse("kim", None, None).await;
    let third = app
        .http
        .get(app.url("/v1/me/stream"))
        .bearer_auth(app.token("kim", &[]))
        .send()
        .await
        .unwrap();
    let retry_after = third.headers().get("retry-after").cloned();
    assert_problem(third, 429, "2 open streams").await;
    assert!(retry_after.is_some());
    // Another user is not affected; a closed stream frees its place.
    let _other = app.sse("lee", None, None).await;
    drop(b);
    crate::support::wait_for(|| async {
        app.http
            .get(app.url("/v1/me/stream"))
            .bearer_auth(app.token("kim", &[]))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
}

#[tokio::test]
async fn the_stream_closes_when_the_token_expires() {
    let app = TestApp::spawn_with(|s| s.auth.leeway_secs = 0).await;
    let token = app.signer.token_for("mia", &[], 2).unwrap();
    let mut stream = app.sse_with_token(&token, None, None).await;
    stream.ended().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_promptly() {
    let app = TestApp::spawn().await;
    let mut stream = app.sse("ned", None, None).await;
    let started = std::time::Instant::now();
    app.handle.stop().await;
    stream.ended().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_and_resumes_from_the_log() {
    let app = TestApp::spawn_with(|s| {
        s.stream.buffer = 4;
        s.stream.slow_client_timeout_ms = 300;
    })
    .await;
    let response = app
        .http
        .get(app.url("/v1/me/stream?last_event_id=0"))
        .bearer_auth(app.token("olga", &[]))
        .send()
        .await
        .unwrap();
    // Enough data to fill the socket buffers and the queue while nobody reads.
    let total = 3000;
    crate::support::publish_many(&app, "olga", total, &"x".repeat(4000)).await;
    // The server gave up on this connection; what it did send is readable.
    let mut events = eventsource_stream::Eventsource::eventsource(response.bytes_stream());
    let mut last = 0;
    while let Ok(Some(Ok(e))) = tokio::time::timeout(Duration::from_secs(10), events.next()).await {
        last = e.id.parse().unwrap();
    }
    assert!(
        last > 0 && last < total,
        "the slow client got {last} of {total} before the disconnect"
    );
    // Resuming delivers the rest exactly.
    let mut resumed = app.sse("olga", Some(&last.to_string()), None).await;
    let rest = resumed.take((total - last) as usize).await;
    assert_eq!(rest.first().unwrap().id, (last + 1).to_string());
    assert_eq!(rest.last().unwrap().id, total.to_string());
}

/// `format=message`: no `event:` line (so `EventSource.onmessage` sees every
/// event) and the data is the frame WebSocket and long-poll clients get;
/// replay and `reset` as usual. Any other format is refused.
#[tokio::test]
async fn the_message_format_sends_frames_without_event_lines() {
    let app = TestApp::spawn().await;
    let items = app.publish(&["mona"], "first").await;
    let id = items[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.post_as("mona", &format!("/v1/me/notifications/{id}/read"))
            .await
            .status(),
        200
    );

    // Replayed from 0, then live.
    let mut stream = app.sse("mona", None, Some("0&format=message")).await;
    let replayed = stream.take(2).await;
    let live = app.publish(&["mona"], "second").await;
    let third = stream.next().await.unwrap();
    for (event, seq) in replayed.iter().chain([&third]).zip(1..) {
        // The event name of an event without an `event:` line.
        assert_eq!(event.event, "message");
        assert_eq!(event.id, seq.to_string());
        assert_eq!(data(event)["seq"], seq);
    }
    let frames: Vec<_> = replayed.iter().chain([&third]).map(data).collect();
    assert_eq!(frames[0]["type"], "notification");
    assert_eq!(frames[0]["data"]["id"], id);
    assert_eq!(frames[1]["type"], "read");
    assert_eq!(frames[1]["data"]["id"], id);
    assert_eq!(frames[2]["type"], "notification");
    assert_eq!(frames[2]["data"]["id"], live[0]["id"]);

    // An unusable resume point: a reset frame, then live.
    let mut reset = app.sse("mona", None, Some("garbage&format=message")).await;
    let first = reset.next().await.unwrap();
    assert_eq!(first.event, "message");
    assert_eq!(first.id, "3");
    assert_eq!(
        data(&first),
        json!({"seq": 3, "type": "reset", "data": {"last_seq": 3, "counts": {"unread": 1, "unseen": 1}}})
    );

    // `named` is the default form.
    let mut named = app.sse("mona", None, Some("2&format=named")).await;
    assert_eq!(named.next().await.unwrap().event, "notification");

    let r = app
        .http
        .get(app.url("/v1/me/stream?format=bogus"))
        .bearer_auth(app.token("mona", &[]))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "format").await;
}
