//! `kill -9` of the real `herald` process mid-traffic, and a restart on
//! the same port and database.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;

use super::{Outcome, Publishers, Subscriber, Via, check_attempts, last_seq, stored};
use crate::support::{Herald, Service, fresh_database, wait_within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_mid_traffic_every_subscriber_gets_each_stored_event_once() {
    const KILLS: usize = 2;
    // Acknowledged publishes between two faults.
    const STRETCH: usize = 60;
    let db_url = fresh_database().await;
    let mut herald = Herald::start(&db_url).await;
    let service = Service::new(herald.base());
    let users = ["kill-sse", "kill-ws", "kill-poll"];
    let subscribers = [
        Subscriber::start(&service, users[0], Via::Sse),
        Subscriber::start(&service, users[1], Via::Ws),
        Subscriber::start(&service, users[2], Via::Poll),
    ];
    // Each publish goes to two of the three users.
    let publishers = Publishers::start(std::slice::from_ref(&service), 4, move |n, i| {
        let skip = (n + i) % 3;
        (0..3)
            .filter(|&u| u != skip)
            .map(|u| users[u].to_owned())
            .collect()
    });

    for round in 0..=KILLS {
        // Traffic flows and every subscriber is reading, mid-stream.
        let (acked, seen): (usize, Vec<i64>) = (
            publishers.acked(),
            subscribers.iter().map(Subscriber::seen).collect(),
        );
        wait_within(
            "publishing and delivery",
            Duration::from_secs(30),
            async || {
                publishers.acked() >= acked + STRETCH
                    && subscribers
                        .iter()
                        .zip(&seen)
                        .all(|(s, &before)| s.seen() > before)
            },
        )
        .await;
        if round < KILLS {
            herald.kill().await;
            herald.restart().await;
        }
    }
    let attempts = publishers.stop().await;

    let pool = PgPool::connect(&db_url).await.unwrap();
    let mut received = HashMap::new();
    for s in subscribers {
        let (user, ended) = (s.user.clone(), s.ended() + s.refused());
        let target = last_seq(&pool, &user).await;
        received.insert(user.clone(), s.finish(target).await);
        if !user.ends_with("poll") {
            assert!(
                ended >= KILLS,
                "{user}: the stream should have broken {KILLS} times"
            );
        }
    }
    let db = stored(&pool).await;
    for user in users {
        assert_eq!(
            received[user], db[user],
            "{user} must hold exactly what is stored, each once, in seq order"
        );
    }
    let (present, absent) = check_attempts(&attempts, &db);
    let acked = attempts
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Acked(_)))
        .count();
    assert!(acked >= (KILLS + 1) * STRETCH);
    eprintln!(
        "kill/restart: {} attempts, {acked} acknowledged, lost: {present} stored, {absent} not",
        attempts.len()
    );
}
