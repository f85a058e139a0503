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
    let events = ReceiverStream::new(frames).map(render);
    Ok(sse::Sse::from_infallible_stream(events)
        .with_retry_duration(Duration::from_millis(state.settings.server.retry_ms))
        .with_keep_alive(state.settings.server.heartbeat())
        .customize()
        .insert_header(("X-Accel-Buffering", "no")))
}

fn render(frame: Frame) -> sse::Event {
    match frame {
        Frame::Event(e) => sse::Data::new(e.data.to_string())
            .event(e.kind.as_str())
            .id(e.seq.to_string())
            .into(),
        Frame::Closing(end) => sse::Event::Comment(end.reason().into()),
    }
}
