//! A snooze outlives the process that accepted it: `kill -9` before
//! `until`, a new process started after it, and each snoozed notification
//! still ends with exactly one `unsnoozed`, within 5 s of the restart.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;

use crate::inbox::{Me, Publisher, live_counts};
use crate::support::{Herald, Service, fresh_database};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snoozes_end_exactly_once_after_a_kill_and_a_restart_past_until() {
    let db_url = fresh_database().await;
    let mut herald = Herald::start(&db_url).await;
    let service = Service::new(herald.base());
    let publisher = Publisher::on(&service);
    let me = Me::on(&service, "sleeper");
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(publisher.one("sleeper", &format!("n{i}"), json!({})).await);
    }
    let until = Utc::now() + chrono::Duration::seconds(3);
    for id in &ids {
        assert_eq!(me.snooze(id, until).await.status(), 200);
    }
    let last_seq = me.counts().await["last_seq"].as_i64().unwrap();
    herald.kill().await;
    assert!(Utc::now() < until, "killed before until");

    // Down until `until` has passed.
    let wait = (until - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(1);
    tokio::time::sleep(wait).await;
    herald.restart().await;
    let restarted = Utc::now();

    let mut woken = Vec::new();
    let mut after = last_seq;
    while woken.len() < ids.len() {
        assert!(
            Utc::now() < restarted + chrono::Duration::seconds(5),
            "woken within 5 s: {woken:?}"
        );
        let answer = me.poll(after, 1).await;
        for event in answer["events"].as_array().unwrap() {
            assert_eq!(event["type"], "unsnoozed", "{event}");
            woken.push(event["data"]["id"].as_str().unwrap().to_owned());
            after = event["seq"].as_i64().unwrap();
        }
    }
    assert!(
        Utc::now() < restarted + chrono::Duration::seconds(5) + chrono::Duration::milliseconds(500)
    );
    // Nothing more comes, however long it runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = me.events_after(last_seq).await;
    let mut logged: Vec<String> = log
        .iter()
        .map(|e| e["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    logged.sort();
    ids.sort();
    assert_eq!(logged, ids, "one unsnoozed each: {log:?}");
    let counts = me.counts().await;
    assert_eq!(
        (counts["unread"].clone(), counts["snoozed"].clone()),
        (json!(3), json!(0))
    );
    assert_eq!(log.last().unwrap()["data"]["counts"], live_counts(&counts));
}
