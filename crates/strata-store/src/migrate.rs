//! Versioned, forward-only schema migrations for the control plane and for every tenant.
//!
//! Each database records what it has applied in a version table (`_strata_schema` in SQLite
//! files and tenant schemas, `strata_control.schema_migrations` on PostgreSQL): the version,
//! its name and a SHA-256 of its SQL. Every process applies what is pending when it opens the
//! storage, each scope in one transaction (a migration that fails leaves the schema at the
//! previous version); on PostgreSQL under an advisory lock, so processes starting together
//! take turns. It refuses to start when a database is at a version it does not know (a newer
//! Strata wrote it) or when an applied migration's SQL differs from the one it ships (a
//! released migration was edited): both mean this binary would work on a schema it does not
//! understand.
//!
//! Migration 1 is the schema as Strata created it before versions existed, written so that it
//! is a no-op on such a database: data written then is adopted as version 1 in place. A
//! schema change is a new numbered migration appended to a list below, never an edit.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::{Dialect, Tx, P};
use crate::{Result, StoreError};

/// One step of a schema. `sql` renders the statements for a tenant schema name on PostgreSQL
/// (SQLite migrations ignore it).
#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: fn(&str) -> String,
}

impl Migration {
    /// SHA-256 of the statements as shipped (rendered for a placeholder schema).
    pub fn checksum(&self) -> String {
        format!("{:x}", Sha256::digest((self.sql)("<schema>").as_bytes()))
    }
}

/// What a version table says was applied.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    pub version: i64,
    pub checksum: String,
}

/// The schema version of one database, as `strata migrate status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaStatus {
    /// `control`, or `tenant <id>`.
    pub scope: String,
    /// The highest applied version (0: none yet).
    pub version: i64,
    /// The highest version this binary knows.
    pub latest: i64,
}

impl SchemaStatus {
    /// The status of `scope` from what its version table holds, against `known`.
    pub(crate) fn of(scope: impl Into<String>, applied: &[Applied], known: &[Migration]) -> Self {
        let version = applied.iter().map(|a| a.version).max().unwrap_or(0);
        Self { scope: scope.into(), version, latest: latest(known) }
    }
}

pub(crate) fn latest(list: &[Migration]) -> i64 {
    list.last().map_or(0, |m| m.version)
}

/// The migrations still to apply, after checking the applied ones against `known`.
pub(crate) fn pending<'a>(known: &'a [Migration], applied: &[Applied], scope: &str) -> Result<Vec<&'a Migration>> {
    for a in applied {
        match known.iter().find(|m| m.version == a.version) {
            None => {
                return Err(StoreError::Schema(format!(
                    "the {scope} schema is at version {}, which this strata does not know (it knows up to {}): \
                     a newer strata wrote it; run that version or newer",
                    a.version,
                    latest(known)
                )))
            }
            Some(m) if m.checksum() != a.checksum => {
                return Err(StoreError::Schema(format!(
                    "migration {} ({}) of the {scope} schema differs from the one that was applied: \
                     a released migration must never change",
                    m.version, m.name
                )))
            }
            Some(_) => {}
        }
    }
    Ok(known.iter().filter(|m| !applied.iter().any(|a| a.version == m.version)).collect())
}

/// What one migration run did in one scope (`control`, `tenant <id>`): the versions applied,
/// none when it was up to date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationRun {
    pub scope: String,
    pub applied: Vec<i64>,
}

/// Whether `table` (as this `Tx` names it: bare on SQLite, schema-qualified on PostgreSQL)
/// exists.
pub(crate) async fn table_exists(c: &mut Tx<'_>, table: &str) -> Result<bool> {
    Ok(match c.dialect() {
        Dialect::Sqlite => {
            let sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1";
            c.query_opt(sql, &[table.into()]).await?.is_some()
        }
        Dialect::Postgres => c.query_one("SELECT to_regclass($1) IS NOT NULL", &[table.into()]).await?.int(0)? != 0,
    })
}

/// The migrations recorded in the version table `table`; none if it does not exist yet.
pub(crate) async fn applied(c: &mut Tx<'_>, table: &str) -> Result<Vec<Applied>> {
    if !table_exists(c, table).await? {
        return Ok(Vec::new());
    }
    let rows = c.query(&format!("SELECT version, checksum FROM {table} ORDER BY version"), &[]).await?;
    rows.iter().map(|r| Ok(Applied { version: r.int(0)?, checksum: r.text(1)? })).collect()
}

