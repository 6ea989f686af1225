//! Strata's HTTP API.
//!
//! A guided tour:
//!
//! * [`startup`]: [`startup::Application`] binds the listener (port 0 in tests), builds the
//!   router and serves until SIGTERM or Ctrl-C, letting in-flight requests finish.
//! * [`routes`]: one router per feature (`health`, `tables`, `datasets`, `ingest`, `rows`,
//!   `backups`, `reports` with the dashboard, `orders` with the py-dist-arch surface, `deploy`
//!   (the admin API), `docs`), merged in one place, [`routes::router`].
//! * [`error`]: the one API error type. Every failure becomes
//!   `{"error": {"code", "message", "details"}}` with the status its code's kind implies.
//! * [`auth`]: the `Authorization: Bearer <key>` extractor every `/v1` handler takes, so a
//!   handler cannot forget authentication and always works inside the caller's tenant.
//! * [`limits`]: what one connection or request may cost (header and body timeouts, a minimum
//!   body rate, buffered bytes per tenant, connections, the shutdown drain).
//! * [`telemetry`]: request metrics and logs, and the Prometheus recorder.
//!
//! Handlers parse and authorise, then call `strata-store`; they hold no business rules.

pub mod auth;
pub mod error;
pub mod limits;
pub mod routes;
pub mod startup;
pub mod telemetry;

use strata_store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub orders: std::sync::Arc<strata_app::orders::OrderService>,
    /// The tenant the unauthenticated py-dist-arch surface writes to; `None` keeps it off.
    pub compat_tenant: Option<strata_domain::tenant::TenantId>,
    /// SHA-256 of the admin token; `None` turns the admin API off.
    pub admin_token: Option<strata_domain::tenant::KeyHash>,
    /// How switches started through the admin API announce and drain.
    pub switch: strata_app::deploy::SwitchOptions,
    pub limits: std::sync::Arc<limits::HttpLimits>,
    /// A TLS-terminating proxy in front sets `X-Forwarded-Proto`; believe it.
    pub trust_forwarded_proto: bool,
    pub body_budget: std::sync::Arc<limits::BodyBudget>,
}
