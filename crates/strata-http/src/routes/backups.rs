//! Backups of a table as Avro files, and restore.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::json;
use strata_domain::avro::Codec;
use strata_domain::ErrorCode;
use strata_store::backup::RestoreSource;

use super::{media_type, query_error};
use crate::auth::AuthTenant;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// A restore request that names a backup is a small JSON object.
const RESTORE_REQUEST_BYTES: usize = 4096;

/// Backups kept per table unless a request says otherwise.
pub const DEFAULT_RETAIN: usize = 10;
pub const AVRO_MEDIA_TYPE: &str = "application/vnd.apache.avro.file";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/tables/{table}/backups", post(create).get(list))
        .route("/v1/tables/{table}/backups/{id}", get(download))
        .route("/v1/tables/{table}/restore", post(restore).layer(DefaultBodyLimit::disable()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateQuery {
    codec: Option<String>,
    retain: Option<String>,
}

pub(crate) fn parse_codec(raw: Option<&str>) -> ApiResult<Codec> {
    match raw {
        None => Ok(Codec::Zstd),
        Some(s) => Codec::parse(s)
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidCodec, "codec must be one of null, deflate, snappy, zstd")),
    }
}

async fn create(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(table): Path<String>,
    q: Result<Query<CreateQuery>, QueryRejection>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let Query(q) = q.map_err(query_error)?;
    let codec = parse_codec(q.codec.as_deref())?;
    let retain = match q.retain.as_deref() {
        None => DEFAULT_RETAIN,
        Some(r) => r
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidQuery, "retain must be an integer from 1 to 1000"))?,
    };
    let t = s.store.table(&tenant, &table).await?;
    let mut manifests = s.store.backup(&tenant, vec![t], codec, retain, Arc::new(AtomicU64::new(0))).await?;
    Ok((StatusCode::CREATED, Json(serde_json::to_value(manifests.remove(0)).unwrap_or_default())))
}

async fn list(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(table): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let t = s.store.table(&tenant, &table).await?;
    let backups = s.store.backups().list(&tenant, &t.name)?;
    Ok(Json(json!({ "backups": backups })))
}

async fn download(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path((table, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let t = s.store.table(&tenant, &table).await?;
    let m = s.store.backups().manifest(&tenant, &t.name, &id)?;
    let path = s.store.backups().file_path(&tenant, &t.name, &m.id)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::new(ErrorCode::BackupNotFound, format!("backup {:?} does not exist", m.id)))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (header::CONTENT_TYPE, AVRO_MEDIA_TYPE.to_string()),
            (header::CONTENT_LENGTH, m.bytes.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}-{}.avro\"", t.name, m.id)),
            (header::HeaderName::from_static("x-checksum-sha256"), m.sha256.clone()),
        ],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    backup_id: String,
}

fn is_avro(mt: &str) -> bool {
    matches!(mt, AVRO_MEDIA_TYPE | "application/avro" | "avro/binary" | "application/octet-stream")
}

async fn restore(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(table): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<serde_json::Value>> {
    let t = s.store.table(&tenant, &table).await?;
    let mt = media_type(&headers).unwrap_or_default();
    let source = if mt == "application/json" {
        let bytes = axum::body::to_bytes(body, RESTORE_REQUEST_BYTES)
            .await
            .map_err(|e| crate::limits::read_error(e, RESTORE_REQUEST_BYTES))?;
        let req: RestoreBody = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(ErrorCode::MalformedJson, format!("expected {{\"backup_id\": \"...\"}}: {e}"))
        })?;
        RestoreSource::Backup(req.backup_id)
    } else if is_avro(&mt) {
        // Streamed: the file is decoded as it arrives, on a thread of its own.
        let stream = body.into_data_stream().map_err(crate::limits::io_error);
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        RestoreSource::File { reader: Box::new(reader), name: "upload".into() }
    } else {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("send {{\"backup_id\": ...}} as application/json, or an Avro file as {AVRO_MEDIA_TYPE}"),
        ));
    };
    let report = s.store.restore(&tenant, vec![(t, source)], Arc::new(AtomicU64::new(0))).await?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}
