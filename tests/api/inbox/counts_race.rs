//! Counts under concurrency on one user: many clients change one message
//! center at once. However the changes interleave, every event carries the
//! counts a client computes by applying the log in order, on every
//! transport, live and replayed; and the end state is what the log says.
//! Nothing is deleted, so a replay from 0 holds every event.

use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use super::model::Model;
use super::{Me, Publisher, id_of, live_counts, recount, without_last_seq};
use crate::support::{TestApp, data, ws};

const CLIENTS: u64 = 6;
const STEPS: usize = 30;
const USER: &str = "crowd";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_to_one_user_keep_every_events_counts_exact() {
    let seed: u64 = std::env::var("INBOX_SEED")
        .ok()
        .map(|s| s.parse().expect("INBOX_SEED is a number"))
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("counts race: seed {seed} (rerun with INBOX_SEED={seed})");
    let app = TestApp::spawn().await;
    let publisher = Publisher::of(&app);
    let me = Me::of(&app, USER);
    let mut socket = ws::connect(&app, &app.token(USER, &[]), Some("0")).await;
    // Some to start with, so the first operations have something to act on.
    let ids = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        let id = publisher
            .one(
                USER,
                &format!("start {i}"),
                json!({"actions": [{"id": "a0", "label": "A"}]}),
            )
            .await;
        ids.lock().unwrap().push(id);
    }

    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (me, publisher, ids) = (me.clone(), publisher.clone(), ids.clone());
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(c));
            tokio::spawn(async move {
                for step in 0..STEPS {
                    let context = format!("seed {seed}, client {c} step {step}");
                    one_operation(&mut rng, &me, &publisher, &ids, &context).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a client's run (see the seed above)");
    }

    let counts = me.counts().await;
    let last_seq = counts["last_seq"].as_i64().unwrap();
    let mut live = Vec::new();
    while live
        .last()
        .is_none_or(|e: &Value| e["seq"].as_i64().unwrap() < last_seq)
    {
        live.push(ws::next_json(&mut socket).await);
    }
    let model = check_log(&live, &format!("seed {seed}, live over WebSocket"));
    assert_eq!(live.last().unwrap()["data"]["counts"], live_counts(&counts));
    assert_eq!(
        without_last_seq(&counts),
        model.counts(),
        "seed {seed}: GET /v1/me/counts"
    );
    let (recounted, listed) = recount(&me).await;
    assert_eq!(
        recounted,
        model.counts(),
        "seed {seed}: recounted from the lists"
    );
    // The log explains the end state exactly, except what a `notification`
    // event cannot know: nothing more.
    model.check_listed(&listed, &format!("seed {seed}: the lists against the log"));

    let polled = me.events_after(0).await;
    check_log(&polled, &format!("seed {seed}, replayed by long-poll"));
    let mut stream = app.sse(USER, Some("0"), None).await;
    let mut replayed = Vec::new();
    while replayed.len() < polled.len() {
        let event = stream.next().await.unwrap();
        replayed.push(json!({"seq": event.id.parse::<i64>().unwrap(), "type": event.event, "data": data(&event)}));
    }
    check_log(&replayed, &format!("seed {seed}, replayed over SSE"));
    let seqs = |log: &[Value]| -> Vec<(i64, Value)> {
        log.iter()
            .map(|e| (e["seq"].as_i64().unwrap(), e["data"]["counts"].clone()))
            .collect()
    };
    assert_eq!(
        seqs(&replayed),
        seqs(&live),
        "seed {seed}: replay and live, seq by seq"
    );
    assert_eq!(
        seqs(&polled),
        seqs(&live),
        "seed {seed}: long-poll and live, seq by seq"
    );
}

/// Applies `log` in order and checks each event's counts; the end state.
fn check_log(log: &[Value], context: &str) -> Model {
    let mut model = Model::default();
    let mut last = 0;
    for event in log {
        let seq = event["seq"].as_i64().unwrap();
        assert!(seq > last, "{context}: {seq} after {last}");
        last = seq;
        model.apply(event);
        assert_eq!(
            event["data"]["counts"],
            model.live(),
            "{context}: counts of {event}"
        );
    }
    model
}

async fn one_operation(
    rng: &mut StdRng,
    me: &Me,
    publisher: &Publisher,
    ids: &Mutex<Vec<String>>,
    context: &str,
) {
    let pick = |rng: &mut StdRng| {
        let ids = ids.lock().unwrap();
        ids[rng.random_range(0..ids.len())].clone()
    };
    let status = match rng.random_range(0..13) {
        0 | 1 => {
            let mut body = json!({"recipients": [USER], "title": context});
            let fields = body.as_object_mut().unwrap();
            let category = ["x", "y"][rng.random_range(0..2)];
            if rng.random_bool(0.4) {
                // A replayed `notification` event shows the notification as
                // it is now, so a key keeps its category: what bulk
                // operations matched stays derivable from the replay.
                let key = if category == "x" { "k0" } else { "k1" };
                fields.insert("key".into(), key.into());
                fields.insert("renotify".into(), rng.random_bool(0.5).into());
                fields.insert("category".into(), category.into());
            } else if rng.random_bool(0.5) {
                fields.insert("category".into(), category.into());
            }
            if rng.random_bool(0.4) {
                fields.insert(
                    "actions".into(),
                    json!([{"id": "a0", "label": "A"}, {"id": "a1", "label": "B"}]),
                );
            }
            let r = publisher.send(&body).await;
            let status = r.status().as_u16();
            let answer: Value = r.json().await.unwrap();
            ids.lock()
                .unwrap()
                .push(id_of(&answer["notifications"][0]).to_owned());
            status
        }
        2 => me.op(&pick(rng), "read").await.status().as_u16(),
        3 => me.op(&pick(rng), "unread").await.status().as_u16(),
        4 => me.op(&pick(rng), "seen").await.status().as_u16(),
        5 => me.op(&pick(rng), "archive").await.status().as_u16(),
        6 => me.op(&pick(rng), "unarchive").await.status().as_u16(),
        7 => {
            let until = Utc::now() + Duration::days(rng.random_range(1..20));
            me.snooze(&pick(rng), until).await.status().as_u16()
        }
        8 => me.op(&pick(rng), "unsnooze").await.status().as_u16(),
        9 => {
            let action = ["a0", "a1"][rng.random_range(0..2)];
            match me.act(&pick(rng), action).await.status().as_u16() {
                // Taken already, or not offered: both fine in a crowd.
                409 | 404 => 200,
                other => other,
            }
        }
        bulk => {
            let route = ["read-all", "seen-all", "archive-all"][bulk - 10];
            let category = ["x", "y"][rng.random_range(0..2)];
            let body = rng
                .random_bool(0.5)
                .then(|| json!({ "category": category }));
            me.bulk(route, body.as_ref()).await.status().as_u16()
        }
    };
    assert!(matches!(status, 200 | 201), "{context}: answered {status}");
}
