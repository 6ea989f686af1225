//! `strata`: one binary for serving and administering Strata.
//!
//! `serve` runs the HTTP API; `demo` sets up a demo tenant with the HR data and serves it;
//! `tenant`, `dataset` and `load` administer storage directly (no server needed). Every flag has
//! a `STRATA_*` environment variable, so the same binary configures cleanly in containers.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use strata_domain::dataset::{DatasetDef, Format};
use strata_domain::secret::Secret;
use strata_domain::tenant::TenantId;
use strata_store::{LoadReport, Store, StoreConfig};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "strata", version, about = "Strata: a multi-tenant data platform in one binary")]
struct Cli {
    #[command(flatten)]
    storage: StorageArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct StorageArgs {
    /// Directory for the embedded SQLite storage (used when no database URL is given).
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./strata-data", global = true)]
    data_dir: PathBuf,
    /// PostgreSQL URL (postgres://user@host/db) or key-value string (host=... dbname=...); when
    /// set, everything is stored there.
    #[arg(long, env = "STRATA_DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// A file holding the database URL: keeps the password out of `ps` and the environment.
    #[arg(long, env = "STRATA_DATABASE_URL_FILE", global = true, conflicts_with = "database_url")]
    database_url_file: Option<PathBuf>,
    /// Directory for table backups (default: <data-dir>/backups, or ./strata-backups with
    /// PostgreSQL). Replicas sharing a database must share it too.
    #[arg(long, env = "STRATA_BACKUP_DIR", global = true)]
    backup_dir: Option<PathBuf>,
    /// PostgreSQL connections per process for tenants' data (the control plane has 4 more of
    /// its own).
    #[arg(long, env = "STRATA_PG_POOL_SIZE", default_value_t = 16, global = true)]
    pg_pool_size: usize,
    /// Operations one tenant may run on its storage at once (PostgreSQL connections, SQLite
    /// threads); on PostgreSQL it must be below --pg-pool-size, so one tenant never holds the
    /// whole pool.
    #[arg(long, env = "STRATA_TENANT_DB_SLOTS", default_value_t = strata_store::slots::DEFAULT_TENANT_SLOTS, global = true)]
    tenant_db_slots: usize,
    /// How long an operation waits for one of its tenant's slots before `429 tenant_busy`.
    #[arg(long, env = "STRATA_TENANT_SLOT_WAIT_SECS", default_value_t = 10, global = true)]
    tenant_slot_wait_secs: u64,
}

impl StorageArgs {
    fn config(&self) -> anyhow::Result<StoreConfig> {
        let url = match (&self.database_url, &self.database_url_file) {
            (Some(url), _) => Some(Secret::new(url.clone())),
            (None, Some(path)) => Some(read_secret_file(path, "--database-url-file")?),
            (None, None) => None,
        };
        Ok(match url {
            Some(url) => StoreConfig::Postgres { url, pool_size: self.pg_pool_size },
            None => StoreConfig::Sqlite { data_dir: self.data_dir.clone() },
        })
    }
}

/// Reads a secret from a file (a mounted Kubernetes secret, say), without its trailing newline.
/// Errors name the file, never its contents.
fn read_secret_file(path: &std::path::Path, flag: &str) -> anyhow::Result<Secret<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{flag}: cannot read {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.trim().is_empty() {
        bail!("{flag}: {} is empty", path.display());
    }
    Ok(Secret::new(value))
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and the gRPC query service.
    Serve(ServeArgs),
    /// Create the `demo` tenant with the HR dataset, load the bundled CSV files, print the API
    /// key and the URLs, and serve.
    Demo(ServeArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage a tenant's datasets (its data dictionary).
    #[command(subcommand)]
    Dataset(DatasetCmd),
    /// Load a header-less CSV file into a table, validating every row.
    Load(LoadArgs),
    /// Back up a table (or every table) to an Avro file.
    Backup(BackupArgs),
    /// Replace a table's rows (or every table's) with a backup's, atomically.
    Restore(RestoreArgs),
    /// Hiring KPI reports over the HR dataset.
    Report(ReportArgs),
    /// The BTC order book.
    #[command(subcommand)]
    Orders(OrdersCmd),
    /// Blue/green deployment of the query service: status, switch, rollback.
    #[command(subcommand)]
    Deploy(DeployCmd),
}

#[derive(Args, Clone)]
struct SwitchArgs {
    /// Who is switching, for the deployment history (default: $USER).
    #[arg(long, env = "STRATA_ACTOR")]
    actor: Option<String>,
    /// How long the coming stack is announced before the flip, in milliseconds.
    #[arg(long, env = "STRATA_ANNOUNCE_MS", default_value_t = 2000)]
    announce_ms: u64,
    /// How long to wait for the old stack to drain, in seconds.
    #[arg(long, env = "STRATA_DRAIN_TIMEOUT_SECS", default_value_t = 300)]
    drain_timeout_secs: u64,
    /// nginx's active-stack.conf to rewrite at the flip (see deploy/nginx/strata-grpc.conf).
    #[arg(long, env = "STRATA_NGINX_ACTIVE_FILE")]
    nginx_active_file: Option<PathBuf>,
    /// Command that reloads nginx afterwards, e.g. "nginx -p DIR -c DIR/nginx.conf -s reload".
    #[arg(long, env = "STRATA_NGINX_RELOAD", requires = "nginx_active_file")]
    nginx_reload: Option<String>,
}

impl SwitchArgs {
    fn options(&self) -> strata_grpc::deploy::SwitchOptions {
        let actor = self.actor.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
        strata_grpc::deploy::SwitchOptions {
            actor: format!("cli:{actor}"),
            announce: Duration::from_millis(self.announce_ms),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            nginx_active_file: self.nginx_active_file.clone(),
            nginx_reload: self.nginx_reload.clone(),
            ..Default::default()
        }
    }
}

#[derive(Subcommand)]
enum DeployCmd {
    /// Show the active stack, live instances and recent switches.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Validate the target stack, announce it, flip, drain the old stack, record the switch.
    Switch {
        /// The stack to make active: blue or green.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        args: SwitchArgs,
    },
    /// Switch back to the stack that is not active.
    Rollback {
        #[command(flatten)]
        args: SwitchArgs,
    },
    /// Withdraw the announcement of a switch whose process died before the flip.
    Abort {
        #[arg(long, env = "STRATA_ACTOR")]
        actor: Option<String>,
    },
}

#[derive(Subcommand)]
enum OrdersCmd {
    /// Rebuild the listing read model from the write model.
    RebuildReadModel {
        #[arg(long, env = "STRATA_TENANT")]
        tenant: String,
    },
    /// Set the tenant's cap on the BTC in its book (default 100).
    SetCap {
        #[arg(long, env = "STRATA_TENANT")]
        tenant: String,
        /// In BTC, up to 8 decimals.
        #[arg(long)]
        btc: String,
    },
    /// Show the BTC in the book and the cap.
    Book {
        #[arg(long, env = "STRATA_TENANT")]
        tenant: String,
    },
}

#[derive(Args)]
struct ReportArgs {
    /// hires-by-quarter or departments-above-mean.
    #[arg(value_parser = ["hires-by-quarter", "departments-above-mean"])]
    report: String,
    #[arg(long, env = "STRATA_TENANT")]
    tenant: String,
    #[arg(long, default_value = "2021")]
    year: String,
    /// table, csv or json.
    #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
    format: String,
}

#[derive(Args)]
struct BackupArgs {
    #[arg(long, env = "STRATA_TENANT")]
    tenant: String,
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    table: Option<String>,
    /// Every table of the tenant, from one snapshot.
    #[arg(long)]
    all: bool,
    /// null, deflate, snappy or zstd.
    #[arg(long, default_value = "zstd")]
    codec: String,
    /// Backups to keep per table; older ones are deleted.
    #[arg(long, env = "STRATA_BACKUP_RETAIN", default_value_t = 10)]
    retain: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RestoreArgs {
    #[arg(long, env = "STRATA_TENANT")]
    tenant: String,
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    table: Option<String>,
    /// Restore every table from the newest backup set that covers them all, in one transaction.
    #[arg(long)]
    all: bool,
    /// A backup id (default: the table's newest backup).
    #[arg(long, conflicts_with_all = ["file", "all"])]
    backup: Option<String>,
    /// An Avro file written by Strata or any other Avro writer.
    #[arg(long, conflicts_with = "all")]
    file: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "STRATA_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Log format: json (one JSON object per line) or pretty.
    #[arg(long, env = "STRATA_LOG_FORMAT", default_value = "json")]
    log_format: String,
    /// Where BTC prices come from: coinbase (a Coinbase-compatible spot API; the default for
    /// `serve`) or fixed (offline; the default for `demo`).
    #[arg(long, env = "STRATA_RATE_PROVIDER", value_parser = ["coinbase", "fixed"])]
    rate_provider: Option<String>,
    /// Base URL of the Coinbase-compatible API.
    #[arg(long, env = "STRATA_RATE_BASE_URL", default_value = "https://api.coinbase.com")]
    rate_base_url: String,
    /// Rates for the fixed provider.
    #[arg(long, env = "STRATA_FIXED_RATES", default_value = strata_http::startup::DEMO_RATES)]
    fixed_rates: String,
    /// Timeout of one price request, in milliseconds.
    #[arg(long, env = "STRATA_RATE_TIMEOUT_MS", default_value_t = 2000)]
    rate_timeout_ms: u64,
    /// Retries after a failed price request (timeouts, 5xx, 429).
    #[arg(long, env = "STRATA_RATE_RETRIES", default_value_t = 2)]
    rate_retries: u32,
    /// How long a fetched price is reused, in milliseconds (0 disables the cache).
    #[arg(long, env = "STRATA_RATE_CACHE_MS", default_value_t = 2000)]
    rate_cache_ms: u64,
    /// Event stream for order events: unset for the embedded in-process bus, or a NATS URL
    /// (nats://127.0.0.1:4222) for JetStream, which several processes can share.
    #[arg(long, env = "STRATA_EVENTS_URL")]
    events_url: Option<String>,
    /// JetStream stream name (subjects `<stream>.<tenant>`).
    #[arg(long, env = "STRATA_EVENTS_STREAM", default_value = "STRATA_ORDERS")]
    events_stream: String,
    /// Serve the py-dist-arch compatible order surface, unauthenticated, for this tenant.
    #[arg(long, env = "STRATA_COMPAT_PY_DIST_ARCH_TENANT")]
    compat_py_dist_arch_tenant: Option<String>,
    /// A TLS-terminating proxy in front sets X-Forwarded-Proto: believe it, so the dashboard's
    /// session cookie is marked Secure for HTTPS visitors. Leave off when clients reach Strata
    /// directly (they could send the header themselves).
    #[arg(long, env = "STRATA_TRUST_FORWARDED_PROTO")]
    trust_forwarded_proto: bool,
    /// Address of the gRPC query service (e6data protocol).
    #[arg(long, env = "STRATA_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,
    /// The stack this instance belongs to: blue or green.
    #[arg(long, env = "STRATA_STACK", default_value = "blue")]
    stack: String,
    /// Time limit of one query, in seconds.
    #[arg(long, env = "STRATA_QUERY_TIMEOUT_SECS", default_value_t = 300)]
    query_timeout_secs: u64,
    /// After a switch away from this stack, how long it keeps serving the queries it owns; and
    /// after SIGTERM, how long requests and calls in flight may take to finish before they are
    /// closed.
    #[arg(long, env = "STRATA_DRAIN_TIMEOUT_SECS", default_value_t = 300)]
    drain_timeout_secs: u64,
    /// How often the shared deployment state is re-read, in milliseconds.
    #[arg(long, env = "STRATA_DEPLOY_POLL_MS", default_value_t = 100)]
    deploy_poll_ms: u64,
    /// Address other instances and `strata deploy` use to reach this HTTP API (default: the
    /// bound address).
    #[arg(long, env = "STRATA_ADVERTISE_HTTP")]
    advertise_http: Option<String>,
    /// Bearer token for /v1/admin/* (blue/green switching over HTTP); unset leaves it off.
    #[arg(long, env = "STRATA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A file holding the admin token (keeps it out of `ps` and the environment).
    #[arg(long, env = "STRATA_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// Announcement time of switches started through the admin API, in milliseconds.
    #[arg(long, env = "STRATA_ANNOUNCE_MS", default_value_t = 2000)]
    announce_ms: u64,
    /// Bytes of result values one SQL query may hold at once, in MiB; a row may be an eighth of it.
    #[arg(long, env = "STRATA_QUERY_MEMORY_MIB", default_value_t = 64)]
    query_memory_mib: usize,
    /// Open SQL queries (prepared and not yet cleared) one tenant may hold on an instance.
    #[arg(long, env = "STRATA_MAX_QUERIES_PER_TENANT", default_value_t = 256)]
    max_queries_per_tenant: usize,
    /// Seconds a client has to send a request's headers (also how long an idle keep-alive
    /// connection stays open).
    #[arg(long, env = "STRATA_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 15)]
    http_header_timeout_secs: u64,
    /// Longest pause, in seconds, while a request body is being sent.
    #[arg(long, env = "STRATA_HTTP_BODY_IDLE_TIMEOUT_SECS", default_value_t = 30)]
    http_body_idle_timeout_secs: u64,
    /// Slowest average rate, in bytes per second, at which a request body may arrive (0: no
    /// minimum).
    #[arg(long, env = "STRATA_HTTP_MIN_BODY_RATE", default_value_t = 1024)]
    http_min_body_rate: u64,
    /// HTTP connections served at once; more are closed on accept.
    #[arg(long, env = "STRATA_HTTP_MAX_CONNECTIONS", default_value_t = 4096)]
    http_max_connections: usize,
    /// Request bodies (batches, definitions, orders) one tenant may have buffered at once, in MiB.
    #[arg(long, env = "STRATA_TENANT_BODY_BUDGET_MIB", default_value_t = 64)]
    tenant_body_budget_mib: usize,
}

impl ServeArgs {
    fn options(&self, default_provider: &str) -> anyhow::Result<strata_http::startup::Options> {
        let provider = self.rate_provider.as_deref().unwrap_or(default_provider);
        let rates = if provider == "fixed" {
            strata_store::rates::RateProvider::fixed_from_spec(&self.fixed_rates)
                .map_err(|e| anyhow::anyhow!("--fixed-rates: {e}"))?
        } else {
            strata_store::rates::RateProvider::coinbase(
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
        let switch = strata_grpc::deploy::SwitchOptions {
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

#[derive(Subcommand)]
enum TenantCmd {
    /// Create a tenant and print its API key (only the key, so scripts can capture it).
    Create {
        /// Lowercase DNS label, at most 51 characters.
        id: String,
        /// A built-in dataset to install (available: hr).
        #[arg(long)]
        dataset: Option<String>,
        /// Print a JSON object instead of the bare key.
        #[arg(long)]
        json: bool,
    },
    /// Issue another API key for a tenant (keys are stored only as hashes).
    Key {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DatasetCmd {
    /// Add or confirm a dataset from a TOML, YAML or JSON definition file.
    Apply {
        #[arg(long, env = "STRATA_TENANT")]
        tenant: String,
        file: PathBuf,
    },
    /// List the tenant's tables and columns.
    Tables {
        #[arg(long, env = "STRATA_TENANT")]
        tenant: String,
    },
}

#[derive(Args)]
struct LoadArgs {
    #[arg(long, env = "STRATA_TENANT")]
    tenant: String,
    #[arg(long)]
    table: String,
    /// The CSV file (`-` reads standard input).
    file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn init_logging(to_stdout: bool, format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| EnvFilter::new(if to_stdout { "info" } else { "warn" }));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if to_stdout {
        if format == "pretty" {
            builder.with_writer(std::io::stdout).init();
        } else {
            builder.json().flatten_event(true).with_current_span(false).with_writer(std::io::stdout).init();
        }
    } else {
        builder.with_writer(std::io::stderr).init();
    }
}

fn parse_tenant(id: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(id).map_err(|e| anyhow::anyhow!("invalid tenant id {id:?}: {e}"))
}

#[tokio::main]
async fn main() {
    // Behave like other Unix tools when piped into `head`: exit quietly on a closed pipe.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(a) | Command::Demo(a) => init_logging(true, &a.log_format),
        _ => init_logging(false, "pretty"),
    }
    let config = cli.storage.config()?;
    let slots = cli.storage.tenant_db_slots;
    if slots == 0 {
        bail!("--tenant-db-slots must be at least 1");
    }
    if matches!(config, StoreConfig::Postgres { .. }) && slots >= cli.storage.pg_pool_size {
        bail!(
            "--tenant-db-slots ({slots}) must be below --pg-pool-size ({}), so one tenant can never hold every connection",
            cli.storage.pg_pool_size
        );
    }
    let mut store = Store::open(&config)
        .await
        .with_context(|| format!("cannot open storage {config:?}"))?
        .with_tenant_slots(slots, Duration::from_secs(cli.storage.tenant_slot_wait_secs));
    if let Some(dir) = &cli.storage.backup_dir {
        store = store.with_backup_dir(dir.clone());
    }
    match cli.command {
        Command::Serve(a) => serve(store, a, &config, "coinbase").await,
        Command::Demo(a) => demo(store, a, &config).await,
        Command::Tenant(cmd) => tenant(store, cmd).await,
        Command::Dataset(cmd) => dataset(store, cmd).await,
        Command::Load(a) => load(store, a).await,
        Command::Backup(a) => backup(store, a).await,
        Command::Restore(a) => restore(store, a).await,
        Command::Report(a) => report(store, a).await,
        Command::Orders(cmd) => orders(store, cmd).await,
        Command::Deploy(cmd) => deploy(store, cmd).await,
    }
}

async fn serve(store: Store, a: ServeArgs, config: &StoreConfig, default_provider: &str) -> anyhow::Result<()> {
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

async fn deploy(store: Store, cmd: DeployCmd) -> anyhow::Result<()> {
    use strata_grpc::deploy;
    let fresh = Duration::from_secs(3);
    let show = |r: &strata_store::deploy::SwitchRecord| {
        println!("{} -> {}: {} in {} ms by {} ({})", r.from, r.to, r.outcome, r.duration_ms(), r.actor, r.detail)
    };
    match cmd {
        DeployCmd::Status { json } => {
            let s = deploy::status(&store, fresh, 20).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            println!("active:    {}", s.active);
            println!("announced: {}", s.announced.as_deref().unwrap_or("-"));
            println!("instances:");
            for i in &s.instances {
                println!(
                    "  {:<6} {}  http {}  grpc {}  in flight {}",
                    i.stack, i.id, i.http_addr, i.grpc_addr, i.inflight
                );
            }
            println!("history (newest first):");
            for r in &s.history {
                print!("  {}  ", r.id);
                show(r);
            }
        }
        DeployCmd::Switch { to, args } => {
            let to = to.parse().map_err(|e: String| anyhow::anyhow!("--to: {e}"))?;
            let r = deploy::switch(&store, to, &args.options()).await?;
            show(&r);
        }
        DeployCmd::Rollback { args } => {
            let r = deploy::rollback(&store, &args.options()).await?;
            show(&r);
        }
        DeployCmd::Abort { actor } => {
            let actor = format!("cli:{}", actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into()));
            match deploy::abort(&store, &actor).await? {
                Some(r) => show(&r),
                None => println!("no switch is under way"),
            }
        }
    }
    Ok(())
}

const HR_FILES: [(&str, &[u8]); 3] = [
    ("departments", include_bytes!("../../../data/hr/departments.csv")),
    ("jobs", include_bytes!("../../../data/hr/jobs.csv")),
    ("employees", include_bytes!("../../../data/hr/employees.csv")),
];

async fn demo(store: Store, a: ServeArgs, config: &StoreConfig) -> anyhow::Result<()> {
    let id = TenantId::parse("demo").unwrap();
    // A key is shown only once, so a rerun issues a fresh one rather than failing.
    let key = if store.tenant_exists(&id).await? {
        store.create_api_key(&id).await?
    } else {
        store.create_tenant(&id).await?
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

async fn tenant(store: Store, cmd: TenantCmd) -> anyhow::Result<()> {
    match cmd {
        TenantCmd::Create { id, dataset, json } => {
            let tid = parse_tenant(&id)?;
            let def = match dataset.as_deref() {
                None => None,
                Some("hr") => Some(strata_domain::hr::definition()),
                Some(other) => {
                    bail!("unknown built-in dataset {other:?} (available: hr); use `strata dataset apply` for your own")
                }
            };
            let key = store.create_tenant(&tid).await?;
            if let Some(def) = def {
                store.apply_dataset(&tid, &def).await?;
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenant": tid.as_str(), "api_key": key.plaintext.expose(),
                        "key_prefix": key.display_prefix, "dataset": dataset})
                );
            } else {
                println!("{}", key.plaintext.expose());
            }
        }
        TenantCmd::Key { id, json } => {
            let tid = parse_tenant(&id)?;
            let key = store.create_api_key(&tid).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenant": tid.as_str(), "api_key": key.plaintext.expose(), "key_prefix": key.display_prefix})
                );
            } else {
                println!("{}", key.plaintext.expose());
            }
        }
        TenantCmd::List { json } => {
            let tenants = store.list_tenants().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else {
                for t in tenants {
                    println!("{}\t{}", t.id, t.created_at);
                }
            }
        }
    }
    Ok(())
}

async fn dataset(store: Store, cmd: DatasetCmd) -> anyhow::Result<()> {
    match cmd {
        DatasetCmd::Apply { tenant, file } => {
            let tid = parse_tenant(&tenant)?;
            let name = file.to_string_lossy().to_string();
            let format = Format::from_path(&name)
                .ok_or_else(|| anyhow::anyhow!("{name}: use a .toml, .yaml, .yml or .json file"))?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {name}"))?;
            let def = DatasetDef::parse(&text, format).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            let r = store.apply_dataset(&tid, &def).await?;
            if r.changed {
                println!(
                    "dataset {} is at version {}; created tables: {}",
                    r.dataset,
                    r.version,
                    if r.created_tables.is_empty() { "none".to_string() } else { r.created_tables.join(", ") }
                );
            } else {
                println!(
                    "dataset {} is already at version {} with this definition; nothing changed",
                    r.dataset, r.version
                );
            }
        }
        DatasetCmd::Tables { tenant } => {
            let tid = parse_tenant(&tenant)?;
            for t in store.tables(&tid).await? {
                println!("{} (dataset {}, key {})", t.name, t.dataset, t.pk_column().name);
                for c in &t.columns {
                    let fk = c.references.as_ref().map(|r| format!(" -> {}.{}", r.table, r.column)).unwrap_or_default();
                    println!(
                        "  {:<24} {:<9}{}{}",
                        c.name,
                        c.ty.to_string(),
                        if c.required { " required" } else { "" },
                        fk
                    );
                }
            }
        }
    }
    Ok(())
}

async fn load(store: Store, a: LoadArgs) -> anyhow::Result<()> {
    let tid = parse_tenant(&a.tenant)?;
    let table = store.table(&tid, &a.table).await?;
    let bytes = Arc::new(AtomicU64::new(0));
    let (reader, size): (Box<dyn std::io::Read + Send>, Option<u64>) = if a.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("cannot open {}", a.file.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };

    // A progress bar on a terminal; nothing when output is piped.
    let bar = if std::io::stderr().is_terminal() {
        let bar = match size {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} loading {msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        bar.set_message(table.name.clone());
        Some(bar)
    } else {
        None
    };
    let ticker = bar.clone().map(|bar| {
        let bytes = bytes.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(bytes.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let result = store.load(&tid, &table, reader, bytes.clone()).await;
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

/// A progress bar on a terminal, fed from a counter; nothing when output is piped.
fn progress(
    counter: Arc<AtomicU64>,
    total: Option<u64>,
    template: &str,
    msg: String,
) -> Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(indicatif::ProgressStyle::with_template(template).unwrap().progress_chars("=> "));
    bar.set_message(msg);
    let b = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            b.set_position(counter.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Some((bar, ticker))
}

fn finish_progress(p: Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)>) {
    if let Some((bar, ticker)) = p {
        ticker.abort();
        bar.finish_and_clear();
    }
}

async fn backup(store: Store, a: BackupArgs) -> anyhow::Result<()> {
    let tid = parse_tenant(&a.tenant)?;
    let codec = strata_domain::avro::Codec::parse(&a.codec)
        .ok_or_else(|| anyhow::anyhow!("--codec must be one of null, deflate, snappy, zstd"))?;
    let tables = match &a.table {
        Some(name) => vec![store.table(&tid, name).await?],
        None => store.tables(&tid).await?,
    };
    if tables.is_empty() {
        bail!("tenant {tid} has no tables to back up");
    }
    let counter = Arc::new(AtomicU64::new(0));
    let bar = progress(
        counter.clone(),
        None,
        "{spinner} backing up {msg}: {pos} rows ({per_sec})",
        tables.iter().map(|t| t.name.clone()).collect::<Vec<_>>().join(", "),
    );
    let result = store.backup(&tid, tables, codec, a.retain, counter).await;
    finish_progress(bar);
    let manifests = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&manifests)?);
    } else {
        for m in &manifests {
            println!(
                "{}: backup {} ({} rows, {} bytes, {}, sha256 {})",
                m.table, m.id, m.rows, m.bytes, m.codec, m.sha256
            );
        }
    }
    Ok(())
}

async fn restore(store: Store, a: RestoreArgs) -> anyhow::Result<()> {
    use strata_store::backup::RestoreSource;
    let tid = parse_tenant(&a.tenant)?;
    let total;
    let sources = if a.all {
        let tables = store.tables(&tid).await?;
        // The newest set that has a backup of every table: restoring tables from different
        // moments could break their foreign keys.
        let mut sets: Vec<(String, Vec<strata_store::backup::Manifest>)> = Vec::new();
        for t in &tables {
            for m in store.backups().list(&tid, &t.name)? {
                match sets.iter_mut().find(|(id, _)| *id == m.set_id) {
                    Some((_, ms)) => ms.push(m),
                    None => sets.push((m.set_id.clone(), vec![m])),
                }
            }
        }
        sets.sort_by(|x, y| y.0.cmp(&x.0));
        let (_, set) =
            sets.into_iter().find(|(_, ms)| tables.iter().all(|t| ms.iter().any(|m| m.table == t.name))).ok_or_else(
                || anyhow::anyhow!("no backup set covers every table of {tid}; run `strata backup --all` first"),
            )?;
        total = Some(set.iter().map(|m| m.bytes).sum());
        tables
            .into_iter()
            .map(|t| {
                let m = set.iter().find(|m| m.table == t.name).unwrap();
                (t, RestoreSource::Backup(m.id.clone()))
            })
            .collect()
    } else {
        let t = store.table(&tid, a.table.as_deref().unwrap()).await?;
        let source =
            match (&a.backup, &a.file) {
                (_, Some(path)) => {
                    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
                    total = f.metadata().ok().map(|m| m.len());
                    RestoreSource::File { reader: Box::new(f), name: path.display().to_string() }
                }
                (Some(id), None) => {
                    total = Some(store.backups().manifest(&tid, &t.name, id)?.bytes);
                    RestoreSource::Backup(id.clone())
                }
                (None, None) => {
                    let newest =
                        store.backups().list(&tid, &t.name)?.into_iter().next().ok_or_else(|| {
                            anyhow::anyhow!("table {} has no backups; name a file with --file", t.name)
                        })?;
                    total = Some(newest.bytes);
                    RestoreSource::Backup(newest.id)
                }
            };
        vec![(t, source)]
    };
    let counter = Arc::new(AtomicU64::new(0));
    let bar = progress(
        counter.clone(),
        total,
        "{spinner} restoring {msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})",
        sources.iter().map(|(t, _)| t.name.clone()).collect::<Vec<_>>().join(", "),
    );
    let result = store.restore(&tid, sources, counter).await;
    finish_progress(bar);
    let report = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for t in &report.tables {
            println!("{}: restored {} rows from {}", t.table, t.rows, t.source);
        }
        println!("done in {:.2}s", report.duration_ms as f64 / 1000.0);
    }
    Ok(())
}

async fn orders(store: Store, cmd: OrdersCmd) -> anyhow::Result<()> {
    use strata_domain::order::format_btc;
    match cmd {
        OrdersCmd::RebuildReadModel { tenant } => {
            let tid = parse_tenant(&tenant)?;
            let n = store.rebuild_read_model(&tid).await?;
            println!("read model rebuilt: {n} orders");
        }
        OrdersCmd::SetCap { tenant, btc } => {
            let tid = parse_tenant(&tenant)?;
            let sats = parse_btc(&btc)
                .ok_or_else(|| anyhow::anyhow!("--btc must be a positive amount with at most 8 decimals"))?;
            store.set_cap(&tid, sats).await?;
            println!("cap set to {} BTC", format_btc(sats));
        }
        OrdersCmd::Book { tenant } => {
            let tid = parse_tenant(&tenant)?;
            let (total, cap) = store.order_book(&tid).await?;
            println!("{} BTC of {} BTC", format_btc(total), format_btc(cap));
        }
    }
    Ok(())
}

fn parse_btc(s: &str) -> Option<i64> {
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    if i.is_empty() || f.len() > 8 || !i.bytes().all(|b| b.is_ascii_digit()) || !f.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = i.parse().ok()?;
    let frac: i64 = format!("{f:0<8}").parse().ok()?;
    whole.checked_mul(100_000_000)?.checked_add(frac).filter(|v| *v > 0)
}

async fn report(store: Store, a: ReportArgs) -> anyhow::Result<()> {
    use strata_domain::report::{above_mean_csv, hires_csv, Year};
    let tid = parse_tenant(&a.tenant)?;
    let year = Year::parse(&a.year).map_err(|e| anyhow::anyhow!(e))?;
    if a.report == "hires-by-quarter" {
        let rows = store.hires_by_quarter(&tid, year).await?;
        match a.format.as_str() {
            "csv" => print!("{}", hires_csv(&rows)),
            "json" => {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"year": year.get(), "rows": rows}))?)
            }
            _ => {
                if rows.is_empty() {
                    println!("No hires in {}.", year.get());
                }
                let w1 = rows.iter().map(|r| r.department_name.chars().count()).max().unwrap_or(0).max(10);
                let w2 = rows.iter().map(|r| r.job_name.chars().count()).max().unwrap_or(0).max(3);
                if !rows.is_empty() {
                    println!("{:<w1$}  {:<w2$}  {:>4} {:>4} {:>4} {:>4}", "department", "job", "Q1", "Q2", "Q3", "Q4");
                }
                for r in &rows {
                    println!(
                        "{:<w1$}  {:<w2$}  {:>4} {:>4} {:>4} {:>4}",
                        r.department_name, r.job_name, r.q1, r.q2, r.q3, r.q4
                    );
                }
            }
        }
    } else {
        let r = store.departments_above_mean(&tid, year).await?;
        match a.format.as_str() {
            "csv" => print!("{}", above_mean_csv(&r.rows)),
            "json" => println!("{}", serde_json::to_string_pretty(&r)?),
            _ => {
                println!(
                    "{} hires in {} across {} departments; mean {}.",
                    r.total_hires,
                    year.get(),
                    r.departments_counted,
                    r.mean
                );
                for d in &r.rows {
                    println!("{:>6}  {:<30} {:>6}", d.department_id, d.department_name, d.hired);
                }
            }
        }
    }
    Ok(())
}

fn print_summary(r: &LoadReport) {
    println!(
        "{}: {} rows read, {} inserted, {} unchanged, {} rejected in {:.2}s (load {})",
        r.table,
        r.rows_read,
        r.inserted,
        r.unchanged,
        r.rejected,
        r.duration_ms as f64 / 1000.0,
        r.load_id
    );
    for e in r.errors.iter().take(10) {
        let reasons: Vec<String> = e
            .errors
            .iter()
            .map(|f| match &f.column {
                Some(c) => format!("{c}: {}", f.reason),
                None => f.reason.clone(),
            })
            .collect();
        println!("  line {}: {}", e.line.unwrap_or(0), reasons.join("; "));
    }
    if r.rejected > 10 {
        println!(
            "  ... {} more; every rejected row is in the rejection log (GET /v1/tables/{}/rejections)",
            r.rejected - 10,
            r.table
        );
    }
}
