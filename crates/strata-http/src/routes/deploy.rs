//! The admin API for blue/green deployment: the same procedure as `strata deploy`.
//! Guarded by its own bearer token (`--admin-token`), never by a tenant's API key; without a
//! configured token the routes answer 404, so the surface is off by default.

use axum::extract::{FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use strata_app::deploy::{self, SwitchError};
use strata_domain::tenant::KeyHash;
use strata_domain::ErrorCode;
use strata_store::deploy::Stack;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/deploy", get(status))
        .route("/v1/admin/deploy/switch", post(switch))
        .route("/v1/admin/deploy/rollback", post(rollback))
}

/// An operator holding the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &state.admin_token else {
            return Err(ApiError::new(
                ErrorCode::AdminApiDisabled,
                "the admin API is off: start strata with --admin-token",
            ));
        };
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or_else(|| {
                ApiError::new(ErrorCode::MissingAuthorization, "send Authorization: Bearer <admin token>")
            })?;
        // Comparing digests keeps the comparison time independent of the secret's content.
        if KeyHash::of(presented).as_str() != expected.as_str() {
            return Err(ApiError::new(ErrorCode::InvalidAdminToken, "the admin token is not valid"));
        }
        Ok(Admin)
    }
}

async fn status(_: Admin, State(s): State<AppState>) -> ApiResult<Json<deploy::Status>> {
    Ok(Json(deploy::status(&s.store, s.switch.instance_fresh, 20).await.map_err(ApiError::from)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    to: String,
    actor: Option<String>,
}

fn switch_error(e: SwitchError) -> ApiError {
    use strata_domain::error::Coded;
    match e {
        SwitchError::Store(e) => ApiError::from(e),
        other => ApiError::new(other.code(), other.to_string()),
    }
}

async fn switch(
    _: Admin,
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    body: crate::limits::Buffered<4096>,
) -> ApiResult<Json<strata_store::deploy::SwitchRecord>> {
    if super::media_type(&headers).as_deref() != Some("application/json") {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send {\"to\": \"blue\"|\"green\"} as application/json",
        ));
    }
    let raw = body.bytes;
    let b: SwitchBody = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::new(ErrorCode::MalformedJson, format!("expected {{\"to\": \"blue\"|\"green\"}}: {e}"))
    })?;
    let to: Stack = b.to.parse().map_err(|e: String| ApiError::new(ErrorCode::InvalidStack, e))?;
    let mut o = s.switch.clone();
    o.actor = actor(b.actor);
    Ok(Json(deploy::switch(&s.store, to, &o).await.map_err(switch_error)?))
}

async fn rollback(_: Admin, State(s): State<AppState>) -> ApiResult<Json<strata_store::deploy::SwitchRecord>> {
    let mut o = s.switch.clone();
    o.actor = actor(None);
    Ok(Json(deploy::rollback(&s.store, &o).await.map_err(switch_error)?))
}

/// Who to record: the caller's label (printable, short), marked as coming through the API.
fn actor(label: Option<String>) -> String {
    match label {
        Some(l) if !l.is_empty() => {
            let clean: String = l.chars().filter(|c| !c.is_control()).take(64).collect();
            format!("admin-api:{clean}")
        }
        _ => "admin-api".into(),
    }
}
