//! Getting rows in: the streamed CSV load and the validated batch API.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use strata_domain::validate::validate_object;
use strata_domain::ErrorCode;
use strata_store::ingest::{candidates_from_csv, Candidate};
use strata_store::{BatchOutcome, Idempotency};

use super::media_type;
use crate::auth::AuthTenant;
use crate::error::{ApiError, ApiResult};
use crate::limits::Buffered;
use crate::AppState;

pub const MAX_BATCH_ROWS: usize = 1000;
/// 1000 rows of a wide table fit easily; anything bigger is not a batch.
pub const MAX_BATCH_BYTES: usize = 16 << 20;
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/tables/{table}/rows", post(ingest_batch).get(super::rows::list_rows)).route(
        "/v1/tables/{table}/load",
        // A load streams: no body limit, memory stays flat.
        post(load).layer(DefaultBodyLimit::disable()),
    )
}

/// CSV bodies are `text/csv` (RFC 7111) or its common alias `application/csv`, on the load and
/// the batch endpoint alike. Anything else is refused with 415 rather than guessed at: a body
/// sent as `text/plain` or `application/octet-stream` may be anything.
fn is_csv(mt: &str) -> bool {
    matches!(mt, "text/csv" | "application/csv")
}

async fn load(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(table): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<serde_json::Value>> {
    let t = s.store.table(&tenant, &table).await?;
    match media_type(&headers) {
        Some(mt) if is_csv(&mt) => {}
        _ => return Err(ApiError::new(ErrorCode::UnsupportedMediaType, "send the file with Content-Type: text/csv")),
    }
    // Body stream -> blocking reader -> CSV thread -> chunks -> one database transaction. A
    // client that sends too slowly gets its stream cut (crate::limits) and the load rolls back.
    let stream = body.into_data_stream().map_err(crate::limits::io_error);
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let report = s.store.load(&tenant, &t, reader, Arc::new(AtomicU64::new(0))).await?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBatch {
    /// Kept raw first, so the rejection log quotes each row exactly as it was sent.
    rows: Vec<Box<RawValue>>,
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = super::single_header(headers, "idempotency-key")? else { return Ok(None) };
    let s = v.to_str().ok().map(str::trim).unwrap_or("");
    if s.is_empty() || s.len() > MAX_IDEMPOTENCY_KEY || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
        ));
    }
    Ok(Some(s.to_string()))
}

async fn ingest_batch(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(table): Path<String>,
    headers: HeaderMap,
    body: Buffered<MAX_BATCH_BYTES>,
) -> ApiResult<Response> {
    let body = body.bytes;
    let t = s.store.table(&tenant, &table).await?;
    let key = idempotency_key(&headers)?;
    let mt = media_type(&headers).unwrap_or_default();
    let rows: Vec<Candidate> = if mt == "application/json" {
        let batch: JsonBatch = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(ErrorCode::MalformedJson, format!("the body is not a valid batch: {e}"))
                .with_details(json!({"expected": "{\"rows\": [{\"column\": value, ...}, ...]}"}))
        })?;
        check_count(batch.rows.len())?;
        let mut rows = Vec::with_capacity(batch.rows.len());
        for (i, raw) in batch.rows.iter().enumerate() {
            let row: HashMap<String, Box<RawValue>> = serde_json::from_str(raw.get())
                .map_err(|_| ApiError::new(ErrorCode::MalformedJson, format!("rows[{i}] is not a JSON object")))?;
            rows.push(Candidate {
                line: None,
                index: i,
                raw: raw.get().as_bytes().to_vec(),
                result: validate_object(&t, &row),
            });
        }
        rows
    } else if is_csv(&mt) {
        let rows = candidates_from_csv(&t, &body)
            .map_err(|e| ApiError::new(ErrorCode::MalformedCsv, format!("the CSV body cannot be read: {e}")))?;
        check_count(rows.len())?;
        rows
    } else {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send rows as application/json ({\"rows\": [...]}) or text/csv",
        ));
    };
    let idempotency = key.map(|key| {
        let mut h = Sha256::new();
        h.update(t.name.as_bytes());
        h.update([0]);
        h.update(mt.as_bytes());
        h.update([0]);
        h.update(&body);
        Idempotency { key, fingerprint: format!("{:x}", h.finalize()) }
    });
    match s.store.ingest_batch(&tenant, &t, rows, idempotency).await? {
        BatchOutcome::Fresh(report) => Ok((StatusCode::OK, Json(report)).into_response()),
        BatchOutcome::Replayed(body) => {
            let mut resp =
                (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
            resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(resp)
        }
    }
}

fn check_count(n: usize) -> ApiResult<()> {
    if n == 0 {
        return Err(ApiError::new(
            ErrorCode::EmptyBatch,
            format!("a batch holds 1 to {MAX_BATCH_ROWS} rows; this one has none"),
        ));
    }
    if n > MAX_BATCH_ROWS {
        return Err(ApiError::new(
            ErrorCode::BatchTooLarge,
            format!("a batch holds at most {MAX_BATCH_ROWS} rows; this one has {n}"),
        )
        .with_details(json!({"limit": MAX_BATCH_ROWS, "rows": n})));
    }
    Ok(())
}
