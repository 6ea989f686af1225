//! Tenants, their API keys and their sign-in sessions: the control plane.
//!
//! Everything here is SQL written once ([`crate::db`]) except creating a tenant's isolated
//! storage, which is a file on SQLite ([`sqlite`]) and a schema on PostgreSQL ([`postgres`]);
//! either way it commits with the tenant row and its first key, or not at all.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use serde::Serialize;
use strata_domain::secret::Secret;
use strata_domain::tenant::{KeyHash, NewApiKey, SessionScope, TenantId};

use crate::db::{Tx, P};
use crate::{Backend, Result, Store, StoreError};

/// A tenant as listed by `strata tenant list`.
#[derive(Debug, Clone, Serialize)]
pub struct TenantInfo {
    pub id: String,
    pub created_at: String,
}

/// Tenants and keys, through [`Store::tenants`].
pub struct Tenants<'s> {
    store: &'s Store,
}

/// Sign-in sessions, through [`Store::sessions`].
pub struct Sessions<'s> {
    store: &'s Store,
}

impl Store {
    pub fn tenants(&self) -> Tenants<'_> {
        Tenants { store: self }
    }

    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { store: self }
    }
}

impl Tenants<'_> {
    /// Creates a tenant, its isolated storage and a first API key, all or nothing.
    pub async fn create(&self, id: &TenantId) -> Result<NewApiKey> {
        let key = NewApiKey::generate();
        match &self.store.backend {
            Backend::Sqlite(b) => b.create_tenant(id, &key).await?,
            Backend::Postgres(b) => b.create_tenant(id, &key).await?,
        }
        tracing::info!(tenant = %id, key_prefix = %key.display_prefix, "tenant created");
        Ok(key)
    }

    /// Issues another key for an existing tenant (keys are never stored in clear, so a lost
    /// key is replaced, not recovered).
    pub async fn create_api_key(&self, id: &TenantId) -> Result<NewApiKey> {
        let key = NewApiKey::generate();
        let (tenant, hash, prefix) = (id.clone(), key.hash.clone(), key.display_prefix.clone());
        self.store.control_write(async move |c| insert_key(c, &tenant, &hash, &prefix).await).await?;
        tracing::info!(tenant = %id, key_prefix = %key.display_prefix, "api key created");
        Ok(key)
    }

    /// The tenant owning a key hash, if the key is known and not revoked.
    pub async fn authenticate(&self, hash: &KeyHash) -> Result<Option<TenantId>> {
        let hash = hash.clone();
        self.store
            .control_read(async move |c| {
                let sql = format!("SELECT tenant_id FROM {} WHERE hash = $1 AND revoked_at IS NULL", c.t("api_keys"));
                let row = c.query_opt(&sql, &[hash.as_str().into()]).await?;
                Ok(row.and_then(|r| TenantId::parse(&r.text(0).ok()?).ok()))
            })
            .await
    }

    pub async fn exists(&self, id: &TenantId) -> Result<bool> {
        let id = id.clone();
        self.store.control_read(async move |c| exists(c, &id).await).await
    }

    pub async fn list(&self) -> Result<Vec<TenantInfo>> {
        self.store
            .control_read(async |c| {
                let sql = format!("SELECT id, created_at FROM {} ORDER BY id", c.t("tenants"));
                let rows = c.query(&sql, &[]).await?;
                rows.iter().map(|r| Ok(TenantInfo { id: r.text(0)?, created_at: r.time_text(1)? })).collect()
            })
            .await
    }
}

pub(crate) async fn exists(c: &mut Tx<'_>, id: &TenantId) -> Result<bool> {
    let sql = format!("SELECT 1 FROM {} WHERE id = $1", c.t("tenants"));
    Ok(c.query_opt(&sql, &[id.as_str().into()]).await?.is_some())
}

/// Claims the tenant's id in the control plane; `TenantExists` if it is taken.
pub(crate) async fn insert_tenant(c: &mut Tx<'_>, id: &TenantId) -> Result<()> {
    let sql = format!("INSERT INTO {} (id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING", c.t("tenants"));
    if c.execute(&sql, &[id.as_str().into(), P::Time(chrono::Utc::now())]).await? == 0 {
        return Err(StoreError::TenantExists(id.to_string()));
    }
    Ok(())
}

/// Stores a key hash for an existing tenant; `TenantNotFound` otherwise.
pub(crate) async fn insert_key(c: &mut Tx<'_>, id: &TenantId, hash: &KeyHash, prefix: &str) -> Result<()> {
    let sql = format!(
        "INSERT INTO {} (hash, tenant_id, prefix, created_at) SELECT $1, id, $3, $4 FROM {} WHERE id = $2",
        c.t("api_keys"),
        c.t("tenants")
    );
    let params = [hash.as_str().into(), id.as_str().into(), prefix.into(), P::Time(chrono::Utc::now())];
    if c.execute(&sql, &params).await? == 0 {
        return Err(StoreError::TenantNotFound(id.to_string()));
    }
    Ok(())
}

impl Sessions<'_> {
    /// Opens a session of `scope` for a tenant; returns its token (stored only hashed, with the
    /// scope, so a token works for nothing else).
    pub async fn create(&self, tenant: &TenantId, scope: SessionScope, ttl_secs: i64) -> Result<Secret<String>> {
        let token = NewApiKey::generate().plaintext;
        let hash = scope.hash(token.expose());
        let t = tenant.clone();
        self.store
            .control_write(async move |c| {
                let now = chrono::Utc::now().timestamp();
                let sessions = c.t("sessions");
                c.execute(&format!("DELETE FROM {sessions} WHERE expires_at < $1"), &[P::Secs(now)]).await?;
                let sql = format!("INSERT INTO {sessions} (token_hash, tenant_id, expires_at) VALUES ($1, $2, $3)");
                c.execute(&sql, &[hash.as_str().into(), t.as_str().into(), P::Secs(now + ttl_secs)]).await?;
                Ok(())
            })
            .await?;
        tracing::info!(tenant = %tenant, scope = scope.as_str(), "session opened");
        Ok(token)
    }

    /// The tenant of a live session of `scope`; a token issued for another scope is unknown.
    pub async fn tenant(&self, token: &str, scope: SessionScope) -> Result<Option<TenantId>> {
        let hash = scope.hash(token);
        self.store
            .control_read(async move |c| {
                let sql =
                    format!("SELECT tenant_id FROM {} WHERE token_hash = $1 AND expires_at > $2", c.t("sessions"));
                let now = P::Secs(chrono::Utc::now().timestamp());
                let row = c.query_opt(&sql, &[hash.as_str().into(), now]).await?;
                Ok(row.and_then(|r| TenantId::parse(&r.text(0).ok()?).ok()))
            })
            .await
    }

    pub async fn delete(&self, token: &str, scope: SessionScope) -> Result<()> {
        let hash = scope.hash(token);
        self.store
            .control_write(async move |c| {
                let sql = format!("DELETE FROM {} WHERE token_hash = $1", c.t("sessions"));
                c.execute(&sql, &[hash.as_str().into()]).await?;
                Ok(())
            })
            .await
    }
}
