//! `/v1/admin/webhooks`: the endpoints every matching event is POSTed to.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use crate::http::auth::Admin;
use crate::http::error::ApiError;
use crate::http::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    url: String,
    events: Vec<String>,
}

/// `POST /v1/admin/webhooks`: 201 with the secret, shown only here.
pub async fn create(
    state: web::Data<AppState>,
    Admin(_): Admin,
    body: web::Json<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let created = state.webhooks.create(&body.url, &body.events).await?;
    Ok(HttpResponse::Created().json(created))
}

/// `GET /v1/admin/webhooks`: every endpoint and its state, no secrets.
pub async fn list(state: web::Data<AppState>, Admin(_): Admin) -> Result<HttpResponse, ApiError> {
    let webhooks = state.webhooks.list().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "webhooks": webhooks })))
}

/// `DELETE /v1/admin/webhooks/{id}`: the endpoint and its pending
/// deliveries are gone.
pub async fn delete(
    state: web::Data<AppState>,
    Admin(_): Admin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state.webhooks.delete(*id).await?;
    Ok(HttpResponse::NoContent().finish())
}
