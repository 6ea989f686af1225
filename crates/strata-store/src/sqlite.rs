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

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, ToSql, TransactionBehavior};
use strata_domain::dataset::{Column, ColumnType, DatasetDef, Table};
use strata_domain::report::{DepartmentHires, QuarterRow, Year};
use strata_domain::tenant::{KeyHash, NewApiKey, TenantId};
use strata_domain::value::Value;
use tokio::sync::mpsc;

use crate::backup::ExportMsg;
use crate::ingest::{
    dependents, duplicate_key, key_of, new_id, orphan_error, restore_outcome, same_values, unknown_fk, Candidate,
    Chunks, Key, LoadReport, RejectionRow, RowOutcome, Tally, CHUNK_ROWS, REPORT_SAMPLE,
};
use crate::orders::{row_to_order, CreateOutcome, OrderEvent};
use crate::{
    ident, now_rfc3339, plan_apply, ApplyReport, BatchOutcome, Idempotency, Plan, Rejection, Result, StoreError,
    StoredDataset, TenantInfo,
};
use strata_domain::order::Order;

const READERS: usize = 8;

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

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL lets readers run beside the writer; FULL makes every acknowledged commit durable.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -32768)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// One SQLite file: a writer and a pool of readers.
pub(crate) struct Db {
    path: PathBuf,
    writer: Arc<tokio::sync::Mutex<Connection>>,
    readers: Arc<std::sync::Mutex<Vec<Connection>>>,
}

impl Db {
    fn open(path: &Path, create: bool) -> Result<Self> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags)?;
        configure(&conn)?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Arc::new(tokio::sync::Mutex::new(conn)),
            readers: Arc::new(std::sync::Mutex::new(Vec::new())),
        })
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap().pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    c.busy_timeout(std::time::Duration::from_secs(10))?;
                    c
                }
            };
            let out = f(&conn);
            let mut pool = readers.lock().unwrap();
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Database(e.into()))?
    }

    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let mut guard = self.writer.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut guard)).await.map_err(|e| StoreError::Database(e.into()))?
    }
}

pub struct SqliteStore {
    data_dir: PathBuf,
    control: Db,
    tenants: std::sync::Mutex<HashMap<String, Arc<Db>>>,
}

