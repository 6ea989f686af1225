//! Runs checked queries on PostgreSQL: a `READ ONLY` transaction whose `search_path` is only the
//! tenant's schema, a `statement_timeout`, and a portal read in batches so memory stays bounded
//! whatever the result size.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use strata_domain::tenant::TenantId;
use tokio::sync::mpsc;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

use super::guard::Checked;
use super::{
    date_micros, Batch, Canceller, ColKind, ColumnBuilder, ColumnDesc, ColumnValues, Event, QueryError, QueryOptions,
    RunningQuery, CANCELLED, DONE, RUNNING,
};
use crate::postgres::{schema_of, PgStore};
use crate::slots::TenantPermit;

fn kind_of(t: &Type) -> Option<ColKind> {
    Some(match *t {
        Type::INT2 | Type::INT4 | Type::INT8 => ColKind::Long,
        Type::FLOAT4 | Type::FLOAT8 => ColKind::Double,
        Type::NUMERIC => ColKind::Decimal,
        Type::BOOL => ColKind::Boolean,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => ColKind::String,
        Type::DATE => ColKind::Date,
        Type::TIMESTAMPTZ | Type::TIMESTAMP => ColKind::DateTime,
        _ => return None,
    })
}

fn db_error(e: tokio_postgres::Error, c: &Canceller, opts: &QueryOptions) -> QueryError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &tokio_postgres::error::SqlState::QUERY_CANCELED {
            return c.error(opts.timeout).unwrap_or(QueryError::TimedOut(opts.timeout));
        }
        if db.code() == &tokio_postgres::error::SqlState::PROGRAM_LIMIT_EXCEEDED
            && db.message().starts_with("a result row of")
        {
            return QueryError::ResourceExhausted(format!("{}; select fewer or shorter values", db.message()));
        }
        if db.code() == &tokio_postgres::error::SqlState::OUT_OF_MEMORY {
            return QueryError::ResourceExhausted("the query ran out of memory on the database".into());
        }
        if db.code() == &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE
            || db.code() == &tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION
        {
            return QueryError::Rejected("the query tries to do more than read your datasets".into());
        }
        return QueryError::Failed(db.message().to_string());
    }
    QueryError::Storage(e.to_string())
}

pub(super) async fn start(
    p: &PgStore,
    tenant: &TenantId,
    q: Checked,
    opts: QueryOptions,
    slot: TenantPermit,
) -> Result<RunningQuery, QueryError> {
    start_in(p.data_pool(), schema_of(tenant), q, opts, Some(slot)).await
}

/// `schema` must already be a quoted identifier. The executor task holds `slot` and the
/// connection until it ends.
pub(super) async fn start_in(
    pool: &deadpool_postgres::Pool,
    schema: String,
    q: Checked,
    opts: QueryOptions,
    slot: Option<TenantPermit>,
) -> Result<RunningQuery, QueryError> {
    let client = pool.get().await.map_err(|e| QueryError::Storage(e.to_string()))?;
    let canceller = Canceller::new(Some(client.cancel_token()));
    let (tx, rx) = mpsc::channel(2);
    let c = canceller.clone();
    let watchdog = canceller.watchdog(opts.timeout);
    tokio::spawn(async move {
        let _slot = slot;
        let _watchdog = watchdog;
        let mut client = client;
        let result = run(&mut client, &schema, &q, opts, &c, &tx).await;
        let clean = c
            .state
            .compare_exchange(RUNNING, DONE, std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst)
            .is_ok();
        if let Err(e) = result {
            // Best effort: a reader that stopped reading learns the reason from the canceller.
            let _ = tx.try_send(Event::Error(c.error(opts.timeout).unwrap_or(e)));
        }
        if !clean {
            // A cancel request may still be on its way to this backend: never hand the
            // connection to another query, which it could cancel.
            let _ = deadpool_postgres::Object::take(client);
        }
    });
    Ok(RunningQuery::new(rx, canceller, opts.timeout))
}

