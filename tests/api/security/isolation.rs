//! Odd user ids: confusable ids reach only their own data on every
//! transport, dot segments are addressed raw, log lines stay intact.
//! SECURITY.md says what each test shows.

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::list_with;
use crate::support::paths::enc;
use crate::support::raw_http::{host, raw_exchange};
use crate::support::ws::close_code;
use crate::support::{TestApp, assert_problem, captured_logs, data, wait_for, ws};

/// Ids that a careless decoder, router, SQL builder or logger would mix up.
fn confusable_ids() -> Vec<String> {
    vec![
        "a/b".into(),
        "a%2Fb".into(),
        "a%252Fb".into(),
        "a%2fb".into(),
        "A/B".into(),
        "a".into(),
        "a/b/".into(),
        "../a".into(),
        "..".into(),
        "%".into(),
        "*".into(),
        "%_".into(),
        "a b".into(),
        "a+b".into(),
        "ü/名前".into(),
        "u\u{308}".into(),
        "ü".into(),
        "' OR '1'='1".into(),
        "x'); DROP TABLE notifications; --".into(),
        "a\"b\\c".into(),
        "{\"user\":\"operator\"}".into(),
        format!("{}é", "z".repeat(126)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confusable_user_ids_reach_only_their_own_data_on_every_transport() {
    let app = TestApp::spawn().await;
    // WebSockets on a second instance: their wake-ups and the disconnect
    // travel through the database (NOTIFY), with the ids in them.
    let other = TestApp::spawn_on(&app.db_url, |_| {}).await;
    let ids = confusable_ids();
    assert_eq!(ids.last().unwrap().len(), 128);
    for user in &ids {
        app.publish(&[user.as_str()], &format!("first for {user}"))
            .await;
    }
    let mut streams = Vec::new();
    let mut sockets = Vec::new();
    for user in &ids {
        // REST: exactly their own notification.
        let page = app.list(user, "").await;
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{user}: {page}");
        assert_eq!(items[0]["title"], format!("first for {user}"));
        assert_eq!(page["last_seq"], 1);
        // Long-poll: the same, as events.
        let r = app.get_as(user, "/v1/me/events?after=0").await;
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.unwrap();
        let events = answer["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{user}: {answer}");
        assert_eq!(events[0]["data"]["title"], format!("first for {user}"));
        // Admin, through the percent-encoded path: the same page. (Clients
        // cannot send `..` as a segment; see the next test.)
        if user != ".." {
            let r = app
                .http
                .get(app.url(&format!("/v1/admin/users/{}/notifications", enc(user))))
                .bearer_auth(app.admin())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{user}");
            assert_eq!(r.json::<Value>().await.unwrap(), page, "{user}");
        }
        // SSE and WebSocket, replaying from 0.
        let mut sse = app.sse(user, None, Some("0")).await;
        let first = sse.next().await.unwrap();
        assert_eq!(data(&first)["title"], format!("first for {user}"));
        streams.push(sse);
        let mut socket = ws::connect(&other, &app.token(user, &[]), Some("0")).await;
        let frame = ws::next_json(&mut socket).await;
        assert_eq!(frame["data"]["title"], format!("first for {user}"));
        sockets.push(socket);
    }
    // Live: each connection gets its own user's next event, nobody else's.
    for user in &ids {
        app.publish(&[user.as_str()], &format!("second for {user}"))
            .await;
    }
    for (i, user) in ids.iter().enumerate() {
        let event = streams[i].next().await.unwrap();
        assert_eq!(event.id, "2", "{user}");
        assert_eq!(data(&event)["title"], format!("second for {user}"));
        let frame = ws::next_json(&mut sockets[i]).await;
        assert_eq!(frame["seq"], 2, "{user}");
        assert_eq!(frame["data"]["title"], format!("second for {user}"));
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(DISTINCT user_id) FROM notifications")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, ids.len() as i64);

    // An admin disconnect of "a%2Fb" ends that user's connections only.
    let target = ids.iter().position(|u| u == "a%2Fb").unwrap();
    let r = app
        .http
        .post(app.url(&format!("/v1/admin/users/{}/disconnect", enc("a%2Fb"))))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    streams[target].ended().await;
    assert_eq!(
        close_code(&mut sockets[target]).await,
        CloseCode::Library(4002)
    );
    for user in &ids {
        app.publish(&[user.as_str()], &format!("third for {user}"))
            .await;
    }
    for (i, user) in ids.iter().enumerate() {
        if i == target {
            continue;
        }
        let event = streams[i].next().await.unwrap();
        assert_eq!(data(&event)["title"], format!("third for {user}"));
        let frame = ws::next_json(&mut sockets[i]).await;
        assert_eq!(frame["data"]["title"], format!("third for {user}"));
    }
}

#[tokio::test]
async fn dot_segment_ids_are_addressed_by_their_raw_admin_path() {
    // WHATWG URL parsers (browsers, reqwest) and most proxies remove `.`
    // and `..` segments, even as %2E%2E; the server itself never does, and
    // reads the raw segment.
    let app = TestApp::spawn().await;
    app.publish(&[".."], "for dot-dot").await;
    app.publish(&["."], "for dot").await;
    for (segment, user) in [("..", ".."), ("%2E%2E", ".."), (".", "."), ("%2e", ".")] {
        let request = format!(
            "GET /v1/admin/users/{segment}/notifications HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            host(&app),
            app.admin()
        );
        let answer = raw_exchange(&app, request.into_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        let page: Value = serde_json::from_str(body).unwrap();
        let title = if user == ".." {
            "for dot-dot"
        } else {
            "for dot"
        };
        assert_eq!(page["items"][0]["title"], title, "{segment}");
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn odd_ids_keep_log_lines_intact_and_control_characters_are_refused() {
    let app = TestApp::spawn().await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let user = format!("q\"{marker}\\\",\"user\":\"operator\"}}\n{{");
    // A newline anywhere: refused as a subject, a recipient and a path.
    let newline = app.token(&user, &[]);
    assert_problem(list_with(&app, &newline).await, 401, "control characters").await;
    let r = app
        .post_notification(&json!({"recipients": [user], "title": "t"}))
        .await;
    assert_problem(r, 422, "control characters").await;
    let r = app
        .http
        .get(app.url(&format!("/v1/admin/users/{}/notifications", enc(&user))))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "control characters").await;
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));

    // Without the newline the id is valid, and still cannot forge a field.
    let user = user.replace('\n', " ");
    app.publish(&[user.as_str()], "hello").await;
    let mut sse = app.sse(&user, None, Some("0")).await;
    sse.next().await.unwrap();
    // An administrator's disconnect ends it at once (and logs the close).
    let r = app
        .http
        .post(app.url(&format!("/v1/admin/users/{}/disconnect", enc(&user))))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    sse.ended().await;
    let r = app
        .http
        .get(app.url(&format!("/v1/admin/users/{}/notifications", enc(&user))))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for(|| async {
        captured_logs()
            .lines()
            .any(|l| l.contains(&marker) && l.contains("live connection closed"))
    })
    .await;
    let logs = captured_logs();
    let mine: Vec<Value> = logs
        .lines()
        .filter(|l| l.contains(&marker))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for message in ["live connection opened", "live connection closed"] {
        let line = mine
            .iter()
            .find(|v| v["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line"));
        assert_eq!(line["user"], user.as_str(), "{line}");
    }
    // The admin request line names the user only in its encoded path.
    assert!(
        mine.iter()
            .any(|v| v["path"] == format!("/v1/admin/users/{}/notifications", enc(&user))),
        "{mine:?}"
    );
}
