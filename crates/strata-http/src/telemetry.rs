//! Request metrics and logs, and the Prometheus recorder.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the global Prometheus recorder once per process; later calls reuse it (tests start
/// many servers in one process).
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .ok()?
                // Backups, restores and projection lag run far longer than requests.
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Prefix("strata_backup".into()),
                    &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0],
                )
                .ok()?
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Prefix("strata_restore".into()),
                    &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0],
                )
                .ok()?
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("strata_projection_lag_seconds".into()),
                    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0],
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}

/// Counts and times every request by its route template (never the raw path, which would let
/// clients blow up label cardinality), and logs one line per request.
pub async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16().to_string();
    metrics::counter!("strata_http_requests_total",
        "method" => method.clone(), "route" => route.clone(), "status" => status.clone())
    .increment(1);
    metrics::histogram!("strata_http_request_duration_seconds",
        "method" => method.clone(), "route" => route.clone())
    .record(elapsed.as_secs_f64());
    tracing::info!(method = %method, route = %route, status = %status,
        latency_ms = elapsed.as_secs_f64() * 1000.0, "request");
    resp
}
