//! What one connection or one request may cost, so that a client with a valid key (or none)
//! cannot stall or starve the server for others:
//!
//! * **headers** must arrive within [`HttpLimits::header_read_timeout`] (an idle keep-alive
//!   connection is closed after the same time), in at most 64 KiB;
//! * **bodies** must keep arriving: no pause longer than [`HttpLimits::body_idle_timeout`], and
//!   on average at least [`HttpLimits::body_min_rate`] bytes per second of waiting, judged over
//!   windows of [`HttpLimits::body_rate_window`]. Only time spent waiting for the client counts,
//!   never time the server spends writing what it already has. A body that breaks either rule
//!   ends its request with `408 request_timeout` (and a load or restore rolls back);
//! * **buffered bodies** (batches, definitions, orders) of one tenant hold at most
//!   [`HttpLimits::tenant_body_budget`] bytes at once; more waits, then gets `429 tenant_busy`;
//! * **connections** are capped at [`HttpLimits::max_connections`]; more are closed on accept;
//! * **shutdown** lets requests in flight finish for at most [`HttpLimits::drain_timeout`], then
//!   closes them: a stalled upload cannot keep a stopping server alive.
//!
//! Storage itself is shared out by `strata_store::slots`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use strata_domain::tenant::TenantId;
use strata_domain::ErrorCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::AppState;

#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    /// Bytes per second of waiting; 0 turns the rate check off.
    pub body_min_rate: u64,
    pub body_rate_window: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    pub tenant_body_budget: usize,
    /// How long a request waits for its tenant's body budget before `429`.
    pub budget_wait: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(15),
            body_idle_timeout: Duration::from_secs(30),
            body_min_rate: 1024,
            body_rate_window: Duration::from_secs(10),
            max_connections: 4096,
            drain_timeout: Duration::from_secs(30),
            tenant_body_budget: 64 << 20,
            budget_wait: Duration::from_secs(10),
        }
    }
}

/// The error a too-slow body ends with.
#[derive(Debug)]
pub struct BodyTooSlow(String);

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyTooSlow {}

/// Whether `e` (or anything in its source chain) is a [`BodyTooSlow`].
pub fn is_too_slow(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTooSlow>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A body read error as an I/O error a reader thread understands (`TimedOut` for too slow).
pub fn io_error(e: axum::Error) -> std::io::Error {
    let kind = if is_too_slow(&e) { std::io::ErrorKind::TimedOut } else { std::io::ErrorKind::Other };
    std::io::Error::new(kind, e.to_string())
}

/// Middleware: every request body is a [`TimedBody`]; request bodies in a `Content-Encoding`
/// Strata does not decode are refused rather than read as if they were plain.
pub async fn guard_requests(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(enc) = req.headers().get(CONTENT_ENCODING) {
        if !enc.to_str().is_ok_and(|v| v.trim().eq_ignore_ascii_case("identity")) {
            return ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "request bodies are not decompressed: send them without Content-Encoding",
            )
            .into_response();
        }
    }
    let (parts, body) = req.into_parts();
    let body = Body::new(TimedBody::new(body, &s.limits));
    next.run(Request::from_parts(parts, body)).await
}

