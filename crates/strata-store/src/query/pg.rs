//! Runs checked queries on PostgreSQL: a `READ ONLY` transaction whose `search_path` is only the
//! tenant's schema, a `statement_timeout`, and a portal read in batches so memory stays bounded
//! whatever the result size.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use strata_domain::tenant::TenantId;
use tokio::sync::mpsc;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

use super::{
    date_micros, Batch, Canceller, ColKind, ColumnBuilder, ColumnDesc, ColumnValues, Event, QueryError, QueryOptions,
    RunningQuery, CANCELLED, DONE, RUNNING,
};
use crate::postgres::{schema_of, PgStore};


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
    sql: String,
    opts: QueryOptions,
) -> Result<RunningQuery, QueryError> {
    start_in(p, schema_of(tenant), sql, opts).await
}

/// `schema` must already be a quoted identifier.
pub(super) async fn start_in(p: &PgStore, schema: String, sql: String, opts: QueryOptions) -> Result<RunningQuery, QueryError> {
    let client = p.pool().get().await.map_err(|e| QueryError::Storage(e.to_string()))?;
    let canceller = Canceller::new(Some(client.cancel_token()));
    let (tx, rx) = mpsc::channel(2);
    let c = canceller.clone();
    tokio::spawn(async move {
        let mut client = client;
        let result = run(&mut client, &schema, &sql, opts, &c, &tx).await;
        let clean = c.state.compare_exchange(RUNNING, DONE, std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst).is_ok();
        if let Err(e) = result {
            let _ = tx.send(Event::Error(e)).await;
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
    sql: &str,
    opts: QueryOptions,
    c: &Canceller,
    tx: &mpsc::Sender<Event>,
) -> Result<(), QueryError> {
    let e = |err| db_error(err, c, &opts);
    let t = client.build_transaction().read_only(true).start().await.map_err(e)?;
    t.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}; SET LOCAL search_path TO {schema}",
        opts.timeout.as_millis().max(1)
    ))
    .await
    .map_err(e)?;
    let stmt = t.prepare(sql).await.map_err(e)?;
    let mut columns = Vec::new();
    for col in stmt.columns() {
        let kind = kind_of(col.type_()).ok_or_else(|| {
            QueryError::Unsupported(format!(
                "column `{}` has PostgreSQL type `{}`; CAST it to text, a number, a date or a timestamp",
                col.name(),
                col.type_()
            ))
        })?;
        columns.push((ColumnDesc { name: col.name().to_string(), kind }, col.type_().clone()));
    }
    if tx.send(Event::Schema(columns.iter().map(|(d, _)| d.clone()).collect())).await.is_err() {
        return Ok(());
    }
    let portal = t.bind(&stmt, &[]).await.map_err(e)?;
    let batch = opts.batch_rows.clamp(1, i32::MAX as usize);
    loop {
        if c.stopped().is_some() {
            return Err(c.error(opts.timeout).unwrap_or(QueryError::Cancelled));
        }
        let rows = t.query_portal(&portal, batch as i32).await.map_err(e)?;
        let n = rows.len();
        if n > 0 {
            let b = to_batch(&rows, &columns)?;
            if tx.send(Event::Batch(b, n < batch)).await.is_err() {
                return Ok(());
            }
        }
        if n < batch {
            break;
        }
    }
    t.commit().await.map_err(e)?;
    Ok(())
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
                Type::NUMERIC => match r.try_get::<_, Option<Decimal>>(i).map_err(bad)? {
                    None => b.push_null(),
                    Some(d) => b.push_decimal(d),
                },
                _ => put!(String, Text, |v| v),
            }
        }
        out.push(b.finish());
    }
    Ok(Batch { rows: rows.len(), columns: out })
}

pub(super) async fn explain(p: &PgStore, tenant: &TenantId, sql: String) -> Result<String, QueryError> {
    let mut client = p.pool().get().await.map_err(|e| QueryError::Storage(e.to_string()))?;
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
