//! Two instances on one database, both running the delivery loop: every
//! schedule is delivered exactly once between them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::{expect, get_schedule, in_ms, log_of, schedule, sleep_past, subscribe};
use crate::support::{TestApp, wait_within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_schedules_due_at_once_on_two_instances_arrive_once_each() {
    const SCHEDULES: usize = 50;
    let users = ["i-1", "i-2", "i-3", "i-4"];
    let one = TestApp::spawn().await;
    let two = TestApp::spawn_on(&one.db_url, |_| {}).await;
    // Two users are named, two come through a topic.
    subscribe(&one, "pair", &users[2..]).await;
    let mut streams = Vec::new();
    for (k, user) in users.iter().enumerate() {
        let app = if k % 2 == 0 { &one } else { &two };
        streams.push(app.sse(user, None, None).await);
    }
    let (at, at_text) = in_ms(3000);
    let mut ids = Vec::new();
    for i in 0..SCHEDULES {
        // Accepted by either instance: where it was accepted does not matter.
        let app = if i % 2 == 0 { &one } else { &two };
        let s = schedule(
            app,
            &json!({"recipients": &users[..2], "topics": ["pair"], "title": format!("s{i:02}"),
                    "deliver_at": at_text}),
        )
        .await;
        ids.push(s["id"].as_str().unwrap().to_owned());
    }
    wait_within("every delivery", Duration::from_secs(20), async || {
        for id in &ids {
            let s = expect(get_schedule(&one, id, &one.publisher()).await, 200).await;
            if s["status"] != "delivered" {
                return false;
            }
        }
        true
    })
    .await;
    // Several more rounds on both instances add nothing.
    sleep_past(at, Duration::from_millis(2000)).await;

    let titles: Vec<String> = (0..SCHEDULES).map(|i| format!("s{i:02}")).collect();
    for (k, user) in users.iter().enumerate() {
        let log = log_of(&one.pool, user).await;
        let seqs: Vec<i64> = log.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=SCHEDULES as i64).collect::<Vec<_>>(), "{user}");
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, title) in &log {
            *count.entry(title).or_default() += 1;
        }
        assert_eq!(count.len(), SCHEDULES, "{user}: {count:?}");
        assert!(count.values().all(|&n| n == 1), "{user}: {count:?}");
        // Live, on whichever instance the user is connected to: each once.
        let events = streams[k].take(SCHEDULES).await;
        let mut got: Vec<String> = events
            .iter()
            .map(|e| {
                crate::support::data(e)["title"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let ids: Vec<i64> = events.iter().map(|e| e.id.parse().unwrap()).collect();
        assert_eq!(ids, seqs, "{user}");
        got.sort();
        assert_eq!(got, titles, "{user}");
        assert!(
            streams[k]
                .next_within(Duration::from_millis(100))
                .await
                .is_err(),
            "{user}: nothing more"
        );
    }
    // Each schedule's record names the four notifications it made.
    for id in &ids {
        let s = expect(get_schedule(&two, id, &two.publisher()).await, 200).await;
        let mut got: Vec<&str> = s["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["user_id"].as_str().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, users, "{s}");
    }
}
