//! The PostgreSQL backend: the control plane in schema `strata_control`, each tenant in schema
//! `tenant_<id>`.
//!
//! Writes are set-based: a chunk of rows becomes one `INSERT .. SELECT FROM unnest(..)` with
//! typed arrays, so a load costs a round trip per few thousand rows rather than per row.
//! Text columns use the "C" collation, so keys and names sort in byte order exactly as they do
//! on SQLite, whatever the database's default collation.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rust_decimal::Decimal;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};

use strata_domain::dataset::{Column, ColumnType, Table};
use strata_domain::report::{DepartmentHires, QuarterRow, Year};
use strata_domain::tenant::TenantId;
use strata_domain::value::Value;

use crate::backup::ExportMsg;
use crate::datasets::column_list;
use crate::db::postgres::{run_read, run_write};
use crate::db::{Tx, P};
use crate::ingest::{
    dependents, duplicate_key, key_of, new_id, orphan_error, restore_outcome, same_values, unknown_fk, Candidate,
    Chunks, Key, LoadReport, RejectionRow, RowOutcome, Tally, CHUNK_ROWS, REPORT_SAMPLE,
};
use crate::{ident, BatchOutcome, Idempotency, Result, StoreError};

/// Serialises schema migrations between processes starting at the same time.
const MIGRATION_LOCK: i64 = 0x5354_5241_5441; // "STRATA"

