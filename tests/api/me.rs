//! A user's message center over REST.

use serde_json::{Value, json};

use crate::support::{TestApp, assert_problem, data};

fn seqs(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn list_pages_newest_first_with_last_seq_and_unread_count() {
    let app = TestApp::spawn().await;
    for i in 1..=5 {
        let category = if i % 2 == 0 { "even" } else { "odd" };
        let r = app
            .post_notification(
                &json!({"recipients": ["u"], "title": format!("n{i}"), "category": category}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let first = app.list("u", "?limit=2").await;
    assert_eq!(seqs(&first), [5, 4]);
    assert_eq!(
        (
            first["next_before"].as_i64(),
            first["last_seq"].as_i64(),
            first["unread_count"].as_i64()
        ),
        (Some(4), Some(5), Some(5))
    );
    let second = app.list("u", "?limit=2&before=4").await;
    assert_eq!(seqs(&second), [3, 2]);
    let last = app.list("u", "?limit=2&before=2").await;
    assert_eq!(seqs(&last), [1]);
    assert_eq!(last["next_before"], Value::Null);
    assert_eq!(seqs(&app.list("u", "?category=even").await), [4, 2]);

    let id = first["items"][0]["id"].as_str().unwrap();
    assert_eq!(
        app.post_as("u", &format!("/v1/me/notifications/{id}/read"))
            .await
            .status(),
        200
    );
    let unread = app.list("u", "?status=unread").await;
    assert_eq!(seqs(&unread), [4, 3, 2, 1]);
    assert_eq!(
        (unread["unread_count"].as_i64(), unread["last_seq"].as_i64()),
        (Some(4), Some(6))
    );
    assert_eq!(seqs(&app.list("u", "?status=read").await), [5]);

    let empty = app.list("nobody", "").await;
    assert_eq!(
        empty,
        json!({"items": [], "next_before": null, "last_seq": 0, "unread_count": 0, "unseen_count": 0})
    );
}

#[tokio::test]
async fn bad_list_queries_are_400() {
    let app = TestApp::spawn().await;
    for (query, detail) in [
        ("?status=maybe", "status must be"),
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=ten", "invalid query"),
        ("?before=0", "before"),
    ] {
        assert_problem(
            app.get_as("u", &format!("/v1/me/notifications{query}"))
                .await,
            400,
            detail,
        )
        .await;
    }
}

#[tokio::test]
async fn a_notification_can_be_read_unread_and_deleted_by_its_owner_only() {
    let app = TestApp::spawn().await;
    let items = app.publish(&["owner", "stranger"], "private").await;
    let id = items[0]["id"].as_str().unwrap();
    let path = format!("/v1/me/notifications/{id}");

    let got: Value = app.get_as("owner", &path).await.json().await.unwrap();
    assert_eq!(
        (got["id"].as_str(), got["read_at"].clone()),
        (Some(id), Value::Null)
    );

    // Another user's id is simply unknown to them, for every operation.
    assert_problem(
        app.get_as("stranger", &path).await,
        404,
        "no such notification",
    )
    .await;
    assert_problem(
        app.post_as("stranger", &format!("{path}/read")).await,
        404,
        "no such",
    )
    .await;
    let del = app
        .http
        .delete(app.url(&path))
        .bearer_auth(app.token("stranger", &[]))
        .send()
        .await
        .unwrap();
    assert_problem(del, 404, "no such").await;
    assert_problem(
        app.get_as("owner", "/v1/me/notifications/not-a-uuid").await,
        400,
        "invalid path",
    )
    .await;

    let read: Value = app
        .post_as("owner", &format!("{path}/read"))
        .await
        .json()
        .await
        .unwrap();
    assert!(read["read_at"].is_string());
    // Reading again changes nothing and emits no event.
    let again: Value = app
        .post_as("owner", &format!("{path}/read"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, read);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(events, 1);

    let unread: Value = app
        .post_as("owner", &format!("{path}/unread"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unread["read_at"], Value::Null);

    let del = app
        .http
        .delete(app.url(&path))
        .bearer_auth(app.token("owner", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_problem(app.get_as("owner", &path).await, 404, "no such").await;
    // The stranger's copy is untouched.
    assert_eq!(
        app.list("stranger", "").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn read_all_marks_everything_up_to_the_current_seq() {
    let app = TestApp::spawn().await;
    app.publish(&["r"], "one").await;
    app.publish(&["r"], "two").await;
    let r: Value = app
        .post_as("r", "/v1/me/notifications/read-all")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (r["up_to_seq"].as_i64(), r["updated"].as_i64()),
        (Some(2), Some(2))
    );
    let page = app.list("r", "").await;
    assert_eq!(
        (page["unread_count"].as_i64(), page["last_seq"].as_i64()),
        (Some(0), Some(3))
    );
    // Nothing left: still its event (v2: a bulk operation always emits one,
    // so every device hears that it ran).
    let r: Value = app
        .post_as("r", "/v1/me/notifications/read-all")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (r["updated"].as_i64(), r["up_to_seq"].as_i64()),
        (Some(0), Some(3))
    );
    assert_eq!(r["category"], Value::Null);
    assert_eq!(app.list("r", "").await["last_seq"], 4);
}

#[tokio::test]
async fn expired_notifications_leave_with_an_event() {
    let app = TestApp::spawn().await;
    let items = app.publish(&["e"], "soon gone").await;
    app.publish(&["e"], "stays").await;
    sqlx::query(
        "UPDATE notifications SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind(items[0]["id"].as_str().unwrap())
    .execute(&app.pool)
    .await
    .unwrap();
    let mut stream = app.sse("e", Some("0"), None).await;
    let expired = loop {
        let event = stream.next().await.unwrap();
        if event.event == "expired" {
            break event;
        }
    };
    assert_eq!(
        (expired.id.as_str(), data(&expired)),
        (
            "3",
            json!({"id": items[0]["id"], "counts": {"unread": 1, "unseen": 1}})
        )
    );
    let page = app.list("e", "").await;
    assert_eq!(seqs(&page), [2]);
    assert_eq!(page["unread_count"], 1);
    let gone = app
        .get_as(
            "e",
            &format!("/v1/me/notifications/{}", items[0]["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(gone.status(), 404);
    let mut replay = app.sse("e", Some("0"), None).await;
    let ids = [
        replay.next().await.unwrap().id,
        replay.next().await.unwrap().id,
    ];
    assert_eq!(ids, ["2", "3"], "replay: the remaining one, then `expired`");
}