fn tenant_path(data_dir: &Path, id: &TenantId) -> PathBuf {
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
        for t in self.list_tenants().await? {
            let path = self.data_dir.join("tenants").join(format!("{}.db", t.id));
            if !path.exists() {
                continue; // a tenant row whose file was never moved into place (a crash)
            }
            let scope = format!("tenant {}", t.id);
            let done = tokio::task::spawn_blocking(move || -> Result<Vec<i64>> {
                let mut c = Connection::open(&path)?;
                configure(&c)?;
                migrate_file(&mut c, &scope, crate::migrate::SQLITE_TENANT)
            })
            .await
            .map_err(|e| StoreError::Database(e.into()))??;
            out.push((format!("tenant {}", t.id), done));
        }
        Ok(out)
    }

    /// The schema version of the control plane and of each tenant, applying nothing.
    pub async fn schema_status(&self) -> Result<Vec<crate::migrate::SchemaStatus>> {
        use crate::migrate::{SchemaStatus, SQLITE_CONTROL, SQLITE_TENANT};
        let control = self.control.read(applied_versions).await?;
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
        self.control.read(f).await
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

    fn tenant_db(&self, id: &TenantId) -> Result<Arc<Db>> {
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

    pub async fn create_tenant(&self, id: &TenantId, key: &NewApiKey) -> Result<()> {
        let id = id.clone();
        let final_path = tenant_path(&self.data_dir, &id);
        let hash = key.hash.as_str().to_string();
        let prefix = key.display_prefix.clone();
        self.control
            .write(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let exists: bool =
                    tx.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE id = ?1)", [id.as_str()], |r| r.get(0))?;
                if exists {
                    return Err(StoreError::TenantExists(id.to_string()));
                }
                // Build the tenant's file under a temporary name and move it into place, so a
                // crash never leaves a half-initialised tenant file under the real name.
                let tmp = final_path.with_extension(format!("db.tmp-{}", new_id()));
                {
                    let mut c = Connection::open(&tmp)?;
                    configure(&c)?;
                    migrate_file(&mut c, &format!("tenant {id}"), crate::migrate::SQLITE_TENANT)?;
                    c.pragma_update(None, "journal_mode", "DELETE")?;
                }
                std::fs::rename(&tmp, &final_path)
                    .map_err(|e| StoreError::Database(anyhow::anyhow!("rename tenant file: {e}")))?;
                let now = now_rfc3339();
                tx.execute("INSERT INTO tenants (id, created_at) VALUES (?1, ?2)", params![id.as_str(), now])?;
                tx.execute(
                    "INSERT INTO api_keys (hash, tenant_id, prefix, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![hash, id.as_str(), prefix, now],
                )?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    pub async fn insert_api_key(&self, id: &TenantId, key: &NewApiKey) -> Result<()> {
        let id = id.clone();
        let hash = key.hash.as_str().to_string();
        let prefix = key.display_prefix.clone();
        self.control
            .write(move |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let exists: bool =
                    tx.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE id = ?1)", [id.as_str()], |r| r.get(0))?;
                if !exists {
                    return Err(StoreError::TenantNotFound(id.to_string()));
                }
                tx.execute(
                    "INSERT INTO api_keys (hash, tenant_id, prefix, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![hash, id.as_str(), prefix, now_rfc3339()],
                )?;
                tx.commit()?;
                Ok(())
            })
            .await
    }

    pub async fn authenticate(&self, hash: &KeyHash) -> Result<Option<TenantId>> {
        let hash = hash.as_str().to_string();
        let id: Option<String> = self
            .control
            .read(move |c| {
                Ok(c.query_row("SELECT tenant_id FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL", [hash], |r| {
                    r.get(0)
                })
                .optional()?)
            })
            .await?;
        Ok(id.and_then(|s| TenantId::parse(&s).ok()))
    }

    pub async fn tenant_exists(&self, id: &TenantId) -> Result<bool> {
        let id = id.to_string();
        self.control
            .read(move |c| Ok(c.query_row("SELECT EXISTS(SELECT 1 FROM tenants WHERE id = ?1)", [id], |r| r.get(0))?))
            .await
    }

    pub async fn list_tenants(&self) -> Result<Vec<TenantInfo>> {
        self.control
            .read(|c| {
                let mut st = c.prepare("SELECT id, created_at FROM tenants ORDER BY id")?;
                let rows = st.query_map([], |r| Ok(TenantInfo { id: r.get(0)?, created_at: r.get(1)? }))?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    pub async fn datasets(&self, tenant: &TenantId) -> Result<Vec<StoredDataset>> {
        let db = self.tenant_db(tenant)?;
        db.read(read_datasets).await
    }

    pub async fn apply_dataset(&self, tenant: &TenantId, def: &DatasetDef) -> Result<ApplyReport> {
        let db = self.tenant_db(tenant)?;
        let def = def.clone();
        db.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing = read_datasets(&tx)?;
            match plan_apply(&existing, &def)? {
                Plan::Unchanged { version } => {
                    Ok(ApplyReport { dataset: def.name.clone(), version, created_tables: vec![], changed: false })
                }
                Plan::Apply { create, version } => {
                    for t in &create {
                        tx.execute_batch(&create_table_sql(t))?;
                    }
                    let seq = existing
                        .iter()
                        .position(|d| d.name == def.name)
                        .map(|p| p as i64)
                        .unwrap_or(existing.len() as i64);
                    tx.execute(
                        "INSERT INTO _strata_datasets (name, seq, version, definition, applied_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (name) DO UPDATE SET version = excluded.version,
                           definition = excluded.definition, applied_at = excluded.applied_at",
                        params![def.name, seq, version, serde_json::to_string(&def).unwrap(), now_rfc3339()],
                    )?;
                    tx.commit()?;
                    Ok(ApplyReport {
                        dataset: def.name.clone(),
                        version,
                        created_tables: create.iter().map(|t| t.name.clone()).collect(),
                        changed: true,
                    })
                }
            }
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

    pub async fn get_row(&self, tenant: &TenantId, table: &Table, key: &Value) -> Result<Option<Vec<Value>>> {
        let db = self.tenant_db(tenant)?;
        let table = table.clone();
        let key = key.clone();
        db.read(move |c| {
            let sql = format!(
                "SELECT {} FROM {} WHERE {} = ?1",
                column_list(&table),
                ident(&table.name),
                ident(&table.pk_column().name)
            );
            let mut st = c.prepare(&sql)?;
            Ok(st.query_row([SqlVal(&key)], |r| read_row(r, &table)).optional()?)
        })
        .await
    }

    pub async fn list_rows(
        &self,
        tenant: &TenantId,
        table: &Table,
        after: Option<Value>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>> {
        let db = self.tenant_db(tenant)?;
        let table = table.clone();
        db.read(move |c| {
            let pk = ident(&table.pk_column().name);
            let cols = column_list(&table);
            let name = ident(&table.name);
            let mut out = Vec::new();
            match &after {
                Some(k) => {
                    let sql = format!("SELECT {cols} FROM {name} WHERE {pk} > ?1 ORDER BY {pk} LIMIT ?2");
                    let mut st = c.prepare(&sql)?;
                    let rows = st.query_map(params![SqlVal(k), limit as i64], |r| read_row(r, &table))?;
                    for r in rows {
                        out.push(r?);
                    }
                }
                None => {
                    let sql = format!("SELECT {cols} FROM {name} ORDER BY {pk} LIMIT ?1");
                    let mut st = c.prepare(&sql)?;
                    let rows = st.query_map(params![limit as i64], |r| read_row(r, &table))?;
                    for r in rows {
                        out.push(r?);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    pub async fn list_rejections(
        &self,
        tenant: &TenantId,
        table: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Rejection>> {
        let db = self.tenant_db(tenant)?;
        let table = table.to_string();
        db.read(move |c| {
            let mut st = c.prepare(
                "SELECT id, table_name, source, source_id, line, row_index, raw, errors, created_at
                 FROM _strata_rejections WHERE table_name = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            let rows = st.query_map(params![table, before.unwrap_or(i64::MAX), limit as i64], |r| {
                let errors: String = r.get(7)?;
                Ok(Rejection {
                    id: r.get(0)?,
                    table: r.get(1)?,
                    source: r.get(2)?,
                    source_id: r.get(3)?,
                    line: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    row: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                    raw: r.get(6)?,
                    errors: serde_json::from_str(&errors).unwrap_or_default(),
                    created_at: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
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

    pub(crate) async fn create_session(&self, tenant: &TenantId, token_hash: &str, ttl_secs: i64) -> Result<()> {
        let (t, h) = (tenant.to_string(), token_hash.to_string());
        self.control
            .write(move |c| {
                let now = chrono::Utc::now();
                c.execute("DELETE FROM sessions WHERE expires_at < ?1", [now.timestamp()])?;
                c.execute(
                    "INSERT INTO sessions (token_hash, tenant_id, expires_at) VALUES (?1, ?2, ?3)",
                    params![h, t, now.timestamp() + ttl_secs],
                )?;
                Ok(())
            })
            .await
    }

    pub(crate) async fn session_tenant(&self, token_hash: &str) -> Result<Option<TenantId>> {
        let h = token_hash.to_string();
        let id: Option<String> = self
            .control
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT tenant_id FROM sessions WHERE token_hash = ?1 AND expires_at > ?2",
                    params![h, chrono::Utc::now().timestamp()],
                    |r| r.get(0),
                )
                .optional()?)
            })
            .await?;
        Ok(id.and_then(|s| TenantId::parse(&s).ok()))
    }

    pub(crate) async fn delete_session(&self, token_hash: &str) -> Result<()> {
        let h = token_hash.to_string();
        self.control
            .write(move |c| {
                c.execute("DELETE FROM sessions WHERE token_hash = ?1", [h])?;
                Ok(())
            })
            .await
    }
}

impl SqliteStore {
    pub(crate) async fn order_idempotency(&self, t: &TenantId, key: &str) -> Result<Option<(String, u16, String)>> {
        let db = self.tenant_db(t)?;
        let key = key.to_string();
        db.read(move |c| {
            Ok(c.query_row(
                "SELECT fingerprint, status, response FROM _strata_order_idempotency WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u16, r.get(2)?)),
            )
            .optional()?)
        })
        .await
    }

    pub(crate) async fn create_order(
        &self,
        t: &TenantId,
        key: &str,
        fingerprint: &str,
        order: Order,
        requested: i128,
    ) -> Result<CreateOutcome> {
        let db = self.tenant_db(t)?;
        let (key, fp, tenant) = (key.to_string(), fingerprint.to_string(), t.to_string());
        db.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found: Option<(String, i64, String)> = tx
                .query_row("SELECT fingerprint, status, response FROM _strata_order_idempotency WHERE key = ?1", [&key], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            if let Some((f, status, body)) = found {
                return if f == fp { Ok(CreateOutcome::Replayed { status: status as u16, body }) } else { Err(StoreError::IdempotencyKeyReused) };
            }
            let (total, cap): (i64, i64) = tx.query_row("SELECT total_sats, cap_sats FROM _strata_order_book WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let now = chrono::Utc::now().timestamp();
            if requested > (cap - total) as i128 {
                let body = strata_domain::order::cap_exceeded_json(cap - total, cap, requested).to_string();
                tx.execute("INSERT INTO _strata_order_idempotency (key, fingerprint, status, response, created_at) VALUES (?1, ?2, 409, ?3, ?4)", params![key, fp, body, now])?;
                tx.commit()?;
                return Ok(CreateOutcome::CapExceeded { body });
            }
            tx.execute("UPDATE _strata_order_book SET total_sats = total_sats + ?1 WHERE id = 1", [order.sats])?;
            tx.execute(
                "INSERT INTO _strata_orders (id, created_at, currency, amount_minor, exchange_rate, btc_sats, idempotency_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![order.id, order.created_at, order.amount.currency.code(), order.amount.minor, order.rate.to_string(), order.sats, key],
            )?;
            let event = crate::orders::OrderEvent {
                event_id: uuid::Uuid::now_v7().to_string(), tenant, seq: 0, order_id: order.id.clone(), created_at: order.created_at,
                currency: order.amount.currency.code().into(), amount_minor: order.amount.minor, exchange_rate: order.rate.to_string(),
                btc_sats: order.sats, idempotency_key: key.clone(),
            };
            tx.execute("INSERT INTO _strata_outbox (event) VALUES (?1)", [serde_json::to_string(&event).unwrap()])?;
            let body = order.to_json().to_string();
            tx.execute("INSERT INTO _strata_order_idempotency (key, fingerprint, status, response, created_at) VALUES (?1, ?2, 201, ?3, ?4)", params![key, fp, body, now])?;
            tx.commit()?;
            Ok(CreateOutcome::Created { order, body })
        })
        .await
    }

    pub(crate) async fn get_order(&self, t: &TenantId, id: &str) -> Result<Option<Order>> {
        let db = self.tenant_db(t)?;
        let id = id.to_string();
        db.read(move |c| {
            Ok(c.query_row(
                "SELECT id, created_at, currency, amount_minor, exchange_rate, btc_sats FROM _strata_orders WHERE id = ?1",
                [id],
                |r| Ok(row_to_order(r.get(0)?, r.get(1)?, &r.get::<_, String>(2)?, r.get(3)?, &r.get::<_, String>(4)?, r.get(5)?)),
            )
            .optional()?
            .flatten())
        })
        .await
    }

    pub(crate) async fn list_orders(
        &self,
        t: &TenantId,
        before: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<Order>> {
        let db = self.tenant_db(t)?;
        db.read(move |c| {
            let (at, id) = before.unwrap_or((i64::MAX, String::new()));
            let sql = if id.is_empty() {
                "SELECT id, created_at, currency, amount_minor, exchange_rate, btc_sats FROM _strata_orders_view WHERE created_at <= ?1 OR ?2 = '' ORDER BY created_at DESC, id DESC LIMIT ?3"
            } else {
                "SELECT id, created_at, currency, amount_minor, exchange_rate, btc_sats FROM _strata_orders_view WHERE (created_at, id) < (?1, ?2) ORDER BY created_at DESC, id DESC LIMIT ?3"
            };
            let mut st = c.prepare_cached(sql)?;
            let rows = st.query_map(params![at, id, limit as i64], |r| {
                Ok(row_to_order(r.get(0)?, r.get(1)?, &r.get::<_, String>(2)?, r.get(3)?, &r.get::<_, String>(4)?, r.get(5)?))
            })?;
            let mut out = Vec::new();
            for r in rows {
                out.extend(r?);
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn pending_events(&self, t: &TenantId, limit: usize) -> Result<Vec<OrderEvent>> {
        let db = self.tenant_db(t)?;
        db.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, event FROM _strata_outbox WHERE published_at IS NULL ORDER BY seq LIMIT ?1",
            )?;
            let rows = st.query_map([limit as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for r in rows {
                let (seq, ev) = r?;
                if let Ok(mut e) = serde_json::from_str::<OrderEvent>(&ev) {
                    e.seq = seq;
                    out.push(e);
                }
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn mark_published(&self, t: &TenantId, seqs: Vec<i64>) -> Result<()> {
        let db = self.tenant_db(t)?;
        db.write(move |conn| {
            let tx = conn.transaction()?;
            let now = chrono::Utc::now().timestamp_micros();
            for s in seqs {
                tx.execute("UPDATE _strata_outbox SET published_at = ?1 WHERE seq = ?2", params![now, s])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn project(&self, t: &TenantId, events: Vec<OrderEvent>) -> Result<()> {
        let db = self.tenant_db(t)?;
        db.write(move |conn| {
            let tx = conn.transaction()?;
            for e in &events {
                tx.execute(
                    "INSERT INTO _strata_orders_view (id, created_at, currency, amount_minor, exchange_rate, btc_sats, seq)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, currency = excluded.currency,
                       amount_minor = excluded.amount_minor, exchange_rate = excluded.exchange_rate,
                       btc_sats = excluded.btc_sats, seq = excluded.seq
                     WHERE excluded.seq > _strata_orders_view.seq",
                    params![e.order_id, e.created_at, e.currency, e.amount_minor, e.exchange_rate, e.btc_sats, e.seq],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn rebuild_view(&self, t: &TenantId) -> Result<u64> {
        let db = self.tenant_db(t)?;
        db.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM _strata_orders_view", [])?;
            let n = tx.execute(
                "INSERT INTO _strata_orders_view (id, created_at, currency, amount_minor, exchange_rate, btc_sats, seq)
                 SELECT o.id, o.created_at, o.currency, o.amount_minor, o.exchange_rate, o.btc_sats, 0 FROM _strata_orders o",
                [],
            )?;
            tx.commit()?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn order_book(&self, t: &TenantId) -> Result<(i64, i64)> {
        let db = self.tenant_db(t)?;
        db.read(|c| {
            Ok(c.query_row("SELECT total_sats, cap_sats FROM _strata_order_book WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?)
        })
        .await
    }

    pub(crate) async fn set_cap(&self, t: &TenantId, cap: i64) -> Result<()> {
        let db = self.tenant_db(t)?;
        db.write(move |conn| {
            let n =
                conn.execute("UPDATE _strata_order_book SET cap_sats = ?1 WHERE id = 1 AND total_sats <= ?1", [cap])?;
            if n == 0 {
                return Err(StoreError::CapBelowTotal);
            }
            Ok(())
        })
        .await
    }
}

fn read_datasets(c: &Connection) -> Result<Vec<StoredDataset>> {
    let mut st = c.prepare("SELECT name, version, applied_at, definition FROM _strata_datasets ORDER BY seq, name")?;
    let rows = st.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, version, applied_at, definition) = row?;
        let definition: DatasetDef = serde_json::from_str(&definition)
            .map_err(|e| StoreError::Database(anyhow::anyhow!("stored dataset {name} is unreadable: {e}")))?;
        out.push(StoredDataset { name, version, applied_at, definition });
    }
    Ok(out)
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

fn sql_type(c: &Column) -> &'static str {
    match c.ty {
        ColumnType::Integer | ColumnType::Datetime | ColumnType::Boolean => "INTEGER",
        ColumnType::String | ColumnType::Date | ColumnType::Decimal => "TEXT",
    }
}

/// SQLite DDL for a table. Datetimes are stored as integer microseconds (exact, sortable),
/// dates as `YYYY-MM-DD`, decimals as canonical text at the column's scale.
pub(crate) fn create_table_sql(t: &Table) -> String {
    let mut cols = Vec::new();
    for (i, c) in t.columns.iter().enumerate() {
        let mut s = format!("{} {}", ident(&c.name), sql_type(c));
        if i == t.pk {
            s.push_str(" PRIMARY KEY");
        }
        if c.required {
            s.push_str(" NOT NULL");
        }
        cols.push(s);
    }
    format!("CREATE TABLE {} ({}) STRICT;", ident(&t.name), cols.join(", "))
}

fn column_list(t: &Table) -> String {
    t.columns.iter().map(|c| ident(&c.name)).collect::<Vec<_>>().join(", ")
}

/// Binds a [`Value`] in its SQLite storage form.
struct SqlVal<'a>(&'a Value);

impl ToSql for SqlVal<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::DateTime(us) => ToSqlOutput::Borrowed(ValueRef::Integer(*us)),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(*b as i64)),
            Value::Date(_) | Value::Decimal(_) => ToSqlOutput::from(self.0.to_text()),
        })
    }
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
