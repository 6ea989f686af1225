//! The blue/green switch: validate the target stack, announce it, flip the active stack
//! atomically, let the old stack drain, and record what happened. `strata deploy` and the
//! admin API both run this one procedure.

use std::time::{Duration, Instant};

use strata_client::proto::cluster_service_client::ClusterServiceClient;
use strata_client::proto::ClusterRequest;
use strata_store::deploy::{now_ms, DeployState, Instance, Stack, SwitchRecord};
use strata_store::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct SwitchOptions {
    /// Who asked (recorded in the history).
    pub actor: String,
    /// How long the coming stack is announced before the flip, so clients with queries in
    /// flight learn it from their responses and move over between queries.
    pub announce: Duration,
    /// How long to wait for the old stack's queries to finish before recording the switch.
    pub drain_timeout: Duration,
    /// Instances whose last heartbeat is older than this are not counted as live.
    pub instance_fresh: Duration,
    /// nginx's `active-stack.conf` (deploy/nginx): rewritten at the flip so calls without a
    /// strategy header follow the active stack.
    pub nginx_active_file: Option<std::path::PathBuf>,
    /// Shell command that reloads nginx after the file changed.
    pub nginx_reload: Option<String>,
}

impl Default for SwitchOptions {
    fn default() -> Self {
        Self {
            actor: "unknown".into(),
            announce: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(300),
            instance_fresh: Duration::from_secs(3),
            nginx_active_file: None,
            nginx_reload: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("{0} is already the active stack")]
    AlreadyActive(Stack),
    #[error("a switch to {0} is already under way (if its process died, run `strata deploy abort`)")]
    InProgress(Stack),
    #[error("refused: {0}")]
    Validation(String),
    #[error("another switch changed the deployment state first")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl strata_domain::error::Coded for SwitchError {
    fn code(&self) -> strata_domain::ErrorCode {
        match self {
            SwitchError::Store(e) => e.code(),
            _ => strata_domain::ErrorCode::SwitchRefused,
        }
    }
}

/// Deployment status as `strata deploy status` and the admin API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub active: Stack,
    pub announced: Option<Stack>,
    pub instances: Vec<Instance>,
    pub history: Vec<SwitchRecord>,
}

pub async fn status(store: &Store, fresh: Duration, history: i64) -> Result<Status, StoreError> {
    let s = store.deploy_state().await?;
    Ok(Status {
        active: s.active,
        announced: s.target,
        instances: store.instances(fresh.as_millis() as i64).await?,
        history: store.deploy_history(history).await?,
    })
}

/// Switches back to the stack that is not active.
pub async fn rollback(store: &Store, o: &SwitchOptions) -> Result<SwitchRecord, SwitchError> {
    let s = store.deploy_state().await?;
    switch(store, s.active.other(), o).await
}

pub async fn switch(store: &Store, to: Stack, o: &SwitchOptions) -> Result<SwitchRecord, SwitchError> {
    let started = now_ms();
    let t0 = Instant::now();
    let state = store.deploy_state().await?;
    let from = state.active;
    let record = |outcome: &str, detail: String| SwitchRecord {
        id: uuid::Uuid::now_v7().to_string(),
        actor: o.actor.clone(),
        from,
        to,
        started_at_ms: started,
        finished_at_ms: started + t0.elapsed().as_millis() as i64,
        outcome: outcome.to_string(),
        detail,
    };
    let refuse = |e: SwitchError| async {
        let _ = store.record_switch(&record("refused", e.to_string())).await;
        Err(e)
    };
    if let Some(t) = state.target {
        return refuse(SwitchError::InProgress(t)).await;
    }
    if from == to {
        return refuse(SwitchError::AlreadyActive(to)).await;
    }
    if let Err(why) = validate(store, to, o).await {
        return refuse(SwitchError::Validation(why)).await;
    }
    let switch_id = uuid::Uuid::now_v7().to_string();
    if !store.deploy_announce(from, to, &switch_id).await? {
        return refuse(SwitchError::Conflict).await;
    }
    tracing::info!(%from, %to, actor = %o.actor, "switch announced");
    tokio::time::sleep(o.announce).await;
    if !store.deploy_flip(&switch_id).await? {
        let _ = store.deploy_abort(&switch_id).await;
        let _ = store.record_switch(&record("failed", "the announcement was withdrawn before the flip".into())).await;
        return Err(SwitchError::Conflict);
    }
    tracing::info!(%from, %to, "active stack flipped; draining the old stack");
    let proxy = point_nginx(to, o).await;
    let drained = drain(store, from, o).await?;
    let mut detail = match drained {
        0 => format!("{from} drained"),
        n => format!("drain timeout after {:?}: {from} still held {n} queries, which it cancels", o.drain_timeout),
    };
    if let Some(p) = proxy {
        detail.push_str("; ");
        detail.push_str(&p);
    }
    let r = record("completed", detail);
    store.record_switch(&r).await?;
    tracing::info!(%from, %to, duration_ms = r.duration_ms(), "switch completed");
    Ok(r)
}

