//! `/v1/me/preferences...` and the same for administrators under
//! `/v1/admin/users/{user_id}/preferences...`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::domain::{Category, UserId};
use crate::http::auth::{Admin, User};
use crate::http::error::ApiError;
use crate::http::payloads::Object;
use crate::http::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setting {
    enabled: bool,
}

fn category(raw: String) -> Result<Category, ApiError> {
    Category::parse(raw).map_err(ApiError::BadRequest)
}

fn user(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|e| ApiError::BadRequest(format!("user_id: {e}")))
}

pub async fn get(state: web::Data<AppState>, User(p): User) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.inbox.preferences(&p.user).await?))
}

pub async fn set(
    state: web::Data<AppState>,
    User(p): User,
    name: web::Path<String>,
    body: web::Json<Object<Setting>>,
) -> Result<HttpResponse, ApiError> {
    let category = category(name.into_inner())?;
    let doc = state
        .inbox
        .set_preference(&p.user, &category, body.0.0.enabled)
        .await?;
    Ok(HttpResponse::Ok().json(doc))
}

pub async fn admin_get(
    state: web::Data<AppState>,
    Admin(_): Admin,
    user_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user(&user_id)?;
    Ok(HttpResponse::Ok().json(state.inbox.preferences(&user).await?))
}

pub async fn admin_set(
    state: web::Data<AppState>,
    Admin(_): Admin,
    path: web::Path<(String, String)>,
    body: web::Json<Object<Setting>>,
) -> Result<HttpResponse, ApiError> {
    let (user_id, name) = path.into_inner();
    let user = user(&user_id)?;
    let category = category(name)?;
    let doc = state
        .inbox
        .set_preference(&user, &category, body.0.0.enabled)
        .await?;
    Ok(HttpResponse::Ok().json(doc))
}
