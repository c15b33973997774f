//! HTTP handlers, one module per resource.

pub(crate) mod health;
pub(crate) mod jobs;
pub(crate) mod models;
pub(crate) mod openapi;
pub(crate) mod page;
pub(crate) mod translate;

use axum::extract::rejection::QueryRejection;

use crate::error::ApiError;

pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found("no_route", format!("route {}", uri.path()))
}

/// Query parse failures become our JSON 400.
pub(crate) fn query<T>(q: Result<axum::extract::Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|q| q.0)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}
