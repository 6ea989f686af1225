//! What this instance knows about the blue/green deployment: its own stack, and the shared
//! state (active stack, announced target) refreshed from the control plane every poll.
//! Every gRPC call consults it without touching the database.

use std::sync::Arc;
use std::time::Duration;

use strata_store::deploy::{now_ms, DeployState, Instance, Stack};
use strata_store::Store;
use tokio::sync::watch;

use crate::registry::Registry;

#[derive(Clone)]
pub struct Gate {
    pub stack: Stack,
    state: watch::Receiver<DeployState>,
}

impl Gate {
    pub fn state(&self) -> DeployState {
        self.state.borrow().clone()
    }
}

pub struct WatchConfig {
    pub poll: Duration,
    pub instance: Instance,
    pub drain_timeout: Duration,
}

/// Starts the watcher: polls the deployment state, reports this instance's heartbeat, and
/// once this stack has been inactive for longer than the drain timeout, cancels the queries it
/// still holds (a leaked client cursor must not pin the old stack forever).
pub async fn watch(
    store: Store,
    stack: Stack,
    registry: Arc<Registry>,
    cfg: WatchConfig,
    jobs: &mut strata_app::jobs::Supervisor,
) -> Result<Gate, strata_store::StoreError> {
    let first = store.deploy_state().await?;
    let (tx, rx) = watch::channel(first);
    let mut instance = cfg.instance;
    jobs.spawn("deployment watcher", move |mut stop| async move {
        let mut tick = tokio::time::interval(cfg.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_beat = 0i64;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait() => break,
            }
            match store.deploy_state().await {
                Ok(s) => {
                    if !s.accepts(stack) && now_ms() - s.changed_at_ms > cfg.drain_timeout.as_millis() as i64 {
                        let n = registry.cancel_all("the drain timeout passed after a blue/green switch");
                        if n > 0 {
                            tracing::warn!(stack = %stack, cancelled = n, "drain timeout: cancelled queries left on the old stack");
                        }
                    }
                    tx.send_if_modified(|cur| {
                        if *cur != s {
                            tracing::info!(active = %s.active, target = ?s.target.map(|t| t.as_str()), "deployment state changed");
                            *cur = s;
                            true
                        } else {
                            false
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the deployment state; keeping the last known one"),
            }
            let now = now_ms();
            let inflight = registry.len() as i64;
            // Heartbeat at most every 500 ms, but at once when the in-flight count changes, so a
            // switch sees the drain end promptly.
            if now - last_beat >= 500 || inflight != instance.inflight {
                instance.inflight = inflight;
                instance.heartbeat_at_ms = now;
                if let Err(e) = store.heartbeat(&instance).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                } else {
                    last_beat = now;
                }
            }
        }
        let _ = store.forget_instance(&instance.id).await;
    });
    Ok(Gate { stack, state: rx })
}
