//! The wake-up listener: what an instance hears of commits, its own included,
//! and what it does when its LISTEN connection dies without a word.

use serde_json::json;

use crate::support::tcp_proxy::FreezableProxy;
use crate::support::{TestApp, data};

/// A commit whose outcome this instance never learned (the commit succeeded
/// but the connection broke before the answer): its streams were not woken
/// in-process, so its own NOTIFY must wake them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_still_reaches_this_instances_streams() {
    let app = TestApp::spawn().await;
    let first = app.publish(&["ida"], "seen through the normal path").await;
    let mut stream = app.sse("ida", Some("0"), None).await;
    assert_eq!(data(&stream.next().await.unwrap())["id"], first[0]["id"]);

    // The same statements a publish of this instance runs, committed behind
    // its back: seq reserved under the counter row, the row, the NOTIFY
    // signed with this instance's id.
    let me = app.stats().await["instance"].as_str().unwrap().to_owned();
    let mut tx = app.pool.begin().await.unwrap();
    let seq: i64 = sqlx::query_scalar(
        "UPDATE users SET last_seq = last_seq + 1 WHERE user_id = 'ida' RETURNING last_seq",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO notifications (id, user_id, seq, title, created_at) VALUES ($1, 'ida', $2, 'lost answer', now())",
    )
    .bind(id)
    .bind(seq)
    .execute(&mut *tx)
    .await
    .unwrap();
    let payload = json!({"i": me, "w": [["ida", seq]]}).to_string();
    sqlx::query("SELECT pg_notify('herald_events', $1)")
        .bind(&payload)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let event = stream.next().await.expect("the stream is still open");
    assert_eq!(event.event, "notification");
    assert_eq!(event.id, seq.to_string());
    assert_eq!(data(&event)["id"], id.to_string());
}

/// `url` with its host replaced by the proxy on loopback.
fn through_proxy(url: &str, port: u16) -> String {
    let mut url = reqwest::Url::parse(url).unwrap();
    let others: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "host")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(port)).unwrap();
    url.set_query(None);
    if !others.is_empty() {
        url.query_pairs_mut().extend_pairs(others);
    }
    url.to_string()
}

/// An instance whose LISTEN connection goes silent (the path is frozen: no
/// FIN, no reset) notices within its check period, reconnects, and its
/// streams get what other instances committed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_listener_is_noticed_and_its_streams_catch_up() {
    let direct = crate::support::fresh_database().await;
    let socket_dir = reqwest::Url::parse(&direct)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| std::path::PathBuf::from(v.into_owned()))
        .expect("the test server listens on a Unix socket");
    let proxy = FreezableProxy::start(socket_dir).await;
    let a = TestApp::spawn_on(&through_proxy(&direct, proxy.port), |s| {
        s.database.listener_check_ms = 300;
    })
    .await;
    let b = TestApp::spawn_on(&direct, |_| {}).await;

    let mut on_a = a.sse("lia", None, None).await;
    let first = b.publish(&["lia"], "heard through LISTEN").await;
    assert_eq!(data(&on_a.next().await.unwrap())["id"], first[0]["id"]);

    proxy.freeze_listeners();
    let second = b.publish(&["lia"], "sent while the path is frozen").await;
    let event = on_a.next().await.expect("the stream is still open");
    assert_eq!(data(&event)["id"], second[0]["id"]);
    assert_eq!(event.id, second[0]["seq"].to_string());
}
