//! Moving order events from the outbox to the read model, through an event bus.
//!
//! The relay polls every tenant's outbox (and wakes at once when an order is created in this
//! process), publishes pending events, and marks them published only after the bus accepted
//! them: a crash in between republishes, which is harmless because the projector keeps only the
//! newest event per order (a redelivery never duplicates and never regresses a row).
//!
//! Two buses:
//! * **Embedded** (the single-binary default): publishing hands the events straight to this
//!   process's projector.
//! * **NATS JetStream** (`--events-url nats://...`), for several processes: events go to the
//!   stream (subject `<stream>.<tenant>`, de-duplicated by event id through `Nats-Msg-Id`), and a
//!   durable pull consumer shared by all processes projects them, acknowledging each only after
//!   the read model has it. While NATS is down, events wait in the outbox and the consumer
//!   reconnects; nothing is lost.

use std::time::Duration;

use futures::StreamExt;

use strata_store::orders::OrderEvent;
use strata_store::Store;

/// How often the relay looks at outboxes when nobody wakes it.
pub(crate) const POLL: Duration = Duration::from_millis(250);
const BATCH: usize = 500;

/// Where events go.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // one per process, cloned rarely
pub enum Bus {
    Embedded,
    Nats(NatsBus),
}

#[derive(Clone)]
pub struct NatsBus {
    js: async_nats::jetstream::Context,
    stream: String,
}

impl NatsBus {
    /// Connects (retrying in the background if the server is not up yet) and makes sure the
    /// stream exists.
    pub async fn connect(url: &str, stream: &str) -> Result<Self, String> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .map_err(|e| format!("cannot connect to NATS at {url}: {e}"))?;
        let js = async_nats::jetstream::new(client);
        let bus = Self { js, stream: stream.to_string() };
        Ok(bus)
    }

    async fn ensure_stream(&self) -> Result<async_nats::jetstream::stream::Stream, String> {
        self.js
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("{}.>", self.stream)],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("JetStream stream {}: {e}", self.stream))
    }

    async fn publish(&self, events: &[OrderEvent]) -> Result<(), String> {
        self.ensure_stream().await?;
        let mut acks = Vec::with_capacity(events.len());
        for e in events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", e.event_id.as_str());
            let subject = format!("{}.{}", self.stream, e.tenant);
            let payload = serde_json::to_vec(e).unwrap();
            let ack = self
                .js
                .publish_with_headers(subject, headers, payload.into())
                .await
                .map_err(|err| format!("publish: {err}"))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(|err| format!("publish ack: {err}"))?;
        }
        Ok(())
    }
}

/// Applies events to the read model and reports how far behind it is.
pub async fn project(
    store: &Store,
    tenant: &strata_domain::tenant::TenantId,
    events: Vec<OrderEvent>,
) -> strata_store::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    store.orders().project(tenant, events.clone()).await?;
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
pub async fn relay_once(store: &Store, bus: &Bus) -> strata_store::Result<usize> {
    let mut moved = 0;
    for t in store.tenants().list().await? {
        let Ok(tenant) = strata_domain::tenant::TenantId::parse(&t.id) else { continue };
        loop {
            let events = match store.orders().pending_events(&tenant, BATCH).await {
                Ok(e) => e,
                // A tenant created before orders existed has no outbox: nothing to relay.
                Err(_) => break,
            };
            if events.is_empty() {
                break;
            }
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            let n = events.len();
            match bus {
                Bus::Embedded => project(store, &tenant, events).await?,
                Bus::Nats(nats) => {
                    if let Err(e) = nats.publish(&events).await {
                        // Left in the outbox: the next pass retries.
                        metrics::counter!("strata_event_publish_failures_total").increment(1);
                        tracing::warn!(tenant = %tenant, error = %e, pending = n, "publishing order events failed; will retry");
                        return Ok(moved);
                    }
                }
            }
            store.orders().mark_published(&tenant, seqs).await?;
            metrics::counter!("strata_events_published_total").increment(n as u64);
            moved += n;
            if n < BATCH {
                break;
            }
        }
    }
    Ok(moved)
}

/// Consumes the stream with a durable consumer shared by every process, forever, reconnecting
/// after errors. Each message is acknowledged only once its event is in the read model.
pub(crate) async fn run_nats_projector(store: Store, nats: NatsBus, mut stop: crate::jobs::Stop) {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    while !stop.is_set() {
        let consume = async {
            let stream = nats.ensure_stream().await?;
            let consumer = stream
                .get_or_create_consumer(
                    "strata-projector",
                    pull::Config {
                        durable_name: Some("strata-projector".into()),
                        ack_policy: AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(10),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| format!("consumer: {e}"))?;
            let mut messages = consumer.messages().await.map_err(|e| format!("messages: {e}"))?;
            while let Some(msg) = messages.next().await {
                let msg = msg.map_err(|e| format!("message: {e}"))?;
                let Ok(event) = serde_json::from_slice::<OrderEvent>(&msg.payload) else {
                    // Not ours to understand: acknowledge so it does not loop forever.
                    let _ = msg.ack().await;
                    continue;
                };
                let Ok(tenant) = strata_domain::tenant::TenantId::parse(&event.tenant) else {
                    let _ = msg.ack().await;
                    continue;
                };
                match project(&store, &tenant, vec![event]).await {
                    Ok(()) => {
                        let _ = msg.ack().await;
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %tenant, error = %e, "projection failed; the event will be redelivered");
                        let _ =
                            msg.ack_with(async_nats::jetstream::AckKind::Nak(Some(Duration::from_millis(500)))).await;
                    }
                }
            }
            Ok::<(), String>(())
        };
        tokio::select! {
            result = consume => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "order projector lost the event stream; reconnecting");
                }
            }
            _ = stop.wait() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.wait() => {}
        }
    }
}
