//! Operations endpoints (no token) and the browser page.

use std::sync::LazyLock;

use actix_web::http::header::{self, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::http::telemetry;

const OPENAPI: &str = include_str!("../../../openapi.yaml");
const PAGE: &str = include_str!("../../../static/index.html");
const SCRIPT: &str = include_str!("../../../static/app.js");
const I18N_SCRIPT: &str = include_str!("../../../static/i18n.js");
const STYLESHEET: &str = include_str!("../../../static/app.css");
/// The JavaScript client, as the npm package `herald-client` has it. One
/// module holds the browser and the mini-program client, so each URL serves
/// a self-contained file (mini-programs cannot load a second one).
const CLIENT: &str = include_str!("../../../clients/js/herald.js");

/// A strong validator of the client: its content's hash, so it changes
/// exactly when the file does, whichever build or instance serves it.
static CLIENT_ETAG: LazyLock<String> =
    LazyLock::new(|| format!("\"{}\"", hex::encode(&Sha256::digest(CLIENT)[..16])));

/// The file's URL stays the same across Herald versions, so it cannot be
/// cached forever like a file whose name carries its hash. An hour is what
/// an old copy may live on after an upgrade, which is harmless because the
/// wire contract only grows; after that, or on a reload, the browser asks
/// again with `If-None-Match` and a `304` answer costs no body. Shared
/// caches may keep it too: it is the same public file for every user.
const CLIENT_CACHE_CONTROL: &str = "public, max-age=3600";

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

/// `GET /client/herald.js` and `GET /client/miniprogram.js`: the client
/// library as an ES module, with an `ETag`; a matching `If-None-Match`
/// answers `304 Not Modified`.
pub async fn client_script(req: HttpRequest) -> HttpResponse {
    let etag = CLIENT_ETAG.as_str();
    let current = none_match(&req, etag);
    let mut answer = if current {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    answer
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, CLIENT_CACHE_CONTROL));
    if current {
        return answer.finish();
    }
    answer
        .content_type("text/javascript; charset=utf-8")
        .body(CLIENT)
}

/// Whether `If-None-Match` names `etag` (or is `*`). The comparison is
/// weak, as RFC 9110 says for this header: `W/"x"` matches `"x"`.
fn none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// The default service: anything the route table does not know.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
