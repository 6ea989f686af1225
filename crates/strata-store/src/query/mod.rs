//! The SQL query engine behind the gRPC query service: checks a tenant's SELECT
//! ([`guard`]), runs it read-only on the tenant's own storage with a time limit, and streams
//! the result as typed, column-oriented [`Batch`]es with bounded memory.
//!
//! It knows nothing of gRPC or e6data: the protocol layer turns batches into wire chunks, so
//! another protocol (Arrow Flight SQL) can sit beside it on the same engine.

pub mod guard;
mod pg;
mod sqlite;
mod types;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strata_domain::tenant::TenantId;
use tokio::sync::mpsc;

use crate::{Backend, Store, StoreError};
pub use guard::{Catalog, SqlDialect};

/// The kind of values a result column carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    Long,
    Double,
    Boolean,
    String,
    /// A calendar day, carried as microseconds since the epoch at UTC midnight.
    Date,
    /// An instant, microseconds since the epoch (UTC).
    DateTime,
    /// An exact decimal; the scale travels with each batch.
    Decimal,
}

impl ColKind {
    /// The type name clients see (the e6data vector type names).
    pub fn type_name(self) -> &'static str {
        match self {
            ColKind::Long => "LONG",
            ColKind::Double => "DOUBLE",
            ColKind::Boolean => "BOOLEAN",
            ColKind::String => "STRING",
            ColKind::Date => "DATE",
            ColKind::DateTime => "DATETIME",
            ColKind::Decimal => "DECIMAL128",
        }
    }

    /// The SQL type name a column listing (`getColumns`) reports. Result metadata names the
    /// vector type ([`ColKind::type_name`]), but a listing is read by the connector's SQLAlchemy
    /// dialect, which knows SQL names only (`timestamp`, `bigint`, `decimal`...) and turns any
    /// other name into `String`: a reflected `DATETIME` or `DECIMAL128` column would lose its type.
    pub fn sql_type_name(self) -> &'static str {
        match self {
            ColKind::Long => "BIGINT",
            ColKind::Double => "DOUBLE",
            ColKind::Boolean => "BOOLEAN",
            ColKind::String => "VARCHAR",
            ColKind::Date => "DATE",
            ColKind::DateTime => "TIMESTAMP",
            ColKind::Decimal => "DECIMAL",
        }
    }

    pub fn of(ty: strata_domain::dataset::ColumnType) -> Self {
        use strata_domain::dataset::ColumnType as T;
        match ty {
            T::Integer => ColKind::Long,
            T::String => ColKind::String,
            T::Datetime => ColKind::DateTime,
            T::Date => ColKind::Date,
            T::Decimal => ColKind::Decimal,
            T::Boolean => ColKind::Boolean,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDesc {
    pub name: String,
    pub kind: ColKind,
}

/// One column of a batch. Value vectors are dense: a NULL row holds a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnValues {
    Long(Vec<i64>),
    Double(Vec<f64>),
    Boolean(Vec<bool>),
    Text(Vec<String>),
    /// Date and DateTime columns: microseconds since the epoch.
    Micros(Vec<i64>),
    Decimal {
        unscaled: Vec<i128>,
        scale: u32,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnBatch {
    pub nulls: Vec<bool>,
    pub values: ColumnValues,
}

/// A slice of the result: `rows` rows, one [`ColumnBatch`] per result column.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub columns: Vec<ColumnBatch>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// The query is not something this service runs (not a SELECT, another tenant's table...).
    #[error("{0}")]
    Rejected(String),
    #[error("syntax error: {0}")]
    Syntax(String),
    /// The database refused or failed the query (unknown column, division by zero...).
    #[error("query failed: {0}")]
    Failed(String),
    #[error("the result has a column Strata cannot send: {0}")]
    Unsupported(String),
    #[error("the query was cancelled")]
    Cancelled,
    #[error("the query ran longer than its time limit of {0:?}")]
    TimedOut(Duration),
    /// The query needed more memory than its budget (a huge value or row).
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("storage is unavailable")]
    Storage(String),
}

impl strata_domain::error::Coded for QueryError {
    fn code(&self) -> strata_domain::ErrorCode {
        use strata_domain::ErrorCode as C;
        match self {
            QueryError::Rejected(_) | QueryError::Syntax(_) | QueryError::Failed(_) | QueryError::Unsupported(_) => {
                C::InvalidQuery
            }
            QueryError::Cancelled => C::QueryCancelled,
            QueryError::TimedOut(_) => C::QueryTimeout,
            QueryError::ResourceExhausted(_) => C::QueryTooLarge,
            QueryError::Storage(_) => C::DatabaseUnavailable,
        }
    }
}

impl From<StoreError> for QueryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TenantBusy { .. } => QueryError::ResourceExhausted(e.to_string()),
            _ => QueryError::Storage(e.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct QueryOptions {
    /// Wall-clock limit for the database to produce the result.
    pub timeout: Duration,
    /// Rows per batch; batches are also cut at [`QueryOptions::batch_bytes`].
    pub batch_rows: usize,
    /// Bytes of result values one query may hold at once, in every stage: the batch being
    /// built, the batches waiting for the client, the one being encoded. See [`QueryOptions::max_row_bytes`].
    pub memory_budget: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(300), batch_rows: 4096, memory_budget: DEFAULT_MEMORY_BUDGET }
    }
}

