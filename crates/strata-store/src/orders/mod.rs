//! The BTC order book of a tenant: write model, outbox, read model.
//!
//! Creating an order is one transaction that (1) claims the idempotency key, (2) raises the
//! book's running total with `UPDATE .. WHERE total + n <= cap`, which under row locking is
//! correct however many processes race, (3) inserts the order and (4) an outbox event. The
//! relay ([`crate::events`]) publishes outbox events to the event bus after commit; the projector
//! upserts them into the read model, ignoring anything older than what it already holds, so a
//! redelivered or reordered event never duplicates or regresses a row.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use serde::{Deserialize, Serialize};
use strata_domain::order::{Currency, FiatAmount, Order, Rate};
use strata_domain::tenant::TenantId;

use crate::db::{placeholders, DbRow, Tx, P};
use crate::{Result, Store, StoreError};

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

pub fn decode_cursor(s: &str) -> Option<Cursor> {
    use base64::Engine;
    if s.len() > 512 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let id = v.get("i")?.as_str()?;
    uuid::Uuid::parse_str(id).ok()?;
    Some(Cursor { created_at: v.get("t")?.as_i64()?, id: id.to_string() })
}

fn row_to_order(id: String, created_at: i64, currency: &str, minor: i64, rate: &str, sats: i64) -> Option<Order> {
    Some(Order {
        id,
        created_at,
        amount: FiatAmount { currency: Currency::parse(currency).ok()?, minor },
        rate: Rate::parse(rate).ok()?,
        sats,
    })
}

/// A tenant's orders, through [`Store::orders`]. Each method is one transaction; the
/// functions below it take a [`Tx`], so a caller can join them to its own transaction.
pub struct Orders<'s> {
    store: &'s Store,
}

impl Store {
    pub fn orders(&self) -> Orders<'_> {
        Orders { store: self }
    }
}

impl Orders<'_> {
    /// The stored answer to an order idempotency key, if any: lets a replay skip the rate call.
    pub async fn idempotency(&self, t: &TenantId, key: &str) -> Result<Option<StoredAnswer>> {
        let key = key.to_string();
        self.store.tenant_read(t, async move |c| idempotency(c, &key).await).await
    }

    /// Creates an order of `requested` satoshis (exact; `order.sats` is its `i64` form, used
    /// only when it fits under the cap), or records its refusal, under the idempotency key.
    pub async fn create(
        &self,
        t: &TenantId,
        key: &str,
        fingerprint: &str,
        order: Order,
        requested: i128,
    ) -> Result<CreateOutcome> {
        let (tenant, key, fp) = (t.clone(), key.to_string(), fingerprint.to_string());
        self.store.tenant_write(t, async move |c| create(c, &tenant, &key, &fp, order, requested).await).await
    }

    pub async fn get(&self, t: &TenantId, id: &str) -> Result<Option<Order>> {
        let id = id.to_string();
        self.store.tenant_read(t, async move |c| get(c, &id).await).await
    }

    /// Newest first from the read model, strictly older than `before`.
    pub async fn list(&self, t: &TenantId, before: Option<Cursor>, limit: usize) -> Result<Vec<Order>> {
        self.store.tenant_read(t, async move |c| list(c, before, limit).await).await
    }

    pub async fn pending_events(&self, t: &TenantId, limit: usize) -> Result<Vec<OrderEvent>> {
        self.store.tenant_read(t, async move |c| pending_events(c, limit).await).await
    }

    pub async fn mark_published(&self, t: &TenantId, seqs: Vec<i64>) -> Result<()> {
        self.store.tenant_write(t, async move |c| mark_published(c, &seqs).await).await
    }

    /// Applies events to the read model; idempotent and order-safe per order.
    pub async fn project(&self, t: &TenantId, events: Vec<OrderEvent>) -> Result<()> {
        self.store.tenant_write(t, async move |c| project(c, &events).await).await
    }

    /// Rebuilds the read model from the write model; the number of orders.
    pub async fn rebuild_read_model(&self, t: &TenantId) -> Result<u64> {
        let n = self.store.tenant_write(t, async move |c| rebuild(c).await).await?;
        tracing::info!(tenant = %t, orders = n, "order read model rebuilt");
        Ok(n)
    }

    pub async fn book(&self, t: &TenantId) -> Result<Book> {
        self.store.tenant_read(t, async move |c| book(c).await).await
    }

    pub async fn set_cap(&self, t: &TenantId, cap_sats: i64) -> Result<()> {
        self.store.tenant_write(t, async move |c| set_cap(c, cap_sats).await).await
    }
}

/// What an idempotency key answered the first time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
}

/// The order book: BTC held and the cap, in satoshis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Book {
    pub total_sats: i64,
    pub cap_sats: i64,
}

/// A position in the read model: the last (created_at in microseconds, id) shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: String,
}

