//! The write paths of ingest, written once: a CSV load, a batch and a restore are each one
//! transaction that runs candidates through the backend's writer ([`Sink`]: SQLite's row
//! writer or PostgreSQL's chunk writer), logs rejections, and records the ingest; a batch also
//! honours its idempotency key, a restore checks references across the restored tables.

use strata_domain::dataset::Table;

use super::{
    dependents, new_id, orphan_error, restore_outcome, Candidate, Chunk, Chunks, LoadReport, RejectionRow, RowOutcome,
    Tally, REPORT_SAMPLE,
};
use crate::db::{Tx, P};
use crate::{ident, BatchOutcome, Idempotency, Result, StoreError};

/// A backend's writer of candidates inside a [`Tx`] (SQLite's row writer, PostgreSQL's chunk
/// writer); it may hold statements prepared on the `Tx` it was opened on.
pub(crate) trait Writers {
    type Sink<'c>: Sink;
    /// `defer_self_refs`: skip per-row checks of references into the same table (a restore
    /// checks them all at the end, since key order need not be parent-first).
    fn open<'c>(c: &'c Tx<'_>, table: &'c Table, defer_self_refs: bool) -> Result<Self::Sink<'c>>;
    /// The next chunk of input: SQLite's writer runs on a thread of its own and may block.
    async fn next(chunks: &mut Chunks) -> Option<Chunk>;
}

/// Holds no `&Tx` across a wait (a `Tx` is not `Sync`): what it needs of the `Tx` it takes at
/// [`Writers::open`].
pub(crate) trait Sink {
    async fn write(&mut self, chunk: &[Candidate]) -> Result<Vec<RowOutcome>>;
    async fn log(&mut self, source: &str, source_id: &str, rows: &[RejectionRow]) -> Result<()>;
}

pub(crate) async fn load<W: Writers>(c: &mut Tx<'_>, table: &Table, mut chunks: Chunks) -> Result<LoadReport> {
    let load_id = new_id();
    let mut tally = Tally::new(REPORT_SAMPLE);
    {
        let mut w = W::open(&*c, table, false)?;
        while let Some(chunk) = W::next(&mut chunks).await {
            let chunk = chunk.map_err(|e| e.into_store(StoreError::Input))?;
            let outcomes = w.write(&chunk).await?;
            let rejections: Vec<RejectionRow> =
                chunk.iter().zip(outcomes).filter_map(|(x, o)| tally.record(x, o)).collect();
            w.log("load", &load_id, &rejections).await?;
        }
    }
    record_ingest(c, &load_id, &table.name, "load", &tally).await?;
    Ok(tally.into_load_report(load_id, &table.name))
}

pub(crate) async fn batch<W: Writers>(
    c: &mut Tx<'_>,
    table: &Table,
    rows: Vec<Candidate>,
    idempotency: Option<Idempotency>,
) -> Result<BatchOutcome> {
    if let Some(idem) = &idempotency {
        if let Some(replay) = claim(c, idem).await? {
            return Ok(replay);
        }
    }
    let batch_id = new_id();
    let mut tally = Tally::new(usize::MAX);
    {
        let mut w = W::open(&*c, table, false)?;
        let outcomes = w.write(&rows).await?;
        let rejections: Vec<RejectionRow> = rows.iter().zip(outcomes).filter_map(|(x, o)| tally.record(x, o)).collect();
        w.log("batch", &batch_id, &rejections).await?;
    }
    record_ingest(c, &batch_id, &table.name, "batch", &tally).await?;
    let report = tally.into_batch_report(batch_id);
    if let Some(idem) = &idempotency {
        let sql = format!("UPDATE {} SET response = $2 WHERE key = $1", c.t("_strata_idempotency"));
        let response = serde_json::to_string(&report).expect("a report serialises");
        c.execute(&sql, &[idem.key.as_str().into(), response.into()]).await?;
    }
    Ok(BatchOutcome::Fresh(report))
}