/// The default of [`QueryOptions::memory_budget`]: 64 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 64 << 20;

/// A batch is cut once its values reach this many bytes (or the budget's share, if smaller),
/// so wide rows keep memory bounded.
pub const BATCH_BYTES: usize = 4 << 20;

/// A query holds at most this many batches at once: the one being built, two waiting in the
/// channel, one read ahead, one being encoded for the wire. Each is at most a budget's share
/// ([`QueryOptions::batch_bytes`], or one row of at most [`QueryOptions::max_row_bytes`]).
const BATCHES_IN_FLIGHT: usize = 8;

impl QueryOptions {
    /// The largest row (sum of its values) a query may return; a bigger one ends the query
    /// with [`QueryError::ResourceExhausted`]. It is also the longest string or blob SQLite
    /// will build, so a `printf('%.*c', 1e9, 'x')` fails before it allocates.
    pub fn max_row_bytes(&self) -> usize {
        (self.memory_budget / BATCHES_IN_FLIGHT).max(1024)
    }

    pub fn batch_bytes(&self) -> usize {
        BATCH_BYTES.min(self.max_row_bytes())
    }

    pub(crate) fn row_too_big(&self, bytes: usize) -> QueryError {
        QueryError::ResourceExhausted(format!(
            "a result row of {bytes} bytes or more exceeds this query's limit of {} bytes per row (a {} MiB memory budget); select fewer or shorter values",
            self.max_row_bytes(),
            self.memory_budget >> 20
        ))
    }
}

const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const TIMED_OUT: u8 = 2;
/// The executor finished on its own; a later cancel has nothing to stop.
pub(crate) const DONE: u8 = 3;

/// Stops a running query from any task, without waiting for whoever is reading it.
#[derive(Clone)]
pub struct Canceller {
    state: Arc<AtomicU8>,
    pg: Option<tokio_postgres::CancelToken>,
    /// Set once the SQLite connection is open.
    sqlite: Arc<std::sync::Mutex<Option<rusqlite::InterruptHandle>>>,
    /// Wakes an executor waiting for the reader, so a stopped query lets go of its connection
    /// and slot at once instead of when (if ever) the client reads again.
    stopped_notify: Arc<tokio::sync::Notify>,
}

impl Canceller {
    fn new(pg: Option<tokio_postgres::CancelToken>) -> Self {
        Self { state: Arc::new(AtomicU8::new(RUNNING)), pg, sqlite: Arc::default(), stopped_notify: Arc::default() }
    }