pub(crate) const CONTROL_SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS strata_control;
CREATE TABLE IF NOT EXISTS strata_control.tenants (
    id TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS strata_control.api_keys (
    hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES strata_control.tenants(id),
    prefix TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS strata_control.sessions (
    token_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES strata_control.tenants(id),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS strata_control.deploy_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    active TEXT NOT NULL,
    target TEXT,
    switch_id TEXT,
    changed_at_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS strata_control.deploy_history (
    id TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    from_stack TEXT NOT NULL,
    to_stack TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION strata_control.row_too_big(size integer, max_bytes integer) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    RAISE EXCEPTION 'a result row of % bytes exceeds this query''s limit of % bytes per row', size, max_bytes
        USING ERRCODE = 'program_limit_exceeded';
END
$fn$;
CREATE TABLE IF NOT EXISTS strata_control.deploy_instances (
    id TEXT PRIMARY KEY,
    stack TEXT NOT NULL,
    http_addr TEXT NOT NULL,
    grpc_addr TEXT NOT NULL,
    inflight BIGINT NOT NULL,
    heartbeat_at_ms BIGINT NOT NULL
);
";

/// Migration 1 of a tenant schema. Written to be a no-op where the schema already exists
/// (tenants created before schema versions), so it adopts them in place; the index has the
/// name PostgreSQL gave the unnamed one those tenants have.
pub(crate) fn tenant_schema_sql(schema: &str) -> String {
    format!(
        "
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}._strata_datasets (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    version BIGINT NOT NULL,
    definition TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}._strata_rejections (
    id BIGSERIAL PRIMARY KEY,
    table_name TEXT NOT NULL,
    source TEXT NOT NULL,
    source_id TEXT NOT NULL,
    line BIGINT,
    row_index BIGINT,
    raw TEXT NOT NULL,
    errors TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS _strata_rejections_table_name_id_idx ON {schema}._strata_rejections (table_name, id);
CREATE TABLE IF NOT EXISTS {schema}._strata_ingests (
    id TEXT PRIMARY KEY,
    table_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    rows_read BIGINT NOT NULL,
    inserted BIGINT NOT NULL,
    unchanged BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}._strata_idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"
    )
}

/// The quoted schema name of a tenant. Safe: a TenantId is a DNS label of at most 51 chars.
pub(crate) fn schema_of(t: &TenantId) -> String {
    ident(&format!("tenant_{}", t.as_str()))
}

fn qualified(schema: &str, name: &str) -> String {
    format!("{schema}.{}", ident(name))
}

pub struct PgStore {
    /// Connections for tenants' data; each tenant may hold only a share (see `TenantSlots`).
    pool: Pool,
    /// A few connections of their own for the control plane (authentication, sessions,
    /// deployment state, `/ready`), so no amount of tenant work can starve them.
    control: Pool,
}

/// Connections of the control-plane pool.
pub const CONTROL_POOL_SIZE: usize = 4;

fn build_pool(config: tokio_postgres::Config, size: usize) -> Result<Pool> {
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(std::time::Duration::from_secs(10)))
        .create_timeout(Some(std::time::Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::Unavailable(e.into()))
}

/// Applies what is pending of `list` inside the transaction `c` (the caller holds the
/// migration lock and commits); `table` is the qualified version table, `schema` what the SQL
/// is rendered for.
pub(crate) async fn migrate_in(
    c: &mut Tx<'_>,
    table: &str,
    schema: &str,
    scope: &str,
    list: &[crate::migrate::Migration],
) -> Result<Vec<i64>> {
    c.batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, name TEXT NOT NULL,
         checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ))
    .await?;
    let applied = applied_in(c, table).await?;
    let mut done = Vec::new();
    for m in crate::migrate::pending(list, &applied, scope)? {
        c.batch(&(m.sql)(schema)).await?;
        let sql = format!("INSERT INTO {table} (version, name, checksum) VALUES ($1, $2, $3)");
        c.execute(&sql, &[P::Int(m.version), m.name.into(), m.checksum().into()]).await?;
        done.push(m.version);
    }
    Ok(done)
}

async fn applied_in(c: &mut Tx<'_>, table: &str) -> Result<Vec<crate::migrate::Applied>> {
    if c.query_one("SELECT to_regclass($1) IS NOT NULL", &[table.into()]).await?.int(0)? == 0 {
        return Ok(Vec::new());
    }
    let rows = c.query(&format!("SELECT version, checksum FROM {table} ORDER BY version"), &[]).await?;
    rows.iter().map(|r| Ok(crate::migrate::Applied { version: r.int(0)?, checksum: r.text(1)? })).collect()
}

pub(crate) const CONTROL_VERSIONS: &str = "strata_control.schema_migrations";

pub(crate) fn tenant_versions(schema: &str) -> String {
    format!("{schema}._strata_schema")
}

impl PgStore {
    /// Connects; with `migrate`, brings the control plane and every tenant schema to the
    /// schema this binary knows first, all in one transaction under an advisory lock.
    pub async fn open(url: &str, pool_size: usize, migrate: bool) -> Result<Self> {
        // The parser's own message names the offending option, never a value.
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Unavailable(anyhow::anyhow!("invalid database URL: {e}")))?;
        let store = Self {
            pool: build_pool(config.clone(), pool_size.max(2))?,
            control: build_pool(config, CONTROL_POOL_SIZE)?,
        };
        if migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Applies pending migrations to the control plane and then to every tenant schema, in one
    /// transaction (all or nothing) under the migration lock; returns what was applied.
    pub async fn migrate(&self) -> Result<Vec<(String, Vec<i64>)>> {
        run_write(&self.control, "strata_control", None, async |c| {
            c.batch(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await?;
            c.batch("CREATE SCHEMA IF NOT EXISTS strata_control").await?;
            let mut out = Vec::new();
            let done = migrate_in(c, CONTROL_VERSIONS, "", "control", crate::migrate::PG_CONTROL).await?;
            out.push(("control".to_string(), done));
            for r in c.query("SELECT id FROM strata_control.tenants ORDER BY id", &[]).await? {
                let id = r.text(0)?;
                let tid =
                    TenantId::parse(&id).map_err(|e| StoreError::Database(anyhow::anyhow!("tenant {id:?}: {e}")))?;
                let schema = schema_of(&tid);
                let scope = format!("tenant {id}");
                c.batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await?;
                let done = migrate_in(c, &tenant_versions(&schema), &schema, &scope, crate::migrate::PG_TENANT).await?;
                out.push((scope, done));
            }
            Ok(out)
        })
        .await
    }

    /// The schema version of the control plane and of each tenant, applying nothing.
    pub async fn schema_status(&self) -> Result<Vec<crate::migrate::SchemaStatus>> {
        use crate::migrate::{SchemaStatus, PG_CONTROL, PG_TENANT};
        run_read(&self.control, "strata_control", None, async |c| {
            let mut out = vec![SchemaStatus::of("control", &applied_in(c, CONTROL_VERSIONS).await?, PG_CONTROL)];
            let has_tenants = c.query_one("SELECT to_regclass('strata_control.tenants') IS NOT NULL", &[]).await?;
            if has_tenants.int(0)? != 0 {
                for r in c.query("SELECT id FROM strata_control.tenants ORDER BY id", &[]).await? {
                    let id = r.text(0)?;
                    let Ok(tid) = TenantId::parse(&id) else { continue };
                    let applied = applied_in(c, &tenant_versions(&schema_of(&tid))).await?;
                    out.push(SchemaStatus::of(format!("tenant {id}"), &applied, PG_TENANT));
                }
            }
            Ok(out)
        })
        .await
    }

    /// The pool for tenants' data.
    pub(crate) fn data_pool(&self) -> &Pool {
        &self.pool
    }

    /// The control plane's own pool.
    pub(crate) fn control_pool(&self) -> &Pool {
        &self.control
    }

    pub async fn ping(&self) -> Result<()> {
        let c = self.control.get().await?;
        c.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    pub async fn load(&self, tenant: &TenantId, table: &Table, mut chunks: Chunks) -> Result<LoadReport> {
        let schema = schema_of(tenant);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let load_id = new_id();
        let mut tally = Tally::new(REPORT_SAMPLE);
        let writer = ChunkWriter::new(&schema, table);
        while let Some(chunk) = chunks.recv().await {
            let chunk = chunk.map_err(|e| e.into_store(StoreError::Input))?;
            let outcomes = writer.write(&tx, &chunk).await?;
            let mut rejections = Vec::new();
            for (c, o) in chunk.iter().zip(outcomes) {
                if let Some(r) = tally.record(c, o) {
                    rejections.push(r);
                }
            }
            writer.log_rejections(&tx, "load", &load_id, &rejections).await?;
        }
        record_ingest(&tx, &schema, &load_id, &table.name, "load", &tally).await?;
        tx.commit().await?;
        // A bulk load changes the table's shape faster than autovacuum notices: without fresh
        // statistics the planner guesses, and a range over the key becomes a full scan.
        if tally.inserted > 0 {
            let _ = client.batch_execute(&format!("ANALYZE {}", qualified(&schema, &table.name))).await;
        }
        Ok(tally.into_load_report(load_id, &table.name))
    }

    pub async fn ingest_batch(
        &self,
        tenant: &TenantId,
        table: &Table,
        rows: Vec<Candidate>,
        idempotency: Option<Idempotency>,
    ) -> Result<BatchOutcome> {
        let schema = schema_of(tenant);
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if let Some(idem) = &idempotency {
            // Claiming the key first makes racing retries queue on its unique index until the
            // first one commits; they then find its saved response.
            let claimed = tx
                .execute(
                    &format!(
                        "INSERT INTO {schema}._strata_idempotency (key, fingerprint) VALUES ($1, $2)
                         ON CONFLICT (key) DO NOTHING"
                    ),
                    &[&idem.key, &idem.fingerprint],
                )
                .await?;
            if claimed == 0 {
                let row = tx
                    .query_one(
                        &format!("SELECT fingerprint, response FROM {schema}._strata_idempotency WHERE key = $1"),
                        &[&idem.key],
                    )
                    .await?;
                let fingerprint: String = row.get(0);
                let response: Option<String> = row.get(1);
                if fingerprint != idem.fingerprint {
                    return Err(StoreError::IdempotencyKeyReused);
                }
                return match response {
                    Some(r) => Ok(BatchOutcome::Replayed(r)),
                    None => Err(StoreError::Database(anyhow::anyhow!("idempotency record without a response"))),
                };
            }
        }
        let batch_id = new_id();
        let mut tally = Tally::new(usize::MAX);
        let writer = ChunkWriter::new(&schema, table);
        let outcomes = writer.write(&tx, &rows).await?;
        let mut rejections = Vec::new();
        for (c, o) in rows.iter().zip(outcomes) {
            if let Some(r) = tally.record(c, o) {
                rejections.push(r);
            }
        }
        writer.log_rejections(&tx, "batch", &batch_id, &rejections).await?;
        record_ingest(&tx, &schema, &batch_id, &table.name, "batch", &tally).await?;
        let report = tally.into_batch_report(batch_id);
        if let Some(idem) = &idempotency {
            tx.execute(
                &format!("UPDATE {schema}._strata_idempotency SET response = $2 WHERE key = $1"),
                &[&idem.key, &serde_json::to_string(&report).unwrap()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(BatchOutcome::Fresh(report))
    }
}

impl PgStore {
    /// Streams the tables' rows, in key order, from one REPEATABLE READ snapshot.
    pub(crate) async fn export(
        &self,
        tenant: &TenantId,
        tables: Vec<Table>,
        tx: mpsc::Sender<ExportMsg>,
    ) -> Result<()> {
        use futures::TryStreamExt;
        let schema = schema_of(tenant);
        let mut client = self.pool.get().await?;
        let db = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let gone = || StoreError::Backup("the backup writer stopped".into());
        for (i, t) in tables.iter().enumerate() {
            tx.send(ExportMsg::Begin(i)).await.map_err(|_| gone())?;
            let sql = format!(
                "SELECT {} FROM {} ORDER BY {}",
                column_list(t),
                qualified(&schema, &t.name),
                ident(&t.pk_column().name)
            );
            let stream = db.query_raw(&sql, std::iter::empty::<i64>()).await?;
            let mut stream = std::pin::pin!(stream);
            let mut batch = Vec::with_capacity(CHUNK_ROWS);
            while let Some(row) = stream.try_next().await? {
                batch.push(read_row(&row, t)?);
                if batch.len() == CHUNK_ROWS {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(CHUNK_ROWS));
                    tx.send(ExportMsg::Rows(full)).await.map_err(|_| gone())?;
                }
            }
            if !batch.is_empty() {
                tx.send(ExportMsg::Rows(batch)).await.map_err(|_| gone())?;
            }
            tx.send(ExportMsg::End).await.map_err(|_| gone())?;
        }
        db.commit().await?;
        Ok(())
    }

    /// Replaces the rows of `sets` (parents first) in one transaction.
    pub(crate) async fn restore(
        &self,
        tenant: &TenantId,
        sets: Vec<(Table, Chunks)>,
        all: Vec<Table>,
    ) -> Result<Vec<u64>> {
        let schema = schema_of(tenant);
        let restored: Vec<String> = sets.iter().map(|(t, _)| t.name.clone()).collect();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        for (t, _) in sets.iter().rev() {
            tx.batch_execute(&format!("DELETE FROM {}", qualified(&schema, &t.name))).await?;
        }
        let mut counts = Vec::new();
        for (t, mut rx) in sets {
            let mut writer = ChunkWriter::new(&schema, &t);
            writer.defer_self_refs = true;
            let mut n = 0u64;
            while let Some(chunk) = rx.recv().await {
                let chunk = chunk.map_err(|e| e.into_store(StoreError::InvalidBackup))?;
                let outcomes = writer.write(&tx, &chunk).await?;
                for (c, o) in chunk.iter().zip(outcomes) {
                    restore_outcome(&t, c, o)?;
                    n += 1;
                }
            }
            counts.push(n);
        }
        for (child, col, parent, pcol) in dependents(&all).into_iter().filter(|d| restored.contains(&d.2)) {
            let row = tx
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {c} AS child WHERE child.{fk} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {p} AS parent WHERE parent.{pk} = child.{fk})",
                        c = qualified(&schema, &child), fk = ident(&col), p = qualified(&schema, &parent), pk = ident(&pcol)
                    ),
                    &[],
                )
                .await?;
            let orphans: i64 = row.get(0);
            if orphans > 0 {
                return Err(orphan_error(&child, &col, &parent, orphans));
            }
        }
        tx.commit().await?;
        Ok(counts)
    }
}

impl PgStore {
    pub(crate) async fn hires_by_quarter(&self, tenant: &TenantId, year: Year) -> Result<Vec<QuarterRow>> {
        let client = self.pool.get().await?;
        let b = year.quarter_bounds();
        let sql = crate::reports::hires_by_quarter_pg(&schema_of(tenant));
        let rows = client.query(&sql, &[&b[0], &b[1], &b[2], &b[3], &b[4]]).await?;
        Ok(rows
            .iter()
            .map(|r| QuarterRow {
                department_id: r.get(6),
                department_name: r.get(0),
                job_id: r.get(7),
                job_name: r.get(1),
                q1: r.get(2),
                q2: r.get(3),
                q3: r.get(4),
                q4: r.get(5),
            })
            .collect())
    }

    pub(crate) async fn department_hires(&self, tenant: &TenantId, year: Year) -> Result<(Vec<DepartmentHires>, i64)> {
        let mut client = self.pool.get().await?;
        let b = year.quarter_bounds();
        let schema = schema_of(tenant);
        // One snapshot for the counts and the number of departments.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let rows = tx.query(&crate::reports::department_hires_pg(&schema), &[&b[0], &b[4]]).await?;
        let n: i64 = tx.query_one(&format!("SELECT count(*) FROM {schema}.\"departments\""), &[]).await?.get(0);
        tx.commit().await?;
        Ok((
            rows.iter()
                .map(|r| DepartmentHires { department_id: r.get(0), department_name: r.get(1), hired: r.get(2) })
                .collect(),
            n,
        ))
    }
}

async fn record_ingest<C: GenericClient>(
    c: &C,
    schema: &str,
    id: &str,
    table: &str,
    kind: &str,
    t: &Tally,
) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO {schema}._strata_ingests (id, table_name, kind, rows_read, inserted, unchanged, rejected)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ),
        &[&id, &table, &kind, &(t.rows as i64), &(t.inserted as i64), &(t.unchanged as i64), &(t.rejected as i64)],
    )
    .await?;
    Ok(())
}

