//! Scheduled publishes across faults: the real `herald` process killed
//! (`kill -9`) before or while its schedules come due and restarted after,
//! and PostgreSQL down across `deliver_at`. Each schedule is delivered
//! exactly once when the service is back.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use herald::app::embedded_pg::{EmbeddedPostgres, Options};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::{
    Herald, Service, TestApp, assert_problem, fresh_database, scratch_dir_path,
    start_private_postgres, wait_for, wait_within,
};

fn in_ms(ms: i64) -> (DateTime<Utc>, String) {
    // Whole milliseconds, so the moment is exactly what the text says.
    let at = (Utc::now() + chrono::Duration::milliseconds(ms)).trunc_subsecs(3);
    (at, at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

async fn sleep_past(at: DateTime<Utc>, margin: Duration) {
    let left = (at - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + margin).await;
}

async fn create(service: &Service, users: &[&str], title: &str, at: &str) -> String {
    let r = service
        .post_notification(&json!({"recipients": users, "title": title, "deliver_at": at}))
        .await;
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let v: Value = r.json().await.unwrap();
    v["schedule"]["id"].as_str().unwrap().to_owned()
}

async fn status(service: &Service, id: &str) -> String {
    let r = service
        .http
        .get(service.url(&format!("/v1/schedules/{id}")))
        .bearer_auth(service.publisher())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["status"].as_str().unwrap().to_owned()
}

async fn all_delivered(service: &Service, ids: &[String], within: Duration) {
    wait_within("every schedule delivered", within, async || {
        for id in ids {
            if status(service, id).await != "delivered" {
                return false;
            }
        }
        true
    })
    .await;
}

/// How many schedules are in each state, straight from the database.
async fn states(pool: &PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT status, count(*) FROM schedules GROUP BY status ORDER BY status")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The user's log holds exactly `titles`, each once, with seqs 1..=n.
async fn exactly_once(pool: &PgPool, user: &str, titles: &[String]) {
    let log: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, title FROM notifications WHERE user_id = $1 ORDER BY seq")
            .bind(user)
            .fetch_all(pool)
            .await
            .unwrap();
    let seqs: Vec<i64> = log.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=titles.len() as i64).collect::<Vec<_>>(),
        "{user}"
    );
    let mut got: Vec<String> = log.into_iter().map(|(_, t)| t).collect();
    got.sort();
    let mut want = titles.to_vec();
    want.sort();
    assert_eq!(got, want, "{user}: each schedule exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_due_while_the_process_is_dead_are_delivered_once_after_restart() {
    const LATE: usize = 20;
    let db_url = fresh_database().await;
    let pool = PgPool::connect(&db_url).await.unwrap();
    let mut herald = Herald::start(&db_url).await;
    let service = Service::new(herald.base());
    let users = ["kr-1", "kr-2"];

    // Delivered by the first process, before the kill.
    let early = create(&service, &users, "early", &in_ms(800).1).await;
    all_delivered(
        &service,
        std::slice::from_ref(&early),
        Duration::from_secs(10),
    )
    .await;

    let (at, at_text) = in_ms(3000);
    let mut late = Vec::new();
    for i in 0..LATE {
        late.push(create(&service, &users, &format!("late-{i}"), &at_text).await);
    }
    herald.kill().await;
    assert!(Utc::now() < at, "killed before deliver_at");
    sleep_past(at, Duration::from_millis(1500)).await;
    // Due, and nobody there to deliver them.
    assert_eq!(
        states(&pool).await,
        [
            ("delivered".to_owned(), 1),
            ("scheduled".to_owned(), LATE as i64)
        ]
    );

    herald.restart().await;
    all_delivered(&service, &late, Duration::from_secs(20)).await;
    // More rounds of the new process's loop add nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut titles = vec!["early".to_owned()];
    titles.extend((0..LATE).map(|i| format!("late-{i}")));
    for user in users {
        exactly_once(&pool, user, &titles).await;
    }
    assert_eq!(
        states(&pool).await,
        [("delivered".to_owned(), 1 + LATE as i64)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_while_schedules_are_being_delivered_loses_and_repeats_none() {
    const SCHEDULES: usize = 200;
    let db_url = fresh_database().await;
    let pool = PgPool::connect(&db_url).await.unwrap();
    let mut herald = Herald::start(&db_url).await;
    let service = Service::new(herald.base());
    let users = ["km-1", "km-2", "km-3"];
    // Due 10 ms apart over two seconds: delivered over several rounds of
    // the delivery loop (one every 0.5 s).
    let (start, _) = in_ms(4000);
    let mut ids = Vec::new();
    for i in 0..SCHEDULES {
        let at = start + chrono::Duration::milliseconds(10 * i as i64);
        let at = at.to_rfc3339_opts(SecondsFormat::Millis, true);
        ids.push(create(&service, &users, &format!("m-{i:03}"), &at).await);
    }
    // Killed as soon as the first deliveries have committed, while the
    // rest are coming due.
    wait_within(
        "the first deliveries",
        Duration::from_secs(20),
        async || {
            let delivered: i64 =
                sqlx::query_scalar("SELECT count(*) FROM schedules WHERE status = 'delivered'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            delivered > 0
        },
    )
    .await;
    herald.kill().await;
    let at_kill = states(&pool).await;
    assert_eq!(at_kill.len(), 2, "some delivered, some not: {at_kill:?}");
    herald.restart().await;
    all_delivered(&service, &ids, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let titles: Vec<String> = (0..SCHEDULES).map(|i| format!("m-{i:03}")).collect();
    for user in users {
        exactly_once(&pool, user, &titles).await;
    }
    eprintln!("kill during delivery: at the kill {at_kill:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_due_during_a_postgresql_outage_are_delivered_once_after_it() {
    const SCHEDULES: usize = 10;
    let pg = start_private_postgres("fault-schedule-outage");
    pg.create_database("herald").await.unwrap();
    let db_url = pg.url("herald");
    let app = TestApp::spawn_on(&db_url, |_| {}).await;
    let service = Service::of(&app);
    let users = ["po-1", "po-2"];
    let (at, at_text) = in_ms(2500);
    let mut ids = Vec::new();
    for i in 0..SCHEDULES {
        ids.push(create(&service, &users, &format!("o-{i}"), &at_text).await);
    }

    app.pool.close().await;
    pg.stop();
    // Nothing can be scheduled or looked at meanwhile.
    let r = service
        .post_notification(
            &json!({"recipients": users, "title": "t", "deliver_at": in_ms(60_000).1}),
        )
        .await;
    assert_problem(r, 503, "database").await;
    let r = service
        .http
        .get(service.url(&format!("/v1/schedules/{}", ids[0])))
        .bearer_auth(service.publisher())
        .send()
        .await
        .unwrap();
    assert_problem(r, 503, "database").await;
    // The outage spans deliver_at and several rounds of the delivery loop.
    sleep_past(at, Duration::from_millis(2000)).await;

    let pg = EmbeddedPostgres::start(Options {
        data_dir: scratch_dir_path("fault-schedule-outage"),
        fsync: false,
        max_connections: 100,
    })
    .unwrap();
    wait_for(|| async { service.get(None, "/readyz").await.status() == 200 }).await;
    all_delivered(&service, &ids, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let pool = PgPool::connect(&db_url).await.unwrap();
    let titles: Vec<String> = (0..SCHEDULES).map(|i| format!("o-{i}")).collect();
    for user in users {
        exactly_once(&pool, user, &titles).await;
    }
    assert_eq!(
        states(&pool).await,
        [("delivered".to_owned(), SCHEDULES as i64)]
    );
    pool.close().await;
    pg.stop();
}