    /// Stops the query: SQLite is interrupted (and its progress handler aborts at its next
    /// check); PostgreSQL gets a cancel request on a side connection, which interrupts even a
    /// long sort.
    pub fn cancel(&self) {
        self.stop(CANCELLED);
    }

    fn stop(&self, why: u8) {
        if self.state.compare_exchange(RUNNING, why, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            if let Some(token) = self.pg.clone() {
                tokio::spawn(async move {
                    let _ = token.cancel_query(tokio_postgres::NoTls).await;
                });
            }
            if let Some(h) = self.sqlite.lock().unwrap().as_ref() {
                h.interrupt();
            }
            self.stopped_notify.notify_waiters();
        }
    }

    /// Hands an event to the reader, or gives up as soon as the query is stopped (its time
    /// limit counts the client's reading too: a client that stops reading cannot hold a
    /// connection past it). `Err` means: stop producing.
    async fn send(&self, tx: &mpsc::Sender<Event>, ev: Event) -> Result<(), ()> {
        let notified = self.stopped_notify.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if self.stopped().is_some() {
            return Err(());
        }
        tokio::select! {
            r = tx.send(ev) => r.map_err(|_| ()),
            _ = notified => Err(()),
        }
    }

    /// The executor is done: later cancels and the watchdog have nothing to stop.
    fn finish(&self) {
        let _ = self.state.compare_exchange(RUNNING, DONE, Ordering::SeqCst, Ordering::SeqCst);
        *self.sqlite.lock().unwrap() = None;
    }

    /// Stops the query at its time limit even if the database is inside one long step (a sort,
    /// a huge string) where SQLite's progress handler does not run. Ends with the query.
    fn watchdog(&self, timeout: Duration) -> tokio::sync::oneshot::Sender<()> {
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let c = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(timeout) => c.stop(TIMED_OUT),
                _ = finished => {}
            }
        });
        done
    }

    fn stopped(&self) -> Option<u8> {
        match self.state.load(Ordering::Relaxed) {
            RUNNING | DONE => None,
            s => Some(s),
        }
    }

    fn error(&self, timeout: Duration) -> Option<QueryError> {
        match self.stopped()? {
            CANCELLED => Some(QueryError::Cancelled),
            _ => Some(QueryError::TimedOut(timeout)),
        }
    }
}

/// What the executor sends to the reader.
enum Event {
    Schema(Vec<ColumnDesc>),
    /// A batch, and whether it is the last one.
    Batch(Batch, bool),
    Error(QueryError),
}

/// A query that is running or has finished. Reading it is sequential; cancelling is not.
pub struct RunningQuery {
    rx: mpsc::Receiver<Event>,
    canceller: Canceller,
    timeout: Duration,
    columns: Option<Vec<ColumnDesc>>,
    pending: Option<Batch>,
    finished: bool,
    rows: u64,
}

impl RunningQuery {
    fn new(rx: mpsc::Receiver<Event>, canceller: Canceller, timeout: Duration) -> Self {
        Self { rx, canceller, timeout, columns: None, pending: None, finished: false, rows: 0 }
    }

    pub fn canceller(&self) -> Canceller {
        self.canceller.clone()
    }

    /// Waits until the result's columns are known (the executor has prepared the statement
    /// and, for SQLite, seen the first batch).
    pub async fn columns(&mut self) -> Result<&[ColumnDesc], QueryError> {
        while self.columns.is_none() {
            match self.recv().await? {
                Some(Event::Schema(c)) => self.columns = Some(c),
                Some(Event::Batch(..)) => return Err(QueryError::Failed("batch before schema".into())),
                Some(Event::Error(e)) => return Err(e),
                None => return Err(QueryError::Failed("the query stopped before describing its result".into())),
            }
        }
        Ok(self.columns.as_deref().unwrap_or_default())
    }

