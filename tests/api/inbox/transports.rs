//! Every v2 event type reaches SSE, WebSocket and long-poll clients alike
//! (same seq, type and data, with the members the decisions fix), a client
//! that reconnects gets exactly what it missed, and `reset` carries counts.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use super::{Me, NOTIFICATION_FIELDS, Publisher, live_counts, members, rfc3339};
use crate::support::{SseClient, TestApp, data, ws};

type Seen = (i64, String, Value);

/// The members each event type's data has.
fn expected_members(kind: &str) -> Vec<String> {
    let listed: &[&str] = match kind {
        "notification" | "updated" => &NOTIFICATION_FIELDS,
        "read" | "unread" => &["id", "read_at"],
        "seen" => &["id", "seen_at"],
        "archived" => &["id", "archived_at"],
        "snoozed" => &["id", "until"],
        "unarchived" | "unsnoozed" | "deleted" | "expired" => &["id"],
        "action" => &["id", "action_id", "at", "read_at"],
        "read_all" => &["up_to_seq", "category", "read_at"],
        "seen_all" => &["up_to_seq", "category", "seen_at"],
        "archived_all" => &["up_to_seq", "category", "archived_at"],
        "deleted_all" => &["up_to_seq", "category"],
        other => panic!("unexpected event type {other}"),
    };
    let mut all: Vec<String> = listed.iter().map(|m| (*m).to_owned()).collect();
    all.push("counts".into());
    all.sort();
    all
}

struct Clients {
    me: Me,
    sse: Option<SseClient>,
    socket: ws::Socket,
    after: i64,
    log: Vec<Seen>,
}

