//! The outbox relay and, with NATS, this process's share of the order projector, as jobs of a
//! [`Supervisor`](super::Supervisor).

use std::sync::Arc;

use strata_store::Store;
use tokio::sync::Notify;

use super::{Stop, Supervisor};
use crate::ports::events::{relay_once, run_nats_projector, Bus, POLL};

/// Starts the relay (woken by `wake` when an order is created in this process, else every
/// poll interval) and, on NATS, the projector.
pub fn start(jobs: &mut Supervisor, store: Store, bus: Bus, wake: Arc<Notify>) {
    if let Bus::Nats(nats) = &bus {
        let (store, nats) = (store.clone(), nats.clone());
        jobs.spawn("order projector", move |stop| run_nats_projector(store, nats, stop));
    }
    jobs.spawn("outbox relay", move |stop| relay(store, bus, wake, stop));
}

async fn relay(store: Store, bus: Bus, wake: Arc<Notify>, mut stop: Stop) {
    while !stop.is_set() {
        if let Err(e) = relay_once(&store, &bus).await {
            tracing::warn!(error = %e, "outbox relay pass failed; retrying");
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.wait() => {}
        }
    }
}
