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
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
}

/// The process is up. Says nothing about dependencies, so an orchestrator does not restart a
/// healthy process because the database blinked.
async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The database answers.
async fn ready(State(s): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    s.store.ping().await.map_err(ApiError::from)?;
    Ok(Json(json!({"status": "ready", "database": s.store.kind()})))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let body = s.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