    /// The next non-empty batch, or `None` once the result is complete.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, QueryError> {
        self.columns().await?;
        if let Some(b) = self.pending.take() {
            return Ok(Some(b));
        }
        if self.finished {
            return Ok(None);
        }
        loop {
            match self.recv().await? {
                Some(Event::Batch(b, last)) => {
                    self.rows += b.rows as u64;
                    if last {
                        self.finished = true;
                    }
                    if b.rows == 0 {
                        if last {
                            return Ok(None);
                        }
                        continue;
                    }
                    return Ok(Some(b));
                }
                Some(Event::Schema(_)) => continue,
                Some(Event::Error(e)) => return Err(e),
                None => {
                    self.finished = true;
                    return Ok(None);
                }
            }
        }
    }

    /// Reads ahead until the end if at most `rows` more rows remain buffered in one batch:
    /// lets a small result report its row count at once.
    pub async fn peek_end(&mut self) -> Result<(), QueryError> {
        if self.pending.is_none() && !self.finished {
            if let Some(b) = self.next_batch().await? {
                self.pending = Some(b);
            }
        }
        Ok(())
    }

    /// Total rows, once the result has been read to the end (or is known to end after the
    /// buffered batch).
    pub fn total_rows(&self) -> Option<u64> {
        if self.finished {
            Some(self.rows)
        } else {
            None
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished && self.pending.is_none()
    }

    async fn recv(&mut self) -> Result<Option<Event>, QueryError> {
        let ev = self.rx.recv().await;
        if ev.is_none() {
            if let Some(e) = self.canceller.error(self.timeout) {
                return Err(e);
            }
        }
        Ok(ev)
    }
}

impl Drop for RunningQuery {
    fn drop(&mut self) {
        // A dropped reader means nobody wants the rest: stop the database work now.
        if !self.finished {
            self.canceller.cancel();
        }
    }
}

/// The catalog a tenant's queries see.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnDesc>,
}

impl Store {
    /// Every dataset table of the tenant, with its columns, as queries see them.
    pub async fn query_catalog(&self, tenant: &TenantId) -> Result<Vec<TableInfo>, QueryError> {
        Ok(self
            .tables(tenant)
            .await?
            .into_iter()
            .map(|t| TableInfo {
                schema: t.dataset.clone(),
                name: t.name.clone(),
                columns: t
                    .columns
                    .iter()
                    .map(|c| ColumnDesc { name: c.name.clone(), kind: ColKind::of(c.ty) })
                    .collect(),
            })
            .collect())
    }

    pub fn sql_dialect(&self) -> SqlDialect {
        match &self.backend {
            Backend::Sqlite(_) => SqlDialect::Sqlite,
            Backend::Postgres(_) => SqlDialect::Postgres,
        }
    }

    /// Checks a query without running it; returns the SQL that would run.
    pub async fn check_query(&self, tenant: &TenantId, sql: &str) -> Result<String, QueryError> {
        let tables = self.tables(tenant).await?;
        guard::check_async(sql, self.sql_dialect(), &Catalog::of_tables(&tables)).await.map(|c| c.sql)
    }

    /// Checks and starts a query. It runs in the background; read it through the returned
    /// handle, which also stops it when dropped.
    pub async fn start_query(
        &self,
        tenant: &TenantId,
        sql: &str,
        opts: QueryOptions,
    ) -> Result<RunningQuery, QueryError> {
        let tables = self.tables(tenant).await?;
        let checked = guard::check_async(sql, self.sql_dialect(), &Catalog::of_tables(&tables)).await?;
        // The query holds one of the tenant's slots (and, on PostgreSQL, a connection) until
        // its executor ends: read to the end, cancelled, timed out or dropped.
        let slot = self.tenant_slot(tenant).await?;
        match &self.backend {
            Backend::Sqlite(s) => sqlite::start(s, tenant, tables, checked, opts, Some(slot)),
            Backend::Postgres(p) => pg::start(p, tenant, checked, opts, slot).await,
        }
    }

