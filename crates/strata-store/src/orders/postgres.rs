//! The order tables on PostgreSQL (tenant migration 1).

pub(crate) fn schema_v1(schema: &str) -> String {
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

/// Tenant migration 2 changes nothing here: on PostgreSQL idempotency keys (orders and batches) were always
/// claimed before its outcome was known (see `sqlite::SCHEMA_V2`). It exists so both backends
/// report the same version.
pub(crate) fn schema_v2(_schema: &str) -> String {
    "SELECT 1;".to_string()
}
