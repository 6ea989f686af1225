//! Storage for Strata: the control plane and every tenant's data, on SQLite or PostgreSQL.
//!
//! A guided tour:
//!
//! * [`Store`] is the entry point. [`Store::open`] picks the backend from the configuration:
//!   SQLite files under a data directory (the embedded default) or a PostgreSQL database.
//! * The **control plane** (tenants, API-key hashes) lives apart from tenant data: `control.db`
//!   or the `strata_control` schema.
//! * **Tenants are isolated physically**: each has its own SQLite file (`tenants/<id>.db`) or its
//!   own PostgreSQL schema (`tenant_<id>`). Tenant ids are validated DNS labels, so they are safe
//!   in paths and identifiers; every SQL identifier is quoted as well.
//! * Each tenant's storage holds its tables plus Strata's bookkeeping, all prefixed `_strata_`:
//!   the data dictionary (`_strata_datasets`), the rejection log (`_strata_rejections`), ingest
//!   history (`_strata_ingests`) and idempotency records (`_strata_idempotency`).
//! * [`ingest`] is the pipeline shared by the CSV load and the batch API: records are parsed and
//!   type-checked on a reader thread ([`ingest::spawn_csv_reader`]), then each backend checks
//!   foreign keys and duplicate keys against the data and writes rows and rejections in one
//!   transaction. A load is one transaction, so a crash leaves the table as it was.
//! * **One folder per feature** ([`tenants`] with keys and sessions, [`datasets`] with rows,
//!   [`ingest`], [`backup`], [`orders`], [`deploy`], [`reports`], [`query`]): its types, its
//!   handle on the facade (`store.orders()`, `store.tenants()`, `store.sessions()`, or methods
//!   on `Store` for the older features), and its SQL written once against [`db::Tx`], which
//!   absorbs placeholder, naming and type differences. Feature functions take a `Tx`, so a
//!   caller can run several in one transaction. Each folder's `sqlite.rs` and `postgres.rs`
//!   hold only what differs in more than syntax: SQLite's row writer against PostgreSQL's
//!   chunk (COPY) writer, behind one `ingest::write::Sink`; backup export; tenant file against
//!   tenant schema; table DDL; each feature's migration SQL.
//! * A repository trait per feature was considered and not taken: with the SQL written once,
//!   each trait would have a single implementation. The seam between the databases is `Tx`.
//! * [`sqlite`] and [`postgres`] are what is left of the backends: opening, pools, the
//!   control-plane and tenant schemas of migration 1, and applying migrations.
//!   See `docs/architecture.md` for the layering rules.

pub mod backup;
pub mod cursor;
pub mod datasets;
pub mod db;
pub mod deploy;
pub mod ingest;
pub mod migrate;
pub mod orders;
pub mod postgres;
pub mod query;
pub mod reports;
pub mod slots;
pub mod sqlite;
pub mod tenants;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use strata_domain::dataset::{DatasetDef, DatasetError, Table};
use strata_domain::tenant::TenantId;
use strata_domain::ErrorCode;

pub use datasets::compile_datasets;
pub use ingest::{BatchReport, Candidate, LoadReport, Rejection};

/// Where the data lives.
#[derive(Clone)]
pub enum StoreConfig {
    Sqlite { data_dir: PathBuf },
    Postgres { url: strata_domain::secret::Secret<String>, pool_size: usize },
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreConfig::Sqlite { data_dir } => write!(f, "sqlite:{}", data_dir.display()),
            StoreConfig::Postgres { url, .. } => {
                write!(f, "{}", strata_domain::secret::redact_url(url.expose()))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    #[error("tenant {0:?} does not exist")]
    TenantNotFound(String),
    #[error("table {0:?} does not exist")]
    TableNotFound(String),
    #[error(transparent)]
    InvalidDataset(#[from] DatasetError),
    #[error("{0}")]
    DatasetConflict(String),
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("the input could not be read to the end: {0}")]
    Input(String),
    #[error("{0}")]
    ReportUnavailable(String),
    #[error("the new cap is below the BTC already in the book")]
    CapBelowTotal,
    #[error("backup {0:?} does not exist")]
    BackupNotFound(String),
    #[error("the backup cannot be restored: {0}")]
    InvalidBackup(String),
    #[error("{0}")]
    RestoreRefused(String),
    #[error("{0}")]
    RestoreWouldOrphan(String),
    #[error("backup failed: {0}")]
    Backup(String),
    #[error(
        "this tenant already runs {slots} operations on its storage and none finished within {waited:?}; retry shortly"
    )]
    TenantBusy { slots: usize, waited: std::time::Duration },
    #[error("the request body arrived too slowly and was abandoned: {0}")]
    InputTooSlow(String),
    /// The schema cannot be used by this binary (newer, or an applied migration was edited).
    #[error("{0}")]
    Schema(String),
    #[error("the database is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("database error")]
    Database(#[source] anyhow::Error),
}