async fn run(
    client: &mut deadpool_postgres::Object,
    schema: &str,
    q: &Checked,
    opts: QueryOptions,
    c: &Canceller,
    tx: &mpsc::Sender<Event>,
) -> Result<(), QueryError> {
    let sql = &q.sql;
    let e = |err| db_error(err, c, &opts);
    let t = client.build_transaction().read_only(true).start().await.map_err(e)?;
    t.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}; SET LOCAL search_path TO {schema}",
        opts.timeout.as_millis().max(1)
    ))
    .await
    .map_err(e)?;
    // Every row is measured by the database before it is sent (the function raises past the
    // limit), so a `rpad(x, 100000000, 'y')` fails there instead of arriving here. A plain
    // subquery scan keeps the inner query's order.
    let wrapped = format!(
        "SELECT * FROM ({sql}) AS _strata_q WHERE CASE WHEN pg_catalog.pg_column_size(_strata_q.*) > {max} \
         THEN strata_control.row_too_big(pg_catalog.pg_column_size(_strata_q.*), {max}) ELSE true END",
        max = opts.max_row_bytes()
    );
    let stmt = t.prepare(&wrapped).await.map_err(e)?;
    let mut columns = Vec::new();
    for (i, col) in stmt.columns().iter().enumerate() {
        let kind = kind_of(col.type_()).ok_or_else(|| {
            QueryError::Unsupported(format!(
                "column `{}` has PostgreSQL type `{}`; CAST it to text, a number, a date or a timestamp",
                col.name(),
                col.type_()
            ))
        })?;
        // The type the query gives the column (super::types) wins where PostgreSQL's differs
        // only in representation: `numeric` from SUM/AVG of integers becomes LONG/DOUBLE, as
        // on SQLite. Other types are PostgreSQL's own.
        let kind = match q.kinds.get(i).copied().flatten() {
            Some(t @ (ColKind::Long | ColKind::Double)) if *col.type_() == Type::NUMERIC => t,
            _ => kind,
        };
        columns.push((ColumnDesc { name: col.name().to_string(), kind }, col.type_().clone()));
    }
    if c.send(tx, Event::Schema(columns.iter().map(|(d, _)| d.clone()).collect())).await.is_err() {
        return c.error(opts.timeout).map_or(Ok(()), Err);
    }
    let portal = t.bind(&stmt, &[]).await.map_err(e)?;
    let batch = opts.batch_rows.clamp(1, i32::MAX as usize);
    let max_bytes = opts.batch_bytes();
    // Rows are read as they arrive (the connection reads no further ahead than we do), and a
    // batch is cut by bytes as well as by rows, so wide rows never pile up here.
    let mut pending: Vec<Row> = Vec::new();
    let mut bytes = 0usize;
    loop {
        if c.stopped().is_some() {
            return Err(c.error(opts.timeout).unwrap_or(QueryError::Cancelled));
        }
        let stream = t.query_portal_raw(&portal, batch as i32).await.map_err(e)?;
        let mut stream = std::pin::pin!(stream);
        let mut fetched = 0usize;
        while let Some(row) = futures::StreamExt::next(&mut stream).await {
            let row = row.map_err(e)?;
            fetched += 1;
            bytes += row_bytes(&row);
            pending.push(row);
            if bytes >= max_bytes && fetched < batch {
                let b = to_batch(&std::mem::take(&mut pending), &columns)?;
                bytes = 0;
                if c.send(tx, Event::Batch(b, false)).await.is_err() {
                    return c.error(opts.timeout).map_or(Ok(()), Err);
                }
            }
        }
        let last = fetched < batch;
        if !pending.is_empty() || last {
            let b = to_batch(&std::mem::take(&mut pending), &columns)?;
            bytes = 0;
            if c.send(tx, Event::Batch(b, last)).await.is_err() {
                return c.error(opts.timeout).map_or(Ok(()), Err);
            }
        }
        if last {
            break;
        }
    }
    t.commit().await.map_err(e)?;
    Ok(())
}

