//! Exporting a tenant's tables from SQLite: one read transaction, rows sent as they are read.

use strata_domain::dataset::Table;
use strata_domain::tenant::TenantId;
use tokio::sync::mpsc;

use super::ExportMsg;
use crate::datasets::column_list;
use crate::ingest::sqlite::read_row;
use crate::ingest::CHUNK_ROWS;
use crate::sqlite::SqliteStore;
use crate::{ident, Result, StoreError};

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
}