/// Claims an idempotency key for this batch; the stored answer if the key was used before.
/// Racing retries queue on the key's unique index until the first one commits (PostgreSQL; on
/// SQLite the write transaction already serialises them) and then find its response.
async fn claim(c: &mut Tx<'_>, idem: &Idempotency) -> Result<Option<BatchOutcome>> {
    let table = c.t("_strata_idempotency");
    let sql =
        format!("INSERT INTO {table} (key, fingerprint, created_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING");
    let params = [idem.key.as_str().into(), idem.fingerprint.as_str().into(), P::Time(chrono::Utc::now())];
    if c.execute(&sql, &params).await? == 1 {
        return Ok(None);
    }
    let row = c
        .query_one(&format!("SELECT fingerprint, response FROM {table} WHERE key = $1"), &[idem.key.as_str().into()])
        .await?;
    if row.text(0)? != idem.fingerprint {
        return Err(StoreError::IdempotencyKeyReused);
    }
    match row.opt_text(1)? {
        Some(r) => Ok(Some(BatchOutcome::Replayed(r))),
        None => Err(StoreError::Database(anyhow::anyhow!("idempotency record without a response"))),
    }
}

/// Replaces the rows of `sets` (parents first) in one transaction; the rows restored per set.
pub(crate) async fn restore<W: Writers>(
    c: &mut Tx<'_>,
    sets: &mut [(Table, Chunks)],
    all: &[Table],
) -> Result<Vec<u64>> {
    for (t, _) in sets.iter().rev() {
        c.batch(&format!("DELETE FROM {}", c.t(&ident(&t.name)))).await?;
    }
    let restored: Vec<String> = sets.iter().map(|(t, _)| t.name.clone()).collect();
    let mut counts = Vec::new();
    {
        for (t, chunks) in sets.iter_mut() {
            let t: &Table = t;
            let mut w = W::open(&*c, t, true)?;
            let mut n = 0u64;
            while let Some(chunk) = W::next(chunks).await {
                let chunk = chunk.map_err(|e| e.into_store(StoreError::InvalidBackup))?;
                let outcomes = w.write(&chunk).await?;
                for (x, o) in chunk.iter().zip(outcomes) {
                    restore_outcome(t, x, o)?;
                    n += 1;
                }
            }
            counts.push(n);
        }
    }
    for (child, col, parent, pcol) in dependents(all).into_iter().filter(|d| restored.contains(&d.2)) {
        let sql = format!(
            "SELECT count(*) FROM {c} AS child WHERE child.{fk} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {p} AS parent WHERE parent.{pk} = child.{fk})",
            c = c.t(&ident(&child)),
            fk = ident(&col),
            p = c.t(&ident(&parent)),
            pk = ident(&pcol)
        );
        let orphans = c.query_one(&sql, &[]).await?.int(0)?;
        if orphans > 0 {
            return Err(orphan_error(&child, &col, &parent, orphans));
        }
    }
    Ok(counts)
}

async fn record_ingest(c: &mut Tx<'_>, id: &str, table: &str, kind: &str, t: &Tally) -> Result<()> {
    let sql = format!(
        "INSERT INTO {} (id, table_name, kind, rows_read, inserted, unchanged, rejected, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        c.t("_strata_ingests")
    );
    let params = [
        id.into(),
        table.into(),
        kind.into(),
        P::Int(t.rows as i64),
        P::Int(t.inserted as i64),
        P::Int(t.unchanged as i64),
        P::Int(t.rejected as i64),
        P::Time(chrono::Utc::now()),
    ];
    c.execute(&sql, &params).await?;
    Ok(())
}