/// What a row costs in a batch: the bytes of its values (as received), plus a word a value.
fn row_bytes(r: &Row) -> usize {
    (0..r.len()).map(|i| r.try_get::<_, Option<RawLen>>(i).ok().flatten().map_or(8, |l| l.0 + 8)).sum()
}

/// The length of a value on the wire, whatever its type.
struct RawLen(usize);

impl<'a> tokio_postgres::types::FromSql<'a> for RawLen {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawLen(raw.len()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn to_batch(rows: &[Row], columns: &[(ColumnDesc, Type)]) -> Result<Batch, QueryError> {
    let mut out = Vec::with_capacity(columns.len());
    for (i, (desc, ty)) in columns.iter().enumerate() {
        let mut b = ColumnBuilder::new(desc.kind, rows.len());
        for r in rows {
            let bad = |err: tokio_postgres::Error| QueryError::Failed(format!("column `{}`: {err}", desc.name));
            macro_rules! put {
                ($t:ty, $vec:ident, $conv:expr) => {{
                    match r.try_get::<_, Option<$t>>(i).map_err(bad)? {
                        None => b.push_null(),
                        Some(v) => {
                            if let ColumnValues::$vec(out) = &mut b.values {
                                #[allow(clippy::redundant_closure_call)]
                                out.push(($conv)(v));
                            }
                            b.nulls.push(false);
                        }
                    }
                }};
            }
            match *ty {
                Type::INT2 => put!(i16, Long, i64::from),
                Type::INT4 => put!(i32, Long, i64::from),
                Type::INT8 => put!(i64, Long, |v| v),
                Type::FLOAT4 => put!(f32, Double, f64::from),
                Type::FLOAT8 => put!(f64, Double, |v| v),
                Type::BOOL => put!(bool, Boolean, |v| v),
                Type::DATE => put!(NaiveDate, Micros, date_micros),
                Type::TIMESTAMPTZ => put!(DateTime<Utc>, Micros, |v: DateTime<Utc>| v.timestamp_micros()),
                Type::TIMESTAMP => put!(NaiveDateTime, Micros, |v: NaiveDateTime| v.and_utc().timestamp_micros()),
                Type::NUMERIC => match (r.try_get::<_, Option<Decimal>>(i).map_err(bad)?, &mut b.values) {
                    (None, _) => b.push_null(),
                    (Some(d), ColumnValues::Long(out)) => {
                        let v = d.normalize();
                        let whole = if v.scale() == 0 { i64::try_from(v.mantissa()).ok() } else { None };
                        out.push(whole.ok_or_else(|| {
                            QueryError::Failed(format!(
                                "column `{}`: {d} is not a 64-bit integer; CAST it to numeric or double",
                                desc.name
                            ))
                        })?);
                        b.nulls.push(false);
                    }
                    (Some(d), ColumnValues::Double(out)) => {
                        out.push(rust_decimal::prelude::ToPrimitive::to_f64(&d).unwrap_or(f64::NAN));
                        b.nulls.push(false);
                    }
                    (Some(d), _) => b.push_decimal(d),
                },
                _ => put!(String, Text, |v| v),
            }
        }
        out.push(b.finish());
    }
    Ok(Batch { rows: rows.len(), columns: out })
}

pub(super) async fn explain(p: &PgStore, tenant: &TenantId, sql: String) -> Result<String, QueryError> {
    let mut client = p.data_pool().get().await.map_err(|e| QueryError::Storage(e.to_string()))?;
    let c = Canceller::new(None);
    let opts = QueryOptions::default();
    let e = |err| db_error(err, &c, &opts);
    let t = client.build_transaction().read_only(true).start().await.map_err(e)?;
    t.batch_execute(&format!("SET LOCAL statement_timeout = 10000; SET LOCAL search_path TO {}", schema_of(tenant)))
        .await
        .map_err(e)?;
    let rows = t.query(&format!("EXPLAIN {sql}"), &[]).await.map_err(e)?;
    let mut out = String::new();
    for r in rows {
        out.push_str(&r.get::<_, String>(0));
        out.push('\n');
    }
    let _ = CANCELLED;
    Ok(out)
}