    /// Runs `SELECT 1` through the whole engine (guard, executor, batches) against the control
    /// plane: what a blue/green switch asks of a stack before sending it traffic.
    pub async fn smoke_query(&self) -> Result<(), QueryError> {
        let sql = guard::check_async("SELECT 1 AS ok", self.sql_dialect(), &Catalog::default()).await?;
        let opts = QueryOptions { timeout: Duration::from_secs(5), batch_rows: 16, ..Default::default() };
        let mut q = match &self.backend {
            Backend::Sqlite(s) => sqlite::start_at(s.control_file(), Vec::new(), sql, opts, None)?,
            Backend::Postgres(p) => pg::start_in(p.control_pool(), "strata_control".into(), sql, opts, None).await?,
        };
        match q.next_batch().await? {
            Some(b) if b.rows == 1 && b.columns.first().map(|c| &c.values) == Some(&ColumnValues::Long(vec![1])) => {
                Ok(())
            }
            other => Err(QueryError::Failed(format!("smoke query returned {other:?}"))),
        }
    }

    /// The database's plan for a query, as text.
    pub async fn explain_query(&self, tenant: &TenantId, sql: &str) -> Result<String, QueryError> {
        let tables = self.tables(tenant).await?;
        let checked = guard::check_async(sql, self.sql_dialect(), &Catalog::of_tables(&tables)).await?.sql;
        let _slot = self.tenant_slot(tenant).await?;
        match &self.backend {
            Backend::Sqlite(s) => sqlite::explain(s, tenant, tables, checked).await,
            Backend::Postgres(p) => pg::explain(p, tenant, checked).await,
        }
    }
}

/// Microseconds at UTC midnight of a calendar day.
pub(crate) fn date_micros(d: chrono::NaiveDate) -> i64 {
    d.signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() * 86_400_000_000
}

/// Builds one column of a batch from values of one kind.
pub(crate) struct ColumnBuilder {
    pub nulls: Vec<bool>,
    pub values: ColumnValues,
}

impl ColumnBuilder {
    pub fn new(kind: ColKind, cap: usize) -> Self {
        let values = match kind {
            ColKind::Long => ColumnValues::Long(Vec::with_capacity(cap)),
            ColKind::Double => ColumnValues::Double(Vec::with_capacity(cap)),
            ColKind::Boolean => ColumnValues::Boolean(Vec::with_capacity(cap)),
            ColKind::String => ColumnValues::Text(Vec::with_capacity(cap)),
            ColKind::Date | ColKind::DateTime => ColumnValues::Micros(Vec::with_capacity(cap)),
            ColKind::Decimal => ColumnValues::Decimal { unscaled: Vec::with_capacity(cap), scale: 0 },
        };
        Self { nulls: Vec::with_capacity(cap), values }
    }

    pub fn push_null(&mut self) {
        self.nulls.push(true);
        match &mut self.values {
            ColumnValues::Long(v) | ColumnValues::Micros(v) => v.push(0),
            ColumnValues::Double(v) => v.push(0.0),
            ColumnValues::Boolean(v) => v.push(false),
            ColumnValues::Text(v) => v.push(String::new()),
            ColumnValues::Decimal { unscaled, .. } => unscaled.push(0),
        }
    }

    /// Adds a decimal, rescaling the column when this value has more fractional digits.
    pub fn push_decimal(&mut self, d: rust_decimal::Decimal) {
        self.nulls.push(false);
        if let ColumnValues::Decimal { unscaled, scale } = &mut self.values {
            let s = d.scale();
            if s > *scale {
                let f = 10i128.pow(s - *scale);
                for u in unscaled.iter_mut() {
                    *u *= f;
                }
                *scale = s;
            }
            unscaled.push(d.mantissa() * 10i128.pow(*scale - s));
        }
    }

    pub fn finish(self) -> ColumnBatch {
        ColumnBatch { nulls: self.nulls, values: self.values }
    }
}
