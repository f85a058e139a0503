//! `POST /v1/notifications`.

use std::collections::HashSet;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::domain::UserId;
use crate::http::auth::Publisher;
use crate::http::error::ApiError;
use crate::http::payloads::NotificationBody;
use crate::http::state::AppState;
use crate::inbox::group_commit::{IdempotencyKey, PublishRequest};

pub const MAX_RECIPIENTS: usize = 10_000;

fn parse_recipients(raw: Vec<String>) -> Result<Vec<UserId>, ApiError> {
    if raw.is_empty() || raw.len() > MAX_RECIPIENTS {
        return Err(ApiError::Unprocessable(format!(
            "recipients must list 1 to {MAX_RECIPIENTS} user ids"
        )));
    }
    let mut seen = HashSet::with_capacity(raw.len());
    let mut recipients = Vec::with_capacity(raw.len());
    for (i, id) in raw.iter().enumerate() {
        let user = UserId::parse(id)
            .map_err(|e| ApiError::Unprocessable(format!("recipients[{i}]: {e}")))?;
        // A repeated recipient gets the notification once.
        if seen.insert(user.clone()) {
            recipients.push(user);
        }
    }
    Ok(recipients)
}

/// `Idempotency-Key`: 1 to 255 visible ASCII characters. The request is
/// hashed only when it has one: most publishes do not.
pub fn idempotency_key(
    req: &HttpRequest,
    body: &serde_json::Value,
) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
        })?;
    // Keys of JSON objects are sorted here, so the same request in another
    // layout has the same hash.
    let canonical = serde_json::to_vec(body).expect("a JSON value serializes");
    Ok(Some(IdempotencyKey::new(key.to_owned(), &canonical)))
}

pub async fn publish(
    state: web::Data<AppState>,
    Publisher(principal): Publisher,
    req: HttpRequest,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    state.publish_limit.check(&principal.user)?;
    let value = body.into_inner();
    let idempotency = idempotency_key(&req, &value)?;
    let mut body: NotificationBody =
        serde_json::from_value(value).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let recipients = body
        .recipients
        .take()
        .ok_or_else(|| ApiError::Unprocessable("missing field `recipients`".into()))?;
    let request = PublishRequest {
        publisher: principal.user,
        idempotency,
        recipients: parse_recipients(recipients)?,
        content: body.content()?,
        broadcast: None,
    };
    let started = std::time::Instant::now();
    let published = state.publisher.publish(request).await?;
    metrics::histogram!("herald_publish_seconds").record(started.elapsed().as_secs_f64());
    Ok(HttpResponse::Created().json(published))
}
