//! The caller's own message center: `/v1/me/notifications...`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db;
use crate::db::notifications::{ListFilter, Status};
use crate::domain::event::Notification;
use crate::http::auth::User;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::inbox::changes;

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    category: Option<String>,
    limit: Option<i64>,
    before: Option<i64>,
}

#[derive(Serialize)]
pub struct Page {
    pub items: Vec<Notification>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<i64>,
    /// The user's current seq: resume the stream from here with no gap.
    pub last_seq: i64,
    pub unread_count: i64,
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

/// One page of a user's notifications with `last_seq` and `unread_count`
/// from the same snapshot, so resuming from `last_seq` loses nothing.
pub async fn page_of(
    state: &AppState,
    user: &crate::domain::UserId,
    filter: ListFilter<'_>,
) -> Result<Page, ApiError> {
    let mut tx = db::snapshot(&state.pool).await?;
    let (last_seq, unread_count) = db::notifications::summary(&mut tx, user).await?;
    let limit = filter.limit;
    let mut items = db::notifications::list(
        &mut tx,
        user,
        &ListFilter {
            limit: limit + 1,
            ..filter
        },
    )
    .await?;
    tx.commit().await?;
    let next_before = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|n| n.seq)
    } else {
        None
    };
    Ok(Page {
        items,
        next_before,
        last_seq,
        unread_count,
    })
}

pub async fn list(
    state: web::Data<AppState>,
    User(p): User,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page_of(&state, &p.user, query.filter()?).await?;
    Ok(HttpResponse::Ok().json(page))
}

pub async fn get(
    state: web::Data<AppState>,
    User(p): User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let notification = db::notifications::get(&mut conn, &p.user, *id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such notification".into()))?;
    Ok(HttpResponse::Ok().json(notification))
}

pub async fn read(
    state: web::Data<AppState>,
    User(p): User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(changes::set_read(&state, &p.user, *id, true).await?))
}

pub async fn unread(
    state: web::Data<AppState>,
    User(p): User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(changes::set_read(&state, &p.user, *id, false).await?))
}

pub async fn read_all(state: web::Data<AppState>, User(p): User) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(changes::read_all(&state, &p.user).await?))
}

pub async fn delete(
    state: web::Data<AppState>,
    User(p): User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    changes::delete(&state, &p.user, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
