//! `/v1/admin/...`: statistics, any user's notifications, disconnects.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::me::ListQuery;
use crate::db;
use crate::db::instances::Instance;
use crate::domain::UserId;
use crate::http::auth::Admin;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::jobs::heartbeat;
use crate::live;
use crate::live::connection_stats::Transport;

#[derive(Serialize)]
struct StatsAnswer {
    instance: String,
    connections: Connections,
    users_online: usize,
    instances: Vec<Instance>,
    known_users: i64,
    notifications_stored: i64,
    events_stored: i64,
    publishes_since_start: u64,
    deliveries_since_start: u64,
    retention: Retention,
}

#[derive(Serialize)]
struct Connections {
    sse: i64,
    ws: i64,
    poll: i64,
}

#[derive(Serialize)]
struct Retention {
    events_days: i64,
    oldest_event_at: Option<DateTime<Utc>>,
    max_purged_seq: i64,
}

/// `GET /v1/admin/stats`: this instance's counters and the service's totals.
pub async fn stats(state: web::Data<AppState>, Admin(_): Admin) -> Result<HttpResponse, ApiError> {
    let totals = db::stats::totals(&state.pool).await?;
    let instances = heartbeat::running(&state.pool, &state.instance, state.started_at).await?;
    let counters = &state.hub.stats;
    Ok(HttpResponse::Ok().json(StatsAnswer {
        instance: state.instance.clone(),
        connections: Connections {
            sse: counters.connections(Transport::Sse).max(0),
            ws: counters.connections(Transport::Ws).max(0),
            poll: counters.connections(Transport::Poll).max(0),
        },
        users_online: state.hub.user_count(),
        instances,
        known_users: totals.known_users,
        notifications_stored: totals.notifications_stored,
        events_stored: totals.events_stored,
        publishes_since_start: counters.publishes(),
        deliveries_since_start: counters.deliveries(),
        retention: Retention {
            events_days: state.settings.retention.events_days,
            oldest_event_at: totals.oldest_event_at,
            max_purged_seq: totals.max_purged_seq,
        },
    }))
}

/// `GET /v1/admin/users/{user_id}/notifications`: what the user would list.
pub async fn list(
    state: web::Data<AppState>,
    Admin(_): Admin,
    req: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let user = path_user(&req)?;
    let page = state.inbox.page(&user, query.filter()?).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `DELETE /v1/admin/users/{user_id}/notifications/{id}`: as if the user
/// deleted it, `deleted` event included.
pub async fn delete(
    state: web::Data<AppState>,
    Admin(_): Admin,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let user = path_user(&req)?;
    let id = req.match_info().get("id").unwrap_or_default();
    let id = Uuid::parse_str(id)
        .map_err(|e| ApiError::BadRequest(format!("invalid path parameter: {e}")))?;
    state.inbox.delete(&user, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/admin/users/{user_id}/disconnect`: ends the user's live
/// connections here and, through the wake-up channel, on every other
/// instance.
pub async fn disconnect(
    state: web::Data<AppState>,
    Admin(_): Admin,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let user = path_user(&req)?;
    live::disconnect(&state.pool, &state.hub, &state.instance, &user).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The `{user_id}` path segment, percent-decoded strictly.
///
/// actix matches routes on a path where `%2F`, `%25` and `%2B` stay encoded
/// (so an encoded `/` does not split the segment) and every other escape is
/// already decoded, invalid UTF-8 becoming U+FFFD; `web::Path` then decodes
/// the rest. That would turn a malformed id into a different, valid one, so
/// the segment is taken from the raw request path instead (the same position
/// as in the route pattern, since an encoded `/` never splits a segment) and
/// anything that is not valid percent-encoded UTF-8 answers 400.
fn path_user(req: &HttpRequest) -> Result<UserId, ApiError> {
    let position = req
        .match_pattern()
        .and_then(|pattern| pattern.split('/').position(|s| s == "{user_id}"));
    let raw = position
        .and_then(|i| req.uri().path().split('/').nth(i))
        .ok_or_else(|| ApiError::BadRequest("the path names no user".into()))?;
    let bytes = percent_decode(raw).ok_or_else(|| {
        ApiError::BadRequest("the user id in the path is not validly percent-encoded".into())
    })?;
    let id = String::from_utf8(bytes).map_err(|_| {
        ApiError::BadRequest("the user id in the path is not percent-encoded UTF-8".into())
    })?;
    UserId::parse(&id).map_err(|e| ApiError::BadRequest(format!("invalid user id: {e}")))
}

/// `None` when a `%` is not followed by two hex digits.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // Not `from_str_radix` alone: it would take "+1".
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_every_escape_and_refuses_broken_ones() {
        assert_eq!(percent_decode("a%2Fb%25c%2B+").unwrap(), b"a/b%c++");
        assert_eq!(percent_decode("%C3%BC").unwrap(), "ü".as_bytes());
        assert_eq!(percent_decode("plain").unwrap(), b"plain");
        for bad in ["%", "%2", "%zz", "a%2", "%+1"] {
            assert!(percent_decode(bad).is_none(), "{bad}");
        }
    }
}
