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
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(crate::telemetry::track))
        .with_state(state)
}

/// Every error is JSON: a rejection axum produced itself (a path segment that is not UTF-8, say)
/// arrives as plain text and leaves as the API's error shape, with a code for its status.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let code = match status.as_u16() {
        400 => ErrorCode::InvalidPath,
        404 => ErrorCode::RouteNotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::RequestTimeout,
        413 => ErrorCode::BodyTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::MalformedJson,
        _ => ErrorCode::Internal,
    };
    let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap_or_default();
    let text: String = String::from_utf8_lossy(&body).chars().filter(|c| !c.is_control()).take(200).collect();
    let message = if code == ErrorCode::Internal { "an internal error occurred".to_string() } else { text };
    let mut out = ApiError::new(code, message).into_response();
    *out.status_mut() = status;
    out
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "no such endpoint; see /docs")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this endpoint does not accept that method; see /docs")
}

/// The one value of a header that may appear at most once: a repeated `Idempotency-Key` must
/// not be silently reduced to its first copy.
pub(crate) fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<Option<&'h axum::http::HeaderValue>, ApiError> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            format!("send the {name} header once; this request repeats it"),
        ));
    }
    Ok(first)
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
