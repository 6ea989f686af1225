//! BTC buy orders, and the surface the seed's clients (py-dist-arch) already speak.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value as Json};

type JsonOut = axum::Json<Json>;
use strata_app::orders::OrderError;
use strata_domain::order::{Currency, FiatAmount, Order};
use strata_domain::tenant::TenantId;
use strata_domain::ErrorCode;
use strata_store::orders::{decode_cursor, encode_cursor, CreateOutcome, Cursor};

use super::query_error;
use crate::auth::AuthTenant;
use crate::error::{ApiError, ApiResult};
use crate::limits::Buffered;
use crate::AppState;

pub const MAX_PAGE: usize = 100;
/// An order is a few dozen bytes of JSON; extra fields are allowed, within reason.
pub const MAX_ORDER_BYTES: usize = 64 * 1024;
pub const DEFAULT_PAGE: usize = 20;
/// The seed's default page size.
pub const COMPAT_DEFAULT_PAGE: usize = 10;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/buy-orders", post(create).get(list))
        .route("/v1/buy-orders/{id}", get(get_one))
        .route("/compat/py-dist-arch/buy_order", put(compat_create))
        .route("/compat/py-dist-arch/buy_orders", get(compat_list))
}

/// Parses `{"currency", "amount"}` (extra fields are allowed, as the exercise says).
fn parse_order(body: &Json, amount_field: &str) -> ApiResult<FiatAmount> {
    if !body.is_object() {
        return Err(ApiError::new(ErrorCode::MalformedJson, "the body must be a JSON object"));
    }
    let mut problems = Vec::new();
    let currency = match body.get("currency") {
        Some(Json::String(s)) => Currency::parse(s).map_err(|e| problems.push(("currency", e))).ok(),
        Some(_) => {
            problems.push(("currency", "currency must be a string: EUR, GBP or USD".into()));
            None
        }
        None => {
            problems.push(("currency", "currency is required".into()));
            None
        }
    };
    let amount_text = match body.get(amount_field) {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Number(_)) => {
            problems.push((amount_field, "amount must be a decimal string like \"100.50\", not a JSON number".into()));
            None
        }
        Some(_) => {
            problems.push((amount_field, "amount must be a decimal string".into()));
            None
        }
        None => {
            problems.push((amount_field, "amount is required".into()));
            None
        }
    };
    if let (Some(c), Some(a)) = (currency, &amount_text) {
        match FiatAmount::parse(c, a) {
            Ok(amount) => return Ok(amount),
            Err(e) => problems.push((amount_field, e)),
        }
    }
    let message = problems.iter().map(|(f, r)| format!("{f}: {r}")).collect::<Vec<_>>().join("; ");
    Err(ApiError::new(ErrorCode::InvalidOrder, message).with_details(
        json!({"fields": problems.iter().map(|(f, r)| json!({"field": f, "reason": r})).collect::<Vec<_>>()}),
    ))
}

fn idempotency_key(raw: Option<&str>) -> ApiResult<String> {
    let Some(k) = raw else {
        return Err(ApiError::new(
            ErrorCode::MissingIdempotencyKey,
            "send an Idempotency-Key header (1 to 255 characters) so a retry never creates a second order",
        ));
    };
    let k = k.trim();
    if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ApiError::new(
            ErrorCode::InvalidIdempotencyKey,
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        ));
    }
    Ok(k.to_string())
}

fn order_error(e: OrderError) -> ApiError {
    match e {
        OrderError::Store(s) => s.into(),
        OrderError::Rate(r) => {
            use strata_domain::error::Coded;
            ApiError::new(r.code(), format!("{r}; no order was placed, retry with the same Idempotency-Key"))
        }
    }
}

async fn run_create(
    s: &AppState,
    tenant: &TenantId,
    key: &str,
    amount: FiatAmount,
) -> ApiResult<(StatusCode, String, bool)> {
    Ok(match s.orders.create(tenant, key, amount).await.map_err(order_error)? {
        CreateOutcome::Created { body, .. } => (StatusCode::CREATED, body, false),
        CreateOutcome::CapExceeded { body } => (StatusCode::CONFLICT, body, false),
        CreateOutcome::Replayed { status, body } => {
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body, true)
        }
    })
}

fn json_body(raw: &Bytes) -> ApiResult<Json> {
    serde_json::from_slice(raw)
        .map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("the body is not valid JSON: {e}")))
}

