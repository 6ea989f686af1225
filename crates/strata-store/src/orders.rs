//! The BTC order book of a tenant: write model, outbox, read model.
//!
//! Creating an order is one transaction that (1) claims the idempotency key, (2) raises the
//! book's running total with `UPDATE .. WHERE total + n <= cap`, which under row locking is
//! correct however many processes race, (3) inserts the order and (4) an outbox event. The
//! relay ([`crate::events`]) publishes outbox events to the event bus after commit; the projector
//! upserts them into the read model, ignoring anything older than what it already holds, so a
//! redelivered or reordered event never duplicates or regresses a row.

use serde::{Deserialize, Serialize};
use strata_domain::order::{Currency, FiatAmount, Order, Rate};

/// How a create ended, with the exact body to return (and to replay).
#[derive(Debug, Clone)]
pub enum CreateOutcome {
    Created {
        order: Order,
        body: String,
    },
    CapExceeded {
        body: String,
    },
    /// The key was used before: the original status and body.
    Replayed {
        status: u16,
        body: String,
    },
}

/// The event the write model emits for every new order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrderEvent {
    pub event_id: String,
    pub tenant: String,
    /// Position in the tenant's outbox: the projector keeps only the newest per order.
    pub seq: i64,
    pub order_id: String,
    pub created_at: i64,
    pub currency: String,
    pub amount_minor: i64,
    pub exchange_rate: String,
    pub btc_sats: i64,
    pub idempotency_key: String,
}

impl OrderEvent {
    pub fn to_order(&self) -> Option<Order> {
        let currency = Currency::parse(&self.currency).ok()?;
        Some(Order {
            id: self.order_id.clone(),
            created_at: self.created_at,
            amount: FiatAmount { currency, minor: self.amount_minor },
            rate: Rate::parse(&self.exchange_rate).ok()?,
            sats: self.btc_sats,
        })
    }
}

/// A page cursor over the read model: the last (created_at, id) shown.
pub fn encode_cursor(created_at: i64, id: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::json!({"t": created_at, "i": id}).to_string())
}

pub fn decode_cursor(s: &str) -> Option<(i64, String)> {
    use base64::Engine;
    if s.len() > 512 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let id = v.get("i")?.as_str()?;
    uuid::Uuid::parse_str(id).ok()?;
    Some((v.get("t")?.as_i64()?, id.to_string()))
}

pub(crate) fn row_to_order(
    id: String,
    created_at: i64,
    currency: &str,
    minor: i64,
    rate: &str,
    sats: i64,
) -> Option<Order> {
    Some(Order {
        id,
        created_at,
        amount: FiatAmount { currency: Currency::parse(currency).ok()?, minor },
        rate: Rate::parse(rate).ok()?,
        sats,
    })
}

pub(crate) const SQLITE_ORDER_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS _strata_order_book (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    total_sats INTEGER NOT NULL,
    cap_sats INTEGER NOT NULL,
    CHECK (total_sats <= cap_sats)
) STRICT;
INSERT OR IGNORE INTO _strata_order_book (id, total_sats, cap_sats) VALUES (1, 0, 10000000000);
CREATE TABLE IF NOT EXISTS _strata_orders (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    currency TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    exchange_rate TEXT NOT NULL,
    btc_sats INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE
) STRICT;
CREATE TABLE IF NOT EXISTS _strata_order_idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS _strata_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL,
    published_at INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS _strata_outbox_pending ON _strata_outbox (seq) WHERE published_at IS NULL;
