//! Building and running the HTTP server.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::AppState;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    wake: std::sync::Arc<tokio::sync::Notify>,
    bus: strata_app::ports::events::Bus,
}

/// What a deployment chooses beyond storage.
pub struct Options {
    pub rates: strata_app::ports::rates::RateProvider,
    pub compat_tenant: Option<strata_domain::tenant::TenantId>,
    /// `None`: the embedded bus. `Some((url, stream))`: NATS JetStream.
    pub events: Option<(String, String)>,
    /// Bearer token of the admin API (`/v1/admin/*`); `None` leaves it off.
    pub admin_token: Option<String>,
    pub switch: strata_app::deploy::SwitchOptions,
    pub limits: crate::limits::HttpLimits,
    /// Believe `X-Forwarded-Proto` (set by a TLS-terminating proxy) for the dashboard cookie.
    pub trust_forwarded_proto: bool,
}

impl Default for Options {
    /// Fixed demo rates and no compatibility surface: what tests and the demo use.
    fn default() -> Self {
        Self {
            rates: strata_app::ports::rates::RateProvider::fixed_from_spec(DEMO_RATES).expect("valid demo rates"),
            compat_tenant: None,
            events: None,
            admin_token: None,
            switch: strata_app::deploy::SwitchOptions::default(),
            limits: crate::limits::HttpLimits::default(),
            trust_forwarded_proto: false,
        }
    }
}

/// The rates the demo and the tests use when no provider is configured.
pub const DEMO_RATES: &str = "USD=64000.12,EUR=59000,GBP=51000.5";

impl Application {
    /// Binds the address (use port 0 for an ephemeral port) without serving yet.
    pub async fn build_with(addr: SocketAddr, store: strata_store::Store, options: Options) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        if let Some(t) = &options.compat_tenant {
            tracing::warn!(tenant = %t, "the py-dist-arch compatibility surface is ON: /compat/py-dist-arch/* takes unauthenticated requests and writes to this tenant's order book");
        }
        let bus = match &options.events {
            None => strata_app::ports::events::Bus::Embedded,
            Some((url, stream)) => strata_app::ports::events::Bus::Nats(
                strata_app::ports::events::NatsBus::connect(url, stream).await.map_err(std::io::Error::other)?,
            ),
        };
        let orders =
            strata_app::orders::OrderService { store: store.clone(), rates: options.rates, wake: wake.clone() };
        let state = AppState {
            store,
            metrics: crate::telemetry::prometheus(),
            orders: std::sync::Arc::new(orders),
            compat_tenant: options.compat_tenant,
            admin_token: options.admin_token.as_deref().map(strata_domain::tenant::KeyHash::of),
            switch: options.switch,
            body_budget: std::sync::Arc::new(crate::limits::BodyBudget::new(
                options.limits.tenant_body_budget,
                options.limits.budget_wait,
            )),
            limits: std::sync::Arc::new(options.limits),
            trust_forwarded_proto: options.trust_forwarded_proto,
        };
        Ok(Self { listener, state, wake, bus })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish
    /// for at most the drain timeout; whatever is still running then is closed.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut jobs = strata_app::jobs::Supervisor::new();
        strata_app::jobs::outbox::start(&mut jobs, self.state.store.clone(), self.bus.clone(), self.wake.clone());
        let limits = self.state.limits.clone();
        let app = crate::routes::router(self.state);
        let served = serve(self.listener, app, &limits, shutdown).await;
        // The relay finishes the pass it is in (events are marked published only after the
        // bus took them, so an abort past the grace period loses nothing).
        jobs.shutdown(std::time::Duration::from_secs(5)).await;
        served
    }
}

/// The accept loop: hyper's HTTP/1 with a header timeout and a small header buffer, a cap on
/// connections, and a graceful shutdown with a deadline (axum's own `serve` has neither).
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: &crate::limits::HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).max_buf_size(64 * 1024);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("strata_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        connections.spawn(async move {
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    let open = connections.len();
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!(connections = open, "HTTP connections drained"),
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(connections = connections.len(), drain_timeout_s = limits.drain_timeout.as_secs(),
                "the drain deadline passed; closing the connections still open");
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}
