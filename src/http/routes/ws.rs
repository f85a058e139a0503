//! `GET /v1/me/ws`: the log over WebSocket, for clients without EventSource
//! (e.g. mini-programs). Frames are `{"seq","type","data"}` as in long-poll.
//! The client may send small JSON commands; every one gets an answer.

use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::domain::{ResumePoint, UserId};
use crate::http::auth::StreamUser;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::inbox::changes::{BulkOp, UserChange};
use crate::live::connection_stats::Transport;
use crate::live::subscription::{End, Frame};

#[derive(Deserialize)]
pub struct WsQuery {
    last_event_id: Option<String>,
}

pub async fn ws(
    state: web::Data<AppState>,
    StreamUser(principal): StreamUser,
    req: HttpRequest,
    body: web::Payload,
    query: web::Query<WsQuery>,
) -> Result<HttpResponse, ApiError> {
    let (response, session, messages) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::BadRequest(format!("not a WebSocket handshake: {e}")))?;
    let resume = ResumePoint::parse(query.last_event_id.as_deref());
    let frames = state
        .live
        .open(&principal.user, principal.expires_at, resume, Transport::Ws)
        .await?;
    let connection = Connection {
        state,
        user: principal.user,
        session,
    };
    actix_web::rt::spawn(connection.run(messages.max_frame_size(64 * 1024), frames));
    Ok(response)
}

struct Connection {
    state: web::Data<AppState>,
    user: UserId,
    session: Session,
}

/// A command from the client.
#[derive(Deserialize)]
struct Command {
    op: String,
    #[serde(default)]
    id: Option<Uuid>,
    /// Echoed back so the client can match answers to commands.
    #[serde(default, rename = "ref")]
    reference: Option<Value>,
}

impl Connection {
    async fn run(mut self, mut messages: MessageStream, mut frames: mpsc::Receiver<Frame>) {
        let interval = self.state.settings.server.heartbeat();
        let send_timeout = self.state.settings.stream.slow_client_timeout();
        let mut heartbeat = tokio::time::interval(interval);
        let mut last_heard = Instant::now();
        let close = loop {
            tokio::select! {
                frame = frames.recv() => {
                    let text = match frame {
                        Some(Frame::Event(e)) => e.frame_json(),
                        Some(Frame::Closing(end)) => break close_reason(end),
                        None => break None,
                    };
                    if !self.send(text, send_timeout).await {
                        break None;
                    }
                }
                message = messages.next() => {
                    last_heard = Instant::now();
                    let reply = match message {
                        // Boxed: a command runs a database transaction, and
                        // inlined its state made every idle socket's task
                        // that much bigger.
                        Some(Ok(Message::Text(text))) => Box::pin(self.command(&text)).await,
                        Some(Ok(Message::Ping(bytes))) => {
                            let _ = self.session.pong(&bytes).await;
                            continue;
                        }
                        Some(Ok(Message::Pong(_))) => continue,
                        Some(Ok(Message::Binary(_) | Message::Continuation(_))) => {
                            error_frame(&ApiError::BadRequest("only JSON text frames are understood".into()), None)
                        }
                        Some(Ok(Message::Nop)) => continue,
                        Some(Ok(Message::Close(_))) | None => break None,
                        Some(Err(e)) => {
                            // A protocol violation (e.g. an oversized frame): say why, then close.
                            break Some(CloseReason { code: CloseCode::Protocol, description: Some(e.to_string()) });
                        }
                    };
                    if !self.send(reply.to_string(), send_timeout).await {
                        break None;
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > interval * 2 {
                        break Some(CloseReason { code: CloseCode::Away, description: Some("no answer to pings".into()) });
                    }
                    if self.session.ping(b"").await.is_err() {
                        break None;
                    }
                }
            }
        };
        // Closing frames get a short grace period; a stalled peer is just dropped.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.session.close(close)).await;
    }

    /// Sends a text frame; false if the client is gone or too slow to take it.
    async fn send(&mut self, text: String, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.session.text(text)).await,
            Ok(Ok(()))
        )
    }

    async fn command(&self, text: &str) -> Value {
        let command: Command = match serde_json::from_str(text) {
            Ok(c) => c,
            Err(e) => {
                let err =
                    ApiError::BadRequest(format!("a command is a JSON object with an `op`: {e}"));
                return error_frame(&err, None);
            }
        };
        let reference = command.reference.clone();
        match self.execute(&command).await {
            Ok(Some(reply)) => reply,
            Ok(None) => json!({"type": "ack", "op": command.op, "ref": reference}),
            Err(e) => error_frame(&e, reference),
        }
    }

    async fn execute(&self, command: &Command) -> Result<Option<Value>, ApiError> {
        let id = || {
            command
                .id
                .ok_or_else(|| ApiError::Unprocessable(format!("`{}` needs an `id`", command.op)))
        };
        match command.op.as_str() {
            "ping" => Ok(Some(json!({"type": "pong", "ref": command.reference}))),
            "read" => {
                let read = UserChange::Read;
                self.state.inbox.change(&self.user, id()?, read).await?;
                Ok(None)
            }
            "unread" => {
                let unread = UserChange::Unread;
                self.state.inbox.change(&self.user, id()?, unread).await?;
                Ok(None)
            }
            "delete" => {
                self.state.inbox.delete(&self.user, id()?).await?;
                Ok(None)
            }
            "read_all" => {
                let all = BulkOp::ReadAll;
                self.state.inbox.bulk(&self.user, all, None, None).await?;
                Ok(None)
            }
            other => Err(ApiError::Unprocessable(format!(
                "unknown op {other:?}: use ping, read, unread, delete or read_all"
            ))),
        }
    }
}

fn error_frame(error: &ApiError, reference: Option<Value>) -> Value {
    let p = error.problem();
    json!({"type": "error", "status": p.status, "title": p.title, "detail": p.detail, "ref": reference})
}

fn close_reason(end: End) -> Option<CloseReason> {
    let code = match end {
        End::Shutdown => CloseCode::Away,
        End::TokenExpired => CloseCode::Other(4001),
        End::Disconnected => CloseCode::Other(4002),
        End::SlowClient => CloseCode::Other(4008),
        End::ClientGone => return None,
    };
    Some(CloseReason {
        code,
        description: Some(end.reason().into()),
    })
}
