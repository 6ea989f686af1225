//! A tenant on PostgreSQL is a schema, created and migrated in the transaction that records it.

use strata_domain::tenant::{NewApiKey, TenantId};

use crate::postgres::{schema_of, tenant_versions, PgStore};
use crate::Result;

impl PgStore {
    pub(crate) async fn create_tenant(&self, id: &TenantId, key: &NewApiKey) -> Result<()> {
        let (id, hash, prefix) = (id.clone(), key.hash.clone(), key.display_prefix.clone());
        crate::db::postgres::run_write(self.control_pool(), "strata_control", None, async move |c| {
            super::insert_tenant(c, &id).await?;
            // Schema, bookkeeping tables, tenant row and key commit together or not at all.
            let schema = schema_of(&id);
            c.batch(&format!("CREATE SCHEMA {schema}")).await?;
            let scope = format!("tenant {id}");
            crate::migrate::apply(c, &tenant_versions(&schema), &schema, &scope, crate::migrate::PG_TENANT).await?;
            super::insert_key(c, &id, &hash, &prefix).await
        })
        .await
    }
}