impl Clients {
    /// The one event the last request caused, as all three transports show
    /// it (the SSE stream only while it is connected).
    async fn next(&mut self) -> Seen {
        let frame = ws::next_json(&mut self.socket).await;
        let over_ws: Seen = (
            frame["seq"].as_i64().unwrap(),
            frame["type"].as_str().unwrap().to_owned(),
            frame["data"].clone(),
        );
        let polled = self.me.poll(self.after, 10).await;
        let events = polled["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "one new event: {polled}");
        let over_poll: Seen = (
            events[0]["seq"].as_i64().unwrap(),
            events[0]["type"].as_str().unwrap().to_owned(),
            events[0]["data"].clone(),
        );
        assert_eq!(over_ws, over_poll, "WebSocket and long-poll");
        if let Some(sse) = &mut self.sse {
            let event = sse.next().await.unwrap();
            let over_sse: Seen = (event.id.parse().unwrap(), event.event.clone(), data(&event));
            assert_eq!(over_sse, over_ws, "SSE and WebSocket");
        }
        let (seq, kind, data) = &over_ws;
        assert!(*seq > self.after, "{seq} after {}", self.after);
        assert_eq!(members(data), expected_members(kind), "{kind}: {data}");
        // Nothing else happened since: the event's counts are the current ones.
        assert_eq!(
            data["counts"],
            live_counts(&self.me.counts().await),
            "{kind}"
        );
        self.after = *seq;
        self.log.push(over_ws.clone());
        over_ws
    }

    async fn expect(&mut self, kind: &str) -> Value {
        let (_, got, data) = self.next().await;
        assert_eq!(got, kind, "{data}");
        data
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_event_type_arrives_alike_over_sse_websocket_and_long_poll() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "tess");
    let mut c = Clients {
        sse: Some(app.sse("tess", Some("0"), None).await),
        socket: ws::connect(&app, &app.token("tess", &[]), Some("0")).await,
        me: me.clone(),
        after: 0,
        log: Vec::new(),
    };

    let actions = json!([{"id": "accept", "label": "Accept", "url": "https://example.com/accept"}]);
    let n1 = publisher
        .one(
            "tess",
            "first",
            json!({"category": "c", "key": "k", "actions": actions}),
        )
        .await;
    let created = c.expect("notification").await;
    assert_eq!(
        (created["id"].as_str(), created["counts"].clone()),
        (Some(n1.as_str()), json!({"unread": 1, "unseen": 1}))
    );
    publisher
        .one(
            "tess",
            "first, again",
            json!({"category": "c", "key": "k", "actions": actions}),
        )
        .await;
    let updated = c.expect("updated").await;
    assert_eq!(
        (updated["id"].as_str(), updated["title"].as_str()),
        (Some(n1.as_str()), Some("first, again"))
    );
    let n2 = publisher
        .one("tess", "second", json!({"category": "c"}))
        .await;
    c.expect("notification").await;

    assert_eq!(me.op(&n1, "seen").await.status(), 200);
    assert_eq!(
        c.expect("seen").await["counts"],
        json!({"unread": 2, "unseen": 1})
    );
    assert_eq!(me.op(&n2, "read").await.status(), 200);
    assert_eq!(
        c.expect("read").await["counts"],
        json!({"unread": 1, "unseen": 0})
    );
    assert_eq!(me.op(&n2, "unread").await.status(), 200);
    assert_eq!(c.expect("unread").await["read_at"], Value::Null);
    assert_eq!(me.op(&n1, "archive").await.status(), 200);
    assert_eq!(
        c.expect("archived").await["counts"],
        json!({"unread": 1, "unseen": 0})
    );
    assert_eq!(me.op(&n1, "unarchive").await.status(), 200);
    c.expect("unarchived").await;
    let until = Utc::now() + chrono::Duration::days(1);
    assert_eq!(me.snooze(&n2, until).await.status(), 200);
    let snoozed = c.expect("snoozed").await;
    assert_eq!(
        super::time(&snoozed["until"]),
        super::time(&json!(rfc3339(until)))
    );
    assert_eq!(me.op(&n2, "unsnooze").await.status(), 200);
    c.expect("unsnoozed").await;
    assert_eq!(me.act(&n1, "accept").await.status(), 200);
    let action = c.expect("action").await;
    assert_eq!(
        (action["id"].as_str(), action["action_id"].as_str()),
        (Some(n1.as_str()), Some("accept"))
    );
    let before_missed = c.after;

    // The SSE client drops out for three events and comes back with
    // Last-Event-ID.
    c.sse = None;
    assert_eq!(
        me.bulk("read-all", Some(&json!({"category": "c"})))
            .await
            .status(),
        200
    );
    let read_all = c.expect("read_all").await;
    assert_eq!(
        (
            read_all["category"].as_str(),
            read_all["up_to_seq"].as_i64()
        ),
        (Some("c"), Some(before_missed))
    );
    assert_eq!(me.bulk("seen-all", None).await.status(), 200);
    assert_eq!(c.expect("seen_all").await["category"], Value::Null);
    assert_eq!(
        me.bulk("archive-all", Some(&json!({"up_to_seq": 1})))
            .await
            .status(),
        200
    );
    assert_eq!(c.expect("archived_all").await["up_to_seq"], 1);
    let missed: Vec<Seen> = c.log[c.log.len() - 3..].to_vec();

    let mut back = app
        .sse("tess", Some(&before_missed.to_string()), None)
        .await;
    for expected in &missed {
        let event = back.next().await.unwrap();
        assert_eq!(
            &(event.id.parse().unwrap(), event.event.clone(), data(&event)),
            expected,
            "SSE replay"
        );
    }
    assert!(
        back.next_within(Duration::from_millis(300)).await.is_err(),
        "only the missed ones"
    );
    let mut socket = ws::connect(
        &app,
        &app.token("tess", &[]),
        Some(&before_missed.to_string()),
    )
    .await;
    for expected in &missed {
        let frame = ws::next_json(&mut socket).await;
        assert_eq!(
            &(
                frame["seq"].as_i64().unwrap(),
                frame["type"].as_str().unwrap().to_owned(),
                frame["data"].clone()
            ),
            expected,
            "WebSocket replay"
        );
    }
    c.sse = Some(back);

    let n3 = publisher.one("tess", "third", json!({})).await;
    c.expect("notification").await;
    assert_eq!(me.remove(&n3).await.status(), 204);
    assert_eq!(c.expect("deleted").await["id"], n3.as_str());
    let current = c.after;
    assert_eq!(
        me.bulk("delete-all", Some(&json!({"category": "none of them"})))
            .await
            .status(),
        200
    );
    let deleted_all = c.expect("deleted_all").await;
    assert_eq!(
        (
            deleted_all["category"].as_str(),
            deleted_all["up_to_seq"].as_i64()
        ),
        (Some("none of them"), Some(current))
    );
    let expires_at = Utc::now() + chrono::Duration::seconds(2);
    let n4 = publisher
        .one(
            "tess",
            "short-lived",
            json!({"expires_at": rfc3339(expires_at)}),
        )
        .await;
    c.expect("notification").await;
    // `expired` comes by itself within 5 s of expires_at; the long-poll
    // of `next` waits up to 10 s.
    assert_eq!(c.expect("expired").await["id"], n4.as_str());
    assert!(
        Utc::now() < expires_at + chrono::Duration::seconds(5),
        "expired within 5 s"
    );

    let kinds: BTreeSet<&str> = c.log.iter().map(|(_, k, _)| k.as_str()).collect();
    let new_kinds = [
        "updated",
        "seen",
        "archived",
        "unarchived",
        "snoozed",
        "unsnoozed",
        "action",
        "read_all",
        "seen_all",
        "archived_all",
        "deleted_all",
        "expired",
    ];
    for kind in new_kinds {
        assert!(kinds.contains(kind), "{kind} was covered");
    }
    // The socket opened for the replay went on live and saw the rest too.
    let rest: Vec<&Seen> = c
        .log
        .iter()
        .filter(|(seq, _, _)| *seq > missed[2].0)
        .collect();
    for expected in rest {
        let frame = ws::next_json(&mut socket).await;
        assert_eq!(frame["seq"].as_i64(), Some(expected.0));
    }
}

#[tokio::test]
async fn reset_carries_the_current_counts_on_every_transport() {
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, "rita");
    let n1 = publisher.one("rita", "one", json!({"category": "x"})).await;
    publisher.one("rita", "two", json!({})).await;
    assert_eq!(me.op(&n1, "seen").await.status(), 200);
    let counts = me.counts().await;
    let last_seq = counts["last_seq"].as_i64().unwrap();
    assert_eq!(live_counts(&counts), json!({"unread": 2, "unseen": 1}));
    let expected = json!({"last_seq": last_seq, "counts": {"unread": 2, "unseen": 1}});
    let future = (last_seq + 50).to_string();

    let mut sse = app.sse("rita", Some(&future), None).await;
    let reset = sse.next().await.unwrap();
    assert_eq!(
        (
            reset.event.as_str(),
            reset.id.parse::<i64>().unwrap(),
            data(&reset)
        ),
        ("reset", last_seq, expected.clone())
    );
    let mut socket = ws::connect(&app, &app.token("rita", &[]), Some(&future)).await;
    assert_eq!(
        ws::next_json(&mut socket).await,
        json!({"seq": last_seq, "type": "reset", "data": expected})
    );
    assert_eq!(
        me.poll(last_seq + 50, 0).await,
        json!({"events": [{"seq": last_seq, "type": "reset", "data": expected}], "last_seq": last_seq})
    );
    // Garbage as the resume point: the same.
    let mut garbage = app.sse("rita", Some("garbage"), None).await;
    assert_eq!(data(&garbage.next().await.unwrap()), expected);
}
