//! A tenant on SQLite is a file of its own, built under a temporary name and moved into place
//! inside the control-plane transaction that records the tenant.

use rusqlite::Connection;
use strata_domain::tenant::{NewApiKey, TenantId};

use crate::db::sqlite::configure;
use crate::ingest::new_id;
use crate::sqlite::{migrate_file, tenant_path, SqliteStore};
use crate::{Result, StoreError};

impl SqliteStore {
    pub(crate) async fn create_tenant(&self, id: &TenantId, key: &NewApiKey) -> Result<()> {
        let (id, hash, prefix) = (id.clone(), key.hash.clone(), key.display_prefix.clone());
        let final_path = tenant_path(&self.data_dir, &id);
        self.control_db()
            .run_write(async move |c| {
                super::insert_tenant(c, &id).await?;
                // A crash never leaves a half-initialised tenant file under the real name.
                let tmp = final_path.with_extension(format!("db.tmp-{}", new_id()));
                {
                    let mut f = Connection::open(&tmp)?;
                    configure(&f)?;
                    migrate_file(&mut f, &format!("tenant {id}"), crate::migrate::SQLITE_TENANT)?;
                    f.pragma_update(None, "journal_mode", "DELETE")?;
                }
                std::fs::rename(&tmp, &final_path)
                    .map_err(|e| StoreError::Database(anyhow::anyhow!("rename tenant file: {e}")))?;
                super::insert_key(c, &id, &hash, &prefix).await
            })
            .await
    }
}
