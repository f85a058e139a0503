//! Batches: all or nothing, one answer per element in order, the limits,
//! idempotency over the whole batch, and seq order next to single
//! publishes.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{Value, json};

use super::{call, expect, last_seq, log_of, targeting_rows};
use crate::support::{TestApp, assert_problem, data};

async fn batch(app: &TestApp, body: &Value) -> reqwest::Response {
    call(
        app,
        Method::POST,
        "/v1/notifications/batch",
        &app.publisher(),
        Some(body),
    )
    .await
}

async fn batch_with_key(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/notifications/batch"))
        .bearer_auth(app.publisher())
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn elements(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"recipients": ["b-1", format!("b-x{i}")], "title": format!("e{i}")}))
        .collect()
}

#[tokio::test]
async fn one_invalid_element_refuses_the_whole_batch() {
    let app = TestApp::spawn().await;
    app.publish(&["b-1"], "before").await;
    let rows = app.row_counts().await;
    let invalid: Vec<(Value, &str)> = vec![
        (json!({"recipients": ["b-1"], "title": ""}), "title"),
        (json!({"recipients": [], "title": "t"}), "recipients"),
        (json!({"title": "t"}), "a publish needs"),
        (
            json!({"recipients": ["b-1"], "title": "t", "colour": 1}),
            "colour",
        ),
        (
            json!({"recipients": ["b-1"], "title": "t", "topics": ["x"]}),
            "topics",
        ),
        (
            json!({"recipients": ["b-1"], "title": "t", "deliver_at": super::in_ms(60_000).1}),
            "deliver_at",
        ),
        (
            json!({"recipients": ["b-1"], "title": "t", "deliver_at": super::in_ms(-60_000).1}),
            "deliver_at",
        ),
        (json!({"topics": ["x"], "title": "t"}), "topics"),
        (json!("not an object"), ""),
    ];
    for (element, detail) in invalid {
        let mut list = elements(10);
        list[7] = element;
        let r = batch(&app, &json!({"notifications": list})).await;
        let problem = assert_problem(r, 422, "notifications[7]").await;
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{problem}"
        );
    }
    assert_eq!(app.row_counts().await, rows, "nothing created");
    assert_eq!(last_seq(&app, "b-1").await, 1);
    assert_eq!(last_seq(&app, "b-x0").await, 0);
    assert_eq!(targeting_rows(&app.pool).await, (0, 0, 0));
}

#[tokio::test]
async fn the_batch_as_a_whole_is_checked() {
    let app = TestApp::spawn().await;
    let rows = app.row_counts().await;
    let half: Vec<String> = (0..5_001).map(|i| format!("h{i}")).collect();
    let keyed = json!({"recipients": ["k"], "title": "t", "key": "same"});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"notifications": []}), "1 to 1000"),
        (json!({"notifications": elements(1001)}), "1 to 1000"),
        (
            json!({"notifications": [
                {"recipients": half, "title": "a"},
                {"recipients": half, "title": "b"},
            ]}),
            "10000 recipients",
        ),
        (
            json!({"notifications": [keyed, {"recipients": ["j", "k"], "title": "u", "key": "same"}]}),
            "notifications[1]",
        ),
        (json!({"notifications": elements(2), "extra": 1}), "extra"),
        (json!({}), "notifications"),
    ];
    for (body, detail) in cases {
        assert_problem(batch(&app, &body).await, 422, detail).await;
    }
    assert_eq!(app.row_counts().await, rows);
    // 10,000 recipients in all is still one batch.
    let ten: Vec<String> = (0..5_000).map(|i| format!("h{i}")).collect();
    let r = batch(
        &app,
        &json!({"notifications": [
            {"recipients": ten, "title": "a"},
            {"recipients": ten, "title": "b"},
        ]}),
    )
    .await;
    let answer = expect(r, 201).await;
    assert_eq!(
        answer["results"][1]["notifications"]
            .as_array()
            .unwrap()
            .len(),
        5_000
    );
    assert_eq!(last_seq(&app, "h4999").await, 2);
}

#[tokio::test]
async fn results_come_in_element_order_with_their_own_skipped() {
    let app = TestApp::spawn().await;
    super::set_preference(&app, "opted", "promo", false).await;
    app.publish(&["b"], "first").await;
    let mut live = app.sse("b", None, None).await;
    let r = batch(
        &app,
        &json!({"notifications": [
            {"recipients": ["b", "a", "opted"], "title": "n0", "category": "promo"},
            {"recipients": ["opted"], "title": "n1", "category": "promo"},
            {"recipients": ["a", "b", "a"], "title": "n2", "body": "x", "data": {"i": 2}},
            {"recipients": ["opted", "c"], "title": "n3", "category": "other"},
        ]}),
    )
    .await;
    let answer = expect(r, 201).await;
    let results = answer["results"].as_array().unwrap();
    assert_eq!(answer.as_object().unwrap().len(), 1);
    let shape: Vec<(Vec<(String, i64)>, Value)> = results
        .iter()
        .map(|r| {
            let items = r["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["user_id"].as_str().unwrap().to_owned(),
                        i["seq"].as_i64().unwrap(),
                    )
                })
                .collect();
            (items, r["skipped"].clone())
        })
        .collect();
    let s = |u: &str, n: i64| (u.to_owned(), n);
    let opted = json!([{"user_id": "opted", "reason": "preferences"}]);
    assert_eq!(
        shape,
        vec![
            (vec![s("b", 2), s("a", 1)], opted.clone()),
            (vec![], opted.clone()),
            (vec![s("a", 2), s("b", 3)], json!([])),
            (vec![s("opted", 2), s("c", 1)], json!([])),
        ]
    );
    // The answer's ids are the stored notifications, in seq order live.
    let events = live.take(2).await;
    let got: Vec<(String, Value, Value)> = events
        .iter()
        .map(|e| {
            (
                e.id.clone(),
                data(e)["id"].clone(),
                data(e)["title"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "2".to_owned(),
                results[0]["notifications"][0]["id"].clone(),
                json!("n0")
            ),
            (
                "3".to_owned(),
                results[2]["notifications"][1]["id"].clone(),
                json!("n2")
            ),
        ]
    );
    assert_eq!(data(&events[1])["data"], json!({"i": 2}));
    assert_eq!(last_seq(&app, "opted").await, 2);
}

