//! Cross-origin access (CORS) for pages served from other origins.
//!
//! Off by default: with no `cors.allowed_origins`, no response carries
//! `Access-Control-Allow-Origin` and every preflight is refused. Credentials
//! mode is never allowed, whatever the configuration: Herald authenticates
//! with a bearer token the calling script sends itself, never with cookies,
//! so `Access-Control-Allow-Credentials` would only widen what a hostile page
//! could do. Requests from origins that are not allowed are still served
//! (without CORS headers): same-origin pages send `Origin` on every POST, and
//! servers and scripts outside a browser are not subject to CORS at all.

use actix_cors::{Cors, CorsError};
use actix_web::ResponseError;
use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};

use crate::http::error::ApiError;
use crate::settings::CorsSettings;

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: usize = 600;

/// The CORS middleware for the configured origins.
pub fn middleware(settings: &CorsSettings) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST, Method::DELETE])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("last-event-id"),
        ])
        // Rate limits and token problems, readable by the calling script.
        .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
        .max_age(PREFLIGHT_MAX_AGE_SECS);
    if settings.allowed_origins.iter().any(|o| o == "*") {
        // `Access-Control-Allow-Origin: *`, which browsers never combine
        // with credentials.
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in &settings.allowed_origins {
            cors = cors.allowed_origin(origin);
        }
    }
    cors
}

/// Renders the CORS middleware's refusals (plain text by default) as
/// problem+json, like every other error.
pub fn problems<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().handler(StatusCode::BAD_REQUEST, as_problem)
}

fn as_problem<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let Some(refusal) = response
        .response()
        .error()
        .and_then(|e| e.as_error::<CorsError>())
    else {
        return Ok(ErrorHandlerResponse::Response(
            response.map_into_left_body(),
        ));
    };
    let detail = match refusal {
        CorsError::OriginNotAllowed => {
            "cross-origin requests from this origin are not allowed".to_owned()
        }
        other => format!("cross-origin request refused: {other}"),
    };
    let vary = response.headers().get(header::VARY).cloned();
    let (request, _) = response.into_parts();
    let mut problem = ApiError::BadRequest(detail).error_response();
    if let Some(vary) = vary {
        problem.headers_mut().insert(header::VARY, vary);
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, problem).map_into_right_body(),
    ))
}
