//! `POST /v1/notifications`.

use std::collections::HashSet;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::value::RawValue;

use crate::domain::UserId;
use crate::http::auth::Publisher;
use crate::http::error::ApiError;
use crate::http::payloads;
use crate::http::state::AppState;
use crate::inbox::group_commit::{Content, IdempotencyKey, PublishRequest};

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

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
fn idempotency_header(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(|k| Some(k.to_owned()))
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
        })
}

/// What a publish body says, checked.
struct Checked {
    idempotency: Option<IdempotencyKey>,
    recipients: Vec<UserId>,
    content: Content,
}

/// Decodes and checks a publish body. The request is hashed only when it
/// has an idempotency key: most publishes do not.
fn check(text: &str, key: Option<String>) -> Result<Checked, ApiError> {
    let mut body = payloads::notification_body(text)?;
    // Keys of JSON objects are sorted in a `Value`, so the same request in
    // another layout has the same hash.
    let idempotency = match key {
        None => None,
        Some(key) => {
            let value = payloads::json_value(text)?;
            let canonical = serde_json::to_vec(&value).expect("a JSON value serializes");
            Some(IdempotencyKey::new(key, &canonical))
        }
    };
    let recipients = body
        .recipients
        .take()
        .flatten()
        .ok_or_else(|| ApiError::Unprocessable("missing field `recipients`".into()))?;
    Ok(Checked {
        idempotency,
        recipients: parse_recipients(recipients)?,
        content: body.content()?,
    })
}

pub async fn publish(
    state: web::Data<AppState>,
    Publisher(principal): Publisher,
    req: HttpRequest,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    state.publish_limit.check(&principal.user)?;
    let key = idempotency_header(&req)?;
    let checked = payloads::decode(body.into_inner(), move |text| check(text, key)).await?;
    let request = PublishRequest {
        publisher: principal.user,
        idempotency: checked.idempotency,
        recipients: checked.recipients,
        content: checked.content,
        broadcast: None,
    };
    let started = std::time::Instant::now();
    let published = state.publisher.publish(request).await?;
    metrics::histogram!("herald_publish_seconds").record(started.elapsed().as_secs_f64());
    Ok(HttpResponse::Created().json(published))
}
