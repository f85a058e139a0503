//! Live transports: thin skins over the subscription core.

use actix_web::{HttpRequest, Responder, web};
use actix_web_lab::sse;
use futures_util::StreamExt;
use serde::Deserialize;
use std::time::Duration;
use tokio_stream::wrappers::ReceiverStream;

use crate::domain::ResumePoint;
use crate::http::auth::StreamUser;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::live::connection_stats::Transport;
use crate::live::subscription::Frame;

#[derive(Deserialize)]
pub struct StreamQuery {
    last_event_id: Option<String>,
    format: Option<String>,
}

/// How events are written on the stream.
#[derive(Debug, Clone, Copy)]
enum Format {
    /// `event: <type>`, `data: <the event's data>`.
    Named,
    /// No `event:` line, and `data` is the WebSocket frame
    /// `{"seq", "type", "data"}`: plain `EventSource` code written with
    /// `onmessage` receives only events without an `event:` line.
    Message,
}

impl Format {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw {
            None | Some("named") => Ok(Self::Named),
            Some("message") => Ok(Self::Message),
            Some(other) => Err(ApiError::BadRequest(format!(
                "format must be named or message, not {other:?}"
            ))),
        }
    }
}

/// `GET /v1/me/stream`. The `Last-Event-ID` header wins over the query
/// parameter: a reconnecting EventSource resends its original URL (with the
/// old `last_event_id`) plus the header with what it really saw last.
pub async fn sse(
    state: web::Data<AppState>,
    StreamUser(principal): StreamUser,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<impl Responder, ApiError> {
    let format = Format::parse(query.format.as_deref())?;
    let header = req
        .headers()
        .get("Last-Event-ID")
        .map(|v| v.to_str().unwrap_or("invalid"));
    let resume = ResumePoint::parse(header.or(query.last_event_id.as_deref()));
    let frames = state
        .live
        .open(
            &principal.user,
            principal.expires_at,
            resume,
            Transport::Sse,
        )
        .await?;
    let events = ReceiverStream::new(frames).map(move |frame| render(frame, format));
    Ok(sse::Sse::from_infallible_stream(events)
        .with_retry_duration(Duration::from_millis(state.settings.server.retry_ms))
        .with_keep_alive(state.settings.server.heartbeat())
        .customize()
        .insert_header(("X-Accel-Buffering", "no")))
}

fn render(frame: Frame, format: Format) -> sse::Event {
    match (frame, format) {
        (Frame::Event(e), Format::Named) => sse::Data::new(e.data.to_string())
            .event(e.kind.as_str())
            .id(e.seq.to_string())
            .into(),
        (Frame::Event(e), Format::Message) => {
            sse::Data::new(e.frame_json()).id(e.seq.to_string()).into()
        }
        (Frame::Closing(end), _) => sse::Event::Comment(end.reason().into()),
    }
}
