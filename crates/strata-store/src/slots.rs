//! Each tenant's share of the storage: at most `per_tenant` operations of one tenant touch its
//! storage at once (a PostgreSQL connection of the data pool, or a SQLite blocking thread).
//!
//! Without it one tenant with nothing but its own key could take every connection (17 uploads
//! that stall after their headers did), and every other tenant's reads, writes and `/ready`
//! failed for as long as they stalled. With it a tenant can only exhaust its own share: its
//! next operation waits up to `wait` for a slot, then is refused with `tenant_busy` (HTTP 429,
//! gRPC `RESOURCE_EXHAUSTED`), and other tenants never notice.
//!
//! A slot is taken per operation, never nested, and released when the operation ends; work
//! that outlives the call that started it (a running query) carries its slot along.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_domain::tenant::TenantId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::StoreError;

/// Default operations per tenant at once.
pub const DEFAULT_TENANT_SLOTS: usize = 8;
/// Default wait for a slot before `tenant_busy`.
pub const DEFAULT_SLOT_WAIT: Duration = Duration::from_secs(10);

pub struct TenantSlots {
    per_tenant: usize,
    wait: Duration,
    map: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One operation's hold on its tenant's share; released on drop.
#[derive(Debug)]
pub struct TenantPermit(#[allow(dead_code)] OwnedSemaphorePermit);

impl TenantSlots {
    pub fn new(per_tenant: usize, wait: Duration) -> Self {
        Self { per_tenant: per_tenant.max(1), wait, map: Mutex::new(HashMap::new()) }
    }

    pub fn per_tenant(&self) -> usize {
        self.per_tenant
    }

    pub async fn acquire(&self, tenant: &TenantId) -> Result<TenantPermit, StoreError> {
        let sem = self
            .map
            .lock()
            .unwrap()
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone();
        if let Ok(p) = sem.clone().try_acquire_owned() {
            return Ok(TenantPermit(p));
        }
        match tokio::time::timeout(self.wait, sem.acquire_owned()).await {
            Ok(Ok(p)) => Ok(TenantPermit(p)),
            _ => {
                metrics::counter!("strata_tenant_busy_total").increment(1);
                tracing::warn!(tenant = %tenant, slots = self.per_tenant, "tenant busy: every storage slot is taken");
                Err(StoreError::TenantBusy { slots: self.per_tenant, waited: self.wait })
            }
        }
    }
}

impl Default for TenantSlots {
    fn default() -> Self {
        Self::new(DEFAULT_TENANT_SLOTS, DEFAULT_SLOT_WAIT)
    }
}
