//! The WebSocket transport: same log, same replay and reset rules.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::ws::{closed, connect, next_json};
use crate::support::{TestApp, assert_problem};

#[tokio::test]
async fn replay_then_live_frames_in_order() {
    let app = TestApp::spawn().await;
    for i in 1..=3 {
        app.publish(&["wendy"], &format!("n{i}")).await;
    }
    let mut socket = connect(&app, &app.token("wendy", &[]), Some("1")).await;
    let a = next_json(&mut socket).await;
    let b = next_json(&mut socket).await;
    assert_eq!(
        (
            a["seq"].as_i64(),
            a["type"].as_str(),
            a["data"]["title"].as_str()
        ),
        (Some(2), Some("notification"), Some("n2"))
    );
    assert_eq!(
        (b["seq"].as_i64(), b["data"]["seq"].as_i64()),
        (Some(3), Some(3))
    );
    let items = app.publish(&["wendy"], "live").await;
    let live = next_json(&mut socket).await;
    assert_eq!(live["seq"], 4);
    assert_eq!(live["data"]["id"], items[0]["id"]);
}

#[tokio::test]
async fn an_unusable_resume_point_gets_reset() {
    let app = TestApp::spawn().await;
    app.publish(&["walt"], "one").await;
    let mut socket = connect(&app, &app.token("walt", &[]), Some("banana")).await;
    assert_eq!(
        next_json(&mut socket).await,
        json!({"seq": 1, "type": "reset", "data": {"last_seq": 1, "counts": {"unread": 1, "unseen": 1}}})
    );
    let mut socket = connect(&app, &app.token("walt", &[]), Some("7")).await;
    assert_eq!(next_json(&mut socket).await["type"], "reset");
}

#[tokio::test]
async fn commands_are_answered_and_bad_frames_get_error_frames() {
    let app = TestApp::spawn().await;
    let items = app.publish(&["wu"], "to read").await;
    let id = items[0]["id"].as_str().unwrap();
    let mut socket = connect(&app, &app.token("wu", &[]), Some("1")).await;

    socket
        .send(Message::text(r#"{"op":"ping","ref":"p1"}"#))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut socket).await,
        json!({"type": "pong", "ref": "p1"})
    );

    socket
        .send(Message::text("this is not json"))
        .await
        .unwrap();
    let e = next_json(&mut socket).await;
    assert_eq!(
        (e["type"].as_str(), e["status"].as_i64()),
        (Some("error"), Some(400))
    );
    assert!(e["detail"].as_str().unwrap().contains("JSON object"));

    socket
        .send(Message::text(r#"{"op":"fly","ref":2}"#))
        .await
        .unwrap();
    let e = next_json(&mut socket).await;
    assert_eq!(
        (e["status"].as_i64(), e["ref"].as_i64()),
        (Some(422), Some(2))
    );

    socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next_json(&mut socket).await["status"], 400);

    socket
        .send(Message::text(r#"{"op":"read","ref":"r"}"#))
        .await
        .unwrap();
    assert!(
        next_json(&mut socket).await["detail"]
            .as_str()
            .unwrap()
            .contains("needs an `id`")
    );

    let other = uuid::Uuid::new_v4();
    socket
        .send(Message::text(
            json!({"op": "read", "id": other, "ref": 3}).to_string(),
        ))
        .await
        .unwrap();
    let e = next_json(&mut socket).await;
    assert_eq!(
        (e["status"].as_i64(), e["ref"].as_i64()),
        (Some(404), Some(3))
    );

    socket
        .send(Message::text(
            json!({"op": "read", "id": id, "ref": 4}).to_string(),
        ))
        .await
        .unwrap();
    // The ack and the event may come in either order.
    let mut got = [next_json(&mut socket).await, next_json(&mut socket).await];
    got.sort_by_key(|f| f["type"].as_str().unwrap().to_owned());
    assert_eq!(got[0], json!({"type": "ack", "op": "read", "ref": 4}));
    assert_eq!(
        (
            got[1]["type"].as_str(),
            got[1]["seq"].as_i64(),
            got[1]["data"]["id"].as_str()
        ),
        (Some("read"), Some(2), Some(id))
    );
    // Still connected after all that.
    socket
        .send(Message::text(r#"{"op":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["type"], "pong");
}

#[tokio::test]
async fn the_socket_closes_with_4001_when_the_token_expires() {
    let app = TestApp::spawn_with(|s| s.auth.leeway_secs = 0).await;
    let token = app.signer.token_for("wes", &[], 2).unwrap();
    let mut socket = connect(&app, &token, None).await;
    assert_eq!(
        closed(&mut socket).await,
        (CloseCode::Library(4001), "token expired".to_owned())
    );
}

#[tokio::test]
async fn a_plain_get_is_not_a_handshake() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .get(app.url("/v1/me/ws"))
        .bearer_auth(app.token("x", &[]))
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "WebSocket handshake").await;
    let r = app.http.get(app.url("/v1/me/ws")).send().await.unwrap();
    assert_problem(r, 401, "Bearer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_reading_is_closed_and_resumes_from_the_log() {
    let app = TestApp::spawn_with(|s| {
        s.stream.buffer = 4;
        s.stream.slow_client_timeout_ms = 300;
    })
    .await;
    let token = app.token("wilma", &[]);
    let mut socket = connect(&app, &token, Some("0")).await;
    let total = 3000;
    crate::support::publish_many(&app, "wilma", total, &"y".repeat(4000)).await;
    let mut last = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                last = serde_json::from_str::<Value>(&t).unwrap()["seq"]
                    .as_i64()
                    .unwrap()
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(_))) => continue,
            Err(_) => panic!("the server did not close the stalled socket"),
        }
    }
    assert!(last > 0 && last < total, "got {last} of {total}");
    let mut resumed = connect(&app, &token, Some(&last.to_string())).await;
    for expected in last + 1..=total {
        assert_eq!(next_json(&mut resumed).await["seq"], expected);
    }
}

#[tokio::test]
async fn an_administrators_disconnect_closes_the_socket_with_4002() {
    let app = TestApp::spawn().await;
    let mut socket = connect(&app, &app.token("walker", &[]), None).await;
    let r = app
        .http
        .post(app.url("/v1/admin/users/walker/disconnect"))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        closed(&mut socket).await,
        (
            CloseCode::Library(4002),
            "disconnected by an administrator".to_owned()
        )
    );
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_closed() {
    let app = TestApp::spawn_with(|s| s.server.heartbeat_secs = 1).await;
    let mut socket = connect(&app, &app.token("wynn", &[]), None).await;
    // Not reading means not answering the server's pings; after two
    // intervals of silence the server gives up on this peer.
    crate::support::wait_for(|| async {
        app.handle
            .state()
            .hub
            .stats
            .connections(herald::live::connection_stats::Transport::Ws)
            == 0
    })
    .await;
    assert_eq!(
        closed(&mut socket).await,
        (CloseCode::Away, "no answer to pings".to_owned())
    );
}
