//! Datasets: a tenant declares its own tables.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::json;
use strata_domain::dataset::{DatasetDef, Format, MAX_DEFINITION_BYTES};
use strata_domain::ErrorCode;

use super::media_type;
use crate::auth::AuthTenant;
use crate::error::{ApiError, ApiResult};
use crate::limits::Buffered;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/datasets", get(list)).route("/v1/datasets/{name}", put(apply))
}

async fn list(State(s): State<AppState>, AuthTenant(tenant): AuthTenant) -> ApiResult<Json<serde_json::Value>> {
    let sets = s.store.datasets(&tenant).await?;
    Ok(Json(json!({ "datasets": sets })))
}

async fn apply(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Buffered<MAX_DEFINITION_BYTES>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let body = body.bytes;
    let format = media_type(&headers).as_deref().and_then(Format::from_media_type).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the definition as application/toml, application/yaml or application/json",
        )
    })?;
    // Parsing is CPU work: off the async threads. Its cost is bounded before it starts (size
    // and shape, see strata_domain::nesting), so it always ends within milliseconds; if the
    // client is gone meanwhile, this handler is dropped at the await and nothing is applied.
    let def = tokio::task::spawn_blocking(move || {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::new(ErrorCode::MalformedBody, "the definition is not valid UTF-8"))?;
        DatasetDef::parse(text, format).map_err(|e| ApiError::from(strata_store::StoreError::from(e)))
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, format!("parsing failed: {e}")))??;
    if def.name != name {
        return Err(ApiError::new(
            ErrorCode::InvalidDataset,
            format!("the path names dataset {name:?} but the definition is named {:?}", def.name),
        ));
    }
    let report = s.store.apply_dataset(&tenant, &def).await?;
    let status = if report.changed && report.version == 1 { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(serde_json::to_value(report).unwrap_or_default())))
}
