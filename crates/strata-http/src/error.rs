//! The one API error type and its JSON form.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use strata_domain::error::{ErrorCode, ErrorKind};
use strata_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: serde_json::Value,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: json!({}) }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// The HTTP status of each kind of error code: the single mapping from codes to statuses.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Timeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        // nginx's "client closed request": no standard status says "cancelled by the caller".
        ErrorKind::Cancelled => StatusCode::from_u16(499).expect("a valid status"),
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.code.kind());
        let body = json!({
            "error": {"code": self.code.as_str(), "message": self.message, "details": self.details}
        });
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of a slow body may still be on its way: close rather than wait for it.
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// Logs the full cause chain of an internal error; the client only learns that one happened.
fn log_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let code = e.code();
        match &e {
            StoreError::Database(_) => {
                tracing::error!(error = %log_chain(&e), "internal error");
                ApiError::new(code, "an internal error occurred; it has been logged")
            }
            StoreError::Unavailable(_) => {
                tracing::error!(error = %log_chain(&e), "database unavailable");
                ApiError::new(code, "the database is unavailable; try again shortly")
            }
            StoreError::InvalidDataset(d) => {
                ApiError::new(code, e.to_string()).with_details(json!({ "problems": d.problems }))
            }
            _ => ApiError::new(code, e.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