fn array_type(c: &Column) -> &'static str {
    match c.ty {
        ColumnType::Integer => "int8[]",
        ColumnType::String => "text[]",
        ColumnType::Datetime => "timestamptz[]",
        ColumnType::Date => "date[]",
        ColumnType::Decimal => "numeric[]",
        ColumnType::Boolean => "bool[]",
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

/// One typed array holding a column of values, for `unnest`.
fn column_array<'a>(c: &Column, values: impl Iterator<Item = &'a Value>) -> Param {
    match c.ty {
        ColumnType::Integer => Box::new(
            values
                .map(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        ColumnType::String => Box::new(
            values
                .map(|v| match v {
                    Value::Text(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        ColumnType::Datetime => Box::new(
            values
                .map(|v| match v {
                    Value::DateTime(us) => DateTime::<Utc>::from_timestamp_micros(*us),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        ColumnType::Date => Box::new(
            values
                .map(|v| match v {
                    Value::Date(d) => Some(*d),
                    _ => None,
                })
                .collect::<Vec<Option<NaiveDate>>>(),
        ),
        ColumnType::Decimal => Box::new(
            values
                .map(|v| match v {
                    Value::Decimal(d) => Some(*d),
                    _ => None,
                })
                .collect::<Vec<Option<Decimal>>>(),
        ),
        ColumnType::Boolean => Box::new(
            values
                .map(|v| match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
    }
}

fn read_value(r: &Row, i: usize, c: &Column) -> Value {
    let v = match c.ty {
        ColumnType::Integer => r.get::<_, Option<i64>>(i).map(Value::Int),
        ColumnType::String => r.get::<_, Option<String>>(i).map(Value::Text),
        ColumnType::Datetime => r.get::<_, Option<DateTime<Utc>>>(i).map(|t| Value::DateTime(t.timestamp_micros())),
        ColumnType::Date => r.get::<_, Option<NaiveDate>>(i).map(Value::Date),
        ColumnType::Decimal => r.get::<_, Option<Decimal>>(i).map(|mut d| {
            d.rescale(c.scale);
            Value::Decimal(d)
        }),
        ColumnType::Boolean => r.get::<_, Option<bool>>(i).map(Value::Bool),
    };
    v.unwrap_or(Value::Null)
}

fn read_row(r: &Row, t: &Table) -> Result<Vec<Value>> {
    Ok(t.columns.iter().enumerate().map(|(i, c)| read_value(r, i, c)).collect())
}

fn read_key(r: &Row, i: usize, c: &Column) -> Option<Key> {
    match c.ty {
        ColumnType::Integer => Some(Key::I(r.get(i))),
        ColumnType::String => Some(Key::S(r.get(i))),
        _ => None,
    }
}

/// Writes chunks of candidates set-based.
struct ChunkWriter<'a> {
    schema: &'a str,
    table: &'a Table,
    /// Skip per-row checks of references into the same table (restore checks them at the end).
    defer_self_refs: bool,
}

impl<'a> ChunkWriter<'a> {
    fn new(schema: &'a str, table: &'a Table) -> Self {
        Self { schema, table, defer_self_refs: false }
    }

    /// Which of `keys` exist in `table`'s primary key.
    async fn existing_keys(
        &self,
        c: &PgTx<'_>,
        table: &str,
        column: &Column,
        keys: Vec<&Value>,
    ) -> Result<HashSet<Key>> {
        let arr = column_array(column, keys.into_iter());
        let sql = format!(
            "SELECT {pk} FROM {t} WHERE {pk} = ANY($1::{ty})",
            pk = ident(&column.name),
            t = qualified(self.schema, table),
            ty = array_type(column)
        );
        let rows = c.query(&sql, &[arr.as_ref()]).await?;
        Ok(rows.iter().filter_map(|r| read_key(r, 0, column)).collect())
    }

    async fn write(&self, c: &PgTx<'_>, cands: &[Candidate]) -> Result<Vec<RowOutcome>> {
        let t = self.table;
        // Foreign keys: one query per referencing column per chunk.
        let mut fk_errors: HashMap<usize, Vec<_>> = HashMap::new();
        for (ci, col) in t.columns.iter().enumerate() {
            let Some(fk) = &col.references else { continue };
            if self.defer_self_refs && fk.table == t.name {
                continue;
            }
            let mut wanted: Vec<&Value> = Vec::new();
            let mut seen = HashSet::new();
            for cand in cands {
                if let Some(v) = cand.fk_value(ci) {
                    if let Some(k) = key_of(v) {
                        if seen.insert(k) {
                            wanted.push(v);
                        }
                    }
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let parent_pk = t_column_for(t, fk, col);
            let mut found = self.existing_keys(c, &fk.table, &parent_pk, wanted).await?;
            let self_ref = fk.table == t.name;
            for (ri, cand) in cands.iter().enumerate() {
                if self_ref {
                    // Valid rows earlier in the same chunk count as parents, as they do on SQLite.
                    if let Ok(values) = &cand.result {
                        if let Some(k) = key_of(&values[t.pk]) {
                            found.insert(k);
                        }
                    }
                }
                let Some(v) = cand.fk_value(ci) else { continue };
                if let Some(k) = key_of(v) {
                    if !found.contains(&k) {
                        fk_errors.entry(ri).or_default().push(unknown_fk(t, ci, v));
                    }
                }
            }
        }
        let mut outcomes: Vec<Option<RowOutcome>> = cands
            .iter()
            .enumerate()
            .map(|(ri, c)| {
                let fk = fk_errors.remove(&ri).unwrap_or_default();
                if c.result.is_err() {
                    c.refused(t, fk)
                } else if fk.is_empty() {
                    None
                } else {
                    Some(RowOutcome::Rejected(fk))
                }
            })
            .collect();

        let to_insert: Vec<usize> = (0..cands.len()).filter(|i| outcomes[*i].is_none()).collect();
        if to_insert.is_empty() {
            return Ok(outcomes.into_iter().map(|o| o.unwrap()).collect());
        }
        let rows: Vec<&Vec<Value>> = to_insert.iter().map(|i| cands[*i].result.as_ref().unwrap()).collect();

        // Optimistic path: binary COPY, which PostgreSQL inserts in bulk (several times faster
        // than INSERT .. SELECT). It fails as a whole on any existing key, so it runs under a
        // savepoint and, on a unique violation, the chunk takes the row-by-row-aware path below.
        // A first-time migration never conflicts; a re-load conflicts on its first row.
        if rows.len() >= COPY_MIN_ROWS {
            c.batch_execute("SAVEPOINT strata_chunk").await?;
            match self.copy_rows(c, &rows).await {
                Ok(()) => {
                    c.batch_execute("RELEASE SAVEPOINT strata_chunk").await?;
                    for ri in &to_insert {
                        outcomes[*ri] = Some(RowOutcome::Inserted);
                    }
                    return Ok(outcomes.into_iter().map(|o| o.unwrap()).collect());
                }
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    c.batch_execute("ROLLBACK TO SAVEPOINT strata_chunk").await?;
                }
                Err(e) => return Err(e.into()),
            }
        }

        // Insert the rest in one statement; RETURNING tells which keys were new.
        let params: Vec<Param> =
            t.columns.iter().enumerate().map(|(ci, col)| column_array(col, rows.iter().map(|r| &r[ci]))).collect();
        let names = column_list(t);
        let casts = t
            .columns
            .iter()
            .enumerate()
            .map(|(i, col)| format!("${}::{}", i + 1, array_type(col)))
            .collect::<Vec<_>>()
            .join(", ");
        let pk = ident(&t.pk_column().name);
        let sql = format!(
            "INSERT INTO {} ({names}) SELECT * FROM unnest({casts}) ON CONFLICT ({pk}) DO NOTHING RETURNING {pk}",
            qualified(self.schema, &t.name)
        );
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let inserted = c.query(&sql, &refs).await?;
        let mut fresh: HashSet<Key> = inserted.iter().filter_map(|r| read_key(r, 0, t.pk_column())).collect();
        let mut conflicts = Vec::new();
        for (pos, ri) in to_insert.iter().enumerate() {
            let k = key_of(&rows[pos][t.pk]);
            // The first row with a new key is the one that went in.
            if k.as_ref().is_some_and(|k| fresh.remove(k)) {
                outcomes[*ri] = Some(RowOutcome::Inserted);
            } else {
                conflicts.push(*ri);
            }
        }
        if !conflicts.is_empty() {
            let keys: Vec<&Value> = conflicts.iter().map(|ri| &cands[*ri].result.as_ref().unwrap()[t.pk]).collect();
            let arr = column_array(t.pk_column(), keys.into_iter());
            let sql = format!(
                "SELECT {} FROM {} WHERE {pk} = ANY($1::{})",
                names,
                qualified(self.schema, &t.name),
                array_type(t.pk_column())
            );
            let existing: HashMap<Key, Vec<Value>> = c
                .query(&sql, &[arr.as_ref()])
                .await?
                .iter()
                .filter_map(|r| {
                    let row = read_row(r, t).ok()?;
                    Some((key_of(&row[t.pk])?, row))
                })
                .collect();
            for ri in conflicts {
                let values = cands[ri].result.as_ref().unwrap();
                let same = key_of(&values[t.pk]).and_then(|k| existing.get(&k)).is_some_and(|e| same_values(e, values));
                outcomes[ri] = Some(if same {
                    RowOutcome::Unchanged
                } else {
                    RowOutcome::Rejected(vec![duplicate_key(t, &values[t.pk])])
                });
            }
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap()).collect())
    }

    async fn copy_rows(&self, c: &PgTx<'_>, rows: &[&Vec<Value>]) -> Result<(), tokio_postgres::Error> {
        let t = self.table;
        let sql = format!("COPY {} ({}) FROM STDIN (FORMAT binary)", qualified(self.schema, &t.name), column_list(t));
        let types: Vec<Type> = t.columns.iter().map(pg_type).collect();
        let sink = c.copy_in(&sql).await?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        for row in rows {
            let cells: Vec<PgVal<'_>> = row.iter().map(PgVal).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = cells.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            writer.as_mut().write(&refs).await?;
        }
        writer.finish().await?;
        Ok(())
    }

    async fn log_rejections(&self, c: &PgTx<'_>, source: &str, source_id: &str, rows: &[RejectionRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let lines: Vec<Option<i64>> = rows.iter().map(|r| r.line).collect();
        let idx: Vec<i64> = rows.iter().map(|r| r.row).collect();
        let raw: Vec<&str> = rows.iter().map(|r| r.raw.as_str()).collect();
        let errors: Vec<&str> = rows.iter().map(|r| r.errors.as_str()).collect();
        c.execute(
            &format!(
                "INSERT INTO {}._strata_rejections (table_name, source, source_id, line, row_index, raw, errors)
                 SELECT $1, $2, $3, l, i, r, e FROM unnest($4::int8[], $5::int8[], $6::text[], $7::text[]) AS u(l, i, r, e)",
                self.schema
            ),
            &[&self.table.name, &source, &source_id, &lines, &idx, &raw, &errors],
        )
        .await?;
        Ok(())
    }
}

/// Rows below this go straight to INSERT: COPY's setup costs more than it saves.
const COPY_MIN_ROWS: usize = 64;

type PgTx<'a> = tokio_postgres::Transaction<'a>;

fn pg_type(c: &Column) -> Type {
    match c.ty {
        ColumnType::Integer => Type::INT8,
        ColumnType::String => Type::TEXT,
        ColumnType::Datetime => Type::TIMESTAMPTZ,
        ColumnType::Date => Type::DATE,
        ColumnType::Decimal => Type::NUMERIC,
        ColumnType::Boolean => Type::BOOL,
    }
}

/// A value encoded as the PostgreSQL type of its column, without boxing each cell.
#[derive(Debug)]
struct PgVal<'a>(&'a Value);

impl ToSql for PgVal<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Value::Null => Ok(tokio_postgres::types::IsNull::Yes),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::DateTime(us) => {
                DateTime::<Utc>::from_timestamp_micros(*us).ok_or("datetime out of range")?.to_sql(ty, out)
            }
            Value::Date(d) => d.to_sql(ty, out),
            Value::Decimal(d) => d.to_sql(ty, out),
            Value::Bool(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The referenced primary-key column, typed like the referencing column (types must match).
fn t_column_for(_t: &Table, fk: &strata_domain::dataset::ForeignKey, col: &Column) -> Column {
    Column { name: fk.column.clone(), ..col.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::Migration;

    fn v1(schema: &str) -> String {
        format!("CREATE TABLE {schema}.a (x INTEGER);")
    }
    fn v2_fails_halfway(schema: &str) -> String {
        format!("CREATE TABLE {schema}.b (x INTEGER); INSERT INTO {schema}.a VALUES (1); SELECT * FROM no_such_table;")
    }

    #[tokio::test]
    async fn a_migration_that_fails_halfway_leaves_the_schema_at_the_previous_version() {
        static LIST: &[Migration] =
            &[Migration { version: 1, name: "a", sql: v1 }, Migration { version: 2, name: "b", sql: v2_fails_halfway }];
        let admin = std::env::var("STRATA_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let connect = |url: String| async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            c
        };
        let db = format!("strata_test_{}", uuid::Uuid::now_v7().simple());
        connect(admin.clone()).await.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
        let url = format!("{}/{db}", &admin[..admin.rfind('/').unwrap()]);
        let pool = build_pool(tokio_postgres::Config::from_str(&url).unwrap(), 1).unwrap();
        let c = pool.get().await.unwrap();
        c.batch_execute("CREATE SCHEMA s").await.unwrap();
        drop(c);
        let first =
            run_write(&pool, "s", None, async |c| migrate_in(c, "s._strata_schema", "s", "tenant t", &LIST[..1]).await);
        assert_eq!(first.await.unwrap(), [1]);
        // Migrating is all or nothing: the caller's transaction rolls back with the failure.
        let all = run_write(&pool, "s", None, async |c| migrate_in(c, "s._strata_schema", "s", "tenant t", LIST).await);
        assert!(all.await.is_err());
        let applied = run_read(&pool, "s", None, async |c| applied_in(c, "s._strata_schema").await).await.unwrap();
        assert_eq!(applied.iter().map(|a| a.version).collect::<Vec<_>>(), [1]);
        let c = pool.get().await.unwrap();
        let b: bool = c.query_one("SELECT to_regclass('s.b') IS NOT NULL", &[]).await.unwrap().get(0);
        assert!(!b, "the failed migration's first statement was rolled back");
        let rows: i64 = c.query_one("SELECT count(*) FROM s.a", &[]).await.unwrap().get(0);
        assert_eq!(rows, 0);
        drop(c);
        drop(pool);
        let _ = connect(admin).await.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
    }
}
