//! The embedded backend: one SQLite file for the control plane, one per tenant.
//!
//! Each file has one writer connection (behind an async mutex; SQLite allows one writer at a
//! time anyway) and a small pool of read-only connections, which WAL mode lets run beside the
//! writer. All SQLite calls run on blocking threads. Transactions that write start with
//! `BEGIN IMMEDIATE`, so even a second process on the same files serialises correctly.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use strata_domain::dataset::{Column, ColumnType, Table};
use strata_domain::report::{DepartmentHires, QuarterRow, Year};
use strata_domain::tenant::TenantId;
use strata_domain::value::Value;
use tokio::sync::mpsc;

use crate::backup::ExportMsg;
use crate::datasets::column_list;
use crate::ingest::{
    dependents, duplicate_key, key_of, new_id, orphan_error, restore_outcome, same_values, unknown_fk, Candidate,
    Chunks, Key, LoadReport, RejectionRow, RowOutcome, Tally, CHUNK_ROWS, REPORT_SAMPLE,
};
use crate::{ident, now_rfc3339, BatchOutcome, Idempotency, Result, StoreError};

pub(crate) const CONTROL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS api_keys (
    hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    prefix TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    expires_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS deploy_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    active TEXT NOT NULL,
    target TEXT,
    switch_id TEXT,
    changed_at_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS deploy_history (
    id TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    from_stack TEXT NOT NULL,
    to_stack TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS deploy_instances (
    id TEXT PRIMARY KEY,
    stack TEXT NOT NULL,
    http_addr TEXT NOT NULL,
    grpc_addr TEXT NOT NULL,
    inflight INTEGER NOT NULL,
    heartbeat_at_ms INTEGER NOT NULL
) STRICT;
";

pub(crate) const TENANT_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS _strata_datasets (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    applied_at TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS _strata_rejections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    table_name TEXT NOT NULL,
    source TEXT NOT NULL,
    source_id TEXT NOT NULL,
    line INTEGER,
    row_index INTEGER,
    raw TEXT NOT NULL,
    errors TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS _strata_rejections_by_table ON _strata_rejections (table_name, id);
CREATE TABLE IF NOT EXISTS _strata_ingests (
    id TEXT PRIMARY KEY,
    table_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    rows_read INTEGER NOT NULL,
    inserted INTEGER NOT NULL,
    unchanged INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    finished_at TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS _strata_idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
";

use crate::db::sqlite::{configure, Db, SqlVal};

pub struct SqliteStore {
    pub(crate) data_dir: PathBuf,
    control: Db,
    tenants: std::sync::Mutex<HashMap<String, Arc<Db>>>,
}

pub(crate) fn tenant_path(data_dir: &Path, id: &TenantId) -> PathBuf {
    // Safe: a TenantId is a DNS label, so it cannot contain '/' or '..'.
    data_dir.join("tenants").join(format!("{}.db", id.as_str()))
}

/// Applies what is pending of `list` to one SQLite file, in one IMMEDIATE transaction (other
/// processes wait for it); returns the versions applied.
pub(crate) fn migrate_file(conn: &mut Connection, scope: &str, list: &[crate::migrate::Migration]) -> Result<Vec<i64>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS _strata_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
         checksum TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT",
    )?;
    let applied = applied_versions(&tx)?;
    let mut done = Vec::new();
    for m in crate::migrate::pending(list, &applied, scope)? {
        tx.execute_batch(&(m.sql)(""))?;
        tx.execute(
            "INSERT INTO _strata_schema (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
            params![m.version, m.name, m.checksum(), now_rfc3339()],
        )?;
        done.push(m.version);
    }
    tx.commit()?;
    Ok(done)
}

fn table_exists(c: &Connection, name: &str) -> Result<bool> {
    Ok(c.query_row("SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)", [name], |r| {
        r.get(0)
    })?)
}

fn applied_versions(c: &Connection) -> Result<Vec<crate::migrate::Applied>> {
    if !table_exists(c, "_strata_schema")? {
        return Ok(Vec::new());
    }
    let mut st = c.prepare("SELECT version, checksum FROM _strata_schema ORDER BY version")?;
    let rows = st.query_map([], |r| Ok(crate::migrate::Applied { version: r.get(0)?, checksum: r.get(1)? }))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

impl SqliteStore {
    /// Opens the data directory; with `migrate`, brings the control plane and every tenant
    /// file to the schema this binary knows first (see [`crate::migrate`]).
    pub async fn open(data_dir: PathBuf, migrate: bool) -> Result<Self> {
        let dir = data_dir.clone();
        let control = tokio::task::spawn_blocking(move || -> Result<Db> {
            std::fs::create_dir_all(dir.join("tenants")).map_err(|e| {
                StoreError::Unavailable(anyhow::anyhow!("cannot create data directory {}: {e}", dir.display()))
            })?;
            let db = Db::open(&dir.join("control.db"), true)?;
            Ok(db)
        })
        .await
        .map_err(|e| StoreError::Database(e.into()))??;
        let store = Self { data_dir, control, tenants: std::sync::Mutex::new(HashMap::new()) };
        if migrate {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Applies pending migrations to the control plane, then to each tenant's file; returns
    /// what was applied, per scope.
    pub async fn migrate(&self) -> Result<Vec<(String, Vec<i64>)>> {
        let mut out = Vec::new();
        let control = self.control.write(|c| migrate_file(c, "control", crate::migrate::SQLITE_CONTROL)).await?;
        out.push(("control".to_string(), control));
        let ids = self
            .control
            .read(|c| {
                let mut st = c.prepare("SELECT id FROM tenants ORDER BY id")?;
                let rows = st.query_map([], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await?;
        for id in ids {
            let path = self.data_dir.join("tenants").join(format!("{id}.db"));
            if !path.exists() {
                continue; // a tenant row whose file was never moved into place (a crash)
            }
            let scope = format!("tenant {id}");
            let done = tokio::task::spawn_blocking(move || -> Result<Vec<i64>> {
                let mut c = Connection::open(&path)?;
                configure(&c)?;
                migrate_file(&mut c, &scope, crate::migrate::SQLITE_TENANT)
            })
            .await
            .map_err(|e| StoreError::Database(e.into()))??;
            out.push((format!("tenant {id}"), done));
        }
        Ok(out)
    }

    /// The schema version of the control plane and of each tenant, applying nothing.
    pub async fn schema_status(&self) -> Result<Vec<crate::migrate::SchemaStatus>> {
        use crate::migrate::{SchemaStatus, SQLITE_CONTROL, SQLITE_TENANT};
        let control = self.control.read(|c| applied_versions(c)).await?;
        let mut out = vec![SchemaStatus::of("control", &control, SQLITE_CONTROL)];
        let tenants = self.control.read(|c| {
            if !table_exists(c, "tenants")? {
                return Ok(Vec::new());
            }
            let mut st = c.prepare("SELECT id FROM tenants ORDER BY id")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        });
        for id in tenants.await? {
            let path = self.data_dir.join("tenants").join(format!("{id}.db"));
            if !path.exists() {
                continue; // as in migrate(): a tenant row whose file was never moved into place
            }
            let applied = tokio::task::spawn_blocking(move || -> Result<Vec<crate::migrate::Applied>> {
                let c = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                applied_versions(&c)
            })
            .await
            .map_err(|e| StoreError::Database(e.into()))??;
            out.push(SchemaStatus::of(format!("tenant {id}"), &applied, SQLITE_TENANT));
        }
        Ok(out)
    }

    /// Runs `f` on the control database (deployment state lives there).
    pub(crate) async fn control_write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.control.write(f).await
    }

    pub(crate) async fn control_read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.control.read(move |c| f(c)).await
    }

    pub(crate) fn control_file(&self) -> PathBuf {
        self.data_dir.join("control.db")
    }

    /// The tenant's database file; the query engine opens its own read-only connections.
    pub(crate) fn tenant_file(&self, id: &TenantId) -> Result<PathBuf> {
        let path = tenant_path(&self.data_dir, id);
        if !path.exists() {
            return Err(StoreError::TenantNotFound(id.to_string()));
        }
        Ok(path)
    }

    pub(crate) fn control_db(&self) -> &Db {
        &self.control
    }

    pub(crate) fn tenant_db(&self, id: &TenantId) -> Result<Arc<Db>> {
        let mut map = self.tenants.lock().unwrap();
        if let Some(db) = map.get(id.as_str()) {
            return Ok(db.clone());
        }
        let path = tenant_path(&self.data_dir, id);
        if !path.exists() {
            return Err(StoreError::TenantNotFound(id.to_string()));
        }
        let db = Arc::new(Db::open(&path, false)?);
        map.insert(id.to_string(), db.clone());
        Ok(db)
    }

    pub async fn ping(&self) -> Result<()> {
        self.control
            .read(|c| {
                c.query_row("SELECT 1", [], |_| Ok(()))?;
                Ok(())
            })
            .await
    }

    pub async fn load(&self, tenant: &TenantId, table: &Table, mut chunks: Chunks) -> Result<LoadReport> {
        let db = self.tenant_db(tenant)?;
        let table = table.clone();
        db.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let load_id = new_id();
            let mut tally = Tally::new(REPORT_SAMPLE);
            {
                let mut w = RowWriter::new(&tx, &table, false)?;
                while let Some(chunk) = chunks.blocking_recv() {
                    let chunk = chunk.map_err(|e| e.into_store(StoreError::Input))?;
                    for c in &chunk {
                        let outcome = w.write(c)?;
                        if let Some(rej) = tally.record(c, outcome) {
                            w.log_rejection("load", &load_id, &rej)?;
                        }
                    }
                }
            }
            record_ingest(&tx, &load_id, &table.name, "load", &tally)?;
            tx.commit()?;
            Ok(tally.into_load_report(load_id, &table.name))
        })
        .await
    }

    pub async fn ingest_batch(
        &self,
        tenant: &TenantId,
        table: &Table,
        rows: Vec<Candidate>,
        idempotency: Option<Idempotency>,
    ) -> Result<BatchOutcome> {
        let db = self.tenant_db(tenant)?;
        let table = table.clone();
        db.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(idem) = &idempotency {
                let found: Option<(String, String)> = tx
                    .query_row(
                        "SELECT fingerprint, response FROM _strata_idempotency WHERE key = ?1",
                        [&idem.key],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                if let Some((fingerprint, response)) = found {
                    return if fingerprint == idem.fingerprint {
                        Ok(BatchOutcome::Replayed(response))
                    } else {
                        Err(StoreError::IdempotencyKeyReused)
                    };
                }
            }
            let batch_id = new_id();
            let mut tally = Tally::new(usize::MAX);
            {
                let mut w = RowWriter::new(&tx, &table, false)?;
                for c in &rows {
                    let outcome = w.write(c)?;
                    if let Some(rej) = tally.record(c, outcome) {
                        w.log_rejection("batch", &batch_id, &rej)?;
                    }
                }
            }
            record_ingest(&tx, &batch_id, &table.name, "batch", &tally)?;
            let report = tally.into_batch_report(batch_id);
            if let Some(idem) = &idempotency {
                tx.execute(
                    "INSERT INTO _strata_idempotency (key, fingerprint, response, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![idem.key, idem.fingerprint, serde_json::to_string(&report).unwrap(), now_rfc3339()],
                )?;
            }
            tx.commit()?;
            Ok(BatchOutcome::Fresh(report))
        })
        .await
    }
}

impl SqliteStore {
    /// Streams the tables' rows, in key order, from one read snapshot.
    pub(crate) async fn export(
        &self,
        tenant: &TenantId,
        tables: Vec<Table>,
        tx: mpsc::Sender<ExportMsg>,
    ) -> Result<()> {
        let db = self.tenant_db(tenant)?;
        db.read(move |c| {
            let gone = || StoreError::Backup("the backup writer stopped".into());
            c.execute_batch("BEGIN")?;
            let result = (|| -> Result<()> {
                for (i, t) in tables.iter().enumerate() {
                    tx.blocking_send(ExportMsg::Begin(i)).map_err(|_| gone())?;
                    let sql = format!(
                        "SELECT {} FROM {} ORDER BY {}",
                        column_list(t),
                        ident(&t.name),
                        ident(&t.pk_column().name)
                    );
                    let mut st = c.prepare(&sql)?;
                    let mut rows = st.query([])?;
                    let mut batch = Vec::with_capacity(CHUNK_ROWS);
                    while let Some(r) = rows.next()? {
                        batch.push(read_row(r, t)?);
                        if batch.len() == CHUNK_ROWS {
                            let full = std::mem::replace(&mut batch, Vec::with_capacity(CHUNK_ROWS));
                            tx.blocking_send(ExportMsg::Rows(full)).map_err(|_| gone())?;
                        }
                    }
                    if !batch.is_empty() {
                        tx.blocking_send(ExportMsg::Rows(batch)).map_err(|_| gone())?;
                    }
                    tx.blocking_send(ExportMsg::End).map_err(|_| gone())?;
                }
                Ok(())
            })();
            let _ = c.execute_batch("COMMIT");
            result
        })
        .await
    }

    /// Replaces the rows of `sets` (parents first) in one transaction.
    pub(crate) async fn restore(
        &self,
        tenant: &TenantId,
        sets: Vec<(Table, Chunks)>,
        all: Vec<Table>,
    ) -> Result<Vec<u64>> {
        let db = self.tenant_db(tenant)?;
        db.write(move |conn| {
            let restored: Vec<String> = sets.iter().map(|(t, _)| t.name.clone()).collect();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (t, _) in sets.iter().rev() {
                tx.execute(&format!("DELETE FROM {}", ident(&t.name)), [])?;
            }
            let mut counts = Vec::new();
            for (t, rx) in sets {
                let mut rx = rx;
                let mut w = RowWriter::new(&tx, &t, true)?;
                let mut n = 0u64;
                while let Some(chunk) = rx.blocking_recv() {
                    let chunk = chunk.map_err(|e| e.into_store(StoreError::InvalidBackup))?;
                    for c in &chunk {
                        let outcome = w.write(c)?;
                        restore_outcome(&t, c, outcome)?;
                        n += 1;
                    }
                }
                counts.push(n);
            }
            for (child, col, parent, pcol) in dependents(&all).into_iter().filter(|d| restored.contains(&d.2)) {
                let orphans: i64 = tx.query_row(
                    &format!(
                        "SELECT count(*) FROM {c} AS child WHERE child.{fk} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {p} AS parent WHERE parent.{pk} = child.{fk})",
                        c = ident(&child), fk = ident(&col), p = ident(&parent), pk = ident(&pcol)
                    ),
                    [],
                    |r| r.get(0),
                )?;
                if orphans > 0 {
                    return Err(orphan_error(&child, &col, &parent, orphans));
                }
            }
            tx.commit()?;
            Ok(counts)
        })
        .await
    }
}

impl SqliteStore {
    pub(crate) async fn hires_by_quarter(&self, tenant: &TenantId, year: Year) -> Result<Vec<QuarterRow>> {
        let db = self.tenant_db(tenant)?;
        let b = year.quarter_bounds().map(|t| t.timestamp_micros());
        db.read(move |c| {
            let mut st = c.prepare_cached(crate::reports::HIRES_BY_QUARTER_SQLITE)?;
            let rows = st.query_map(params![b[0], b[1], b[2], b[3], b[4]], |r| {
                Ok(QuarterRow {
                    department_id: r.get(6)?,
                    department_name: r.get(0)?,
                    job_id: r.get(7)?,
                    job_name: r.get(1)?,
                    q1: r.get(2)?,
                    q2: r.get(3)?,
                    q3: r.get(4)?,
                    q4: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    pub(crate) async fn department_hires(&self, tenant: &TenantId, year: Year) -> Result<(Vec<DepartmentHires>, i64)> {
        let db = self.tenant_db(tenant)?;
        let b = year.quarter_bounds().map(|t| t.timestamp_micros());
        db.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let mut st = tx.prepare_cached(crate::reports::DEPARTMENT_HIRES_SQLITE)?;
            let rows = st
                .query_map(params![b[0], b[4]], |r| {
                    Ok(DepartmentHires { department_id: r.get(0)?, department_name: r.get(1)?, hired: r.get(2)? })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let n: i64 = tx.query_row("SELECT count(*) FROM \"departments\"", [], |r| r.get(0))?;
            drop(st);
            tx.commit()?;
            Ok((rows, n))
        })
        .await
    }
}

fn record_ingest(c: &Connection, id: &str, table: &str, kind: &str, t: &Tally) -> Result<()> {
    c.execute(
        "INSERT INTO _strata_ingests (id, table_name, kind, rows_read, inserted, unchanged, rejected, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            table,
            kind,
            t.rows as i64,
            t.inserted as i64,
            t.unchanged as i64,
            t.rejected as i64,
            now_rfc3339()
        ],
    )?;
    Ok(())
}

fn read_value(r: &rusqlite::Row<'_>, i: usize, c: &Column) -> rusqlite::Result<Value> {
    let conv = |e: String| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into());
    Ok(match c.ty {
        ColumnType::Integer => r.get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int),
        ColumnType::Datetime => r.get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::DateTime),
        ColumnType::Boolean => r.get::<_, Option<i64>>(i)?.map_or(Value::Null, |b| Value::Bool(b != 0)),
        ColumnType::String => r.get::<_, Option<String>>(i)?.map_or(Value::Null, Value::Text),
        ColumnType::Date => match r.get::<_, Option<String>>(i)? {
            None => Value::Null,
            Some(s) => Value::Date(chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|e| conv(e.to_string()))?),
        },
        ColumnType::Decimal => match r.get::<_, Option<String>>(i)? {
            None => Value::Null,
            Some(s) => Value::Decimal(rust_decimal::Decimal::from_str(&s).map_err(|e| conv(e.to_string()))?),
        },
    })
}

fn read_row(r: &rusqlite::Row<'_>, t: &Table) -> rusqlite::Result<Vec<Value>> {
    t.columns.iter().enumerate().map(|(i, c)| read_value(r, i, c)).collect()
}

/// Writes candidates one by one with cached prepared statements: SQLite is in-process, so a
/// statement per row costs about a microsecond and keeps the logic obvious.
struct RowWriter<'c> {
    table: &'c Table,
    insert: rusqlite::Statement<'c>,
    select: rusqlite::Statement<'c>,
    reject: rusqlite::Statement<'c>,
    /// (column index, statement checking the parent key exists, parent keys already seen).
    /// Only hits are cached: parents are never deleted while we hold the write lock, but a
    /// missing parent may still arrive later in the same load.
    fks: Vec<(usize, rusqlite::Statement<'c>, HashSet<Key>)>,
}

/// Bound on cached parent keys per column, so memory stays flat on huge parent tables.
const FK_CACHE_MAX: usize = 100_000;

impl<'c> RowWriter<'c> {
    /// `defer_self_refs`: skip per-row checks of references into the same table (a restore
    /// checks them all at the end, since key order need not be parent-first).
    fn new(c: &'c Connection, table: &'c Table, defer_self_refs: bool) -> Result<Self> {
        let name = ident(&table.name);
        let cols = column_list(table);
        let marks = (1..=table.columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let insert = c.prepare(&format!("INSERT INTO {name} ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING"))?;
        let select = c.prepare(&format!("SELECT {cols} FROM {name} WHERE {} = ?1", ident(&table.pk_column().name)))?;
        let reject = c.prepare(
            "INSERT INTO _strata_rejections (table_name, source, source_id, line, row_index, raw, errors, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut fks = Vec::new();
        for (i, col) in table.columns.iter().enumerate() {
            if let Some(fk) = &col.references {
                if defer_self_refs && fk.table == table.name {
                    continue;
                }
                let st = c.prepare(&format!("SELECT 1 FROM {} WHERE {} = ?1", ident(&fk.table), ident(&fk.column)))?;
                fks.push((i, st, HashSet::new()));
            }
        }
        Ok(Self { table, insert, select, reject, fks })
    }

    fn write(&mut self, c: &Candidate) -> Result<RowOutcome> {
        let mut errors = Vec::new();
        for (i, st, seen) in &mut self.fks {
            let Some(v) = c.fk_value(*i) else { continue };
            let Some(k) = key_of(v) else { continue };
            if seen.contains(&k) {
                continue;
            }
            if st.exists([SqlVal(v)])? {
                if seen.len() >= FK_CACHE_MAX {
                    seen.clear();
                }
                seen.insert(k);
            } else {
                errors.push(unknown_fk(self.table, *i, v));
            }
        }
        let values = match &c.result {
            Err(_) => return Ok(c.refused(self.table, errors).expect("a refused row")),
            Ok(v) => v,
        };
        if !errors.is_empty() {
            return Ok(RowOutcome::Rejected(errors));
        }
        let binds: Vec<SqlVal<'_>> = values.iter().map(SqlVal).collect();
        let n = self.insert.execute(rusqlite::params_from_iter(binds.iter()))?;
        if n == 1 {
            return Ok(RowOutcome::Inserted);
        }
        let key = &values[self.table.pk];
        let table = self.table;
        let existing = self.select.query_row([SqlVal(key)], |r| read_row(r, table)).optional()?;
        Ok(match existing {
            Some(e) if same_values(&e, values) => RowOutcome::Unchanged,
            _ => RowOutcome::Rejected(vec![duplicate_key(self.table, key)]),
        })
    }

    fn log_rejection(&mut self, source: &str, source_id: &str, r: &RejectionRow) -> Result<()> {
        self.reject.execute(params![
            self.table.name,
            source,
            source_id,
            r.line,
            r.row,
            r.raw,
            r.errors,
            now_rfc3339()
        ])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::Migration;

    fn v1(_: &str) -> String {
        "CREATE TABLE a (x INTEGER);".into()
    }
    fn v2_fails_halfway(_: &str) -> String {
        "CREATE TABLE b (x INTEGER); INSERT INTO a VALUES (1); SELECT * FROM no_such_table;".into()
    }

    #[test]
    fn a_migration_that_fails_halfway_leaves_the_schema_at_the_previous_version() {
        static LIST: &[Migration] =
            &[Migration { version: 1, name: "a", sql: v1 }, Migration { version: 2, name: "b", sql: v2_fails_halfway }];
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("t.db")).unwrap();
        assert!(migrate_file(&mut c, "tenant t", &LIST[..1]).unwrap() == [1]);
        assert!(migrate_file(&mut c, "tenant t", LIST).is_err());
        let versions: Vec<i64> = applied_versions(&c).unwrap().iter().map(|a| a.version).collect();
        assert_eq!(versions, [1]);
        let b_exists: bool =
            c.query_row("SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE name = 'b')", [], |r| r.get(0)).unwrap();
        assert!(!b_exists, "the failed migration's first statement was rolled back");
        let rows: i64 = c.query_row("SELECT count(*) FROM a", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 0);
    }
}
