//! The one conversion from an error to a gRPC status: the error's stable code
//! ([`strata_domain::error::Coded`]) picks the status code through its kind, as it picks the
//! HTTP status in `strata-http`. The message is the error's own, or one the caller chooses
//! where the error's text must not reach the client.

use strata_domain::error::{Coded, ErrorKind};
use tonic::{Code, Status};

/// The gRPC code of each kind of error code.
pub fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::BadRequest | ErrorKind::Unprocessable | ErrorKind::UnsupportedMediaType => Code::InvalidArgument,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Forbidden => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Conflict => Code::FailedPrecondition,
        ErrorKind::MethodNotAllowed => Code::Unimplemented,
        ErrorKind::TooLarge | ErrorKind::TooManyRequests => Code::ResourceExhausted,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Internal => Code::Internal,
    }
}

/// `e` as a status, with its own message.
pub fn status(e: &(impl Coded + ?Sized)) -> Status {
    Status::new(code_of(e.code().kind()), e.to_string())
}

/// `e` as a status, with `message` instead of the error's text.
pub fn status_with(e: &(impl Coded + ?Sized), message: &str) -> Status {
    Status::new(code_of(e.code().kind()), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_domain::ErrorCode;

    #[test]
    fn every_code_has_a_grpc_status_that_is_not_ok_or_unknown() {
        for c in ErrorCode::ALL {
            let code = code_of(c.kind());
            assert!(!matches!(code, Code::Ok | Code::Unknown), "{c:?}");
        }
        assert_eq!(code_of(ErrorCode::InvalidQuery.kind()), Code::InvalidArgument);
        assert_eq!(code_of(ErrorCode::QueryTimeout.kind()), Code::DeadlineExceeded);
        assert_eq!(code_of(ErrorCode::QueryTooLarge.kind()), Code::ResourceExhausted);
        assert_eq!(code_of(ErrorCode::QueryCancelled.kind()), Code::Cancelled);
        assert_eq!(code_of(ErrorCode::DatabaseUnavailable.kind()), Code::Unavailable);
    }
}