const ORDER_COLUMNS: &str = "id, created_at, currency, amount_minor, exchange_rate, btc_sats";

fn order_of(r: &DbRow) -> Result<Option<Order>> {
    Ok(row_to_order(r.text(0)?, r.micros(1)?, &r.text(2)?, r.int(3)?, &r.numeric_text(4)?, r.int(5)?))
}

pub(crate) async fn idempotency(c: &mut Tx<'_>, key: &str) -> Result<Option<StoredAnswer>> {
    let sql = format!(
        "SELECT fingerprint, status, response FROM {} WHERE key = $1 AND status IS NOT NULL",
        c.t("_strata_order_idempotency")
    );
    let Some(r) = c.query_opt(&sql, &[key.into()]).await? else { return Ok(None) };
    Ok(Some(StoredAnswer { fingerprint: r.text(0)?, status: r.int(1)? as u16, body: r.text(2)? }))
}

/// Records a cap refusal under the claimed idempotency key; returns its body.
async fn refuse(c: &mut Tx<'_>, key: &str, requested: i128) -> Result<String> {
    let book = book(c).await?;
    let body =
        strata_domain::order::cap_exceeded_json(book.cap_sats - book.total_sats, book.cap_sats, requested).to_string();
    let sql = format!("UPDATE {} SET status = 409, response = $2 WHERE key = $1", c.t("_strata_order_idempotency"));
    c.execute(&sql, &[key.into(), body.clone().into()]).await?;
    Ok(body)
}

pub(crate) async fn create(
    c: &mut Tx<'_>,
    tenant: &TenantId,
    key: &str,
    fp: &str,
    order: Order,
    requested: i128,
) -> Result<CreateOutcome> {
    let idem = c.t("_strata_order_idempotency");
    // Racing duplicates queue here on the key's unique index until the first commits (on
    // SQLite the write transaction already serialises them).
    let claim = format!("INSERT INTO {idem} (key, fingerprint) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING");
    if c.execute(&claim, &[key.into(), fp.into()]).await? == 0 {
        let sql = format!("SELECT fingerprint, status, response FROM {idem} WHERE key = $1");
        let r = c.query_one(&sql, &[key.into()]).await?;
        if r.text(0)? != fp {
            return Err(StoreError::IdempotencyKeyReused);
        }
        return match (r.opt_int(1)?, r.opt_text(2)?) {
            (Some(s), Some(body)) => Ok(CreateOutcome::Replayed { status: s as u16, body }),
            _ => Err(StoreError::Database(anyhow::anyhow!("idempotency record without a response"))),
        };
    }
    if requested > i64::MAX as i128 {
        // Beyond any cap: refuse without touching the book (its arithmetic is 64-bit).
        let body = refuse(c, key, requested).await?;
        return Ok(CreateOutcome::CapExceeded { body });
    }
    // Everything but the book first, under a savepoint: the book's single row is the one lock
    // every create of the tenant queues on (PostgreSQL), so it is taken last and held only for
    // the commit. A refusal rolls the order back to the savepoint.
    c.batch("SAVEPOINT before_book").await?;
    let sql = format!(
        "INSERT INTO {} ({ORDER_COLUMNS}, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        c.t("_strata_orders")
    );
    let params = [
        P::Uuid(order.id.clone()),
        P::Micros(order.created_at),
        order.amount.currency.code().into(),
        P::Int(order.amount.minor),
        P::Numeric(order.rate.to_string()),
        P::Int(order.sats),
        key.into(),
    ];
    c.execute(&sql, &params).await?;
    let event = OrderEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.to_string(),
        seq: 0,
        order_id: order.id.clone(),
        created_at: order.created_at,
        currency: order.amount.currency.code().into(),
        amount_minor: order.amount.minor,
        exchange_rate: order.rate.to_string(),
        btc_sats: order.sats,
        idempotency_key: key.to_string(),
    };
    let sql = format!("INSERT INTO {} (event) VALUES ($1)", c.t("_strata_outbox"));
    c.execute(&sql, &[serde_json::to_string(&event).expect("an event serialises").into()]).await?;
    let body = order.to_json().to_string();
    let sql = format!("UPDATE {idem} SET status = 201, response = $2 WHERE key = $1");
    c.execute(&sql, &[key.into(), body.clone().into()]).await?;
    // `total <= cap - n` rather than `total + n <= cap`: no overflow near i64::MAX.
    let sql = format!(
        "UPDATE {} SET total_sats = total_sats + $1 WHERE id = 1 AND total_sats <= cap_sats - $1 RETURNING total_sats",
        c.t("_strata_order_book")
    );
    if c.query_opt(&sql, &[P::Int(order.sats)]).await?.is_none() {
        c.batch("ROLLBACK TO SAVEPOINT before_book").await?;
        let body = refuse(c, key, requested).await?;
        return Ok(CreateOutcome::CapExceeded { body });
    }
    Ok(CreateOutcome::Created { order, body })
}

