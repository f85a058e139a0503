//! WebSocket floods: many small frames, oversized frames, and commands at a
//! high rate (`read_all` writes an event to the log each time), each socket
//! as its own user so the per-user stream cap does not stop them early.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::Config;
use crate::report::{Outcome, Tally};
use crate::target::Target;

/// How long one socket may flood before it stops on its own.
const LIMIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flood {
    SmallFrames,
    Oversized,
    Commands,
}

impl Flood {
    fn frames(self, config: &Config) -> usize {
        match self {
            Self::SmallFrames => config.n(20_000),
            Self::Oversized => 3,
            Self::Commands => config.n(3_000),
        }
    }

    fn frame(self, i: usize) -> Message {
        match self {
            Self::SmallFrames => Message::text("x"),
            // Over the 64 KiB frame limit, text and binary alternately.
            Self::Oversized if i.is_multiple_of(2) => Message::text("x".repeat(1 << 20)),
            Self::Oversized => Message::binary(vec![0u8; 1 << 20]),
            Self::Commands => Message::text(match i % 3 {
                0 => format!(r#"{{"op":"ping","ref":{i}}}"#),
                1 => r#"{"op":"read_all"}"#.to_owned(),
                _ => format!(
                    r#"{{"op":"read","id":"{}","ref":{i}}}"#,
                    uuid::Uuid::new_v4()
                ),
            }),
        }
    }
}

/// One socket: what it sent, what came back, how it ended.
#[derive(Default)]
struct SocketEnd {
    sent: usize,
    replies: Tally,
    end: String,
}

async fn flood(url: String, flood: Flood, frames: usize) -> SocketEnd {
    let mut result = SocketEnd::default();
    let socket = match tokio_tungstenite::connect_async(&url).await {
        Ok((socket, _)) => socket,
        Err(e) => {
            result.end = format!("handshake refused ({e})");
            return result;
        }
    };
    let (mut sink, mut stream) = socket.split();
    let reader = tokio::spawn(async move {
        let mut replies = Tally::default();
        let end = loop {
            match tokio::time::timeout(LIMIT, stream.next()).await {
                Err(_) => break "open at the end".to_owned(),
                Ok(None) => break "closed without a close frame".to_owned(),
                Ok(Some(Err(_))) => break "reset".to_owned(),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    break frame.map_or("closed without a code".to_owned(), |f| {
                        format!("closed {}", u16::from(f.code))
                    });
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    let reply: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    let kind = reply["type"].as_str().unwrap_or("?").to_owned();
                    match reply["status"].as_u64() {
                        Some(status) => replies.add(format!("{kind} {status}")),
                        None => replies.add(kind),
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        };
        (replies, end)
    });
    let started = Instant::now();
    for i in 0..frames {
        if started.elapsed() > LIMIT || sink.feed(flood.frame(i)).await.is_err() {
            break;
        }
        if i % 64 == 63 && sink.flush().await.is_err() {
            break;
        }
        result.sent += 1;
    }
    let _ = sink.flush().await;
    if flood != Flood::Oversized {
        // Replies still on their way are read until the server answered
        // everything or stops answering; then the client closes.
        let _ = sink.send(Message::Close(None)).await;
    }
    if let Ok(Ok((replies, end))) = tokio::time::timeout(LIMIT, reader).await {
        result.replies = replies;
        result.end = end;
    } else {
        result.end = "open at the end".to_owned();
    }
    result
}

pub async fn run(target: &Target, config: &Config) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome::default();
    let sockets = config.n(20);
    let ws_base = target.base.replacen("http://", "ws://", 1);
    for kind in [Flood::SmallFrames, Flood::Oversized, Flood::Commands] {
        let frames = kind.frames(config);
        let started = Instant::now();
        let ends = join_all((0..sockets).map(|i| {
            let token = target.token(&format!("attack-ws-{i}"), None);
            let url = format!("{ws_base}/v1/me/ws?access_token={token}");
            flood(url, kind, frames)
        }))
        .await;
        let took = started.elapsed();
        let mut replies = Tally::default();
        let mut ended = Tally::default();
        let mut sent = 0;
        for end in &ends {
            replies.merge(&end.replies);
            ended.add(end.end.clone());
            sent += end.sent;
        }
        outcome.row(
            format!("{kind:?}: {sockets} sockets × {frames} frames"),
            format!(
                "sent {sent} in {:.1} s; replies: {replies}; sockets: {ended}",
                took.as_secs_f64()
            ),
        );
        let server_errors: Vec<String> = replies
            .0
            .iter()
            .filter(|(k, _)| k.ends_with(" 500") || k.ends_with(" 503"))
            .map(|(k, v)| format!("{k}×{v}"))
            .collect();
        if !server_errors.is_empty() {
            outcome.finding(format!(
                "{kind:?}: server errors {}",
                server_errors.join(" ")
            ));
        }
        if kind == Flood::Oversized {
            let code = u16::from(CloseCode::Size);
            let protocol = u16::from(CloseCode::Protocol);
            let refused =
                ended.get(&format!("closed {code}")) + ended.get(&format!("closed {protocol}"));
            if refused != sockets as u64 {
                outcome.finding(format!(
                    "oversized frames: {refused} of {sockets} sockets closed with 1009/1002 ({ended})"
                ));
            }
        }
    }
    Ok(outcome)
}