impl strata_domain::error::Coded for StoreError {
    fn code(&self) -> ErrorCode {
        StoreError::code(self)
    }
}

impl StoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::TenantExists(_) => ErrorCode::TenantExists,
            StoreError::TenantNotFound(_) => ErrorCode::TenantNotFound,
            StoreError::TableNotFound(_) => ErrorCode::TableNotFound,
            StoreError::InvalidDataset(_) => ErrorCode::InvalidDataset,
            StoreError::DatasetConflict(_) => ErrorCode::DatasetConflict,
            StoreError::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            StoreError::Input(_) => ErrorCode::MalformedBody,
            StoreError::ReportUnavailable(_) => ErrorCode::ReportUnavailable,
            StoreError::CapBelowTotal => ErrorCode::InvalidOrder,
            StoreError::BackupNotFound(_) => ErrorCode::BackupNotFound,
            StoreError::InvalidBackup(_) => ErrorCode::InvalidBackup,
            StoreError::RestoreRefused(_) => ErrorCode::RestoreRefused,
            StoreError::RestoreWouldOrphan(_) => ErrorCode::RestoreWouldOrphanRows,
            StoreError::Backup(_) => ErrorCode::BackupFailed,
            StoreError::TenantBusy { .. } => ErrorCode::TenantBusy,
            StoreError::InputTooSlow(_) => ErrorCode::RequestTimeout,
            StoreError::Unavailable(_) | StoreError::Schema(_) => ErrorCode::DatabaseUnavailable,
            StoreError::Database(_) => ErrorCode::Internal,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::CannotOpen
                        | rusqlite::ErrorCode::DiskFull
                ) =>
            {
                StoreError::Unavailable(e.into())
            }
            _ => StoreError::Database(e.into()),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.is_closed() || e.as_db_error().is_none() {
            StoreError::Unavailable(e.into())
        } else {
            StoreError::Database(e.into())
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(e.into())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub use tenants::TenantInfo;

/// What applying a dataset did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub dataset: String,
    pub version: i64,
    pub created_tables: Vec<String>,
    /// False when the definition was already in place: applying is idempotent.
    pub changed: bool,
}

/// A dataset as stored, with its version (bumped by every change).
#[derive(Debug, Clone, Serialize)]
pub struct StoredDataset {
    pub name: String,
    pub version: i64,
    pub applied_at: String,
    pub definition: DatasetDef,
}

/// An idempotency key and the fingerprint of the request that carried it.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

/// The result of a batch: fresh, or the stored answer to an earlier identical request.
#[derive(Debug)]
pub enum BatchOutcome {
    Fresh(BatchReport),
    Replayed(String),
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<sqlite::SqliteStore>),
    Postgres(Arc<postgres::PgStore>),
}

/// The storage facade every protocol and command goes through.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    backups: backup::BackupDir,
    slots: Arc<slots::TenantSlots>,
}

macro_rules! dispatch {
    ($self:ident, $b:ident => $e:expr) => {
        match &$self.backend {
            Backend::Sqlite($b) => $e,
            Backend::Postgres($b) => $e,
        }
    };
}

impl Store {
    /// Opens (and on first use creates) the storage, first bringing its schema up to date
    /// (see [`migrate`]).
    pub async fn open(config: &StoreConfig) -> Result<Self> {
        Self::open_with(config, true).await
    }

    /// Opens the storage without applying migrations: for `strata migrate status`, which must
    /// look without changing anything.
    pub async fn open_unmigrated(config: &StoreConfig) -> Result<Self> {
        Self::open_with(config, false).await
    }

    async fn open_with(config: &StoreConfig, migrate: bool) -> Result<Self> {
        let default_backups = match config {
            StoreConfig::Sqlite { data_dir } => data_dir.join("backups"),
            StoreConfig::Postgres { .. } => PathBuf::from("./strata-backups"),
        };
        let backend = match config {
            StoreConfig::Sqlite { data_dir } => {
                Backend::Sqlite(Arc::new(sqlite::SqliteStore::open(data_dir.clone(), migrate).await?))
            }
            StoreConfig::Postgres { url, pool_size } => {
                Backend::Postgres(Arc::new(postgres::PgStore::open(url.expose(), *pool_size, migrate).await?))
            }
        };
        Ok(Self { backend, backups: backup::BackupDir::new(default_backups), slots: Arc::default() })
    }

    /// Applies pending schema migrations (what opening does); returns the versions applied,
    /// per scope (`control`, `tenant <id>`).
    pub async fn migrate(&self) -> Result<Vec<crate::migrate::MigrationRun>> {
        dispatch!(self, b => b.migrate().await)
    }

    /// The schema version of the control plane and of every tenant, changing nothing.
    pub async fn schema_status(&self) -> Result<Vec<migrate::SchemaStatus>> {
        dispatch!(self, b => b.schema_status().await)
    }

