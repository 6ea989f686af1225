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
    Router::new().route("/openapi.json", get(openapi)).route("/docs", get(docs))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_error_codes_are_exactly_the_codes_in_the_table() {
        let doc = openapi_document();
        let documented: std::collections::BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("ErrorCode enum")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let table: std::collections::BTreeSet<&str> =
            strata_domain::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(documented, table);
    }
}
