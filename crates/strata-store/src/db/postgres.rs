//! PostgreSQL under [`super::Tx`]: binding [`P`] to PostgreSQL types and reading rows back.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use deadpool_postgres::Pool;
use rust_decimal::Decimal;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::Row;

use strata_domain::value::Value;

use super::{DbRow, DbVal, Tx, P};
use crate::{Result, StoreError};

enum Client<'a> {
    Plain(&'a tokio_postgres::Client),
    Tx(&'a tokio_postgres::Transaction<'a>),
}

/// A client or a transaction, with the tenant it serves (to tell a missing tenant from a fault).
pub(crate) struct PgConn<'a> {
    client: Client<'a>,
    tenant: Option<String>,
}

impl<'a> PgConn<'a> {
    pub(crate) fn plain(c: &'a tokio_postgres::Client, tenant: Option<String>) -> Self {
        Self { client: Client::Plain(c), tenant }
    }

    pub(crate) fn tx(c: &'a tokio_postgres::Transaction<'a>, tenant: Option<String>) -> Self {
        Self { client: Client::Tx(c), tenant }
    }

    pub(crate) fn transaction(&self) -> Option<&tokio_postgres::Transaction<'a>> {
        match self.client {
            Client::Tx(t) => Some(t),
            Client::Plain(_) => None,
        }
    }

    fn error(&self, e: tokio_postgres::Error) -> StoreError {
        // A tenant's schema exists exactly when the tenant does.
        match (&self.tenant, e.code()) {
            (Some(t), Some(c)) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::INVALID_SCHEMA_NAME => {
                StoreError::TenantNotFound(t.clone())
            }
            _ => e.into(),
        }
    }

    pub(super) async fn execute(&self, sql: &str, params: &[P]) -> Result<u64> {
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let r = match &self.client {
            Client::Plain(c) => c.execute(sql, &refs).await,
            Client::Tx(c) => c.execute(sql, &refs).await,
        };
        r.map_err(|e| self.error(e))
    }

    pub(super) async fn query(&self, sql: &str, params: &[P]) -> Result<Vec<DbRow>> {
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = match &self.client {
            Client::Plain(c) => c.query(sql, &refs).await,
            Client::Tx(c) => c.query(sql, &refs).await,
        }
        .map_err(|e| self.error(e))?;
        rows.iter().map(read_row).collect()
    }

    pub(super) async fn batch(&self, sql: &str) -> Result<()> {
        let r = match &self.client {
            Client::Plain(c) => c.batch_execute(sql).await,
            Client::Tx(c) => c.batch_execute(sql).await,
        };
        r.map_err(|e| self.error(e))
    }
}

/// Runs `f` in a transaction on a connection of `pool`, committed when it returns `Ok`;
/// `schema` qualifies the tables ([`Tx::t`]), `tenant` names whose schema it is.
pub(crate) async fn run_write<T, F>(pool: &Pool, schema: &str, tenant: Option<&str>, f: F) -> Result<T>
where
    F: for<'t> AsyncFnOnce(&mut Tx<'t>) -> Result<T>,
{
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let out = {
        let mut t = Tx::postgres(PgConn::tx(&tx, tenant.map(str::to_string)), schema);
        f(&mut t).await?
    };
    tx.commit().await?;
    Ok(out)
}

/// Runs `f` in a read-only REPEATABLE READ transaction: every statement sees one snapshot.
pub(crate) async fn run_snapshot<T, F>(pool: &Pool, schema: &str, tenant: Option<&str>, f: F) -> Result<T>
where
    F: for<'t> AsyncFnOnce(&mut Tx<'t>) -> Result<T>,
{
    let mut client = pool.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let out = {
        let mut t = Tx::postgres(PgConn::tx(&tx, tenant.map(str::to_string)), schema);
        f(&mut t).await?
    };
    tx.commit().await?;
    Ok(out)
}

