//! The order tables on SQLite (tenant migration 1).

pub(crate) const SCHEMA_V1: &str = "
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

/// Tenant migration 2: an order's idempotency key is claimed before its outcome is known (as
/// on PostgreSQL, so both run the same create), so status and response may be empty until the
/// transaction that claimed it commits. SQLite cannot drop NOT NULL in place: rebuild.
pub(crate) const SCHEMA_V2: &str = "
CREATE TABLE _strata_order_idempotency_v2 (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status INTEGER,
    response TEXT,
    created_at INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER))
) STRICT;
INSERT INTO _strata_order_idempotency_v2 (key, fingerprint, status, response, created_at)
    SELECT key, fingerprint, status, response, created_at FROM _strata_order_idempotency;
DROP TABLE _strata_order_idempotency;
ALTER TABLE _strata_order_idempotency_v2 RENAME TO _strata_order_idempotency;
";
