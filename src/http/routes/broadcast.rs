//! `POST /v1/broadcasts` and `GET /v1/admin/broadcasts/{id}`.

use actix_web::{HttpResponse, web};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::http::auth::{Admin, Publisher};
use crate::http::error::ApiError;
use crate::http::payloads;
use crate::http::state::AppState;

/// Stores the broadcast and wakes the worker; the answer does not wait for
/// any user to receive it.
pub async fn create(
    state: web::Data<AppState>,
    Admin(principal): Admin,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    let content = payloads::decode(body.into_inner(), |text| {
        if !text.trim_start().starts_with('{') {
            return Err(ApiError::Unprocessable(
                "the body must be a JSON object".into(),
            ));
        }
        let body = payloads::notification_body(text)?;
        if body.recipients.is_some() {
            return Err(ApiError::Unprocessable(
                "a broadcast goes to every known user: `recipients` is not allowed".into(),
            ));
        }
        // A broadcast goes to everyone, now: a publish to `topics` (with
        // `deliver_at` if need be) is the way to reach fewer, or later.
        if body.topics.is_some() || body.deliver_at.is_some() {
            return Err(ApiError::Unprocessable(
                "a broadcast takes neither `topics` nor `deliver_at`: publish to topics instead"
                    .into(),
            ));
        }
        body.content()
    })
    .await?;
    let broadcast = state.broadcaster.create(&content, &principal.user).await?;
    Ok(HttpResponse::Accepted().json(broadcast))
}

/// An administrator sees every broadcast; a publisher the ones its own
/// publishes to topics became.
pub async fn get(
    state: web::Data<AppState>,
    Publisher(p): Publisher,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let broadcast = state.broadcaster.get(*id).await?;
    if !p.admin && broadcast.created_by != p.user.as_str() {
        return Err(ApiError::NotFound("no such broadcast".into()));
    }
    Ok(HttpResponse::Ok().json(broadcast))
}