/// Applies what is pending of `list` inside the transaction `c` (whoever opened it commits, so
/// a migration that fails halfway leaves the previous version); `table` is the version table,
/// `schema` what the migrations' SQL is rendered for. Returns the versions applied.
pub(crate) async fn apply(
    c: &mut Tx<'_>,
    table: &str,
    schema: &str,
    scope: &str,
    list: &[Migration],
) -> Result<Vec<i64>> {
    let ddl = match c.dialect() {
        Dialect::Sqlite => format!(
            "CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
             checksum TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT"
        ),
        Dialect::Postgres => format!(
            "CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, name TEXT NOT NULL,
             checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ),
    };
    c.batch(&ddl).await?;
    let done_before = applied(c, table).await?;
    let mut done = Vec::new();
    for m in pending(list, &done_before, scope)? {
        c.batch(&(m.sql)(schema)).await?;
        let sql = format!("INSERT INTO {table} (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)");
        let params = [P::Int(m.version), m.name.into(), m.checksum().into(), P::Time(chrono::Utc::now())];
        c.execute(&sql, &params).await?;
        done.push(m.version);
    }
    Ok(done)
}

fn sqlite_control_v1(_: &str) -> String {
    crate::sqlite::CONTROL_SCHEMA.to_string()
}

fn sqlite_tenant_v1(_: &str) -> String {
    format!("{}{}", crate::sqlite::TENANT_SCHEMA, crate::orders::sqlite::SCHEMA_V1)
}

fn sqlite_tenant_v2(_: &str) -> String {
    format!("{}{}", crate::ingest::sqlite::SCHEMA_V2, crate::orders::sqlite::SCHEMA_V2)
}

fn pg_control_v1(_: &str) -> String {
    crate::postgres::CONTROL_SCHEMA.to_string()
}

fn pg_tenant_v1(schema: &str) -> String {
    format!("{}{}", crate::postgres::tenant_schema_sql(schema), crate::orders::postgres::schema_v1(schema))
}

/// The control plane on SQLite (`control.db`).
pub static SQLITE_CONTROL: &[Migration] =
    &[Migration { version: 1, name: "tenants, keys, sessions and deployment state", sql: sqlite_control_v1 }];

/// A tenant's SQLite file.
pub static SQLITE_TENANT: &[Migration] = &[
    Migration { version: 1, name: "datasets, rejections, ingests, idempotency, orders", sql: sqlite_tenant_v1 },
    Migration { version: 2, name: "idempotency keys claimed first (orders, batches)", sql: sqlite_tenant_v2 },
];

/// The control plane on PostgreSQL (schema `strata_control`).
pub static PG_CONTROL: &[Migration] =
    &[Migration { version: 1, name: "tenants, keys, sessions and deployment state", sql: pg_control_v1 }];

/// A tenant's PostgreSQL schema.
pub static PG_TENANT: &[Migration] = &[
    Migration { version: 1, name: "datasets, rejections, ingests, idempotency, orders", sql: pg_tenant_v1 },
    Migration {
        version: 2,
        name: "idempotency keys claimed first (orders, batches)",
        sql: crate::orders::postgres::schema_v2,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn same(_: &str) -> String {
        String::new()
    }

    static KNOWN: &[Migration] =
        &[Migration { version: 1, name: "a", sql: same }, Migration { version: 2, name: "b", sql: same }];

    #[test]
    fn pending_is_what_was_not_applied_in_order() {
        let one = Applied { version: 1, checksum: KNOWN[0].checksum() };
        let p = pending(KNOWN, &[one], "control").unwrap();
        assert_eq!(p.iter().map(|m| m.version).collect::<Vec<_>>(), [2]);
        assert_eq!(pending(KNOWN, &[], "control").unwrap().len(), 2);
    }

    #[test]
    fn a_newer_or_edited_schema_is_refused() {
        let newer = Applied { version: 3, checksum: String::new() };
        let e = pending(KNOWN, &[newer], "tenant acme").unwrap_err().to_string();
        assert!(e.contains("version 3") && e.contains("up to 2"), "{e}");
        let edited = Applied { version: 1, checksum: "0".repeat(64) };
        let e = pending(KNOWN, &[edited], "control").unwrap_err().to_string();
        assert!(e.contains("must never change"), "{e}");
    }

    #[test]
    fn shipped_lists_are_numbered_one_by_one_and_render() {
        for list in [SQLITE_CONTROL, SQLITE_TENANT, PG_CONTROL, PG_TENANT] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1);
                assert!(!(m.sql)("\"tenant_x\"").trim().is_empty());
            }
        }
    }
}