#[tokio::test]
async fn an_idempotency_key_covers_the_whole_batch() {
    let app = TestApp::spawn().await;
    let body = json!({"notifications": [
        {"recipients": ["i-a", "i-b"], "title": "one"},
        {"recipients": ["i-b"], "title": "two"},
    ]});
    let first = expect(batch_with_key(&app, "batch-1", &body).await, 201).await;
    let rows = app.row_counts().await;
    // The same request in another layout is the same request.
    let reordered: Value = serde_json::from_str(
        r#"{"notifications": [{"title": "one", "recipients": ["i-a", "i-b"]},
                              {"title": "two", "recipients": ["i-b"]}]}"#,
    )
    .unwrap();
    for again in [&body, &reordered] {
        let retry = expect(batch_with_key(&app, "batch-1", again).await, 201).await;
        assert_eq!(retry, first);
    }
    assert_eq!(app.row_counts().await, rows, "a retry creates nothing");
    let other = json!({"notifications": [{"recipients": ["i-a"], "title": "one"}]});
    assert_problem(
        batch_with_key(&app, "batch-1", &other).await,
        422,
        "Idempotency-Key",
    )
    .await;
    assert_eq!(app.row_counts().await, rows);
    assert_eq!(last_seq(&app, "i-b").await, 2);
    // The key is the batch's: a single publish may use another one freely,
    // and the same key on a single publish is a different request.
    let r = app
        .http
        .post(app.url("/v1/notifications"))
        .bearer_auth(app.publisher())
        .header("Idempotency-Key", "batch-1")
        .json(&json!({"recipients": ["i-a", "i-b"], "title": "one"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "Idempotency-Key").await;
    assert_eq!(app.row_counts().await, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_single_publishes_to_one_user_keep_seq_order_and_uniqueness() {
    const TASKS: usize = 8;
    const ROUNDS: usize = 15;
    const PER_BATCH: usize = 4;
    let app = TestApp::spawn().await;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (http, base, token) = (app.http.clone(), app.address.clone(), app.publisher());
        tasks.push(tokio::spawn(async move {
            // (id, seq) of every notification made for the target.
            let mut made: Vec<(String, i64)> = Vec::new();
            for r in 0..ROUNDS {
                let list: Vec<Value> = (0..PER_BATCH)
                    .map(|e| {
                        json!({"recipients": [format!("other-{t}"), "target"],
                               "title": format!("b{t}-{r}-{e}")})
                    })
                    .collect();
                let answer: Value = http
                    .post(format!("{base}/v1/notifications/batch"))
                    .bearer_auth(&token)
                    .json(&json!({"notifications": list}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let mut seqs = Vec::new();
                for result in answer["results"].as_array().unwrap() {
                    let item = &result["notifications"][1];
                    assert_eq!(item["user_id"], "target");
                    seqs.push(item["seq"].as_i64().unwrap());
                    made.push((
                        item["id"].as_str().unwrap().to_owned(),
                        item["seq"].as_i64().unwrap(),
                    ));
                }
                assert!(
                    seqs.windows(2).all(|w| w[0] < w[1]),
                    "a batch's elements take the user's seqs in element order: {seqs:?}"
                );
                let single: Value = http
                    .post(format!("{base}/v1/notifications"))
                    .bearer_auth(&token)
                    .json(&json!({"recipients": ["target"], "title": format!("s{t}-{r}")}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let item = &single["notifications"][0];
                made.push((
                    item["id"].as_str().unwrap().to_owned(),
                    item["seq"].as_i64().unwrap(),
                ));
            }
            made
        }));
    }
    let mut answered: HashMap<String, i64> = HashMap::new();
    for t in tasks {
        answered.extend(t.await.unwrap());
    }
    let total = (TASKS * ROUNDS * (PER_BATCH + 1)) as i64;
    assert_eq!(answered.len() as i64, total);
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT id::text, seq FROM notifications WHERE user_id = 'target' ORDER BY seq",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let seqs: Vec<i64> = stored.iter().map(|(_, s)| *s).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "every seq once");
    for (id, seq) in &stored {
        assert_eq!(answered.get(id), Some(seq), "the answer named {id}'s seq");
    }
    assert_eq!(log_of(&app.pool, "target").await.len() as i64, total);
    // A replay from the start delivers them in the same order.
    let mut replay = app.sse("target", Some("0"), None).await;
    let replayed: Vec<i64> = replay
        .take(total as usize)
        .await
        .iter()
        .map(|e| e.id.parse().unwrap())
        .collect();
    assert_eq!(replayed, seqs);
}
