//! Reading rows and the rejection log.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use strata_domain::dataset::{ColumnType, Table};
use strata_domain::value::Value;
use strata_domain::ErrorCode;
use strata_store::cursor;

use super::query_error;
use crate::auth::AuthTenant;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tables/{table}/rows/{id}", get(get_row))
        .route("/v1/tables/{table}/rejections", get(rejections))
}

/// Unknown parameters are refused: a typo like `limt` must not silently mean "the default".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub after: Option<String>,
}

pub(crate) fn parse_limit(raw: Option<&str>) -> ApiResult<usize> {
    let Some(raw) = raw else { return Ok(DEFAULT_LIMIT) };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::new(ErrorCode::InvalidLimit, format!("limit must be an integer from 1 to {MAX_LIMIT}"))),
    }
}

pub(crate) fn row_json(t: &Table, values: &[Value]) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    for (c, v) in t.columns.iter().zip(values) {
        obj.insert(c.name.clone(), v.to_json());
    }
    serde_json::Value::Object(obj)
}

fn parse_key(t: &Table, raw: &str) -> ApiResult<Value> {
    let pk = t.pk_column();
    match pk.ty {
        ColumnType::Integer => raw.parse::<i64>().map(Value::Int).map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidKey,
                format!(
                    "{} is an integer key; {:?} is not an integer",
                    pk.name,
                    raw.chars().take(40).collect::<String>()
                ),
            )
        }),
        _ => Ok(Value::Text(raw.to_string())),
    }
}

async fn get_row(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path((table, id)): Path<(String, String)>,
) -> ApiResult<Json<serde_json::Value>> {
    let t = s.store.table(&tenant, &table).await?;
    let key = parse_key(&t, &id)?;
    match s.store.get_row(&tenant, &t, &key).await? {
        Some(values) => Ok(Json(row_json(&t, &values))),
        None => Err(ApiError::new(
            ErrorCode::RowNotFound,
            format!("table {} has no row with {} {}", t.name, t.pk_column().name, key.to_text()),
        )),
    }
}

pub(crate) async fn list_rows(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(table): Path<String>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q.map_err(query_error)?;
    let t = s.store.table(&tenant, &table).await?;
    let limit = parse_limit(q.limit.as_deref())?;
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(c) => Some(cursor::decode_key(c, t.pk_column()).ok_or_else(bad_cursor)?),
    };
    let mut rows = s.store.list_rows(&tenant, &t, after, limit + 1).await?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| cursor::encode_key(&r[t.pk]))
    } else {
        None
    };
    Ok(Json(json!({
        "rows": rows.iter().map(|r| row_json(&t, r)).collect::<Vec<_>>(),
        "next": next,
    })))
}

fn bad_cursor() -> ApiError {
    ApiError::new(ErrorCode::InvalidCursor, "the cursor is not one this endpoint issued")
}

async fn rejections(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(table): Path<String>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) = q.map_err(query_error)?;
    let t = s.store.table(&tenant, &table).await?;
    let limit = parse_limit(q.limit.as_deref())?;
    let before = match q.after.as_deref() {
        None | Some("") => None,
        Some(c) => Some(cursor::decode_id(c).ok_or_else(bad_cursor)?),
    };
    let mut items = s.store.list_rejections(&tenant, &t.name, before, limit + 1).await?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|r| cursor::encode_id(r.id))
    } else {
        None
    };
    Ok(Json(json!({ "rejections": items, "next": next })))
}
