//! `/v1/topics...` (publishers) and `/v1/me/topics` (users).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::db;
use crate::domain::{TopicName, UserId};
use crate::http::auth::{Publisher, User};
use crate::http::error::ApiError;
use crate::http::payloads::Object;
use crate::http::state::AppState;

/// The most users one membership change names.
const MAX_USERS: usize = 10_000;

fn topic(raw: &str) -> Result<TopicName, ApiError> {
    TopicName::parse(raw).map_err(ApiError::BadRequest)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    users: Vec<String>,
}

impl Members {
    fn checked(&self) -> Result<Vec<&str>, ApiError> {
        if self.users.is_empty() || self.users.len() > MAX_USERS {
            return Err(ApiError::Unprocessable(format!(
                "users must list 1 to {MAX_USERS} user ids"
            )));
        }
        for (i, u) in self.users.iter().enumerate() {
            UserId::parse(u).map_err(|e| ApiError::Unprocessable(format!("users[{i}]: {e}")))?;
        }
        let mut users: Vec<&str> = self.users.iter().map(String::as_str).collect();
        users.sort_unstable();
        users.dedup();
        Ok(users)
    }
}

pub async fn subscribe(
    state: web::Data<AppState>,
    Publisher(_): Publisher,
    name: web::Path<String>,
    body: web::Json<Object<Members>>,
) -> Result<HttpResponse, ApiError> {
    let topic = topic(&name)?;
    let users = body.0.0.checked()?;
    let mut conn = state.pool.acquire().await?;
    let added = db::topics::subscribe(&mut conn, topic.as_str(), &users).await?;
    Ok(HttpResponse::Ok().json(json!({ "added": added })))
}

pub async fn unsubscribe(
    state: web::Data<AppState>,
    Publisher(_): Publisher,
    name: web::Path<String>,
    body: web::Json<Object<Members>>,
) -> Result<HttpResponse, ApiError> {
    let topic = topic(&name)?;
    let users = body.0.0.checked()?;
    let mut conn = state.pool.acquire().await?;
    let removed = db::topics::unsubscribe(&mut conn, topic.as_str(), &users).await?;
    Ok(HttpResponse::Ok().json(json!({ "removed": removed })))
}

#[derive(Deserialize)]
pub struct Page {
    after: Option<String>,
    limit: Option<i64>,
}

impl Page {
    fn limit(&self) -> Result<i64, ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::BadRequest(
                "limit must be between 1 and 1000".into(),
            ));
        }
        // PostgreSQL cannot compare text with U+0000 in it.
        if self.after.as_deref().is_some_and(|a| a.contains('\0')) {
            return Err(ApiError::BadRequest("after must not contain U+0000".into()));
        }
        Ok(limit)
    }
}

pub async fn subscribers(
    state: web::Data<AppState>,
    Publisher(_): Publisher,
    name: web::Path<String>,
    query: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let topic = topic(&name)?;
    let limit = query.limit()?;
    let mut conn = state.pool.acquire().await?;
    let users =
        db::topics::subscribers(&mut conn, topic.as_str(), query.after.as_deref(), limit).await?;
    let next_after = (users.len() as i64 == limit)
        .then(|| users.last().cloned())
        .flatten();
    Ok(HttpResponse::Ok().json(json!({ "users": users, "next_after": next_after })))
}

pub async fn list(
    state: web::Data<AppState>,
    Publisher(_): Publisher,
    query: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit()?;
    let mut conn = state.pool.acquire().await?;
    let topics = db::topics::topics(&mut conn, query.after.as_deref(), limit).await?;
    let next_after = (topics.len() as i64 == limit)
        .then(|| topics.last().map(|(name, _)| name.clone()))
        .flatten();
    let topics: Vec<_> = topics
        .into_iter()
        .map(|(name, subscribers)| json!({ "name": name, "subscribers": subscribers }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "topics": topics, "next_after": next_after })))
}

pub async fn mine(state: web::Data<AppState>, User(p): User) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let topics = db::topics::of_user(&mut conn, p.user.as_str()).await?;
    Ok(HttpResponse::Ok().json(json!({ "topics": topics })))
}
