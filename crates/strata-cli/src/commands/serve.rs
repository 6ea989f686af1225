//! `strata serve` and `strata demo`: the HTTP API and the gRPC query service in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use strata_domain::tenant::TenantId;
use strata_store::{Store, StoreConfig};

use crate::{parse_tenant, read_secret_file};

#[derive(Args, Clone)]
pub(crate) struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "STRATA_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub(crate) http_addr: SocketAddr,
    /// Log format: json (one JSON object per line) or pretty.
    #[arg(long, env = "STRATA_LOG_FORMAT", default_value = "json")]
    pub(crate) log_format: String,
    /// Where BTC prices come from: coinbase (a Coinbase-compatible spot API; the default for
    /// `serve`) or fixed (offline; the default for `demo`).
    #[arg(long, env = "STRATA_RATE_PROVIDER", value_parser = ["coinbase", "fixed"])]
    pub(crate) rate_provider: Option<String>,
    /// Base URL of the Coinbase-compatible API.
    #[arg(long, env = "STRATA_RATE_BASE_URL", default_value = "https://api.coinbase.com")]
    pub(crate) rate_base_url: String,
    /// Rates for the fixed provider.
    #[arg(long, env = "STRATA_FIXED_RATES", default_value = strata_http::startup::DEMO_RATES)]
    pub(crate) fixed_rates: String,
    /// Timeout of one price request, in milliseconds.
    #[arg(long, env = "STRATA_RATE_TIMEOUT_MS", default_value_t = 2000)]
    pub(crate) rate_timeout_ms: u64,
    /// Retries after a failed price request (timeouts, 5xx, 429).
    #[arg(long, env = "STRATA_RATE_RETRIES", default_value_t = 2)]
    pub(crate) rate_retries: u32,
    /// How long a fetched price is reused, in milliseconds (0 disables the cache).
    #[arg(long, env = "STRATA_RATE_CACHE_MS", default_value_t = 2000)]
    pub(crate) rate_cache_ms: u64,
    /// Event stream for order events: unset for the embedded in-process bus, or a NATS URL
    /// (nats://127.0.0.1:4222) for JetStream, which several processes can share.
    #[arg(long, env = "STRATA_EVENTS_URL")]
    pub(crate) events_url: Option<String>,
    /// JetStream stream name (subjects `<stream>.<tenant>`).
    #[arg(long, env = "STRATA_EVENTS_STREAM", default_value = "STRATA_ORDERS")]
    pub(crate) events_stream: String,
    /// Serve the py-dist-arch compatible order surface, unauthenticated, for this tenant.
    #[arg(long, env = "STRATA_COMPAT_PY_DIST_ARCH_TENANT")]
    pub(crate) compat_py_dist_arch_tenant: Option<String>,
    /// A TLS-terminating proxy in front sets X-Forwarded-Proto: believe it, so the dashboard's
    /// session cookie is marked Secure for HTTPS visitors. Leave off when clients reach Strata
    /// directly (they could send the header themselves).
    #[arg(long, env = "STRATA_TRUST_FORWARDED_PROTO")]
    pub(crate) trust_forwarded_proto: bool,
    /// Address of the gRPC query service (e6data protocol).
    #[arg(long, env = "STRATA_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub(crate) grpc_addr: SocketAddr,
    /// The stack this instance belongs to: blue or green.
    #[arg(long, env = "STRATA_STACK", default_value = "blue")]
    pub(crate) stack: String,
    /// Time limit of one query, in seconds.
    #[arg(long, env = "STRATA_QUERY_TIMEOUT_SECS", default_value_t = 300)]
    pub(crate) query_timeout_secs: u64,
    /// After a switch away from this stack, how long it keeps serving the queries it owns; and
    /// after SIGTERM, how long requests and calls in flight may take to finish before they are
    /// closed.
    #[arg(long, env = "STRATA_DRAIN_TIMEOUT_SECS", default_value_t = 300)]
    pub(crate) drain_timeout_secs: u64,
    /// How often the shared deployment state is re-read, in milliseconds.
    #[arg(long, env = "STRATA_DEPLOY_POLL_MS", default_value_t = 100)]
    pub(crate) deploy_poll_ms: u64,
    /// Address other instances and `strata deploy` use to reach this HTTP API (default: the
    /// bound address).
    #[arg(long, env = "STRATA_ADVERTISE_HTTP")]
    pub(crate) advertise_http: Option<String>,
    /// Bearer token for /v1/admin/* (blue/green switching over HTTP); unset leaves it off.
    #[arg(long, env = "STRATA_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// A file holding the admin token (keeps it out of `ps` and the environment).
    #[arg(long, env = "STRATA_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Announcement time of switches started through the admin API, in milliseconds.
    #[arg(long, env = "STRATA_ANNOUNCE_MS", default_value_t = 2000)]
    pub(crate) announce_ms: u64,
    /// Bytes of result values one SQL query may hold at once, in MiB; a row may be an eighth of it.
    #[arg(long, env = "STRATA_QUERY_MEMORY_MIB", default_value_t = 64)]
    pub(crate) query_memory_mib: usize,
    /// Open SQL queries (prepared and not yet cleared) one tenant may hold on an instance.
    #[arg(long, env = "STRATA_MAX_QUERIES_PER_TENANT", default_value_t = 256)]
    pub(crate) max_queries_per_tenant: usize,
    /// Seconds a client has to send a request's headers (also how long an idle keep-alive
    /// connection stays open).
    #[arg(long, env = "STRATA_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 15)]
    pub(crate) http_header_timeout_secs: u64,
    /// Longest pause, in seconds, while a request body is being sent.
    #[arg(long, env = "STRATA_HTTP_BODY_IDLE_TIMEOUT_SECS", default_value_t = 30)]
    pub(crate) http_body_idle_timeout_secs: u64,
    /// Slowest average rate, in bytes per second, at which a request body may arrive (0: no
    /// minimum).
    #[arg(long, env = "STRATA_HTTP_MIN_BODY_RATE", default_value_t = 1024)]
    pub(crate) http_min_body_rate: u64,
    /// HTTP connections served at once; more are closed on accept.
    #[arg(long, env = "STRATA_HTTP_MAX_CONNECTIONS", default_value_t = 4096)]
    pub(crate) http_max_connections: usize,
    /// Request bodies (batches, definitions, orders) one tenant may have buffered at once, in MiB.
    #[arg(long, env = "STRATA_TENANT_BODY_BUDGET_MIB", default_value_t = 64)]
    pub(crate) tenant_body_budget_mib: usize,
}

