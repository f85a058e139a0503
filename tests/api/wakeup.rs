//! The wake-up payload is written in two places: `live::wakeup` in Rust, and
//! the publish statement, which builds it in SQL so the seqs it reserves need
//! no second round trip. This test holds the SQL side to the Rust side: it
//! listens on the channel itself and decodes what publishing sends with the
//! Rust decoder.

use std::collections::BTreeMap;
use std::time::Duration;

use herald::db::events::CHANNEL;
use herald::live::wakeup;
use serde_json::{Value, json};
use sqlx::postgres::PgListener;

use crate::support::TestApp;

#[tokio::test]
async fn payloads_built_in_sql_decode_with_the_rust_decoder_and_fit_in_a_notify() {
    let app = TestApp::spawn().await;
    let mut listener = PgListener::connect(&app.db_url).await.unwrap();
    listener.listen(CHANNEL).await.unwrap();

    // Enough recipients to need several payloads, with ids that need JSON
    // escaping: quotes, backslashes, control-free Unicode, `%`, `/`.
    let users: Vec<String> = (0..1500)
        .map(|i| format!("user-{i}-\"q\"\\ü✓/%{}", "x".repeat(i % 40)))
        .collect();
    let response = app
        .post_notification(&json!({"recipients": users, "title": "wake"}))
        .await;
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.unwrap();
    let expected: BTreeMap<String, i64> = answer["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["user_id"].as_str().unwrap().to_owned(),
                n["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(expected.len(), users.len());

    let mut woken = BTreeMap::new();
    let mut payloads = 0;
    while woken.len() < expected.len() {
        let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("every recipient's wake-up arrives")
            .unwrap();
        assert!(n.payload().len() < 8000, "{} bytes", n.payload().len());
        let decoded = wakeup::decode(n.payload()).expect("the Rust decoder reads it");
        // Exactly what the Rust encoder writes for the same wake-ups.
        assert_eq!(
            wakeup::encode(&decoded.instance, decoded.wakes.clone()),
            vec![n.payload().to_owned()]
        );
        assert!(decoded.kicks.is_empty());
        for (user, seq) in decoded.wakes {
            assert!(woken.insert(user, seq).is_none(), "one wake-up per user");
        }
        payloads += 1;
    }
    assert_eq!(woken, expected);
    assert!(payloads > 1, "the recipients needed several payloads");
}