async fn create(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    headers: HeaderMap,
    body: Buffered<MAX_ORDER_BYTES>,
) -> ApiResult<Response> {
    let body = body.bytes;
    let key =
        idempotency_key(super::single_header(&headers, "idempotency-key")?.map(|v| v.to_str().unwrap_or("\u{0}")))?;
    let is_json = super::media_type(&headers).as_deref() == Some("application/json");
    if !is_json {
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType, "send the order as application/json"));
    }
    let amount = parse_order(&json_body(&body)?, "amount")?;
    let (status, body, replayed) = run_create(&s, &tenant, &key, amount).await?;
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body.clone()).into_response();
    if replayed {
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if status == StatusCode::CREATED {
        if let Some(id) = serde_json::from_str::<Json>(&body).ok().and_then(|v| v["id"].as_str().map(String::from)) {
            if let Ok(v) = HeaderValue::from_str(&format!("/v1/buy-orders/{id}")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
        }
    }
    Ok(resp)
}

async fn get_one(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> ApiResult<JsonOut> {
    let not_found = || ApiError::new(ErrorCode::OrderNotFound, "no such order");
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(not_found());
    }
    let order = s.store.orders().get(&tenant, &id).await?.ok_or_else(not_found)?;
    Ok(axum::Json(order.to_json()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

fn page_limit(raw: Option<&str>) -> ApiResult<usize> {
    match raw {
        None => Ok(DEFAULT_PAGE),
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or_else(|| {
            ApiError::new(ErrorCode::InvalidLimit, format!("limit must be an integer from 1 to {MAX_PAGE}"))
        }),
    }
}

async fn page(
    s: &AppState,
    tenant: &TenantId,
    cursor: Option<&str>,
    limit: usize,
) -> ApiResult<(Vec<Order>, Option<String>)> {
    let before = match cursor {
        None | Some("") => None,
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidCursor, "the cursor is not one this endpoint issued"))?,
        ),
    };
    let mut orders = s.store.orders().list(tenant, before, limit + 1).await?;
    let next = if orders.len() > limit {
        orders.truncate(limit);
        orders.last().map(|o| encode_cursor(o.created_at, &o.id))
    } else {
        None
    };
    Ok((orders, next))
}

async fn list(
    State(s): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<JsonOut> {
    let Query(q) = q.map_err(query_error)?;
    let limit = page_limit(q.limit.as_deref())?;
    let (orders, next) = page(&s, &tenant, q.cursor.as_deref(), limit).await?;
    Ok(axum::Json(json!({"orders": orders.iter().map(Order::to_json).collect::<Vec<_>>(), "next_cursor": next})))
}

// --- py-dist-arch compatibility -------------------------------------------------------------

fn compat_tenant(s: &AppState) -> ApiResult<TenantId> {
    s.compat_tenant.clone().ok_or_else(|| ApiError::new(ErrorCode::RouteNotFound, "no such endpoint; see /docs"))
}

fn compat_order(o: &Order) -> Json {
    let j = o.to_json();
    json!({"id": j["id"], "created_at": j["created_at"], "currency": j["currency"],
           "currency_amount": j["amount"], "btc_rate": j["exchange_rate"], "btc_amount": j["btc_amount"]})
}

/// A refusal as the seed's FastAPI models answer it: 422 with `{"detail": [...]}`, one entry
/// per field, so the seed's clients read our refusals as they read its own.
/// `place` is `body` or `query`; an empty field blames the whole place.
fn compat_refusal(place: &str, problems: &[(&str, String)]) -> Response {
    let detail: Vec<Json> = problems
        .iter()
        .map(|(field, msg)| {
            let loc = if field.is_empty() { json!([place]) } else { json!([place, field]) };
            json!({"type": "value_error", "loc": loc, "msg": msg})
        })
        .collect();
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({ "detail": detail }))).into_response()
}

/// The seed's `idempotence_key`: a UUID as pydantic v2 reads one (any version; hyphenated,
/// 32 hex digits, `{hyphenated}` or `urn:uuid:hyphenated`; any case; no surrounding blanks).
/// It is stored in its canonical form, so every spelling of one UUID is one key, as it is for
/// the seed.
fn compat_key(v: Option<&Json>) -> Result<String, String> {
    match v {
        None => Err("Field required".into()),
        Some(Json::String(s)) => uuid::Uuid::try_parse(s)
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| "Input should be a valid UUID".to_string()),
        Some(_) => Err("UUID input should be a string, bytes or UUID object".into()),
    }
}

/// The seed's `amount`: a JSON string (see [`FiatAmount::parse_python_decimal`]).
fn compat_amount(currency: Currency, v: Option<&Json>) -> Result<FiatAmount, String> {
    match v {
        None => Err("Field required".into()),
        Some(Json::String(s)) => FiatAmount::parse_python_decimal(currency, s),
        Some(_) => Err("Input should be a valid string".into()),
    }
}

