//! The hiring KPI reports (JSON and CSV) and the web dashboard at `/reports`.
//!
//! The dashboard signs in with an API key once: `POST /reports/session` checks it and sets an
//! `HttpOnly`, `SameSite=Strict` session cookie (a random token, stored hashed, valid 8 hours),
//! so the key never lives in the page's JavaScript or storage. The report endpoints accept
//! that cookie as well as `Authorization: Bearer`; nothing that changes data accepts the cookie.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use strata_domain::report::{above_mean_csv, hires_csv, Year};
use strata_domain::tenant::{SessionScope, TenantId};
use strata_domain::ErrorCode;

use super::query_error;
use crate::auth::AuthTenant;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

const DASHBOARD_HTML: &str = include_str!("../../assets/reports.html");
const SESSION_COOKIE: &str = "strata_session";
const SESSION_TTL_SECS: i64 = 8 * 3600;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/reports/hires-by-quarter", get(hires_by_quarter))
        .route("/v1/reports/departments-above-mean", get(departments_above_mean))
        .route("/reports", get(dashboard))
        .route("/reports/session", get(whoami).post(sign_in).delete(sign_out))
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

/// A tenant signed in by API key or by dashboard session (read-only report endpoints only).
pub struct ReportViewer(pub TenantId);

impl FromRequestParts<AppState> for ReportViewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            return AuthTenant::from_request_parts(parts, state).await.map(|t| ReportViewer(t.0));
        }
        if let Some(token) = session_token(&parts.headers) {
            if strata_domain::tenant::looks_like_api_key(&token) {
                if let Some(t) = state.store.sessions().tenant(&token, SessionScope::Dashboard).await? {
                    return Ok(ReportViewer(t));
                }
            }
            return Err(ApiError::new(ErrorCode::InvalidApiKey, "the session has expired; sign in again"));
        }
        AuthTenant::from_request_parts(parts, state).await.map(|t| ReportViewer(t.0))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    year: Option<String>,
    format: Option<String>,
}

enum Format {
    Json,
    Csv,
}

fn parse(q: Result<Query<ReportQuery>, QueryRejection>, headers: &HeaderMap) -> ApiResult<(Year, Format)> {
    let Query(q) = q.map_err(query_error)?;
    let year = match q.year.as_deref() {
        None => Year::DEFAULT,
        Some(y) => Year::parse(y).map_err(|m| ApiError::new(ErrorCode::InvalidYear, m))?,
    };
    let format = match q.format.as_deref() {
        Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(_) => return Err(ApiError::new(ErrorCode::InvalidFormat, "format must be json or csv")),
        None => {
            let wants_csv = headers
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.split(',').any(|p| p.trim().starts_with("text/csv")));
            if wants_csv {
                Format::Csv
            } else {
                Format::Json
            }
        }
    };
    Ok((year, format))
}

fn csv_response(name: &str, year: Year, body: String) -> Response {
    (
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (axum::http::header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}-{}.csv\"", year.get())),
        ],
        body,
    )
        .into_response()
}

async fn hires_by_quarter(
    State(s): State<AppState>,
    ReportViewer(tenant): ReportViewer,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (year, format) = parse(q, &headers)?;
    let rows = s.store.hires_by_quarter(&tenant, year).await?;
    Ok(match format {
        Format::Csv => csv_response("hires-by-quarter", year, hires_csv(&rows)),
        Format::Json => Json(json!({ "year": year.get(), "rows": rows })).into_response(),
    })
}

async fn departments_above_mean(
    State(s): State<AppState>,
    ReportViewer(tenant): ReportViewer,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (year, format) = parse(q, &headers)?;
    let report = s.store.departments_above_mean(&tenant, year).await?;
    Ok(match format {
        Format::Csv => csv_response("departments-above-mean", year, above_mean_csv(&report.rows)),
        Format::Json => Json(serde_json::to_value(&report).unwrap_or_default()).into_response(),
    })
}

async fn dashboard() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ), (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        Html(DASHBOARD_HTML),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    api_key: String,
}

/// The session cookie. It is `Secure` when the browser reached Strata over HTTPS: Strata
/// itself speaks plain HTTP, so that is known only from a TLS-terminating proxy's
/// `X-Forwarded-Proto: https`, trusted when the operator says a proxy sets it
/// (`--trust-forwarded-proto`); otherwise any client could send the header. Without `Secure`
/// on plain HTTP the browser would drop the cookie, so it cannot be set unconditionally.
fn cookie(s: &AppState, headers: &HeaderMap, value: &str, max_age: i64) -> String {
    let https = s.trust_forwarded_proto
        && headers
            .get_all("x-forwarded-proto")
            .iter()
            .filter_map(|v| v.to_str().ok())
            // A chain of proxies appends: the first value is what the client used.
            .flat_map(|v| v.split(',').next())
            .next()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let secure = if https { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

async fn sign_in(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: crate::limits::Buffered<4096>,
) -> ApiResult<Response> {
    if super::media_type(&headers).as_deref() != Some("application/json") {
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType, "send {\"api_key\": ...} as application/json"));
    }
    let body: SignIn = serde_json::from_slice(&body.bytes)
        .map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("expected {{\"api_key\": \"...\"}}: {e}")))?;
    let key = body.api_key.trim();
    let tenant = if strata_domain::tenant::looks_like_api_key(key) {
        s.store.tenants().authenticate(&strata_domain::tenant::KeyHash::of(key)).await?
    } else {
        None
    };
    let Some(tenant) = tenant else {
        return Err(ApiError::new(ErrorCode::InvalidApiKey, "the API key is not valid"));
    };
    let token = s.store.sessions().create(&tenant, SessionScope::Dashboard, SESSION_TTL_SECS).await?;
    Ok((
        StatusCode::OK,
        [(SET_COOKIE, cookie(&s, &headers, token.expose(), SESSION_TTL_SECS))],
        Json(json!({ "tenant": tenant.as_str() })),
    )
        .into_response())
}

async fn whoami(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Json<serde_json::Value>> {
    let tenant = match session_token(&headers) {
        Some(t) if strata_domain::tenant::looks_like_api_key(&t) => {
            s.store.sessions().tenant(&t, SessionScope::Dashboard).await?
        }
        _ => None,
    };
    match tenant {
        Some(t) => Ok(Json(json!({ "tenant": t.as_str() }))),
        None => Err(ApiError::new(ErrorCode::MissingAuthorization, "not signed in")),
    }
}

async fn sign_out(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    if let Some(t) = session_token(&headers) {
        s.store.sessions().delete(&t, SessionScope::Dashboard).await?;
    }
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, cookie(&s, &headers, "", 0))]).into_response())
}
