//! PostgreSQL going away under open SSE, WebSocket and long-poll
//! connections, and coming back.

use std::time::Duration;

use herald::app::embedded_pg::{EmbeddedPostgres, Options};
use herald::live::connection_stats::Transport;
use serde_json::json;
use sqlx::PgPool;

use super::{Subscriber, Via, stored};
use crate::support::{
    Service, TestApp, assert_problem, scratch_dir_path, start_private_postgres, wait_for,
    wait_within,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_ride_out_a_postgresql_outage_and_see_every_event_once() {
    const AFTER: usize = 20;
    let pg = start_private_postgres("fault-outage");
    pg.create_database("herald").await.unwrap();
    let db_url = pg.url("herald");
    let app = TestApp::spawn_on(&db_url, |_| {}).await;
    let stats = &app.handle.state().hub.stats;
    let service = Service::of(&app);
    let users = ["out-sse", "out-ws", "out-poll"];
    service.publish(&users, "before").await;
    let subscribers = [
        Subscriber::start(&service, users[0], Via::Sse),
        Subscriber::start(&service, users[1], Via::Ws),
        Subscriber::start(&service, users[2], Via::Poll),
    ];
    wait_within(
        "the first event everywhere",
        Duration::from_secs(20),
        async || subscribers.iter().all(|s| s.seen() == 1),
    )
    .await;
    // An SSE stream, a WebSocket and a waiting long-poll are open.
    wait_within(
        "three open connections",
        Duration::from_secs(20),
        async || {
            stats.connections(Transport::Sse) == 1
                && stats.connections(Transport::Ws) == 1
                && stats.connections(Transport::Poll) == 1
        },
    )
    .await;

    app.pool.close().await;
    pg.stop();

    let r = service
        .post_notification(&json!({"recipients": users, "title": "during the outage"}))
        .await;
    assert_problem(r, 503, "database").await;
    let r = service.get(Some(users[0]), "/v1/me/notifications").await;
    assert_problem(r, 503, "database").await;
    let r = service.get(None, "/readyz").await;
    assert_problem(r, 503, "database").await;
    let r = service.get(Some("out-new"), "/v1/me/stream").await;
    assert_problem(r, 503, "database").await;
    let r = service.get(None, "/healthz").await;
    assert_eq!(r.status(), 200);
    // The waiting poll runs out of time and cannot read the log: it answers
    // 503, and its client keeps retrying (also answered 503) until the
    // database is back. The outage lasts at least that long.
    let poller = &subscribers[2];
    wait_within("the poll's 503", Duration::from_secs(20), async || {
        poller.refused() >= 2
    })
    .await;
    let r = service
        .post_notification(&json!({"recipients": users, "title": "during the outage"}))
        .await;
    assert_problem(r, 503, "database").await;

    let pg = EmbeddedPostgres::start(Options {
        data_dir: scratch_dir_path("fault-outage"),
        fsync: false,
        max_connections: 100,
    })
    .unwrap();
    wait_for(|| async { service.get(None, "/readyz").await.status() == 200 }).await;
    for i in 0..AFTER {
        service.publish(&users, &format!("after-{i}")).await;
    }

    let pool = PgPool::connect(&db_url).await.unwrap();
    let db = stored(&pool).await;
    let mut titles = vec!["before".to_owned()];
    titles.extend((0..AFTER).map(|i| format!("after-{i}")));
    for s in subscribers {
        let (user, via, ended, refused) = (s.user.clone(), s.via, s.ended(), s.refused());
        let got = s.finish(1 + AFTER as i64).await;
        assert_eq!(got, db[&user], "{user} over {via:?}");
        let seqs: Vec<i64> = got.iter().map(|g| g.seq).collect();
        assert_eq!(seqs, (1..=1 + AFTER as i64).collect::<Vec<_>>(), "{user}");
        let got_titles: Vec<&str> = got.iter().map(|g| g.title.as_str()).collect();
        assert_eq!(got_titles, titles, "{user}");
        eprintln!("outage: {user} over {via:?}: {ended} stream ends, {refused} refused attempts");
    }
    pool.close().await;
    pg.stop();
}
