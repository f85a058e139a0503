//! Health, readiness, unknown routes, and behaviour while the database is down.

use serde_json::json;

use crate::support::{TestApp, assert_problem, start_private_postgres, wait_for};

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let r = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap()
        ),
        (200, json!({"status": "ok"}))
    );
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn unknown_routes_are_problem_404() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .get(app.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "no route for GET /v1/nothing-here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_requests_answer_503_and_nothing_is_half_written() {
    let pg = start_private_postgres("outage");
    pg.create_database("herald").await.unwrap();
    let url = pg.url("herald");
    let app = TestApp::spawn_on(&url, |_| {}).await;
    app.publish(&["u"], "before").await;
    let data_dir = crate::support::scratch_dir_path("outage");
    app.pool.close().await;
    pg.stop();

    let r = app
        .post_notification(&json!({"recipients": ["u", "v"], "title": "during"}))
        .await;
    assert_problem(r, 503, "database").await;
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_problem(r, 503, "database").await;
    let r = app.get_as("u", "/v1/me/notifications").await;
    assert_problem(r, 503, "database").await;
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Back up: the service recovers without a restart, and the failed
    // publish left nothing behind.
    let pg = herald::app::embedded_pg::EmbeddedPostgres::start(herald::app::embedded_pg::Options {
        data_dir,
        fsync: false,
        max_connections: 100,
    })
    .unwrap();
    wait_for(|| async {
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    let page = app.list("u", "").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.list("v", "").await["last_seq"], 0);
    app.publish(&["u"], "after").await;
    assert_eq!(app.list("u", "").await["last_seq"], 2);
    pg.stop();
}

/// The service's sessions carry the configured statement and
/// idle-in-transaction timeouts, so a stuck statement or a forgotten
/// transaction cannot hold a user's row lock for ever.
#[tokio::test]
async fn the_service_pool_bounds_statements_and_idle_transactions() {
    let app = TestApp::spawn_with(|s| {
        s.database.statement_timeout_ms = 1234;
        s.database.idle_in_transaction_timeout_ms = 5678;
    })
    .await;
    let pool = &app.handle.state().pool;
    let statement: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(pool)
        .await
        .unwrap();
    let idle: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!((statement.as_str(), idle.as_str()), ("1234ms", "5678ms"));
    let timed_out = sqlx::query("SELECT pg_sleep(2)").execute(pool).await;
    let code = timed_out
        .unwrap_err()
        .as_database_error()
        .and_then(|e| e.code().map(|c| c.into_owned()));
    assert_eq!(code.as_deref(), Some("57014"), "query_canceled");
}

/// Connections the application's pool holds open to this test's database.
async fn app_connections(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name = 'herald' AND datname = current_database()",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_readiness_probes_checks_the_database_one_at_a_time() {
    let app = TestApp::spawn_with(|s| s.database.max_connections = 40).await;
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let before = app_connections(&app).await;

    // Each probe taking its own connection would open the pool to its
    // maximum (40); one check at a time needs the connection already open.
    // The background jobs may, by chance, each hold one more meanwhile:
    // heartbeat, the listener's probe, the broadcaster, retention, the
    // timers, the schedules and the metrics upkeep. That is 7 at most.
    const BACKGROUND_JOBS: i64 = 7;
    let probes = (0..300).map(|_| app.http.get(app.url("/readyz")).send());
    let answers = futures_util::future::join_all(probes).await;
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.json::<serde_json::Value>().await.unwrap(),
            json!({"status": "ready"})
        );
    }
    let after = app_connections(&app).await;
    assert!(
        after <= before + BACKGROUND_JOBS,
        "{before} connections before the probes, {after} after"
    );
}
