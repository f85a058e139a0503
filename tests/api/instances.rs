//! Several instances on one database: wake-ups through LISTEN/NOTIFY, and
//! catch-up when the listening connection is lost.

use crate::support::{TestApp, data, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_on_one_instance_reaches_a_stream_on_another() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.db_url, |_| {}).await;
    let mut on_b = b.sse("zoe", None, None).await;
    let items = a.publish(&["zoe"], "from a").await;
    let event = on_b.next().await.unwrap();
    assert_eq!(data(&event)["id"], items[0]["id"]);
    // And the other way round, with a state change.
    let mut on_a = a.sse("zoe", Some("1"), None).await;
    let id = items[0]["id"].as_str().unwrap();
    assert_eq!(
        b.post_as("zoe", &format!("/v1/me/notifications/{id}/read"))
            .await
            .status(),
        200
    );
    assert_eq!(on_a.next().await.unwrap().event, "read");
    assert_eq!(on_b.next().await.unwrap().event, "read");
}

async fn listener_pids(app: &TestApp) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'herald-listener' AND datname = current_database()",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_catch_up_when_the_listener_connection_comes_back() {
    let app = TestApp::spawn().await;
    app.publish(&["yan"], "before").await;
    // Replay seq 1 first: once it arrives, the stream's first read of the
    // log is over and only a wake-up can make it read again.
    let mut stream = app.sse("yan", Some("0"), None).await;
    assert_eq!(stream.next().await.unwrap().id, "1");

    // An event whose wake-up is lost: committed without NOTIFY, as if it
    // had been sent while the listener was away.
    sqlx::query("UPDATE users SET last_seq = 2 WHERE user_id = 'yan'")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO notifications (id, user_id, seq, title, created_at)
         VALUES ('00000000-0000-7000-8000-000000000042', 'yan', 2, 'missed wake-up', now())",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    assert!(
        stream
            .next_within(std::time::Duration::from_millis(300))
            .await
            .is_err(),
        "nothing can wake the stream yet"
    );

    let old = listener_pids(&app).await;
    assert_eq!(old.len(), 1);
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(old[0])
        .execute(&app.pool)
        .await
        .unwrap();
    let event = stream.next().await.unwrap();
    assert_eq!(
        (event.id.as_str(), data(&event)["title"].as_str()),
        ("2", Some("missed wake-up"))
    );
    wait_for(|| async { listener_pids(&app).await.iter().any(|p| !old.contains(p)) }).await;
    // Live delivery works again through the new listener.
    app.publish(&["yan"], "after").await;
    assert_eq!(stream.next().await.unwrap().id, "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_catches_up_after_its_listener_is_killed() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.db_url, |_| {}).await;
    let mut on_b = b.sse("xia", Some("0"), None).await;
    let pids = listener_pids(&a).await;
    assert_eq!(pids.len(), 2);
    for pid in &pids {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&a.pool)
            .await
            .unwrap();
    }
    // Published while the listeners may be down: delivered either way.
    let items = a.publish(&["xia"], "during the outage").await;
    assert_eq!(data(&on_b.next().await.unwrap())["id"], items[0]["id"]);
}