CREATE TABLE IF NOT EXISTS _strata_orders_view (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    currency TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    exchange_rate TEXT NOT NULL,
    btc_sats INTEGER NOT NULL,
    seq INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS _strata_orders_view_newest ON _strata_orders_view (created_at DESC, id DESC);
";

pub(crate) fn pg_order_schema(schema: &str) -> String {
    format!(
        "
CREATE TABLE IF NOT EXISTS {schema}._strata_order_book (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    total_sats BIGINT NOT NULL,
    cap_sats BIGINT NOT NULL,
    CHECK (total_sats <= cap_sats)
);
INSERT INTO {schema}._strata_order_book (id, total_sats, cap_sats) VALUES (1, 0, 10000000000) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS {schema}._strata_orders (
    id UUID PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    exchange_rate NUMERIC NOT NULL,
    btc_sats BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS {schema}._strata_order_idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status INTEGER,
    response TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}._strata_outbox (
    seq BIGSERIAL PRIMARY KEY,
    event TEXT NOT NULL,
    published_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS _strata_outbox_pending ON {schema}._strata_outbox (seq) WHERE published_at IS NULL;
CREATE TABLE IF NOT EXISTS {schema}._strata_orders_view (
    id UUID PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    exchange_rate NUMERIC NOT NULL,
    btc_sats BIGINT NOT NULL,
    seq BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS _strata_orders_view_newest ON {schema}._strata_orders_view (created_at DESC, id DESC);
"
    )
}

/// Why a create failed before anything was stored.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Store(#[from] crate::StoreError),
    #[error(transparent)]
    Rate(#[from] crate::rates::RateError),
}

/// Creating orders: idempotency first, then the price, then one transaction.
pub struct OrderService {
    pub store: crate::Store,
    pub rates: crate::rates::RateProvider,
    /// Wakes the outbox relay so the read model follows within milliseconds.
    pub wake: std::sync::Arc<tokio::sync::Notify>,
}

impl OrderService {
    pub async fn create(
        &self,
        tenant: &strata_domain::tenant::TenantId,
        key: &str,
        amount: FiatAmount,
    ) -> Result<CreateOutcome, OrderError> {
        use sha2::Digest;
        // The request's meaning, not its bytes: "100" and "100.00" USD are the same order.
        let fingerprint =
            format!("{:x}", sha2::Sha256::digest(format!("{}|{}", amount.currency.code(), amount.minor).as_bytes()));
        tracing::info!(tenant = %tenant, idempotency_key = %key, currency = %amount.currency,
            amount = %amount.to_decimal_string(), event = "order.received", "order received");
        // A replay is answered from the stored response: no price lookup, no cap check.
        if let Some((fp, status, body)) = self.store.order_idempotency(tenant, key).await? {
            if fp != fingerprint {
                metrics::counter!("strata_orders_refused_total", "reason" => "idempotency_key_reused").increment(1);
                tracing::info!(tenant = %tenant, idempotency_key = %key, event = "order.refused", reason = "idempotency_key_reused", "order refused");
                return Err(crate::StoreError::IdempotencyKeyReused.into());
            }
            tracing::info!(tenant = %tenant, idempotency_key = %key, status, event = "order.replayed", "order replayed");
            return Ok(CreateOutcome::Replayed { status, body });
        }
        let rate = match self.rates.spot(amount.currency).await {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!("strata_orders_refused_total", "reason" => "rate_unavailable").increment(1);
                tracing::warn!(tenant = %tenant, idempotency_key = %key, error = %e, event = "order.refused", reason = "rate_unavailable", "order refused");
                return Err(e.into());
            }
        };
        tracing::info!(tenant = %tenant, idempotency_key = %key, currency = %amount.currency, rate = %rate, event = "order.rate_fetched", "rate fetched");
        let requested = strata_domain::order::btc_sats(amount, rate);
        let order = Order {
            id: uuid::Uuid::now_v7().to_string(),
            created_at: chrono::Utc::now().timestamp_micros(),
            amount,
            rate,
            // An order that does not fit in an i64 of satoshis is over any cap: the store
            // refuses it by `requested`, and this placeholder is never stored.
            sats: i64::try_from(requested).unwrap_or(i64::MAX),
        };
        let outcome = self.store.create_order(tenant, key, &fingerprint, order, requested).await?;
        match &outcome {
            CreateOutcome::Created { order, .. } => {
                metrics::counter!("strata_orders_created_total").increment(1);
                tracing::info!(tenant = %tenant, order_id = %order.id, idempotency_key = %key,
                    btc_amount = %strata_domain::order::format_btc(order.sats), event = "order.created", "order created");
                self.wake.notify_one();
            }
            CreateOutcome::CapExceeded { .. } => {
                metrics::counter!("strata_orders_refused_total", "reason" => "btc_cap_exceeded").increment(1);
                tracing::info!(tenant = %tenant, idempotency_key = %key, event = "order.refused", reason = "btc_cap_exceeded", "order refused");
            }
            CreateOutcome::Replayed { status, .. } => {
                tracing::info!(tenant = %tenant, idempotency_key = %key, status, event = "order.replayed", "order replayed");
            }
        }
        Ok(outcome)
    }
}
