//! The PostgreSQL backend: the control plane in schema `strata_control`, each tenant in schema
//! `tenant_<id>`.
//!
//! Writes are set-based: a chunk of rows becomes one `INSERT .. SELECT FROM unnest(..)` with
//! typed arrays, so a load costs a round trip per few thousand rows rather than per row.
//! Text columns use the "C" collation, so keys and names sort in byte order exactly as they do
//! on SQLite, whatever the database's default collation.

use std::str::FromStr;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use strata_domain::tenant::TenantId;

use crate::db::postgres::{run_read, run_write};
use crate::{ident, Result, StoreError};

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

pub(crate) fn qualified(schema: &str, name: &str) -> String {
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
    pub async fn migrate(&self) -> Result<Vec<crate::migrate::MigrationRun>> {
        run_write(&self.control, "strata_control", None, async |c| {
            c.batch(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await?;
            c.batch("CREATE SCHEMA IF NOT EXISTS strata_control").await?;
            let mut out = Vec::new();
            let done = crate::migrate::apply(c, CONTROL_VERSIONS, "", "control", crate::migrate::PG_CONTROL).await?;
            out.push(crate::migrate::MigrationRun { scope: "control".into(), applied: done });
            for r in c.query("SELECT id FROM strata_control.tenants ORDER BY id", &[]).await? {
                let id = r.text(0)?;
                let tid =
                    TenantId::parse(&id).map_err(|e| StoreError::Database(anyhow::anyhow!("tenant {id:?}: {e}")))?;
                let schema = schema_of(&tid);
                let scope = format!("tenant {id}");
                c.batch(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).await?;
                let done =
                    crate::migrate::apply(c, &tenant_versions(&schema), &schema, &scope, crate::migrate::PG_TENANT)
                        .await?;
                out.push(crate::migrate::MigrationRun { scope, applied: done });
            }
            Ok(out)
        })
        .await
    }

    /// The schema version of the control plane and of each tenant, applying nothing.
    pub async fn schema_status(&self) -> Result<Vec<crate::migrate::SchemaStatus>> {
        use crate::migrate::{SchemaStatus, PG_CONTROL, PG_TENANT};
        run_read(&self.control, "strata_control", None, async |c| {
            let mut out =
                vec![SchemaStatus::of("control", &crate::migrate::applied(c, CONTROL_VERSIONS).await?, PG_CONTROL)];
            let has_tenants = c.query_one("SELECT to_regclass('strata_control.tenants') IS NOT NULL", &[]).await?;
            if has_tenants.int(0)? != 0 {
                for r in c.query("SELECT id FROM strata_control.tenants ORDER BY id", &[]).await? {
                    let id = r.text(0)?;
                    let Ok(tid) = TenantId::parse(&id) else { continue };
                    let applied = crate::migrate::applied(c, &tenant_versions(&schema_of(&tid))).await?;
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
        let first = run_write(&pool, "s", None, async |c| {
            crate::migrate::apply(c, "s._strata_schema", "s", "tenant t", &LIST[..1]).await
        });
        assert_eq!(first.await.unwrap(), [1]);
        // Migrating is all or nothing: the caller's transaction rolls back with the failure.
        let all = run_write(&pool, "s", None, async |c| {
            crate::migrate::apply(c, "s._strata_schema", "s", "tenant t", LIST).await
        });
        assert!(all.await.is_err());
        let applied =
            run_read(&pool, "s", None, async |c| crate::migrate::applied(c, "s._strata_schema").await).await.unwrap();
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
