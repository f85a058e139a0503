//! `GET /v1/me/events`: polling and long-polling, for clients with neither
//! EventSource nor WebSocket. A waiting poll holds no thread and no database
//! connection: it waits on the same per-user wake-up as a stream.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::domain::ResumePoint;
use crate::domain::event::EventFrame;
use crate::http::auth::StreamUser;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::live::connection_stats::Transport;
use crate::live::subscription::{Start, SubscribeError};

#[derive(Deserialize)]
pub struct PollQuery {
    after: Option<String>,
    wait: Option<u64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct PollAnswer<'a> {
    events: Vec<EventFrame<'a>>,
    /// The user's current seq, from the same snapshot as `events`: when
    /// `events` is empty, nothing visible lies between `after` and it.
    last_seq: i64,
}

pub async fn events(
    state: web::Data<AppState>,
    StreamUser(principal): StreamUser,
    query: web::Query<PollQuery>,
) -> Result<HttpResponse, ApiError> {
    let wait = query.wait.unwrap_or(0);
    if wait > 60 {
        return Err(ApiError::BadRequest(
            "wait must be between 0 and 60 seconds".into(),
        ));
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 500".into(),
        ));
    }
    // Subscribe before the first read, as streams do. A waiting poll takes
    // one of the user's stream places: a client that opens thousands of
    // them gets 429, not a share of the database pool.
    let mut watch = state
        .hub
        .watch_stream(&principal.user)
        .map_err(|e| SubscribeError::TooManyStreams(e.to_string()))?;
    let _counted = state.hub.stats.connection(Transport::Poll);
    let resume = ResumePoint::parse(query.after.as_deref());
    // The database steps are boxed: inlined, the handler's future (which
    // lives as long as the poll waits) kept room for their state too.
    let Start { cursor, reset, .. } = Box::pin(state.live.start_position(&watch, resume)).await?;
    if let Some(reset) = reset {
        return Ok(HttpResponse::Ok().json(PollAnswer {
            events: vec![reset.frame()],
            last_seq: reset.seq,
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let (events, last_seq) = Box::pin(state.live.log().read_with_last_seq(
            &principal.user,
            cursor,
            limit,
        ))
        .await?;
        let expired = tokio::time::Instant::now() >= deadline;
        if !events.is_empty() || expired {
            for _ in &events {
                state.hub.stats.delivered(Transport::Poll);
            }
            let frames = events.iter().map(|e| e.frame()).collect();
            return Ok(HttpResponse::Ok().json(PollAnswer {
                events: frames,
                last_seq,
            }));
        }
        tokio::select! {
            _ = watch.rx.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            // Answer (empty) at once: the client comes back elsewhere, or
            // (disconnected by an administrator) with a token checked anew.
            _ = state.live.shutdown().cancelled() => {
                return Ok(HttpResponse::Ok().json(PollAnswer { events: Vec::new(), last_seq }));
            }
            _ = watch.kicked.cancelled() => {
                return Ok(HttpResponse::Ok().json(PollAnswer { events: Vec::new(), last_seq }));
            }
        }
    }
}
