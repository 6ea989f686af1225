//! Datasets (a tenant's data dictionary) and reading their rows, written once for both
//! databases; only the DDL of a table differs ([`sqlite::create_table_sql`],
//! [`postgres::create_table_sql`]).

pub(crate) mod postgres;
pub(crate) mod sqlite;

use strata_domain::dataset::{DatasetDef, Table};
use strata_domain::tenant::TenantId;
use strata_domain::value::Value;

use crate::db::{Dialect, Tx, P};
use crate::{ident, ApplyReport, Rejection, Result, Store, StoreError, StoredDataset};

impl Store {
    /// Adds or confirms a dataset. New tables are created; existing tables must be unchanged
    /// (altering a populated table is a migration, which Strata does not do implicitly).
    pub async fn apply_dataset(&self, tenant: &TenantId, def: &DatasetDef) -> Result<ApplyReport> {
        let d = def.clone();
        let report = self.tenant_write(tenant, async move |c| apply(c, &d).await).await?;
        if report.changed {
            tracing::info!(tenant = %tenant, dataset = %report.dataset, version = report.version,
                created = ?report.created_tables, "dataset applied");
        }
        Ok(report)
    }

    pub async fn datasets(&self, tenant: &TenantId) -> Result<Vec<StoredDataset>> {
        self.tenant_read(tenant, async |c| read(c).await).await
    }

    pub async fn get_row(&self, tenant: &TenantId, table: &Table, key: &Value) -> Result<Option<Vec<Value>>> {
        let (table, key) = (table.clone(), key.clone());
        self.tenant_read(tenant, async move |c| {
            let sql = format!(
                "SELECT {} FROM {} WHERE {} = $1",
                column_list(&table),
                c.t(&ident(&table.name)),
                ident(&table.pk_column().name)
            );
            match c.query_opt(&sql, &[P::Value(key)]).await? {
                Some(r) => Ok(Some(row_values(&r, &table)?)),
                None => Ok(None),
            }
        })
        .await
    }

    /// A page of rows in key order, after the key `after`.
    pub async fn list_rows(
        &self,
        tenant: &TenantId,
        table: &Table,
        after: Option<Value>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>> {
        let table = table.clone();
        self.tenant_read(tenant, async move |c| {
            let (pk, cols, name) = (ident(&table.pk_column().name), column_list(&table), c.t(&ident(&table.name)));
            let rows = match after {
                Some(k) => {
                    let sql = format!("SELECT {cols} FROM {name} WHERE {pk} > $1 ORDER BY {pk} LIMIT $2");
                    c.query(&sql, &[P::Value(k), P::Int(limit as i64)]).await?
                }
                None => {
                    let sql = format!("SELECT {cols} FROM {name} ORDER BY {pk} LIMIT $1");
                    c.query(&sql, &[P::Int(limit as i64)]).await?
                }
            };
            rows.iter().map(|r| row_values(r, &table)).collect()
        })
        .await
    }

    /// The rejection log of a table, newest first, strictly before the id `before`.
    pub async fn list_rejections(
        &self,
        tenant: &TenantId,
        table: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Rejection>> {
        let table = table.to_string();
        self.tenant_read(tenant, async move |c| {
            let sql = format!(
                "SELECT id, table_name, source, source_id, line, row_index, raw, errors, created_at
                 FROM {} WHERE table_name = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                c.t("_strata_rejections")
            );
            let params = [table.into(), P::Int(before.unwrap_or(i64::MAX)), P::Int(limit as i64)];
            let rows = c.query(&sql, &params).await?;
            rows.iter()
                .map(|r| {
                    Ok(Rejection {
                        id: r.int(0)?,
                        table: r.text(1)?,
                        source: r.text(2)?,
                        source_id: r.text(3)?,
                        line: r.opt_int(4)?.map(|v| v as u64),
                        row: r.opt_int(5)?.map(|v| v as u64),
                        raw: r.text(6)?,
                        errors: serde_json::from_str(&r.text(7)?).unwrap_or_default(),
                        created_at: r.time_text(8)?,
                    })
                })
                .collect()
        })
        .await
    }
}

/// The DDL of a dataset table; only the column types differ between the databases (and
/// SQLite's tables are STRICT, so a value is never silently coerced).
fn create_table_sql(c: &Tx<'_>, t: &Table) -> String {
    let sql_type = match c.dialect() {
        Dialect::Sqlite => sqlite::sql_type,
        Dialect::Postgres => postgres::sql_type,
    };
    let cols: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, col)| {
            let pk = if i == t.pk { " PRIMARY KEY" } else { "" };
            let required = if col.required { " NOT NULL" } else { "" };
            format!("{} {}{pk}{required}", ident(&col.name), sql_type(col))
        })
        .collect();
    let strict = if c.dialect() == Dialect::Sqlite { " STRICT" } else { "" };
    format!("CREATE TABLE {} ({}){strict};", c.t(&ident(&t.name)), cols.join(", "))
}

pub(crate) fn column_list(t: &Table) -> String {
    t.columns.iter().map(|c| ident(&c.name)).collect::<Vec<_>>().join(", ")
}

