//! Creating BTC buy orders: idempotency first, then the price from the rate source, then one
//! transaction in the store ([`strata_store::orders`]), then a wake-up for the outbox relay.

use strata_domain::order::{FiatAmount, Order};
use strata_store::orders::{CreateOutcome, StoredAnswer};

/// Why a create failed before anything was stored.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Store(#[from] strata_store::StoreError),
    #[error(transparent)]
    Rate(#[from] crate::ports::rates::RateError),
}

impl strata_domain::error::Coded for OrderError {
    fn code(&self) -> strata_domain::ErrorCode {
        match self {
            OrderError::Store(e) => e.code(),
            OrderError::Rate(e) => e.code(),
        }
    }
}

/// Creating orders: idempotency first, then the price, then one transaction.
pub struct OrderService {
    pub store: strata_store::Store,
    pub rates: crate::ports::rates::RateProvider,
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
        if let Some(StoredAnswer { fingerprint: fp, status, body }) =
            self.store.orders().idempotency(tenant, key).await?
        {
            if fp != fingerprint {
                metrics::counter!("strata_orders_refused_total", "reason" => "idempotency_key_reused").increment(1);
                tracing::info!(tenant = %tenant, idempotency_key = %key, event = "order.refused", reason = "idempotency_key_reused", "order refused");
                return Err(strata_store::StoreError::IdempotencyKeyReused.into());
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
        let outcome = self.store.orders().create(tenant, key, &fingerprint, order, requested).await?;
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
