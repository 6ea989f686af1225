//! The data dictionary as clients see it.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::auth::AuthTenant;
use crate::error::ApiResult;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/tables", get(list_tables))
}

pub(crate) fn table_json(t: &strata_domain::dataset::Table) -> serde_json::Value {
    let mut columns = Vec::new();
    for (c, def) in t.columns.iter().zip(&t.def.columns) {
        let mut v = serde_json::to_value(def).unwrap_or_default();
        v["required"] = json!(c.required);
        if let Some(fk) = &c.references {
            v["references"] = json!({"table": fk.table, "column": fk.column});
        }
        columns.push(v);
    }
    json!({
        "name": t.name,
        "dataset": t.dataset,
        "description": t.def.description,
        "primary_key": t.pk_column().name,
        "columns": columns,
    })
}

async fn list_tables(State(s): State<AppState>, AuthTenant(tenant): AuthTenant) -> ApiResult<Json<serde_json::Value>> {
    let tables = s.store.tables(&tenant).await?;
    Ok(Json(json!({ "tables": tables.iter().map(table_json).collect::<Vec<_>>() })))
}
