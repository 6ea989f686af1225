//! Liveness, readiness and metrics: unauthenticated, for probes and scrapers.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/ready", get(ready)).route("/metrics", get(metrics))
}

/// The process is up. Says nothing about dependencies, so an orchestrator does not restart a
/// healthy process because the database blinked.
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers, and a smoke query runs through the query engine: a blue/green switch
/// sends traffic to a stack only after its instances pass this.
async fn ready(State(s): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    s.store.ping().await.map_err(ApiError::from)?;
    s.store.smoke_query().await.map_err(|e| {
        ApiError::new(strata_domain::ErrorCode::DatabaseUnavailable, format!("the query engine smoke test failed: {e}"))
    })?;
    Ok(Json(json!({"status": "ready", "database": s.store.kind(), "query_engine": "ok"})))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let body = s.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
