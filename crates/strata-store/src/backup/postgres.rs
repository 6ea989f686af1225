//! Exporting a tenant's tables from PostgreSQL: one REPEATABLE READ snapshot, rows streamed.

use strata_domain::dataset::Table;
use strata_domain::tenant::TenantId;
use tokio::sync::mpsc;

use super::ExportMsg;
use crate::datasets::column_list;
use crate::ingest::postgres::read_row;
use crate::ingest::CHUNK_ROWS;
use crate::postgres::{qualified, schema_of, PgStore};
use crate::{ident, Result, StoreError};

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
        let mut client = self.data_pool().get().await?;
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
}
