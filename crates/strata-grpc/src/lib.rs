//! Strata's query service on the e6data gRPC protocol.
//!
//! A guided tour:
//! * [`service`]: the `QueryEngineService` / `ClusterService` handlers (protocol only);
//! * [`registry`]: the queries this instance owns, from prepare to clear;
//! * [`gate`]: this instance's view of the blue/green state, refreshed from the control plane.
//!
//! The switch procedure that moves traffic between stacks lives in `strata_app::deploy`.
//!
//! The SQL engine itself lives in `strata_store::query` and knows nothing of gRPC.

/// Re-exported so binaries need not depend on the store for the stack type.
pub mod deploy_stack {
    pub use strata_store::deploy::Stack;
}
pub mod error;
pub mod gate;
pub mod registry;
pub mod service;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strata_client::proto::cluster_service_server::ClusterServiceServer;
use strata_client::proto::query_engine_service_server::QueryEngineServiceServer;
use strata_store::deploy::{Instance, Stack};
use strata_store::query::QueryOptions;
use strata_store::Store;
use tokio::net::TcpListener;

use crate::gate::{Gate, WatchConfig};
use crate::registry::Registry;
use crate::service::{ClusterSvc, Engine, QuerySvc};

/// The largest request message accepted.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct GrpcOptions {
    pub stack: Stack,
    pub query: QueryOptions,
    /// How often the deployment state is re-read.
    pub poll: Duration,
    /// How long an inactive stack keeps serving queries it owns after a switch.
    pub drain_timeout: Duration,
    /// Queries untouched this long are cancelled and forgotten.
    pub idle_timeout: Duration,
    /// The HTTP address a switch uses to check this instance's `/ready`.
    pub http_addr: String,
    /// Registered queries this instance holds at most.
    pub max_queries: usize,
    /// Registered queries one tenant holds at most on this instance.
    pub max_queries_per_tenant: usize,
}

impl GrpcOptions {
    pub fn new(stack: Stack, http_addr: String) -> Self {
        Self {
            stack,
            query: QueryOptions::default(),
            poll: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(600),
            http_addr,
            max_queries: 4096,
            max_queries_per_tenant: 256,
        }
    }
}

pub struct GrpcServer {
    listener: TcpListener,
    addr: SocketAddr,
    engine: Arc<Engine>,
    /// Background jobs: the deployment watcher from the start, the idle-query reaper while serving.
    jobs: strata_app::jobs::Supervisor,
    idle_timeout: Duration,
    drain_timeout: Duration,
}

impl GrpcServer {
    /// Binds `addr` (port 0 picks one) and starts following the deployment state.
    pub async fn build(addr: SocketAddr, store: Store, opts: GrpcOptions) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(Registry::default());
        let mut jobs = strata_app::jobs::Supervisor::new();
        let instance_id = format!("{}-{}", opts.stack, uuid::Uuid::now_v7().simple());
        let instance = Instance {
            id: instance_id.clone(),
            stack: opts.stack,
            http_addr: opts.http_addr.clone(),
            grpc_addr: addr.to_string(),
            inflight: -1,
            heartbeat_at_ms: 0,
        };
        let gate = gate::watch(
            store.clone(),
            opts.stack,
            registry.clone(),
            WatchConfig { poll: opts.poll, instance, drain_timeout: opts.drain_timeout },
            &mut jobs,
        )
        .await?;
        let mut engine = Engine::new(store, gate, registry, opts.query, opts.max_queries, instance_id);
        engine.max_queries_per_tenant = opts.max_queries_per_tenant;
        let engine = Arc::new(engine);
        Ok(Self { listener, addr, engine, jobs, idle_timeout: opts.idle_timeout, drain_timeout: opts.drain_timeout })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn gate(&self) -> Gate {
        self.engine.gate.clone()
    }

    /// Serves until `shutdown` resolves, then stops taking calls and lets calls in flight finish
    /// for at most the drain timeout.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let registry = self.engine.registry.clone();
        let idle = self.idle_timeout;
        let mut jobs = self.jobs;
        jobs.spawn("idle query reaper", move |mut stop| async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait() => return,
                }
                let n = registry.reap_idle(idle);
                if n > 0 {
                    tracing::info!(queries = n, "forgot idle queries");
                }
            }
        });
        // The builder's tcp_nodelay only applies to sockets tonic accepts itself: set it here, or
        // Nagle's algorithm meets delayed ACKs and every response waits ~40 ms.
        let incoming =
            tokio_stream::StreamExt::map(tokio_stream::wrappers::TcpListenerStream::new(self.listener), |s| {
                s.inspect(|s| {
                    let _ = s.set_nodelay(true);
                })
            });
        let (stopping_tx, stopping) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        };
        let serve = tonic::transport::Server::builder()
            // The connector pings every 30 s even when idle: never answer with GOAWAY.
            .http2_keepalive_interval(None)
            // Calls in flight per connection; each message is at most 1 MiB (a query is at most
            // 256 KiB), so one connection can hold little memory.
            .max_concurrent_streams(Some(64))
            .add_service(
                QueryEngineServiceServer::new(QuerySvc(self.engine.clone()))
                    .max_decoding_message_size(MAX_MESSAGE_BYTES),
            )
            .add_service(ClusterServiceServer::new(ClusterSvc).max_decoding_message_size(MAX_MESSAGE_BYTES))
            .serve_with_incoming_shutdown(incoming, shutdown);
        let drain = self.drain_timeout;
        let result = tokio::select! {
            r = serve => r,
            _ = async { let _ = stopping.await; tokio::time::sleep(drain).await } => {
                tracing::warn!(drain_timeout_s = drain.as_secs(), "the drain deadline passed; closing gRPC calls still open");
                Ok(())
            }
        };
        self.engine.registry.cancel_all("the server is shutting down");
        // The watcher ends its round and takes this instance off the list of live ones.
        jobs.shutdown(Duration::from_secs(2)).await;
        result.map_err(Into::into)
    }
}
