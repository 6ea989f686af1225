//! Moving order events from the outbox to the read model.
//!
//! The relay polls every tenant's outbox (and wakes at once when an order is created in this
//! process), publishes pending events to the event bus, and marks them published only after the
//! bus accepted them: a crash in between republishes, which the projector tolerates (it keeps
//! the newest event per order, so a redelivery never duplicates and never regresses a row).
//!
//! The embedded bus, the single-binary default, delivers in-process straight to the projector.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::orders::OrderEvent;
use crate::Store;

/// How often the relay looks at outboxes when nobody wakes it.
const POLL: Duration = Duration::from_millis(250);
const BATCH: usize = 500;

/// Applies events to the read model and reports how far behind it is.
pub async fn project(store: &Store, tenant: &strata_domain::tenant::TenantId, events: Vec<OrderEvent>) -> crate::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    store.project(tenant, events.clone()).await?;
    let now = chrono::Utc::now().timestamp_micros();
    for e in &events {
        let lag = (now - e.created_at).max(0) as f64 / 1e6;
        metrics::histogram!("strata_projection_lag_seconds").record(lag);
        tracing::info!(tenant = %tenant, order_id = %e.order_id, idempotency_key = %e.idempotency_key,
            seq = e.seq, lag_ms = lag * 1000.0, event = "order.projected", "order projected");
    }
    Ok(())
}

/// One pass over every tenant's outbox; returns how many events moved.
pub async fn relay_once(store: &Store) -> crate::Result<usize> {
    let mut moved = 0;
    for t in store.list_tenants().await? {
        let Ok(tenant) = strata_domain::tenant::TenantId::parse(&t.id) else { continue };
        loop {
            let events = match store.pending_events(&tenant, BATCH).await {
                Ok(e) => e,
                // A tenant created before orders existed has no outbox: nothing to relay.
                Err(_) => break,
            };
            if events.is_empty() {
                break;
            }
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            let n = events.len();
            project(store, &tenant, events).await?;
            store.mark_published(&tenant, seqs).await?;
            moved += n;
            if n < BATCH {
                break;
            }
        }
    }
    Ok(moved)
}

/// Runs the relay until the process ends.
pub fn spawn_relay(store: Store, wake: Arc<Notify>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = relay_once(&store).await {
                tracing::warn!(error = %e, "outbox relay pass failed; retrying");
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    })
}