/// The write paths as the store's API: the tenant's slot, then one transaction on its storage.
impl crate::Store {
    /// Loads CSV text into a table in one transaction, validating every row. The input is read
    /// on a thread of its own; a connection is taken only once its first rows are parsed.
    pub async fn load<R: std::io::Read + Send + 'static>(
        &self,
        tenant: &strata_domain::tenant::TenantId,
        table: &Table,
        input: R,
        progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<LoadReport> {
        let started = std::time::Instant::now();
        let _slot = self.tenant_slot(tenant).await?;
        let rx = crate::ingest::spawn_csv_reader(input, std::sync::Arc::new(table.clone()), progress);
        let chunks = crate::ingest::Chunks::start(rx).await;
        let t = table.clone();
        let mut report = match &self.backend {
            crate::Backend::Sqlite(b) => {
                b.tenant_db(tenant)?
                    .run_write(async move |c| {
                        crate::ingest::write::load::<crate::ingest::sqlite::SqliteWriters>(c, &t, chunks).await
                    })
                    .await?
            }
            crate::Backend::Postgres(b) => {
                let schema = crate::postgres::schema_of(tenant);
                let f = async move |c: &mut crate::db::Tx<'_>| {
                    crate::ingest::write::load::<crate::ingest::postgres::PgWriters>(c, &t, chunks).await
                };
                let report = crate::db::postgres::run_write(b.data_pool(), &schema, Some(tenant.as_str()), f).await?;
                // A bulk load changes the table's shape faster than autovacuum notices: without
                // fresh statistics the planner guesses, and a range over the key becomes a scan.
                if report.inserted > 0 {
                    let analyze = format!("ANALYZE {}", crate::postgres::qualified(&schema, &table.name));
                    let _ =
                        crate::db::postgres::run_read(b.data_pool(), &schema, None, async |c| c.batch(&analyze).await)
                            .await;
                }
                report
            }
        };
        report.duration_ms = started.elapsed().as_millis() as u64;
        crate::ingest::record_metrics(&table.name, report.inserted + report.unchanged, report.rejected);
        tracing::info!(tenant = %tenant, table = %table.name, load_id = %report.load_id,
            rows = report.rows_read, inserted = report.inserted, unchanged = report.unchanged,
            rejected = report.rejected, duration_ms = report.duration_ms, "load finished");
        Ok(report)
    }

    /// Writes one batch (1 to 1000 rows) in one transaction, honouring an idempotency key.
    pub async fn ingest_batch(
        &self,
        tenant: &strata_domain::tenant::TenantId,
        table: &Table,
        rows: Vec<super::Candidate>,
        idempotency: Option<Idempotency>,
    ) -> Result<BatchOutcome> {
        let (t, idem) = (table.clone(), idempotency.clone());
        let _slot = self.tenant_slot(tenant).await?;
        let outcome = match &self.backend {
            crate::Backend::Sqlite(b) => {
                b.tenant_db(tenant)?
                    .run_write(async move |c| {
                        crate::ingest::write::batch::<crate::ingest::sqlite::SqliteWriters>(c, &t, rows, idem).await
                    })
                    .await?
            }
            crate::Backend::Postgres(b) => {
                let f = async move |c: &mut crate::db::Tx<'_>| {
                    crate::ingest::write::batch::<crate::ingest::postgres::PgWriters>(c, &t, rows, idem).await
                };
                crate::db::postgres::run_write(
                    b.data_pool(),
                    &crate::postgres::schema_of(tenant),
                    Some(tenant.as_str()),
                    f,
                )
                .await?
            }
        };
        match &outcome {
            BatchOutcome::Fresh(r) => {
                crate::ingest::record_metrics(&table.name, r.accepted, r.rejected);
                tracing::info!(tenant = %tenant, table = %table.name, batch_id = %r.batch_id,
                    accepted = r.accepted, rejected = r.rejected, "batch ingested");
                for e in &r.errors {
                    tracing::warn!(tenant = %tenant, table = %table.name, batch_id = %r.batch_id,
                        row = e.row, errors = %serde_json::to_string(&e.errors).unwrap_or_default(),
                        "row rejected");
                }
            }
            BatchOutcome::Replayed(_) => {
                tracing::info!(tenant = %tenant, table = %table.name,
                    idempotency_key = %idempotency.as_ref().map(|i| i.key.as_str()).unwrap_or(""),
                    "batch replayed from idempotency record");
            }
        }
        Ok(outcome)
    }
}