/// A request body that fails when the client stalls or trickles (see the module docs).
pub struct TimedBody {
    inner: Body,
    idle: Duration,
    min_rate: u64,
    window: Duration,
    waiting_since: Option<Instant>,
    window_waited: Duration,
    window_bytes: u64,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedBody {
    pub fn new(inner: Body, l: &HttpLimits) -> Self {
        Self {
            inner,
            idle: l.body_idle_timeout,
            min_rate: l.body_min_rate,
            window: l.body_rate_window.max(Duration::from_millis(100)),
            waiting_since: None,
            window_waited: Duration::ZERO,
            window_bytes: 0,
            timer: None,
        }
    }

    /// Judges a finished window of waiting: enough bytes for the time waited, or an error.
    fn judge_window(&mut self, waited: Duration) -> Result<(), axum::Error> {
        if self.min_rate == 0 || waited < self.window {
            return Ok(());
        }
        let needed = (self.min_rate as f64 * waited.as_secs_f64()) as u64;
        if self.window_bytes < needed {
            return Err(axum::Error::new(BodyTooSlow(format!(
                "the body arrived at {} bytes/s; the minimum is {} bytes/s",
                (self.window_bytes as f64 / waited.as_secs_f64()) as u64,
                self.min_rate
            ))));
        }
        self.window_waited = Duration::ZERO;
        self.window_bytes = 0;
        Ok(())
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(since) = this.waiting_since.take() {
                    this.window_waited += since.elapsed();
                }
                if let Some(d) = frame.data_ref() {
                    this.window_bytes += d.len() as u64;
                }
                let waited = this.window_waited;
                if let Err(e) = this.judge_window(waited) {
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                this.waiting_since = None;
                Poll::Ready(other)
            }
            Poll::Pending => {
                let now = Instant::now();
                let since = *this.waiting_since.get_or_insert(now);
                let waiting = now - since;
                if waiting >= this.idle {
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow(format!(
                        "no part of the body arrived for {} s",
                        this.idle.as_secs()
                    ))))));
                }
                let waited = this.window_waited + waiting;
                if let Err(e) = this.judge_window(waited) {
                    return Poll::Ready(Some(Err(e)));
                }
                // Wake up at the next moment a rule could be broken, even if no data comes.
                let until_window = this.window.saturating_sub(waited);
                let next = now + until_window.min(this.idle - waiting).max(Duration::from_millis(10));
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next.into())));
                timer.as_mut().reset(next.into());
                if std::future::Future::poll(timer.as_mut(), cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Bytes of request bodies each tenant may hold buffered at once.
pub struct BodyBudget {
    per_tenant: usize,
    wait: Duration,
    map: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl BodyBudget {
    pub fn new(per_tenant: usize, wait: Duration) -> Self {
        Self { per_tenant: per_tenant.clamp(1, u32::MAX as usize), wait, map: Mutex::new(HashMap::new()) }
    }

    async fn acquire(&self, tenant: &TenantId, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let sem = self
            .map
            .lock()
            .unwrap()
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone();
        let n = bytes.clamp(1, self.per_tenant) as u32;
        match tokio::time::timeout(self.wait, sem.acquire_many_owned(n)).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(ApiError::new(
                ErrorCode::TenantBusy,
                format!(
                    "this tenant's requests already hold {} MiB of request bodies; retry shortly",
                    self.per_tenant >> 20
                ),
            )),
        }
    }
}

/// A request body read whole, of at most `MAX` bytes. For an authenticated tenant (the auth
/// extractor runs first and leaves the tenant in the request), the bytes count against its
/// [`BodyBudget`] until the handler is done with them.
pub struct Buffered<const MAX: usize> {
    pub bytes: Bytes,
    _budget: Option<OwnedSemaphorePermit>,
}

impl<const MAX: usize> FromRequest<AppState> for Buffered<MAX> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if let Some(n) = declared.filter(|n| *n > MAX) {
            // Read the rest and drop it (a modest amount, at the client's pace, within the body
            // limits), so a client still sending sees the 413 instead of a broken pipe.
            if n <= MAX_DRAIN_BYTES {
                let mut body = req.into_body();
                while let Some(Ok(_)) = http_body_util::BodyExt::frame(&mut body).await {}
            }
            return Err(too_large(MAX));
        }
        let budget = match req.extensions().get::<TenantId>() {
            Some(t) => Some(state.body_budget.acquire(t, declared.unwrap_or(MAX)).await?),
            None => None,
        };
        let bytes = axum::body::to_bytes(req.into_body(), MAX).await.map_err(|e| read_error(e, MAX))?;
        Ok(Self { bytes, _budget: budget })
    }
}

/// A body declared too large is still read (and dropped) up to this size before the refusal.
const MAX_DRAIN_BYTES: usize = 64 << 20;

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        ErrorCode::BodyTooLarge,
        format!("the request body is larger than this endpoint accepts ({max} bytes)"),
    )
    .with_details(serde_json::json!({ "limit_bytes": max }))
}

/// Why reading a body failed, as an API error: over the limit, too slow, or broken.
pub fn read_error(e: axum::Error, max: usize) -> ApiError {
    if is_too_slow(&e) {
        return ApiError::new(ErrorCode::RequestTimeout, format!("the request body arrived too slowly: {e}"));
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return too_large(max);
        }
        cur = err.source();
    }
    ApiError::new(ErrorCode::MalformedBody, format!("the request body could not be read: {e}"))
}
