//! WebSocket clients.

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::app::TestApp;
use super::wait::WAIT;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Socket {
    let mut url = format!(
        "{}/v1/me/ws?access_token={token}",
        app.address.replacen("http", "ws", 1)
    );
    if let Some(id) = last_event_id {
        url.push_str(&format!("&last_event_id={id}"));
    }
    let (socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the handshake succeeds");
    assert_eq!(response.status(), 101);
    socket
}

/// The next JSON text frame (pings are answered by the library).
pub async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .unwrap();
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Waits for the server's close frame and returns its code and reason.
pub async fn closed(socket: &mut Socket) -> (CloseCode, String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, socket.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => panic!("closed without a reason"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error {e}"),
        }
    }
}

/// Waits for the server's close frame and returns its code.
pub async fn close_code(socket: &mut Socket) -> CloseCode {
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code,
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error {e}"),
        }
    }
}