fn row_values(r: &crate::db::DbRow, t: &Table) -> Result<Vec<Value>> {
    t.columns.iter().enumerate().map(|(i, c)| r.value(i, c)).collect()
}

/// The tenant's datasets in the order they were applied.
pub(crate) async fn read(c: &mut Tx<'_>) -> Result<Vec<StoredDataset>> {
    let sql =
        format!("SELECT name, version, applied_at, definition FROM {} ORDER BY seq, name", c.t("_strata_datasets"));
    let mut out = Vec::new();
    for r in c.query(&sql, &[]).await? {
        let name = r.text(0)?;
        let definition: DatasetDef = serde_json::from_str(&r.text(3)?)
            .map_err(|e| StoreError::Database(anyhow::anyhow!("stored dataset {name} is unreadable: {e}")))?;
        out.push(StoredDataset { name, version: r.int(1)?, applied_at: r.time_text(2)?, definition });
    }
    Ok(out)
}

pub(crate) async fn apply(c: &mut Tx<'_>, def: &DatasetDef) -> Result<ApplyReport> {
    if c.dialect() == Dialect::Postgres {
        // Reading first maps a missing schema to "tenant not found"; the lock then keeps
        // concurrent applies (from any process) in line, and the re-read sees their result.
        // (On SQLite the write transaction is already exclusive.)
        read(c).await?;
        c.batch(&format!("LOCK TABLE {} IN EXCLUSIVE MODE", c.t("_strata_datasets"))).await?;
    }
    let existing = read(c).await?;
    let (create, version) = match plan_apply(&existing, def)? {
        Plan::Unchanged { version } => {
            return Ok(ApplyReport { dataset: def.name.clone(), version, created_tables: vec![], changed: false })
        }
        Plan::Apply { create, version } => (create, version),
    };
    for t in &create {
        c.batch(&create_table_sql(c, t)).await?;
    }
    let seq = existing.iter().position(|d| d.name == def.name).unwrap_or(existing.len()) as i64;
    let sql = format!(
        "INSERT INTO {} (name, seq, version, definition, applied_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET version = excluded.version,
           definition = excluded.definition, applied_at = excluded.applied_at",
        c.t("_strata_datasets")
    );
    let definition = serde_json::to_string(def).expect("a definition serialises");
    let params =
        [def.name.as_str().into(), P::Int(seq), P::Int(version), definition.into(), P::Time(chrono::Utc::now())];
    c.execute(&sql, &params).await?;
    Ok(ApplyReport {
        dataset: def.name.clone(),
        version,
        created_tables: create.iter().map(|t| t.name.clone()).collect(),
        changed: true,
    })
}

/// Compiles stored datasets in the order they were applied, so references to tables of earlier
/// datasets resolve.
pub fn compile_datasets(datasets: &[StoredDataset]) -> Result<Vec<Table>> {
    let mut all: Vec<Table> = Vec::new();
    for d in datasets {
        let known = all.clone();
        let tables = d.definition.check(&|name| known.iter().find(|t| t.name == name).cloned())?;
        all.extend(tables);
    }
    Ok(all)
}

/// What applying a definition means for a tenant.
pub(crate) enum Plan {
    /// The same definition is already in place.
    Unchanged { version: i64 },
    /// Record the definition as a new version and create these tables.
    Apply { create: Vec<Table>, version: i64 },
}

/// Checks a new or changed dataset against what the tenant already has. Shared by both backends
/// so they refuse exactly the same changes.
pub(crate) fn plan_apply(existing: &[StoredDataset], def: &DatasetDef) -> Result<Plan> {
    // Compile everything in place (later datasets may reference this one), then judge the new
    // definition against the other datasets' tables.
    let other_tables: Vec<Table> = compile_datasets(existing)?.into_iter().filter(|t| t.dataset != def.name).collect();
    let compiled = def.check(&|name| other_tables.iter().find(|t| t.name == name).cloned())?;
    for t in &compiled {
        if let Some(o) = other_tables.iter().find(|o| o.name == t.name) {
            return Err(StoreError::DatasetConflict(format!(
                "table {:?} already belongs to dataset {:?}",
                t.name, o.dataset
            )));
        }
    }
    let Some(previous) = existing.iter().find(|d| d.name == def.name) else {
        return Ok(Plan::Apply { create: compiled, version: 1 });
    };
    if previous.definition == *def {
        return Ok(Plan::Unchanged { version: previous.version });
    }
    for old in &previous.definition.tables {
        match def.tables.iter().find(|t| t.name == old.name) {
            None => {
                return Err(StoreError::DatasetConflict(format!(
                    "dataset {:?} has table {:?}, which the new definition drops; removing tables is not supported",
                    def.name, old.name
                )))
            }
            Some(new) if new != old => {
                return Err(StoreError::DatasetConflict(format!(
                    "table {:?} already exists with a different definition; changing existing tables is not supported (add a new table instead)",
                    old.name
                )))
            }
            Some(_) => {}
        }
    }
    let create =
        compiled.into_iter().filter(|t| !previous.definition.tables.iter().any(|o| o.name == t.name)).collect();
    Ok(Plan::Apply { create, version: previous.version + 1 })
}
