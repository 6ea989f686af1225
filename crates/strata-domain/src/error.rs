//! The one table of stable error codes.
//!
//! Every error a client can see carries one of these codes. A code never changes meaning once
//! released; new situations get new codes. Each code belongs to a [`ErrorKind`], and each
//! protocol maps kinds to its own status (HTTP in `strata-http`, gRPC in `strata-grpc`), so the domain stays
//! protocol-free while the mapping lives in one place per protocol.

use serde::Serialize;

/// What sort of failure a code is; protocols map this to their status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed (bad syntax, bad parameter). HTTP 400.
    BadRequest,
    /// No or unknown credentials. HTTP 401.
    Unauthenticated,
    /// Known caller, not allowed. HTTP 403.
    Forbidden,
    /// The addressed thing does not exist (or belongs to someone else). HTTP 404.
    NotFound,
    /// The request conflicts with the current state. HTTP 409.
    Conflict,
    /// The method is not served on this path. HTTP 405.
    MethodNotAllowed,
    /// The body is larger than allowed. HTTP 413.
    TooLarge,
    /// The body is of a type the endpoint does not take. HTTP 415.
    UnsupportedMediaType,
    /// Well-formed but semantically invalid input. HTTP 422.
    Unprocessable,
    /// The client took too long to send its request. HTTP 408.
    Timeout,
    /// The caller is over a rate or concurrency limit; retry later. HTTP 429.
    TooManyRequests,
    /// A dependency is down. HTTP 503.
    Unavailable,
    /// The caller cancelled the work (a query cancelled through the protocol). HTTP 499.
    Cancelled,
    /// Our fault. HTTP 500; the message never carries internals.
    Internal,
}

/// An error that says its stable code. Every error type a protocol shows implements it, so each
/// protocol has one conversion from any error to its status (`strata-http`'s `ApiError`,
/// `strata-grpc`'s `status`), driven by the code's [`ErrorKind`].
pub trait Coded: std::error::Error {
    fn code(&self) -> ErrorCode;
}

macro_rules! error_codes {
    ($( $variant:ident => ($code:literal, $kind:ident) ),* $(,)?) => {
        /// Stable, machine-readable error codes. See the module docs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $( $variant ),* }

        impl Serialize for ErrorCode {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant ),* ];

            pub fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $code ),* }
            }

            pub fn kind(self) -> ErrorKind {
                match self { $( ErrorCode::$variant => ErrorKind::$kind ),* }
            }
        }
    };
}

error_codes! {
    MissingAuthorization => ("missing_authorization", Unauthenticated),
    InvalidAuthorization => ("invalid_authorization", Unauthenticated),
    InvalidApiKey => ("invalid_api_key", Unauthenticated),
    InvalidTenantId => ("invalid_tenant_id", BadRequest),
    TenantExists => ("tenant_exists", Conflict),
    TenantNotFound => ("tenant_not_found", NotFound),
    InvalidDataset => ("invalid_dataset", Unprocessable),
    DatasetConflict => ("dataset_conflict", Conflict),
    TableNotFound => ("table_not_found", NotFound),
    RowNotFound => ("row_not_found", NotFound),
    InvalidKey => ("invalid_key", BadRequest),
    InvalidPath => ("invalid_path", BadRequest),
    InvalidCursor => ("invalid_cursor", BadRequest),
    InvalidLimit => ("invalid_limit", BadRequest),
    InvalidQuery => ("invalid_query", BadRequest),
    MalformedJson => ("malformed_json", BadRequest),
    MalformedCsv => ("malformed_csv", BadRequest),
    MalformedBody => ("malformed_body", BadRequest),
    EmptyBatch => ("empty_batch", BadRequest),
    BatchTooLarge => ("batch_too_large", TooLarge),
    BodyTooLarge => ("body_too_large", TooLarge),
    UnsupportedMediaType => ("unsupported_media_type", UnsupportedMediaType),
    InvalidIdempotencyKey => ("invalid_idempotency_key", BadRequest),
    IdempotencyKeyReused => ("idempotency_key_reused", Conflict),
    RouteNotFound => ("route_not_found", NotFound),
    MethodNotAllowed => ("method_not_allowed", MethodNotAllowed),
    ReportUnavailable => ("report_unavailable", NotFound),
    InvalidYear => ("invalid_year", BadRequest),
    InvalidFormat => ("invalid_format", BadRequest),
    BackupNotFound => ("backup_not_found", NotFound),
    BtcCapExceeded => ("btc_cap_exceeded", Conflict),
    InvalidOrder => ("invalid_order", Unprocessable),
    MissingIdempotencyKey => ("missing_idempotency_key", BadRequest),
    OrderNotFound => ("order_not_found", NotFound),
    RateUnavailable => ("rate_unavailable", Unavailable),
    InvalidBackup => ("invalid_backup", Unprocessable),
    RestoreRefused => ("restore_refused", Unprocessable),
    RestoreWouldOrphanRows => ("restore_would_orphan_rows", Conflict),
    BackupFailed => ("backup_failed", Internal),
    InvalidCodec => ("invalid_codec", BadRequest),
    DatabaseUnavailable => ("database_unavailable", Unavailable),
    TenantBusy => ("tenant_busy", TooManyRequests),
    RequestTimeout => ("request_timeout", Timeout),
    AdminApiDisabled => ("admin_api_disabled", NotFound),
    InvalidAdminToken => ("invalid_admin_token", Unauthenticated),
    InvalidStack => ("invalid_stack", BadRequest),
    SwitchRefused => ("switch_refused", Conflict),
    QueryCancelled => ("query_cancelled", Cancelled),
    QueryTimeout => ("query_timeout", Timeout),
    QueryTooLarge => ("query_too_large", TooLarge),
    Internal => ("internal_error", Internal),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_strings() {
        let mut seen = HashSet::new();
        for c in ErrorCode::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{s}");
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(s));
        }
    }
}
