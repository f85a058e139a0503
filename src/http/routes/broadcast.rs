//! `POST /v1/broadcasts` and `GET /v1/admin/broadcasts/{id}`.

use actix_web::{HttpResponse, web};
use uuid::Uuid;

use super::publish::NotificationBody;
use crate::db;
use crate::domain::now_micros;
use crate::domain::{Body, Category, NotificationData};
use crate::http::auth::Admin;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Stores the broadcast and wakes the worker; the answer does not wait for
/// any user to receive it.
pub async fn create(
    state: web::Data<AppState>,
    Admin(principal): Admin,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let value = body.into_inner();
    if !value.is_object() {
        return Err(ApiError::Unprocessable(
            "the body must be a JSON object".into(),
        ));
    }
    if value.get("recipients").is_some() {
        return Err(ApiError::Unprocessable(
            "a broadcast goes to every known user: `recipients` is not allowed".into(),
        ));
    }
    let body: NotificationBody =
        serde_json::from_value(value).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let content = body.content()?;
    let broadcast = db::broadcasts::create(
        &state.pool,
        &db::broadcasts::New {
            id: Uuid::now_v7(),
            title: content.title.as_str(),
            body: content.body.as_ref().map(Body::as_str),
            category: content.category.as_ref().map(Category::as_str),
            data: content.data.as_ref().map(NotificationData::as_json),
            expires_at: content.expires_at,
            created_by: principal.user.as_str(),
            created_at: now_micros(),
        },
    )
    .await?;
    state.broadcaster.wake();
    Ok(HttpResponse::Accepted().json(broadcast))
}

pub async fn get(
    state: web::Data<AppState>,
    Admin(_): Admin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let broadcast = db::broadcasts::get(&state.pool, *id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such broadcast".into()))?;
    Ok(HttpResponse::Ok().json(broadcast))
}