/// Points nginx's default route (calls without a strategy header) at the new active stack.
/// A failure here does not undo the switch: clients that send the header (all e6data
/// connectors, after discovery) are already routed by it. It is reported in the history.
async fn point_nginx(to: Stack, o: &SwitchOptions) -> Option<String> {
    let file = o.nginx_active_file.as_ref()?;
    let body = format!("map $host $strata_active {{ default {to}; }}\n");
    let tmp = file.with_extension("tmp");
    if let Err(e) = tokio::fs::write(&tmp, body).await.and(tokio::fs::rename(&tmp, file).await) {
        tracing::warn!(error = %e, "cannot rewrite nginx's active-stack file");
        return Some(format!("nginx not updated: {e}"));
    }
    let cmd = o.nginx_reload.as_ref()?;
    match tokio::process::Command::new("sh").arg("-c").arg(cmd).status().await {
        Ok(s) if s.success() => Some("nginx reloaded".into()),
        Ok(s) => Some(format!("nginx reload exited with {s}")),
        Err(e) => Some(format!("nginx reload failed: {e}")),
    }
}

/// The target stack must have live instances, each answering `/ready` (which runs a smoke
/// query through its engine) and its gRPC port.
async fn validate(store: &Store, to: Stack, o: &SwitchOptions) -> Result<(), String> {
    let live: Vec<Instance> = store
        .instances(o.instance_fresh.as_millis() as i64)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|i| i.stack == to)
        .collect();
    if live.is_empty() {
        return Err(format!("no live {to} instance (none sent a heartbeat in the last {:?})", o.instance_fresh));
    }
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(5)).no_proxy().build().map_err(|e| e.to_string())?;
    for i in &live {
        let url = format!("http://{}/ready", i.http_addr);
        match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => return Err(format!("{to} instance {} answered /ready with {}", i.id, r.status())),
            Err(e) => return Err(format!("{to} instance {} did not answer /ready: {e}", i.id)),
        }
        let grpc = async {
            let mut c =
                ClusterServiceClient::connect(format!("http://{}", i.grpc_addr)).await.map_err(|e| e.to_string())?;
            let r = c.status(ClusterRequest::default()).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(r.into_inner().status)
        };
        match tokio::time::timeout(Duration::from_secs(5), grpc).await {
            Ok(Ok(s)) if s == "active" => {}
            Ok(Ok(s)) => return Err(format!("{to} instance {} reports cluster status {s:?}", i.id)),
            Ok(Err(e)) => return Err(format!("{to} instance {} gRPC port failed: {e}", i.id)),
            Err(_) => return Err(format!("{to} instance {} gRPC port timed out", i.id)),
        }
    }
    Ok(())
}

/// Waits until the old stack's instances report no query in flight; returns how many remained
/// when the timeout passed.
async fn drain(store: &Store, from: Stack, o: &SwitchOptions) -> Result<i64, StoreError> {
    let deadline = Instant::now() + o.drain_timeout;
    // Heartbeats lag by up to one poll: give instances a moment to report the flip's effect.
    tokio::time::sleep(Duration::from_millis(300)).await;
    loop {
        let held: i64 = store
            .instances(o.instance_fresh.as_millis() as i64)
            .await?
            .iter()
            .filter(|i| i.stack == from)
            .map(|i| i.inflight.max(0))
            .sum();
        if held == 0 {
            return Ok(0);
        }
        if Instant::now() >= deadline {
            return Ok(held);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Withdraws the announcement of a switch that will not complete (its `strata deploy switch`
/// was killed between the announcement and the flip). The active stack stays as it is, and
/// clients told about the target go back to it on their next 456. Recorded in the history.
pub async fn abort(store: &Store, actor: &str) -> Result<Option<SwitchRecord>, StoreError> {
    let s = store.deploy_state().await?;
    let (Some(target), Some(id)) = (s.target, s.switch_id.clone()) else { return Ok(None) };
    if !store.deploy_abort(&id).await? {
        return Ok(None);
    }
    let now = now_ms();
    let r = SwitchRecord {
        id: uuid::Uuid::now_v7().to_string(),
        actor: actor.to_string(),
        from: s.active,
        to: target,
        started_at_ms: s.changed_at_ms,
        finished_at_ms: now,
        outcome: "aborted".into(),
        detail: format!("announcement of {target} withdrawn; {} stays active", s.active),
    };
    store.record_switch(&r).await?;
    Ok(Some(r))
}

/// For callers that only need the state.
pub async fn state(store: &Store) -> Result<DeployState, StoreError> {
    store.deploy_state().await
}
