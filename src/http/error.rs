//! The one error type of the HTTP API, rendered as RFC 9457 problem+json.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::inbox::InboxError;
use crate::live::coalesce::BatchFailed;
use crate::live::subscription::SubscribeError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body arrived too slowly (see `body_deadline`).
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after: Option<u64>,
    },
    #[error("{0}")]
    Unavailable(String),
    /// The identity provider's keys are not known yet (`http::jwks`).
    #[error("{detail}")]
    KeysUnavailable { detail: String, retry_after: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The RFC 9457 body.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
}

impl ApiError {
    /// Slug of the problem type URI and its fixed title.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest(_) => ("bad-request", "Malformed request"),
            Self::Unauthorized(_) => ("unauthorized", "Missing or invalid token"),
            Self::Forbidden(_) => ("forbidden", "Missing scope"),
            Self::NotFound(_) => ("not-found", "Not found"),
            Self::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            Self::Conflict(_) => ("conflict", "Conflict"),
            Self::PayloadTooLarge(_) => ("payload-too-large", "Request too large"),
            Self::RequestTimeout(_) => ("request-timeout", "Request too slow"),
            Self::UnsupportedMediaType(_) => ("unsupported-media-type", "Unsupported media type"),
            Self::Unprocessable(_) => ("invalid-content", "Invalid content"),
            Self::TooManyRequests { .. } => ("too-many-requests", "Over a limit"),
            Self::Unavailable(_) => ("unavailable", "Database unavailable"),
            Self::KeysUnavailable { .. } => ("keys-unavailable", "Signing keys unavailable"),
            Self::Internal(_) => ("internal", "Internal error"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::KeysUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        if let Self::TooManyRequests {
            retry_after: Some(secs),
            ..
        }
        | Self::KeysUnavailable {
            retry_after: secs, ..
        } = self
        {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(*secs)));
        }
        if let Self::Unauthorized(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(self.problem())
    }
}

impl ApiError {
    /// The problem document, also sent in WebSocket error frames.
    pub fn problem(&self) -> Problem {
        let (slug, title) = self.kind();
        let detail = match self {
            // The cause goes to the log, not to the client.
            Self::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "the server failed to handle this request".to_owned()
            }
            other => other.to_string(),
        };
        Problem {
            kind: format!("https://herald.example/problems/{slug}"),
            title,
            status: self.status_code().as_u16(),
            detail,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            Self::Unavailable("the database is unavailable; retry later".into())
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<InboxError> for ApiError {
    fn from(e: InboxError) -> Self {
        match e {
            InboxError::NotFound(what) => Self::NotFound(what.into()),
            InboxError::Rejected(why) => Self::Unprocessable(why.into()),
            InboxError::Invalid(why) => Self::Unprocessable(why),
            InboxError::Conflict(why) => Self::Conflict(why.into()),
            InboxError::Unavailable | InboxError::ShuttingDown => Self::Unavailable(e.to_string()),
            InboxError::Failed(cause) => Self::Internal(anyhow::anyhow!(cause)),
        }
    }
}

impl From<BatchFailed> for ApiError {
    fn from(e: BatchFailed) -> Self {
        if e.unavailable {
            tracing::warn!(error = %e, "database unavailable");
            Self::Unavailable("the database is unavailable; retry later".into())
        } else {
            Self::Internal(anyhow::anyhow!(e))
        }
    }
}

impl From<SubscribeError> for ApiError {
    fn from(e: SubscribeError) -> Self {
        match e {
            SubscribeError::TooManyStreams(detail) => Self::TooManyRequests {
                detail,
                retry_after: Some(5),
            },
            SubscribeError::Read(e) => e.into(),
        }
    }
}
