//! The caller's own message center: `/v1/me/notifications...`.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use uuid::Uuid;

use crate::db::notifications::{ListFilter, Status};
use crate::http::auth::User;
use crate::http::error::ApiError;
use crate::http::state::AppState;

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    category: Option<String>,
    limit: Option<i64>,
    before: Option<i64>,
}

impl ListQuery {
    pub fn filter(&self) -> Result<ListFilter<'_>, ApiError> {
        let status = match self.status.as_deref() {
            None | Some("all") => Status::All,
            Some("unread") => Status::Unread,
            Some("read") => Status::Read,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "status must be unread, read or all, not {other:?}"
                )));
            }
        };
        let limit = self.limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::BadRequest(
                "limit must be between 1 and 100".into(),
            ));
        }
        if self.before.is_some_and(|b| b < 1) {
            return Err(ApiError::BadRequest("before must be a positive seq".into()));
        }
        // PostgreSQL cannot compare text with U+0000 in it.
        if self.category.as_deref().is_some_and(|c| c.contains('\0')) {
            return Err(ApiError::BadRequest(
                "category must not contain U+0000".into(),
            ));
        }
        Ok(ListFilter {
            status,
            category: self.category.as_deref().filter(|c| !c.is_empty()),
            before: self.before,
            limit,
        })
    }
}

pub async fn list(
    state: web::Data<AppState>,
    User(p): User,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = state.inbox.page(&p.user, query.filter()?).await?;
    Ok(HttpResponse::Ok().json(page))
}

pub async fn get(
    state: web::Data<AppState>,
    User(p): User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.inbox.get(&p.user, *id).await?))
}

pub async fn read(
    state: web::Data<AppState>,
    User(p): User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.inbox.set_read(&p.user, *id, true).await?))
}

pub async fn unread(
    state: web::Data<AppState>,
    User(p): User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.inbox.set_read(&p.user, *id, false).await?))
}

pub async fn read_all(state: web::Data<AppState>, User(p): User) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.inbox.read_all(&p.user).await?))
}

pub async fn delete(
    state: web::Data<AppState>,
    User(p): User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state.inbox.delete(&p.user, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
