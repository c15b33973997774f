//! The one HTTP error type: every failure becomes `{"error": {"code", "message"}}` with a stable
//! code and one status; details of 5xx failures are logged, never sent to the client.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use brs_image::decode::DecodeError;
use serde::Serialize;

use crate::clients::Refusal;
use crate::error::ServeError;
use crate::jobs::ErrorDetail;

/// Seconds a client is told to wait after a 503.
pub(crate) const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: Duration,
    },
    #[error("{message}")]
    Banned {
        message: String,
        retry_after: Duration,
    },
    #[error("the server is at its request limit; retry shortly")]
    Overloaded,
    #[error("the request body arrived too slowly")]
    BodyTimeout,
    #[error("{what} not found")]
    NotFound { code: &'static str, what: String },
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of every error.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: ErrorDetail,
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::MissingKey | Refusal::BadKey => ApiError::Unauthorized(r.to_string()),
            Refusal::RateLimited { retry_after } => ApiError::TooManyRequests {
                message: r.to_string(),
                retry_after,
            },
            Refusal::Banned { retry_after } => ApiError::Banned {
                message: r.to_string(),
                retry_after,
            },
            Refusal::TooManyInFlight { .. } => ApiError::TooManyRequests {
                message: r.to_string(),
                retry_after: Duration::from_secs(RETRY_AFTER_SECS),
            },
        }
    }
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::Serve(e) => serve_status(e),
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests { .. } | ApiError::Banned { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn code(&self) -> &'static str {
        match self {
            ApiError::Serve(ServeError::Image(DecodeError::TooLarge { .. })) => "payload_too_large",
            ApiError::Serve(ServeError::Image(DecodeError::Unsupported(_))) => {
                "unsupported_media_type"
            }
            ApiError::Serve(e) => e.code(),
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Banned { .. } => "banned",
            ApiError::Overloaded => "overloaded",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::NotFound { code, .. } => code,
            ApiError::Internal(_) => "internal",
        }
    }

    /// What the client may see: internal details stay in the log.
    pub(crate) fn detail(&self) -> ErrorDetail {
        let message = match self {
            ApiError::Serve(e) => e.public_message(),
            ApiError::Internal(_) => "internal error; see the server log".to_string(),
            other => other.to_string(),
        };
        ErrorDetail {
            code: self.code().to_string(),
            message,
        }
    }

    pub(crate) fn not_found(code: &'static str, what: impl Into<String>) -> Self {
        ApiError::NotFound {
            code,
            what: what.into(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::Banned { retry_after, .. } => Some(*retry_after),
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => {
                Some(Duration::from_secs(RETRY_AFTER_SECS))
            }
            _ => None,
        }
    }
}

fn serve_status(e: &ServeError) -> StatusCode {
    match e {
        ServeError::Image(DecodeError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        ServeError::Image(DecodeError::Unsupported(_)) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ServeError::Image(DecodeError::Io { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
        ServeError::Image(_) | ServeError::NoFace => StatusCode::UNPROCESSABLE_ENTITY,
        ServeError::UnknownStyle(_) | ServeError::UnknownJob(_) | ServeError::UnknownResult(_) => {
            StatusCode::NOT_FOUND
        }
        ServeError::BadParameter(_) => StatusCode::BAD_REQUEST,
        ServeError::QueueFull
        | ServeError::Draining
        | ServeError::NotReady
        | ServeError::ModelUnavailable { .. }
        | ServeError::Store(_)
        | ServeError::Queue(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        ServeError::Inference(_)
        | ServeError::Detector(_)
        | ServeError::Encode { .. }
        | ServeError::InputMissing(_)
        | ServeError::Random(_)
        | ServeError::Task(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(code = self.code(), error = %self, "request failed");
        } else if matches!(self.code(), "store_unavailable" | "queue_unavailable") {
            tracing::warn!(code = self.code(), error = %self, "request failed");
        }
        let retry = self.retry_after();
        let mut resp = (
            status,
            Json(ErrorBody {
                error: self.detail(),
            }),
        )
            .into_response();
        if let Some(after) = retry {
            // Whole seconds, rounded up: "0" would invite an immediate retry.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp.extensions_mut()
            .insert(crate::http::ErrorCode(self.code()));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_are_not_leaked() {
        let d = ApiError::Internal("disk /secret/path failed".into()).detail();
        assert_eq!(d.code, "internal");
        assert!(!d.message.contains("secret"));
        let d = ApiError::Serve(ServeError::Inference("/srv/x.so: boom".into())).detail();
        assert!(!d.message.contains("/srv"));
    }

    #[test]
    fn decode_errors_map_to_documented_statuses() {
        let cases = [
            (
                DecodeError::Empty,
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty",
            ),
            (
                DecodeError::TooLarge { bytes: 9, limit: 3 },
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
            (
                DecodeError::Unsupported("x".into()),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                DecodeError::Corrupt("truncated".into()),
                StatusCode::UNPROCESSABLE_ENTITY,
                "corrupt",
            ),
        ];
        for (e, status, code) in cases {
            let e = ApiError::from(ServeError::from(e));
            assert_eq!((e.status(), e.code()), (status, code));
        }
    }

    #[test]
    fn unavailable_and_throttled_carry_retry_after() {
        let r = ApiError::from(ServeError::QueueFull).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = ApiError::from(Refusal::RateLimited {
            retry_after: Duration::from_millis(2500),
        })
        .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }
}
