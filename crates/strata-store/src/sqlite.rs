//! The embedded backend: one SQLite file for the control plane, one per tenant.
//!
//! Each file has one writer connection (behind an async mutex; SQLite allows one writer at a
//! time anyway) and a small pool of read-only connections, which WAL mode lets run beside the
//! writer. All SQLite calls run on blocking threads. Transactions that write start with
//! `BEGIN IMMEDIATE`, so even a second process on the same files serialises correctly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OpenFlags};
use strata_domain::tenant::TenantId;

use crate::db::sqlite::{configure, in_transaction, Db};
use crate::{Result, StoreError};

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
/// Applies what is pending of `list` to one file, in one `BEGIN IMMEDIATE` transaction.
pub(crate) fn migrate_file(conn: &mut Connection, scope: &str, list: &[crate::migrate::Migration]) -> Result<Vec<i64>> {
    in_transaction(conn, "BEGIN IMMEDIATE", async |c| crate::migrate::apply(c, VERSIONS, "", scope, list).await)
}

/// The version table of every SQLite file.
const VERSIONS: &str = "_strata_schema";

fn applied_versions(conn: &mut Connection) -> Result<Vec<crate::migrate::Applied>> {
    in_transaction(conn, "BEGIN", async |c| crate::migrate::applied(c, VERSIONS).await)
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
    pub async fn migrate(&self) -> Result<Vec<crate::migrate::MigrationRun>> {
        let mut out = Vec::new();
        let control = self.control.write(|c| migrate_file(c, "control", crate::migrate::SQLITE_CONTROL)).await?;
        out.push(crate::migrate::MigrationRun { scope: "control".into(), applied: control });
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
            out.push(crate::migrate::MigrationRun { scope: format!("tenant {id}"), applied: done });
        }
        Ok(out)
    }

    /// The schema version of the control plane and of each tenant, applying nothing.
    pub async fn schema_status(&self) -> Result<Vec<crate::migrate::SchemaStatus>> {
        use crate::migrate::{SchemaStatus, SQLITE_CONTROL, SQLITE_TENANT};
        let (control, tenants) = self
            .control
            .run_read(async |c| {
                let control = crate::migrate::applied(c, VERSIONS).await?;
                let mut tenants = Vec::new();
                if crate::migrate::table_exists(c, "tenants").await? {
                    for r in c.query("SELECT id FROM tenants ORDER BY id", &[]).await? {
                        tenants.push(r.text(0)?);
                    }
                }
                Ok((control, tenants))
            })
            .await?;
        let mut out = vec![SchemaStatus::of("control", &control, SQLITE_CONTROL)];
        for id in tenants {
            let path = self.data_dir.join("tenants").join(format!("{id}.db"));
            if !path.exists() {
                continue; // as in migrate(): a tenant row whose file was never moved into place
            }
            let applied = tokio::task::spawn_blocking(move || -> Result<Vec<crate::migrate::Applied>> {
                let mut c = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
                applied_versions(&mut c)
            })
            .await
            .map_err(|e| StoreError::Database(e.into()))??;
            out.push(SchemaStatus::of(format!("tenant {id}"), &applied, SQLITE_TENANT));
        }
        Ok(out)
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
        let versions: Vec<i64> = applied_versions(&mut c).unwrap().iter().map(|a| a.version).collect();
        assert_eq!(versions, [1]);
        let b_exists: bool =
            c.query_row("SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE name = 'b')", [], |r| r.get(0)).unwrap();
        assert!(!b_exists, "the failed migration's first statement was rolled back");
        let rows: i64 = c.query_row("SELECT count(*) FROM a", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 0);
    }
}
