//! The admin endpoints: statistics, any user's notifications, disconnects.

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::paths::enc;
use crate::support::{TestApp, assert_problem, data, wait_for};

async fn admin_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(app.url(path))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap()
}

async fn admin_list(app: &TestApp, user: &str, query: &str) -> Value {
    let r = admin_get(
        app,
        &format!("/v1/admin/users/{}/notifications{query}", enc(user)),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    r.json().await.unwrap()
}

async fn admin_delete(app: &TestApp, user: &str, id: &str) -> reqwest::Response {
    app.http
        .delete(app.url(&format!("/v1/admin/users/{}/notifications/{id}", enc(user))))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap()
}

async fn disconnect(app: &TestApp, user: &str) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/v1/admin/users/{}/disconnect", enc(user))))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_admin_endpoint_needs_the_admin_scope() {
    let app = TestApp::spawn().await;
    let item = app.publish(&["victim"], "keep me").await.remove(0);
    let id = item["id"].as_str().unwrap();
    let mut stream = app.sse("victim", Some("1"), None).await;
    let before = app.row_counts().await;
    let endpoints = [
        ("GET", "/v1/admin/stats".to_owned()),
        ("GET", "/v1/admin/users/victim/notifications".to_owned()),
        (
            "DELETE",
            format!("/v1/admin/users/victim/notifications/{id}"),
        ),
        ("POST", "/v1/admin/users/victim/disconnect".to_owned()),
        ("POST", "/v1/broadcasts".to_owned()),
        ("GET", "/v1/admin/users/victim/preferences".to_owned()),
        (
            "PUT",
            "/v1/admin/users/victim/preferences/categories/news".to_owned(),
        ),
    ];
    let user = app.token("victim", &[]);
    let publisher = app.publisher();
    for (method, path) in &endpoints {
        let request = |token: Option<&str>| {
            let mut r = app
                .http
                .request(method.parse().unwrap(), app.url(path))
                .json(&json!({ "title": "everyone" }));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r
        };
        let r = request(None).send().await.unwrap();
        assert_eq!(r.headers()["www-authenticate"], "Bearer", "{method} {path}");
        assert_problem(r, 401, "Bearer").await;
        for token in [&user, &publisher] {
            let r = request(Some(token)).send().await.unwrap();
            assert_problem(r, 403, "needs the `admin` scope").await;
        }
    }
    assert_eq!(app.row_counts().await, before);
    let broadcasts: i64 = sqlx::query_scalar("SELECT count(*) FROM broadcasts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(broadcasts, 0);
    // Nothing was deleted and the stream was not disconnected.
    assert_eq!(app.list("victim", "").await["items"][0]["id"], id);
    let next = app.publish(&["victim"], "still connected").await.remove(0);
    assert_eq!(data(&stream.next().await.unwrap())["id"], next["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_exact_for_a_known_scenario() {
    // A gone client is noticed when a heartbeat cannot be written.
    let app = TestApp::spawn_with(|s| s.server.heartbeat_secs = 1).await;
    let instance = app.handle.state().instance.clone();

    let mut ann = app.sse("ann", None, None).await;
    let mut ben = app.sse("ben", None, None).await;
    wait_for(|| async { app.stats().await["connections"]["sse"] == 2 }).await;
    let s = app.stats().await;
    assert_eq!(s["instance"], instance.as_str());
    assert_eq!(s["connections"], json!({"sse": 2, "ws": 0, "poll": 0}));
    assert_eq!(s["users_online"], 2);
    // Opening a stream makes a user known.
    assert_eq!(s["known_users"], 2);
    assert_eq!(s["notifications_stored"], 0);
    assert_eq!(s["events_stored"], 0);
    assert_eq!(s["publishes_since_start"], 0);
    assert_eq!(s["deliveries_since_start"], 0);
    assert_eq!(
        s["retention"],
        json!({"events_days": app.settings.retention.events_days, "oldest_event_at": null, "max_purged_seq": 0})
    );
    let instances = s["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{s}");
    assert_eq!(instances[0]["id"], instance.as_str());
    for field in ["started_at", "last_seen_at"] {
        let t = instances[0][field].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(t).unwrap();
    }

    // Three publish requests, four notifications; ann sees two, ben one.
    let first = app.publish(&["ann"], "one").await.remove(0);
    app.publish(&["ben"], "two").await;
    app.publish(&["ann", "dan"], "three").await;
    assert_eq!(ann.take(2).await.len(), 2);
    assert_eq!(ben.take(1).await.len(), 1);
    // One state change: an event row, delivered to ann's stream.
    let id = first["id"].as_str().unwrap();
    let r = app
        .post_as("ann", &format!("/v1/me/notifications/{id}/read"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(ann.next().await.unwrap().event, "read");
    wait_for(|| async { app.stats().await["deliveries_since_start"] == 4 }).await;
    sqlx::query("UPDATE users SET purged_seq = 7 WHERE user_id = 'ben'")
        .execute(&app.pool)
        .await
        .unwrap();

    let s = app.stats().await;
    assert_eq!(s["publishes_since_start"], 4);
    assert_eq!(s["deliveries_since_start"], 4);
    assert_eq!(s["known_users"], 3);
    assert_eq!(s["notifications_stored"], 4);
    assert_eq!(s["events_stored"], 1);
    assert_eq!(s["retention"]["max_purged_seq"], 7);
    let oldest: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT created_at FROM events WHERE user_id = 'ann'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let reported =
        chrono::DateTime::parse_from_rfc3339(s["retention"]["oldest_event_at"].as_str().unwrap())
            .unwrap();
    assert_eq!(reported, oldest);

    // A second instance: listed by both, with its own connection counters.
    let b = TestApp::spawn_on(&app.db_url, |_| {}).await;
    let other = b.handle.state().instance.clone();
    wait_for(|| async {
        let ids: Vec<Value> = app.stats().await["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].clone())
            .collect();
        ids.len() == 2 && ids.contains(&json!(instance)) && ids.contains(&json!(other))
    })
    .await;
    let on_b = b.stats().await;
    assert_eq!(on_b["instance"], other.as_str());
    assert_eq!(on_b["connections"]["sse"], 0);
    assert_eq!(on_b["users_online"], 0);
    assert_eq!(on_b["publishes_since_start"], 0);
    assert_eq!(on_b["known_users"], 3);
    assert_eq!(on_b["notifications_stored"], 4);

    // A closed stream is no longer counted.
    drop(ben);
    wait_for(|| async {
        let s = app.stats().await;
        s["connections"]["sse"] == 1 && s["users_online"] == 1
    })
    .await;
    // A stopped instance leaves the list.
    b.handle.stop().await;
    wait_for(|| async { app.stats().await["instances"].as_array().unwrap().len() == 1 }).await;
}

/// User ids that need percent-encoding in a path, and the longest allowed.
fn odd_ids() -> Vec<String> {
    vec![
        "team/ops".into(),
        "100%".into(),
        "%2F".into(),
        "名前/ü é".into(),
        "a+b?c#d".into(),
        format!("{}é", "x".repeat(126)),
    ]
}

#[tokio::test]
async fn admin_lists_any_users_notifications_exactly_as_the_user_does() {
    let app = TestApp::spawn().await;
    let ids = odd_ids();
    assert_eq!(ids.last().unwrap().len(), 128);
    for (i, user) in ids.iter().enumerate() {
        for n in 0..=i {
            app.publish(&[user.as_str()], &format!("{user} #{n}")).await;
        }
    }
    for (i, user) in ids.iter().enumerate() {
        let page = admin_list(&app, user, "").await;
        assert_eq!(page, app.list(user, "").await, "{user}");
        assert_eq!(page["items"].as_array().unwrap().len(), i + 1, "{user}");
        assert_eq!(page["last_seq"], i + 1);
        // Only this user's notifications, never another's.
        for item in page["items"].as_array().unwrap() {
            assert!(
                item["title"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{user} #"))
            );
        }
    }
    // The same query parameters, with the same meaning.
    let user = &ids[5];
    let page = admin_list(&app, user, "?limit=2&status=unread").await;
    assert_eq!(page, app.list(user, "?limit=2&status=unread").await);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_before"], 5);
    let older = admin_list(&app, user, "?limit=2&before=5").await;
    assert_eq!(older["items"][0]["seq"], 4);
    // A user nobody published to has an empty page.
    let empty = admin_list(&app, "nobody", "").await;
    assert_eq!(
        empty,
        json!({"items": [], "next_before": null, "last_seq": 0, "unread_count": 0, "unseen_count": 0})
    );
    // The encoded `/` is part of the id: "team" is a different (empty) user.
    assert_eq!(admin_list(&app, "team", "").await["last_seq"], 0);
}

#[tokio::test]
async fn malformed_user_ids_and_queries_answer_400() {
    let app = TestApp::spawn().await;
    let too_long = "x".repeat(129);
    for (segment, detail) in [
        (too_long.as_str(), "1 to 128 bytes"),
        ("%0A", "control characters"),
        ("%FF", "UTF-8"),
        ("a%ZZ", "percent-encoded"),
        ("a%2", "percent-encoded"),
    ] {
        for path in [
            format!("/v1/admin/users/{segment}/notifications"),
            format!(
                "/v1/admin/users/{segment}/notifications/{}",
                uuid::Uuid::nil()
            ),
            format!("/v1/admin/users/{segment}/disconnect"),
        ] {
            let method = if path.ends_with("disconnect") {
                "POST"
            } else if path.ends_with("notifications") {
                "GET"
            } else {
                "DELETE"
            };
            let r = app
                .http
                .request(method.parse().unwrap(), app.url(&path))
                .bearer_auth(app.admin())
                .send()
                .await
                .unwrap();
            assert_problem(r, 400, detail).await;
        }
    }
    let r = admin_get(&app, "/v1/admin/users/u/notifications?limit=0").await;
    assert_problem(r, 400, "limit").await;
    let r = admin_get(&app, "/v1/admin/users/u/notifications?status=new").await;
    assert_problem(r, 400, "status").await;
    let r = app
        .http
        .delete(app.url("/v1/admin/users/u/notifications/not-a-uuid"))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "invalid path parameter").await;
}

#[tokio::test]
async fn admin_delete_emits_deleted_to_the_user_and_reaches_no_one_else() {
    let app = TestApp::spawn().await;
    for user in odd_ids() {
        let item = app.publish(&[user.as_str()], "to delete").await.remove(0);
        let kept = app.publish(&[user.as_str()], "to keep").await.remove(0);
        let other = app.publish(&["bystander"], "not yours").await.remove(0);
        let id = item["id"].as_str().unwrap();
        let mut stream = app
            .sse_with_token(&app.token(&user, &[]), Some("2"), None)
            .await;

        // Another user's notification is not reachable through this user.
        let r = admin_delete(&app, &user, other["id"].as_str().unwrap()).await;
        assert_problem(r, 404, "no such notification").await;
        // Nor this user's through another.
        let r = admin_delete(&app, "bystander", id).await;
        assert_problem(r, 404, "no such notification").await;

        let r = admin_delete(&app, &user, id).await;
        assert_eq!(r.status(), 204, "{user}");
        assert!(r.bytes().await.unwrap().is_empty());
        let event = stream.next().await.unwrap();
        assert_eq!(event.event, "deleted");
        assert_eq!(event.id, "3");
        assert_eq!(
            data(&event),
            json!({ "id": id, "counts": {"unread": 1, "unseen": 1} })
        );
        let page = app.list(&user, "").await;
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["id"], kept["id"]);
        assert_eq!(page["last_seq"], 3);

        let r = admin_delete(&app, &user, id).await;
        assert_problem(r, 404, "no such notification").await;
    }
    // Every bystander notification is still there.
    assert_eq!(
        app.list("bystander", "").await["items"]
            .as_array()
            .unwrap()
            .len(),
        odd_ids().len()
    );
}

/// An SSE stream read as raw text, to see the server's closing comment.
async fn raw_stream(app: &TestApp, user: &str) -> reqwest::Response {
    let r = app
        .http
        .get(app.url("/v1/me/stream"))
        .bearer_auth(app.token(user, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r
}

/// Everything the server sends until it ends the stream.
async fn read_to_end(response: reqwest::Response) -> String {
    let mut body = response.bytes_stream();
    let mut text = String::new();
    loop {
        match tokio::time::timeout(crate::support::WAIT, body.next())
            .await
            .expect("the stream ends within the timeout")
        {
            Some(chunk) => text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap()),
            None => return text,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_ends_the_users_streams_on_every_instance_and_no_one_elses() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.db_url, |_| {}).await;
    let user = "kim/ü%";
    let on_a = raw_stream(&a, user).await;
    let on_b = raw_stream(&b, user).await;
    let mut other_a = a.sse("lee", None, None).await;
    let mut other_b = b.sse("lee", None, None).await;
    wait_for(|| async {
        a.handle
            .state()
            .hub
            .stats
            .connections(herald::live::connection_stats::Transport::Sse)
            == 2
            && b.handle
                .state()
                .hub
                .stats
                .connections(herald::live::connection_stats::Transport::Sse)
                == 2
    })
    .await;

    let r = disconnect(&a, user).await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    for stream in [on_a, on_b] {
        let text = read_to_end(stream).await;
        assert!(
            text.contains("\n: disconnected by an administrator\n"),
            "{text:?}"
        );
    }
    wait_for(|| async {
        a.handle
            .state()
            .hub
            .stats
            .connections(herald::live::connection_stats::Transport::Sse)
            == 1
            && b.handle
                .state()
                .hub
                .stats
                .connections(herald::live::connection_stats::Transport::Sse)
                == 1
    })
    .await;

    // The other user's streams stay open and keep receiving.
    let item = a.publish(&["lee"], "still here").await.remove(0);
    assert_eq!(data(&other_a.next().await.unwrap())["id"], item["id"]);
    assert_eq!(data(&other_b.next().await.unwrap())["id"], item["id"]);

    // The user may reconnect, and disconnecting nobody is fine.
    let mut again = b.sse(user, None, None).await;
    let item = a.publish(&[user], "welcome back").await.remove(0);
    assert_eq!(data(&again.next().await.unwrap())["id"], item["id"]);
    assert_eq!(disconnect(&b, "nobody-online").await.status(), 204);
}
