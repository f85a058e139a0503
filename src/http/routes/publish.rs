//! `POST /v1/notifications` and `POST /v1/notifications/batch`.

use std::collections::HashSet;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::domain::{NotificationKey, UserId};
use crate::http::auth::Publisher;
use crate::http::error::ApiError;
use crate::http::payloads;
use crate::http::state::AppState;
use crate::inbox::publishing::{IdempotencyKey, Part, PublishRequest};

pub const MAX_RECIPIENTS: usize = 10_000;
/// The most elements of a batch.
pub const MAX_BATCH: usize = 1000;

fn parse_recipients(raw: Vec<String>, topics: bool) -> Result<Vec<UserId>, ApiError> {
    if (raw.is_empty() && !topics) || raw.len() > MAX_RECIPIENTS {
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

/// The key with a hash of the request. Keys of JSON objects are sorted in a
/// `Value`, so the same request in another layout has the same hash.
fn idempotency(text: &str, key: Option<String>) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    let value = payloads::json_value(text)?;
    let canonical = serde_json::to_vec(&value).expect("a JSON value serializes");
    Ok(Some(IdempotencyKey::new(key, &canonical)))
}

/// One publish body, checked: its part and when to deliver it (`None`: now).
fn check_part(text: &str) -> Result<(Part, Option<DateTime<Utc>>), ApiError> {
    check_body(payloads::notification_body(text)?)
}

fn check_body(
    mut body: payloads::NotificationBody,
) -> Result<(Part, Option<DateTime<Utc>>), ApiError> {
    let topics = body.topics()?;
    let deliver_at = body.deliver_at()?;
    let recipients = match body.recipients.take().flatten() {
        Some(raw) => parse_recipients(raw, !topics.is_empty())?,
        None if !topics.is_empty() => Vec::new(),
        None => {
            return Err(ApiError::Unprocessable(
                "a publish needs `recipients`, `topics` or both".into(),
            ));
        }
    };
    let content = body.content_after(deliver_at.unwrap_or_else(Utc::now))?;
    Ok((
        Part {
            recipients,
            via: Vec::new(),
            topics,
            content,
        },
        deliver_at,
    ))
}

pub async fn publish(
    state: web::Data<AppState>,
    Publisher(principal): Publisher,
    req: HttpRequest,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    state.publish_limit.check(&principal.user)?;
    let key = idempotency_header(&req)?;
    let (part, deliver_at, idempotency) = payloads::decode(body.into_inner(), move |text| {
        let (part, deliver_at) = check_part(text)?;
        Ok((part, deliver_at, idempotency(text, key)?))
    })
    .await?;
    // The rarer paths' futures are boxed: inline, the largest of them sets
    // the size of every publish's future, which is moved into a box per
    // request (9 KiB copied each time).
    if let Some(deliver_at) = deliver_at {
        let schedule = Box::pin(state.schedules.create(
            &principal.user,
            deliver_at,
            &part,
            idempotency.as_ref(),
        ))
        .await?;
        return Ok(HttpResponse::Accepted().json(json!({ "schedule": schedule })));
    }
    if !part.topics.is_empty() {
        let audience = Box::pin(state.inbox.audience(
            &part.recipients,
            &part.topics,
            MAX_RECIPIENTS as i64 + 1,
        ))
        .await?;
        if audience > MAX_RECIPIENTS as i64 {
            let broadcast = Box::pin(state.broadcaster.create_for_topics(
                &part.content,
                &principal.user,
                (&part.topics, &part.recipients),
                idempotency.as_ref(),
            ))
            .await?;
            return Ok(HttpResponse::Accepted().json(json!({ "broadcast": broadcast })));
        }
    }
    let request = PublishRequest {
        idempotency,
        ..PublishRequest::single(principal.user, part)
    };
    let started = std::time::Instant::now();
    let mut published = state.publisher.publish(request).await?;
    metrics::histogram!("herald_publish_seconds").record(started.elapsed().as_secs_f64());
    Ok(HttpResponse::Created().json(published.pop().unwrap_or_default()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    notifications: Vec<Box<RawValue>>,
}

/// A batch, checked: every element, and the batch as a whole.
fn check_batch(text: &str) -> Result<Vec<Part>, ApiError> {
    let payloads::Object(body): payloads::Object<BatchBody> =
        serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                ApiError::Unprocessable(e.to_string())
            } else {
                ApiError::BadRequest(format!("the body is not valid JSON: {e}"))
            }
        })?;
    if body.notifications.is_empty() || body.notifications.len() > MAX_BATCH {
        return Err(ApiError::Unprocessable(format!(
            "notifications must list 1 to {MAX_BATCH} publishes"
        )));
    }
    let mut parts = Vec::with_capacity(body.notifications.len());
    let mut total = 0;
    let mut keyed: HashSet<(UserId, NotificationKey)> = HashSet::new();
    for (i, raw) in body.notifications.iter().enumerate() {
        let at = |e: ApiError| match e {
            ApiError::Unprocessable(d) => {
                ApiError::Unprocessable(format!("notifications[{i}]: {d}"))
            }
            ApiError::BadRequest(d) => ApiError::BadRequest(format!("notifications[{i}]: {d}")),
            other => other,
        };
        let fields = payloads::notification_body(raw.get()).map_err(at)?;
        if fields.topics.is_some() || fields.deliver_at.is_some() {
            return Err(at(ApiError::Unprocessable(
                "a batch element takes neither `topics` nor `deliver_at`".into(),
            )));
        }
        let (part, _) = check_body(fields).map_err(at)?;
        total += part.recipients.len();
        if total > MAX_RECIPIENTS {
            return Err(ApiError::Unprocessable(format!(
                "a batch goes to at most {MAX_RECIPIENTS} recipients in all"
            )));
        }
        // Two updates of one user's key in one transaction would both find
        // the notification as it was before the batch.
        if let Some(key) = &part.content.key {
            for user in &part.recipients {
                if !keyed.insert((user.clone(), key.clone())) {
                    return Err(at(ApiError::Unprocessable(format!(
                        "key {:?} for user {user} is updated by an earlier element of this batch",
                        key.as_str()
                    ))));
                }
            }
        }
        parts.push(part);
    }
    Ok(parts)
}

pub async fn publish_batch(
    state: web::Data<AppState>,
    Publisher(principal): Publisher,
    req: HttpRequest,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    state.publish_limit.check(&principal.user)?;
    let key = idempotency_header(&req)?;
    let (parts, idempotency) = payloads::decode(body.into_inner(), move |text| {
        Ok((check_batch(text)?, idempotency(text, key)?))
    })
    .await?;
    let request = PublishRequest {
        publisher: principal.user,
        idempotency,
        parts,
        broadcast: None,
        schedule: None,
    };
    let started = std::time::Instant::now();
    let results = state.publisher.publish(request).await?;
    metrics::histogram!("herald_publish_seconds").record(started.elapsed().as_secs_f64());
    Ok(HttpResponse::Created().json(json!({ "results": results })))
}