pub(crate) async fn get(c: &mut Tx<'_>, id: &str) -> Result<Option<Order>> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Ok(None);
    }
    let sql = format!("SELECT {ORDER_COLUMNS} FROM {} WHERE id = $1", c.t("_strata_orders"));
    match c.query_opt(&sql, &[P::Uuid(id.to_string())]).await? {
        Some(r) => order_of(&r),
        None => Ok(None),
    }
}

pub(crate) async fn list(c: &mut Tx<'_>, before: Option<Cursor>, limit: usize) -> Result<Vec<Order>> {
    let view = c.t("_strata_orders_view");
    let rows = match before {
        Some(Cursor { created_at, id }) => {
            uuid::Uuid::parse_str(&id).map_err(|e| StoreError::Database(e.into()))?;
            let sql = format!(
                "SELECT {ORDER_COLUMNS} FROM {view} WHERE (created_at, id) < ($1, $2) ORDER BY created_at DESC, id DESC LIMIT $3"
            );
            c.query(&sql, &[P::Micros(created_at), P::Uuid(id), P::Int(limit as i64)]).await?
        }
        None => {
            let sql = format!("SELECT {ORDER_COLUMNS} FROM {view} ORDER BY created_at DESC, id DESC LIMIT $1");
            c.query(&sql, &[P::Int(limit as i64)]).await?
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.extend(order_of(r)?);
    }
    Ok(out)
}

pub(crate) async fn pending_events(c: &mut Tx<'_>, limit: usize) -> Result<Vec<OrderEvent>> {
    let sql =
        format!("SELECT seq, event FROM {} WHERE published_at IS NULL ORDER BY seq LIMIT $1", c.t("_strata_outbox"));
    let mut out = Vec::new();
    for r in c.query(&sql, &[P::Int(limit as i64)]).await? {
        if let Ok(mut e) = serde_json::from_str::<OrderEvent>(&r.text(1)?) {
            e.seq = r.int(0)?;
            out.push(e);
        }
    }
    Ok(out)
}

pub(crate) async fn mark_published(c: &mut Tx<'_>, seqs: &[i64]) -> Result<()> {
    let now = chrono::Utc::now().timestamp_micros();
    // Bounded statements: SQLite allows at most 32,766 parameters.
    for chunk in seqs.chunks(500) {
        let sql = format!(
            "UPDATE {} SET published_at = $1 WHERE seq IN ({})",
            c.t("_strata_outbox"),
            placeholders(1, chunk.len())
        );
        let mut params = vec![P::Micros(now)];
        params.extend(chunk.iter().map(|s| P::Int(*s)));
        c.execute(&sql, &params).await?;
    }
    Ok(())
}

pub(crate) async fn project(c: &mut Tx<'_>, events: &[OrderEvent]) -> Result<()> {
    let sql = format!(
        "INSERT INTO {} AS v ({ORDER_COLUMNS}, seq) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, currency = excluded.currency,
           amount_minor = excluded.amount_minor, exchange_rate = excluded.exchange_rate,
           btc_sats = excluded.btc_sats, seq = excluded.seq
         WHERE excluded.seq > v.seq",
        c.t("_strata_orders_view")
    );
    for e in events {
        let params = [
            P::Uuid(e.order_id.clone()),
            P::Micros(e.created_at),
            e.currency.as_str().into(),
            P::Int(e.amount_minor),
            P::Numeric(e.exchange_rate.clone()),
            P::Int(e.btc_sats),
            P::Int(e.seq),
        ];
        c.execute(&sql, &params).await?;
    }
    Ok(())
}

pub(crate) async fn rebuild(c: &mut Tx<'_>) -> Result<u64> {
    let view = c.t("_strata_orders_view");
    c.execute(&format!("DELETE FROM {view}"), &[]).await?;
    let sql =
        format!("INSERT INTO {view} ({ORDER_COLUMNS}, seq) SELECT {ORDER_COLUMNS}, 0 FROM {}", c.t("_strata_orders"));
    c.execute(&sql, &[]).await
}

pub(crate) async fn book(c: &mut Tx<'_>) -> Result<Book> {
    let sql = format!("SELECT total_sats, cap_sats FROM {} WHERE id = 1", c.t("_strata_order_book"));
    let r = c.query_one(&sql, &[]).await?;
    Ok(Book { total_sats: r.int(0)?, cap_sats: r.int(1)? })
}

pub(crate) async fn set_cap(c: &mut Tx<'_>, cap: i64) -> Result<()> {
    let sql = format!("UPDATE {} SET cap_sats = $1 WHERE id = 1 AND total_sats <= $1", c.t("_strata_order_book"));
    if c.execute(&sql, &[P::Int(cap)]).await? == 0 {
        return Err(StoreError::CapBelowTotal);
    }
    Ok(())
}
