//! The caller's own message center: `/v1/me/notifications...` and
//! `/v1/me/counts`.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::db::notifications::{ListFilter, Status};
use crate::domain::{ActionId, Category};
use crate::http::auth::User;
use crate::http::error::ApiError;
use crate::http::payloads::{self, Object};
use crate::http::state::AppState;
use crate::inbox::changes::{BulkOp, UserChange};

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
            Some("unseen") => Status::Unseen,
            Some("archived") => Status::Archived,
            Some("snoozed") => Status::Snoozed,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "status must be unread, read, unseen, all, archived or snoozed, not {other:?}"
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

pub async fn counts(state: web::Data<AppState>, User(p): User) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.inbox.counts(&p.user).await?))
}

pub async fn get(
    state: web::Data<AppState>,
    User(p): User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.inbox.get(&p.user, *id).await?))
}

async fn change(
    state: &AppState,
    user: &User,
    id: Uuid,
    change: UserChange,
) -> Result<HttpResponse, ApiError> {
    let n = state.inbox.change(&user.0.user, id, change).await?;
    Ok(HttpResponse::Ok().json(n))
}

pub async fn read(
    state: web::Data<AppState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    change(&state, &user, *id, UserChange::Read).await
}

pub async fn unread(
    state: web::Data<AppState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    change(&state, &user, *id, UserChange::Unread).await
}

pub async fn seen(
    state: web::Data<AppState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    change(&state, &user, *id, UserChange::Seen).await
}

pub async fn archive(
    state: web::Data<AppState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    change(&state, &user, *id, UserChange::Archive).await
}

pub async fn unarchive(
    state: web::Data<AppState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    change(&state, &user, *id, UserChange::Unarchive).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnoozeBody {
    until: String,
}

pub async fn snooze(
    state: web::Data<AppState>,
    user: User,
    id: web::Path<Uuid>,
    body: web::Json<Object<SnoozeBody>>,
) -> Result<HttpResponse, ApiError> {
    let until = DateTime::parse_from_rfc3339(&body.0.0.until)
        .map_err(|e| ApiError::Unprocessable(format!("until must be an RFC 3339 date-time: {e}")))?
        .with_timezone(&Utc)
        // Stored to the microsecond; the event says what is stored.
        .trunc_subsecs(6);
    change(&state, &user, *id, UserChange::Snooze(until)).await
}

pub async fn unsnooze(
    state: web::Data<AppState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    change(&state, &user, *id, UserChange::Unsnooze).await
}

pub async fn act(
    state: web::Data<AppState>,
    user: User,
    path: web::Path<(Uuid, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, action) = path.into_inner();
    // An id that cannot be an action id is not one of this notification's.
    let action = ActionId::parse(action)
        .map_err(|_| ApiError::NotFound("this notification has no such action".into()))?;
    change(&state, &user, id, UserChange::Act(action)).await
}

/// The optional body of the bulk operations.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    up_to_seq: Option<i64>,
}

async fn bulk(
    state: &AppState,
    user: &User,
    req: &HttpRequest,
    body: &[u8],
    op: BulkOp,
) -> Result<HttpResponse, ApiError> {
    let body: BulkBody = payloads::optional_json(req, body)?.unwrap_or_default();
    let category = body
        .category
        .map(Category::parse)
        .transpose()
        .map_err(ApiError::Unprocessable)?;
    if body.up_to_seq.is_some_and(|s| s < 0) {
        return Err(ApiError::Unprocessable(
            "up_to_seq must not be negative".into(),
        ));
    }
    let answer = state
        .inbox
        .bulk(&user.0.user, op, category.as_ref(), body.up_to_seq)
        .await?;
    Ok(HttpResponse::Ok().json(answer))
}

pub async fn read_all(
    state: web::Data<AppState>,
    user: User,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    bulk(&state, &user, &req, &body, BulkOp::ReadAll).await
}

pub async fn seen_all(
    state: web::Data<AppState>,
    user: User,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    bulk(&state, &user, &req, &body, BulkOp::SeenAll).await
}

pub async fn archive_all(
    state: web::Data<AppState>,
    user: User,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    bulk(&state, &user, &req, &body, BulkOp::ArchiveAll).await
}

pub async fn delete_all(
    state: web::Data<AppState>,
    user: User,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    bulk(&state, &user, &req, &body, BulkOp::DeleteAll).await
}

pub async fn delete(
    state: web::Data<AppState>,
    User(p): User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state.inbox.delete(&p.user, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
