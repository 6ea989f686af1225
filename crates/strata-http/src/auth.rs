//! Authentication: every `/v1` handler takes an [`AuthTenant`], so none can run without one.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use strata_domain::tenant::{looks_like_api_key, KeyHash, TenantId};
use strata_domain::ErrorCode;

use crate::error::ApiError;
use crate::AppState;

/// The tenant whose API key signed the request.
#[derive(Debug, Clone)]
pub struct AuthTenant(pub TenantId);

impl FromRequestParts<AppState> for AuthTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::new(
                ErrorCode::MissingAuthorization,
                "this endpoint needs an API key: send Authorization: Bearer <key>",
            )
        })?;
        let value = header.to_str().map_err(|_| bad_scheme())?;
        let (scheme, token) = value.split_once(' ').ok_or_else(bad_scheme)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(bad_scheme());
        }
        let token = token.trim();
        // Never echo the presented key back, and never look up garbage.
        if !looks_like_api_key(token) {
            return Err(unknown_key());
        }
        match state.store.tenants().authenticate(&KeyHash::of(token)).await? {
            Some(t) => {
                // Body extractors, which run after this one, charge the tenant's budget.
                parts.extensions.insert(t.clone());
                Ok(AuthTenant(t))
            }
            None => Err(unknown_key()),
        }
    }
}

fn bad_scheme() -> ApiError {
    ApiError::new(ErrorCode::InvalidAuthorization, "the Authorization header must be: Bearer <key>")
}

fn unknown_key() -> ApiError {
    ApiError::new(ErrorCode::InvalidApiKey, "the API key is not valid")
}
