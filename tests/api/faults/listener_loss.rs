//! The LISTEN connection lost on every instance at once, repeatedly.

use std::time::Duration;

use herald::live::connection_stats::Transport;
use sqlx::PgPool;

use super::{Outcome, Publishers, Subscriber, Via, check_attempts, last_seq, stored};
use crate::support::{Service, TestApp, wait_for, wait_within};

async fn listener_pids(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'herald-listener' AND datname = current_database()",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_listener_on_every_instance_loses_no_event() {
    const ROUNDS: usize = 3;
    const STRETCH: usize = 40;
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.db_url, |_| {}).await;
    let (on_a, on_b) = (Service::of(&a), Service::of(&b));
    let users = ["lis-a", "lis-b", "lis-both"];
    let subscribers = [
        Subscriber::start(&on_a, users[0], Via::Sse),
        Subscriber::start(&on_b, users[1], Via::Sse),
        Subscriber::start(&on_a, users[2], Via::Ws),
        Subscriber::start(&on_b, users[2], Via::Sse),
        Subscriber::start(&on_b, users[0], Via::Poll),
    ];
    let (stats_a, stats_b) = (&a.handle.state().hub.stats, &b.handle.state().hub.stats);
    wait_within(
        "the streams are open",
        Duration::from_secs(20),
        async || {
            stats_a.connections(Transport::Sse) == 1
                && stats_a.connections(Transport::Ws) == 1
                && stats_b.connections(Transport::Sse) == 2
        },
    )
    .await;
    // Publishing through both instances, to every user.
    let publishers = Publishers::start(&[on_a, on_b], 4, move |_, _| {
        users.iter().map(|u| u.to_string()).collect()
    });
    for _ in 0..ROUNDS {
        let acked = publishers.acked();
        wait_within("publishing", Duration::from_secs(30), async || {
            publishers.acked() >= acked + STRETCH
        })
        .await;
        let old = listener_pids(&a.pool).await;
        assert_eq!(old.len(), 2, "one listener per instance");
        for pid in &old {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&a.pool)
                .await
                .unwrap();
        }
        wait_for(|| async {
            let now = listener_pids(&a.pool).await;
            now.len() == 2 && now.iter().all(|p| !old.contains(p))
        })
        .await;
    }
    let acked = publishers.acked();
    wait_within("publishing", Duration::from_secs(30), async || {
        publishers.acked() >= acked + STRETCH
    })
    .await;
    let attempts = publishers.stop().await;
    for attempt in &attempts {
        assert!(
            matches!(attempt.outcome, Outcome::Acked(_)),
            "{attempt:?}: the database never went away"
        );
    }

    let db = stored(&a.pool).await;
    check_attempts(&attempts, &db);

    // Last, one more notification per user whose wake-up is lost for good:
    // committed without NOTIFY, as if while the listeners were away. Only
    // the catch-up when each listener comes back delivers it.
    for user in users {
        sqlx::query(
            "WITH u AS (UPDATE users SET last_seq = last_seq + 1 WHERE user_id = $1 RETURNING last_seq)
             INSERT INTO notifications (id, user_id, seq, title, created_at)
             SELECT gen_random_uuid(), $1, last_seq, 'unheard', now() FROM u",
        )
        .bind(user)
        .execute(&a.pool)
        .await
        .unwrap();
    }
    let old = listener_pids(&a.pool).await;
    for pid in &old {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&a.pool)
            .await
            .unwrap();
    }
    wait_for(|| async {
        let now = listener_pids(&a.pool).await;
        now.len() == 2 && now.iter().all(|p| !old.contains(p))
    })
    .await;

    let db = stored(&a.pool).await;
    for s in subscribers {
        let (user, via, ended, refused) = (s.user.clone(), s.via, s.ended(), s.refused());
        let target = last_seq(&a.pool, &user).await;
        assert_eq!(target, db[&user].len() as i64);
        let got = s.finish(target).await;
        assert_eq!(got, db[&user], "{user} over {via:?}");
        if !matches!(via, Via::Poll) {
            assert_eq!(
                (ended, refused),
                (0, 0),
                "{user} over {via:?}: a lost listener must not break streams"
            );
        }
    }
}
