//! Operations endpoints (no token) and the browser page.

use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::http::telemetry;

const OPENAPI: &str = include_str!("../../../openapi.yaml");
const PAGE: &str = include_str!("../../../static/index.html");
const SCRIPT: &str = include_str!("../../../static/app.js");
const I18N_SCRIPT: &str = include_str!("../../../static/i18n.js");
const STYLESHEET: &str = include_str!("../../../static/app.css");

/// The page runs only its own script and style: no inline code, no other
/// origins, never framed.
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// 200 only while the database answers; concurrent probes share one check.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.readiness.database_answers(&state.pool).await {
        return Err(ApiError::Unavailable(
            "the database is unavailable; retry later".into(),
        ));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    telemetry::record_gauges(&state);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(telemetry::metrics_handle().render())
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(OPENAPI)
}

pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::html())
        .insert_header(("Content-Security-Policy", PAGE_CSP))
        .insert_header(("Cache-Control", "no-cache"))
        .body(PAGE)
}

pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(SCRIPT)
}

/// The page's message tables and formatting, an ES module `app.js` imports.
pub async fn i18n_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(I18N_SCRIPT)
}

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(STYLESHEET)
}

/// The default service: anything the route table does not know.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