async fn compat_create(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Buffered<MAX_ORDER_BYTES>,
) -> ApiResult<Response> {
    let tenant = compat_tenant(&s)?;
    // FastAPI reads the body as JSON when the Content-Type says JSON or says nothing; any
    // other type leaves the model without an object, which it refuses with 422.
    if let Some(mt) = super::media_type(&headers) {
        if mt != "application/json" && !mt.ends_with("+json") {
            return Ok(compat_refusal("body", &[("", "Input should be a valid dictionary or object".into())]));
        }
    }
    // The seed's model, field by field: every problem is reported, all with 422.
    let Ok(body) = serde_json::from_slice::<Json>(&body.bytes) else {
        return Ok(compat_refusal("body", &[("", "the body is not valid JSON".into())]));
    };
    if !body.is_object() {
        return Ok(compat_refusal("body", &[("", "Input should be a valid dictionary or object".into())]));
    }
    let mut problems: Vec<(&str, String)> = Vec::new();
    let currency = match body.get("currency") {
        None => Err("Field required".to_string()),
        Some(Json::String(c)) => Currency::parse(c),
        Some(_) => Err("Input should be a valid string".to_string()),
    }
    .map_err(|e| problems.push(("currency", e)))
    .ok();
    let amount = match currency {
        Some(c) => compat_amount(c, body.get("amount")).map_err(|e| problems.push(("amount", e))).ok(),
        None => None,
    };
    let key = compat_key(body.get("idempotence_key")).map_err(|e| problems.push(("idempotence_key", e))).ok();
    let (Some(amount), Some(key), true) = (amount, key, problems.is_empty()) else {
        return Ok(compat_refusal("body", &problems));
    };
    let (status, stored, _) = run_create(&s, &tenant, &key, amount).await?;
    if status != StatusCode::CREATED {
        return Ok((status, [(header::CONTENT_TYPE, "application/json")], stored).into_response());
    }
    let order: Json = serde_json::from_str(&stored).unwrap_or_default();
    let shaped = json!({"idempotence_key": key, "buy_order": {
        "id": order["id"], "created_at": order["created_at"], "currency": order["currency"],
        "currency_amount": order["amount"], "btc_rate": order["exchange_rate"], "btc_amount": order["btc_amount"]}});
    Ok((StatusCode::OK, axum::Json(shaped)).into_response())
}

/// Unknown parameters are ignored, as the seed's FastAPI service ignores them.
#[derive(Deserialize)]
struct CompatQuery {
    page_size: Option<String>,
    last_reference: Option<String>,
}

/// The seed's listing: `page_size` an integer (default 10), `last_reference` the id of the last
/// order of the previous page. Unlike the seed (whose second page always failed), paging
/// works; `page_size` above [`MAX_PAGE`] is served [`MAX_PAGE`] at a time (the seed had no
/// bound; a client paging by `last_reference` still gets every order), and what the seed
/// answered with 500 (a negative size, an unknown reference) is refused with 422.
async fn compat_list(State(s): State<AppState>, q: Result<Query<CompatQuery>, QueryRejection>) -> ApiResult<Response> {
    let tenant = compat_tenant(&s)?;
    let Query(q) = q.map_err(query_error)?;
    let limit = match q.page_size.as_deref().map(str::trim) {
        None => COMPAT_DEFAULT_PAGE,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => (n as usize).min(MAX_PAGE),
            Ok(_) => return Ok(compat_refusal("query", &[("page_size", "page_size must not be negative".into())])),
            Err(_) => return Ok(compat_refusal("query", &[("page_size", "Input should be a valid integer".into())])),
        },
    };
    let before = match q.last_reference.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(r) => {
            let order = match uuid::Uuid::try_parse(r) {
                Ok(u) => s.store.orders().get(&tenant, &u.hyphenated().to_string()).await?,
                Err(_) => None,
            };
            match order {
                Some(o) => Some(Cursor { created_at: o.created_at, id: o.id }),
                None => return Ok(compat_refusal("query", &[("last_reference", "no order has this id".into())])),
            }
        }
    };
    let mut orders = if limit == 0 { Vec::new() } else { s.store.orders().list(&tenant, before, limit + 1).await? };
    let next = if orders.len() > limit {
        orders.truncate(limit);
        orders.last().map(|o| o.id.clone())
    } else {
        None
    };
    let rows: Vec<Json> = orders.iter().map(compat_order).collect();
    Ok(axum::Json(json!({"rows": rows, "last_reference": next})).into_response())
}
