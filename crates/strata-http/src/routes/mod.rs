//! One router per feature, merged here.

pub mod backups;
pub mod datasets;
pub mod deploy;
pub mod docs;
pub mod health;
pub mod ingest;
pub mod orders;
pub mod reports;
pub mod rows;
pub mod tables;

use axum::extract::rejection::QueryRejection;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::Router;
use strata_domain::ErrorCode;

use crate::error::ApiError;
use crate::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(docs::router())
        .merge(tables::router())
        .merge(datasets::router())
        .merge(ingest::router())
        .merge(rows::router())
        .merge(backups::router())
        .merge(reports::router())
        .merge(orders::router())
        .merge(deploy::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::limits::guard_requests))
        .layer(axum::middleware::from_fn(crate::telemetry::track))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "no such endpoint; see /docs")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this endpoint does not accept that method; see /docs")
}

/// The media type of a request without parameters, lowercased.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

pub(crate) fn query_error(e: QueryRejection) -> ApiError {
    ApiError::new(ErrorCode::InvalidQuery, format!("invalid query string: {}", e.body_text()))
}