/// Runs `f` on a connection of `pool` outside a transaction (each statement on its own).
pub(crate) async fn run_read<T, F>(pool: &Pool, schema: &str, tenant: Option<&str>, f: F) -> Result<T>
where
    F: for<'t> AsyncFnOnce(&mut Tx<'t>) -> Result<T>,
{
    let client = pool.get().await?;
    let mut t = Tx::postgres(PgConn::plain(&client, tenant.map(str::to_string)), schema);
    f(&mut t).await
}

fn read_row(r: &Row) -> Result<DbRow> {
    let mut vals = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(DbVal::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map(|v| DbVal::Int(v.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?.map(|v| DbVal::Int(v.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?.map(DbVal::Bool)
        } else if *ty == Type::FLOAT8 {
            r.try_get::<_, Option<f64>>(i)?.map(|v| DbVal::Text(v.to_string()))
        } else if *ty == Type::FLOAT4 {
            r.try_get::<_, Option<f32>>(i)?.map(|v| DbVal::Text(v.to_string()))
        } else if *ty == Type::UUID {
            r.try_get::<_, Option<uuid::Uuid>>(i)?.map(|v| DbVal::Text(v.to_string()))
        } else if *ty == Type::TIMESTAMPTZ {
            r.try_get::<_, Option<DateTime<Utc>>>(i)?.map(DbVal::Time)
        } else if *ty == Type::TIMESTAMP {
            r.try_get::<_, Option<NaiveDateTime>>(i)?.map(|t| DbVal::Time(t.and_utc()))
        } else if *ty == Type::DATE {
            r.try_get::<_, Option<NaiveDate>>(i)?.map(DbVal::Date)
        } else if *ty == Type::NUMERIC {
            r.try_get::<_, Option<Decimal>>(i)?.map(DbVal::Numeric)
        } else {
            r.try_get::<_, Option<String>>(i)?.map(DbVal::Text)
        };
        vals.push(v.unwrap_or(DbVal::Null));
    }
    Ok(DbRow(vals))
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

fn instant(us: i64) -> std::result::Result<DateTime<Utc>, BoxError> {
    DateTime::<Utc>::from_timestamp_micros(us).ok_or_else(|| "instant out of range".into())
}

/// Encodes a dataset [`Value`] as the PostgreSQL type of its column.
pub(crate) fn value_to_sql(v: &Value, ty: &Type, out: &mut bytes::BytesMut) -> std::result::Result<IsNull, BoxError> {
    match v {
        Value::Null => Ok(IsNull::Yes),
        Value::Int(i) => i.to_sql(ty, out),
        Value::Text(s) => s.as_str().to_sql(ty, out),
        Value::DateTime(us) => instant(*us)?.to_sql(ty, out),
        Value::Date(d) => d.to_sql(ty, out),
        Value::Decimal(d) => d.to_sql(ty, out),
        Value::Bool(b) => b.to_sql(ty, out),
    }
}

impl ToSql for P {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> std::result::Result<IsNull, BoxError> {
        match self {
            P::Null => Ok(IsNull::Yes),
            // The parameter takes the column's width; a value that does not fit is an error.
            P::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            P::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            P::Int(v) if *ty == Type::FLOAT8 => (*v as f64).to_sql(ty, out),
            P::Int(v) if *ty == Type::NUMERIC => Decimal::from(*v).to_sql(ty, out),
            P::Int(v) => v.to_sql(ty, out),
            P::Text(s) => s.as_str().to_sql(ty, out),
            P::Numeric(s) if *ty == Type::NUMERIC => s.parse::<Decimal>()?.to_sql(ty, out),
            P::Uuid(s) if *ty == Type::UUID => uuid::Uuid::parse_str(s)?.to_sql(ty, out),
            P::Numeric(s) | P::Uuid(s) => s.as_str().to_sql(ty, out),
            P::Micros(us) => instant(*us)?.to_sql(ty, out),
            P::Secs(s) => DateTime::<Utc>::from_timestamp(*s, 0).ok_or("instant out of range")?.to_sql(ty, out),
            P::Time(t) => t.to_sql(ty, out),
            P::Value(v) => value_to_sql(v, ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}
