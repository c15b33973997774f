//! The one HTTP error type: every failure becomes `{"error": {"code", "message"}}` with a stable
//! code and one status; details of 5xx failures are logged, never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use brs_image::decode::DecodeError;
use serde::Serialize;

/// Seconds a client is told to wait after a 503.
pub(crate) const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Undecodable or refused image content; `code` comes from the decoder.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{what} not found")]
    NotFound { code: &'static str, what: String },
    #[error("the inference queue is full; retry shortly")]
    QueueFull,
    #[error("this instance is shutting down; retry on another")]
    Draining,
    #[error("models are still loading")]
    NotReady,
    #[error("the translation took longer than {secs} s")]
    Timeout { secs: f64 },
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of every error.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct ErrorDetail {
    pub(crate) code: String,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::QueueFull | ApiError::Draining | ApiError::NotReady => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn code(&self) -> &'static str {
        match self {
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unprocessable { code, .. } => code,
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound { code, .. } => code,
            ApiError::QueueFull => "queue_full",
            ApiError::Draining => "draining",
            ApiError::NotReady => "not_ready",
            ApiError::Timeout { .. } => "timeout",
            ApiError::Internal(_) => "internal",
        }
    }

    /// What the client may see: internal details stay in the log.
    pub(crate) fn detail(&self) -> ErrorDetail {
        let message = match self {
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
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        match &e {
            DecodeError::TooLarge { limit, .. } => ApiError::PayloadTooLarge {
                limit: usize::try_from(*limit).unwrap_or(usize::MAX),
            },
            DecodeError::Unsupported(_) => ApiError::UnsupportedMediaType(e.to_string()),
            DecodeError::Io { .. } => ApiError::Internal(e.to_string()),
            _ => ApiError::Unprocessable {
                code: e.code(),
                message: e.to_string(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error()
            && !matches!(
                self,
                ApiError::QueueFull | ApiError::Draining | ApiError::NotReady
            )
        {
            tracing::error!(code = self.code(), error = %self, "request failed");
        }
        let mut resp = (
            status,
            Json(ErrorBody {
                error: self.detail(),
            }),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
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
    }

    #[test]
    fn decode_errors_map_to_documented_statuses() {
        let e: ApiError = DecodeError::Empty.into();
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "empty")
        );
        let e: ApiError = DecodeError::TooLarge { bytes: 9, limit: 3 }.into();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let e: ApiError = DecodeError::Unsupported("x".into()).into();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e: ApiError = DecodeError::TooManyPixels {
            width: 1,
            height: 2,
            limit: "3".into(),
        }
        .into();
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "too_many_pixels")
        );
    }

    #[test]
    fn unavailable_carries_retry_after() {
        let r = ApiError::QueueFull.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