    /// Keeps backups in `dir` (by default `<data dir>/backups`, or `./strata-backups` with
    /// PostgreSQL; replicas must share it).
    pub fn with_backup_dir(mut self, dir: PathBuf) -> Self {
        self.backups = backup::BackupDir::new(dir);
        self
    }

    /// Lets each tenant run at most `per_tenant` operations on its storage at once, waiting up
    /// to `wait` for a free slot (see [`slots`]).
    pub fn with_tenant_slots(mut self, per_tenant: usize, wait: std::time::Duration) -> Self {
        self.slots = Arc::new(slots::TenantSlots::new(per_tenant, wait));
        self
    }

    pub(crate) async fn tenant_slot(&self, tenant: &TenantId) -> Result<slots::TenantPermit> {
        self.slots.acquire(tenant).await
    }

    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// A cheap round trip to the database, for `/ready`.
    pub async fn ping(&self) -> Result<()> {
        dispatch!(self, b => b.ping().await)
    }

    /// Every table of the tenant, compiled, in dataset order.
    pub async fn tables(&self, tenant: &TenantId) -> Result<Vec<Table>> {
        let datasets = self.datasets(tenant).await?;
        compile_datasets(&datasets)
    }

    pub async fn table(&self, tenant: &TenantId, name: &str) -> Result<Table> {
        self.tables(tenant)
            .await?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| StoreError::TableNotFound(name.chars().take(64).collect()))
    }
}

/// How [`Store::run_tx`] opens its [`db::Tx`].
#[derive(Clone, Copy)]
enum Mode {
    /// A write transaction, committed when `f` returns `Ok`.
    Write,
    /// Reads; on PostgreSQL each statement on its own.
    Read,
    /// Reads that must agree: one snapshot on both databases.
    Snapshot,
}

impl Store {
    /// Runs `f` in a write transaction on the tenant's storage, holding one of its slots.
    pub(crate) async fn tenant_write<T, F>(&self, t: &TenantId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'x> AsyncFnOnce(&mut db::Tx<'x>) -> Result<T> + Send + 'static,
    {
        self.run_tx(Some(t), Mode::Write, f).await
    }

    /// Runs `f` on the tenant's storage without writing, holding one of its slots.
    pub(crate) async fn tenant_read<T, F>(&self, t: &TenantId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'x> AsyncFnOnce(&mut db::Tx<'x>) -> Result<T> + Send + 'static,
    {
        self.run_tx(Some(t), Mode::Read, f).await
    }

    /// Runs `f` on one consistent snapshot of the tenant's storage (several reads that must
    /// agree), holding one of its slots.
    pub(crate) async fn tenant_snapshot<T, F>(&self, t: &TenantId, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'x> AsyncFnOnce(&mut db::Tx<'x>) -> Result<T> + Send + 'static,
    {
        self.run_tx(Some(t), Mode::Snapshot, f).await
    }

    /// Runs `f` in a write transaction on the control plane.
    pub(crate) async fn control_write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'x> AsyncFnOnce(&mut db::Tx<'x>) -> Result<T> + Send + 'static,
    {
        self.run_tx(None, Mode::Write, f).await
    }

    /// Runs `f` on the control plane without writing.
    pub(crate) async fn control_read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'x> AsyncFnOnce(&mut db::Tx<'x>) -> Result<T> + Send + 'static,
    {
        self.run_tx(None, Mode::Read, f).await
    }

    /// Opens a [`db::Tx`] on a tenant's storage (holding one of its slots) or, with no
    /// tenant, on the control plane (its own pool: never queued behind tenants), and runs `f`.
    async fn run_tx<T, F>(&self, tenant: Option<&TenantId>, mode: Mode, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'x> AsyncFnOnce(&mut db::Tx<'x>) -> Result<T> + Send + 'static,
    {
        let _slot = match tenant {
            Some(t) => Some(self.slots.acquire(t).await?),
            None => None,
        };
        match &self.backend {
            Backend::Sqlite(b) => {
                let tenant_db;
                let db = match tenant {
                    Some(t) => {
                        tenant_db = b.tenant_db(t)?;
                        &*tenant_db
                    }
                    None => b.control_db(),
                };
                match mode {
                    Mode::Write => db.run_write(f).await,
                    // A SQLite read already runs in one read transaction: a snapshot.
                    Mode::Read | Mode::Snapshot => db.run_read(f).await,
                }
            }
            Backend::Postgres(b) => {
                let (pool, schema) = match tenant {
                    Some(t) => (b.data_pool(), postgres::schema_of(t)),
                    None => (b.control_pool(), "strata_control".to_string()),
                };
                let name = tenant.map(TenantId::as_str);
                match mode {
                    Mode::Write => db::postgres::run_write(pool, &schema, name, f).await,
                    Mode::Read => db::postgres::run_read(pool, &schema, name, f).await,
                    Mode::Snapshot => db::postgres::run_snapshot(pool, &schema, name, f).await,
                }
            }
        }
    }
}

/// Quotes an SQL identifier. Names are validated before they get here; quoting is the second
/// line of defence.
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
