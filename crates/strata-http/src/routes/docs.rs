//! The OpenAPI document and interactive docs, both embedded so they work offline.

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};

use crate::AppState;

const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");
const DOCS_HTML: &str = include_str!("../../assets/docs.html");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/docs", get(docs))
}

/// The OpenAPI document, parsed once from the YAML kept beside the code.
pub fn openapi_document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| serde_yaml::from_str(OPENAPI_YAML).expect("openapi.yaml is valid YAML"))
}

async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], Json(openapi_document().clone()))
}

async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
}