impl ServeArgs {
    pub(crate) fn options(&self, default_provider: &str) -> anyhow::Result<strata_http::startup::Options> {
        let provider = self.rate_provider.as_deref().unwrap_or(default_provider);
        let rates = if provider == "fixed" {
            strata_app::ports::rates::RateProvider::fixed_from_spec(&self.fixed_rates)
                .map_err(|e| anyhow::anyhow!("--fixed-rates: {e}"))?
        } else {
            strata_app::ports::rates::RateProvider::coinbase(
                &self.rate_base_url,
                Duration::from_millis(self.rate_timeout_ms),
                self.rate_retries,
                Duration::from_millis(self.rate_cache_ms),
            )
        };
        let compat_tenant = self.compat_py_dist_arch_tenant.as_deref().map(parse_tenant).transpose()?;
        if let Some(url) = &self.events_url {
            if !url.starts_with("nats://") {
                bail!("--events-url must be a nats:// URL (leave it unset for the embedded bus)");
            }
        }
        let events = self.events_url.clone().map(|u| (u, self.events_stream.clone()));
        let admin_token = match (&self.admin_token, &self.admin_token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(path)) => Some(read_secret_file(path, "--admin-token-file")?.expose().clone()),
            (None, None) => None,
        };
        if let Some(t) = &admin_token {
            if t.len() < 16 {
                bail!("the admin token must be at least 16 characters");
            }
        }
        let switch = strata_app::deploy::SwitchOptions {
            announce: Duration::from_millis(self.announce_ms),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            ..Default::default()
        };
        let limits = strata_http::limits::HttpLimits {
            header_read_timeout: Duration::from_secs(self.http_header_timeout_secs.max(1)),
            body_idle_timeout: Duration::from_secs(self.http_body_idle_timeout_secs.max(1)),
            body_min_rate: self.http_min_body_rate,
            max_connections: self.http_max_connections.max(1),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            tenant_body_budget: self.tenant_body_budget_mib.max(1) << 20,
            ..Default::default()
        };
        if self.tenant_body_budget_mib < 16 {
            bail!("--tenant-body-budget-mib must be at least 16, the size of the largest batch");
        }
        Ok(strata_http::startup::Options {
            rates,
            compat_tenant,
            events,
            admin_token,
            switch,
            limits,
            trust_forwarded_proto: self.trust_forwarded_proto,
        })
    }
}

