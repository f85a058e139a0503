//! `/v1/schedules/{id}`: a publisher's scheduled publishes.

use actix_web::{HttpResponse, web};
use uuid::Uuid;

use crate::http::auth::Publisher;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::inbox::schedules::Asker;

pub async fn get(
    state: web::Data<AppState>,
    Publisher(p): Publisher,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let asker = Asker {
        user: &p.user,
        admin: p.admin,
    };
    Ok(HttpResponse::Ok().json(state.schedules.get(asker, *id).await?))
}

pub async fn cancel(
    state: web::Data<AppState>,
    Publisher(p): Publisher,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let asker = Asker {
        user: &p.user,
        admin: p.admin,
    };
    state.schedules.cancel(asker, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}
