//! `strata`: one binary for serving and administering Strata.
//!
//! This file parses the command line and dispatches; each subcommand lives in
//! [`commands`], one file per subcommand:
//!
//! * `serve` and `demo` ([`commands::serve`]): the HTTP API and the gRPC query service;
//! * `tenant`, `dataset`, `load`, `backup`/`restore`, `report`, `orders`, `deploy` and
//!   `migrate` administer storage directly, with no server needed.
//!
//! Every flag has a `STRATA_*` environment variable, so the same binary configures cleanly in
//! containers.

mod commands;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use commands::{
    backup::{BackupArgs, RestoreArgs},
    dataset::DatasetCmd,
    deploy::DeployCmd,
    load::LoadArgs,
    migrate::MigrateCmd,
    orders::OrdersCmd,
    report::ReportArgs,
    serve::ServeArgs,
    tenant::TenantCmd,
};
use strata_domain::secret::Secret;
use strata_domain::tenant::TenantId;
use strata_store::{Store, StoreConfig};

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
pub(crate) fn read_secret_file(path: &std::path::Path, flag: &str) -> anyhow::Result<Secret<String>> {
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
    /// Schema versions: status, and applying pending migrations (done at every start too).
    #[command(subcommand)]
    Migrate(MigrateCmd),
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

pub(crate) fn parse_tenant(id: &str) -> anyhow::Result<TenantId> {
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
    // `migrate` opens without migrating: `status` must see the schema as it is, and `run`
    // reports what it applies.
    let opened = if matches!(cli.command, Command::Migrate(_)) {
        Store::open_unmigrated(&config).await
    } else {
        Store::open(&config).await
    };
    let mut store = opened
        .with_context(|| format!("cannot open storage {config:?}"))?
        .with_tenant_slots(slots, Duration::from_secs(cli.storage.tenant_slot_wait_secs));
    if let Some(dir) = &cli.storage.backup_dir {
        store = store.with_backup_dir(dir.clone());
    }
    match cli.command {
        Command::Serve(a) => commands::serve::serve(store, a, &config, "coinbase").await,
        Command::Demo(a) => commands::serve::demo(store, a, &config).await,
        Command::Tenant(cmd) => commands::tenant::tenant(store, cmd).await,
        Command::Dataset(cmd) => commands::dataset::dataset(store, cmd).await,
        Command::Load(a) => commands::load::load(store, a).await,
        Command::Backup(a) => commands::backup::backup(store, a).await,
        Command::Restore(a) => commands::backup::restore(store, a).await,
        Command::Report(a) => commands::report::report(store, a).await,
        Command::Orders(cmd) => commands::orders::orders(store, cmd).await,
        Command::Deploy(cmd) => commands::deploy::deploy(store, cmd).await,
        Command::Migrate(cmd) => commands::migrate::migrate(store, cmd).await,
    }
}