pub(crate) async fn serve(
    store: Store,
    a: ServeArgs,
    config: &StoreConfig,
    default_provider: &str,
) -> anyhow::Result<()> {
    let options = a.options(default_provider)?;
    let rates = options.rates.describe();
    let stack: strata_grpc::deploy_stack::Stack =
        a.stack.parse().map_err(|e: String| anyhow::anyhow!("--stack: {e}"))?;
    let app = strata_http::startup::Application::build_with(a.http_addr, store.clone(), options)
        .await
        .with_context(|| format!("cannot listen on {}", a.http_addr))?;
    let http_addr = app.local_addr();
    let mut grpc_opts =
        strata_grpc::GrpcOptions::new(stack, a.advertise_http.clone().unwrap_or_else(|| http_addr.to_string()));
    grpc_opts.query.timeout = Duration::from_secs(a.query_timeout_secs.max(1));
    grpc_opts.query.memory_budget = a.query_memory_mib.max(1) << 20;
    grpc_opts.max_queries_per_tenant = a.max_queries_per_tenant.max(1);
    grpc_opts.drain_timeout = Duration::from_secs(a.drain_timeout_secs);
    grpc_opts.poll = Duration::from_millis(a.deploy_poll_ms.clamp(10, 10_000));
    let grpc = strata_grpc::GrpcServer::build(a.grpc_addr, store, grpc_opts)
        .await
        .with_context(|| format!("cannot start the gRPC query service on {}", a.grpc_addr))?;
    tracing::info!(http_addr = %http_addr, grpc_addr = %grpc.local_addr(), stack = %stack, storage = ?config, rates = %rates, "strata listening");
    // One signal stops both servers; each then drains its in-flight calls.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        strata_http::startup::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let (h, g) = tokio::join!(app.run_until(wait(stop_rx.clone())), grpc.run_until(wait(stop_rx)));
    h?;
    g?;
    tracing::info!("strata stopped");
    Ok(())
}

pub(crate) const HR_FILES: [(&str, &[u8]); 3] = [
    ("departments", include_bytes!("../../../../data/hr/departments.csv")),
    ("jobs", include_bytes!("../../../../data/hr/jobs.csv")),
    ("employees", include_bytes!("../../../../data/hr/employees.csv")),
];

pub(crate) async fn demo(store: Store, a: ServeArgs, config: &StoreConfig) -> anyhow::Result<()> {
    let id = TenantId::parse("demo").unwrap();
    // A key is shown only once, so a rerun issues a fresh one rather than failing.
    let key = if store.tenants().exists(&id).await? {
        store.tenants().create_api_key(&id).await?
    } else {
        store.tenants().create(&id).await?
    };
    store.apply_dataset(&id, &strata_domain::hr::definition()).await?;
    let mut summary = Vec::new();
    for (table, bytes) in HR_FILES {
        let t = store.table(&id, table).await?;
        let r = store.load(&id, &t, bytes, Arc::new(AtomicU64::new(0))).await?;
        summary.push(format!("{table}: {} inserted, {} unchanged, {} rejected", r.inserted, r.unchanged, r.rejected));
    }
    let base = format!("http://{}", a.http_addr);
    eprintln!(
        "\nStrata demo is ready (storage: {config:?}).\n  {}\n\n  API key:  {}\n  API docs: {base}/docs\n  Tables:   curl -H 'Authorization: Bearer {}' {base}/v1/tables\n  SQL:      gRPC (e6data protocol) on {}, user `demo`, password = the API key, catalog `strata`, database `hr`\n",
        summary.join("\n  "),
        key.plaintext.expose(),
        key.plaintext.expose(),
        a.grpc_addr
    );
    serve(store, a, config, "fixed").await
}
