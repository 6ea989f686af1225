//! What the two databases share: one connection type, [`Tx`], that SQL written once runs on.
//!
//! Most of what Strata stores (tenants, keys, sessions, datasets, orders, deployment state)
//! differs between SQLite and PostgreSQL only in syntax and in how a few types are stored. The
//! feature modules write that SQL once, against [`Tx`], and this module absorbs the differences:
//!
//! * **Placeholders**: SQL is written with `$1`, `$2`, ...; on SQLite they become `?1`, `?2`.
//! * **Names**: [`Tx::t`] qualifies a table with the tenant's schema on PostgreSQL
//!   (`"tenant_acme"._strata_orders`) and leaves it bare on SQLite, where the tenant is the file.
//! * **Types**: a parameter ([`P`]) says what it is (an instant, a UUID, a decimal) and each
//!   backend binds it as that database stores it; a row ([`DbRow`]) reads back either form.
//!
//! What really differs stays apart, in each feature's `sqlite.rs` and `postgres.rs`: the row
//! writer against the COPY writer, the query executors, file against schema creation.
//!
//! SQLite work runs on a blocking thread; a [`Tx`] over SQLite never waits, so the same async
//! code is driven there to completion in one poll ([`sqlite::Db::run`]).

pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use strata_domain::dataset::{Column, ColumnType};
use strata_domain::value::Value;

use crate::{Result, StoreError};

/// The database a [`Tx`] runs on, for the few statements whose text must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A query parameter, typed by what it means rather than by how a database stores it.
#[derive(Debug, Clone)]
pub(crate) enum P {
    Null,
    Int(i64),
    Text(String),
    /// A decimal in canonical text: `NUMERIC` on PostgreSQL, `TEXT` on SQLite.
    Numeric(String),
    /// A UUID: `UUID` on PostgreSQL, its text on SQLite.
    Uuid(String),
    /// An instant stored as `TIMESTAMPTZ` on PostgreSQL and integer microseconds on SQLite.
    Micros(i64),
    /// An instant stored as `TIMESTAMPTZ` on PostgreSQL and integer seconds on SQLite.
    Secs(i64),
    /// An instant stored as `TIMESTAMPTZ` on PostgreSQL and RFC 3339 text on SQLite.
    Time(DateTime<Utc>),
    /// A dataset value, stored as its column's type.
    Value(Value),
}

impl From<i64> for P {
    fn from(v: i64) -> Self {
        P::Int(v)
    }
}

impl From<&str> for P {
    fn from(v: &str) -> Self {
        P::Text(v.to_string())
    }
}

impl From<&String> for P {
    fn from(v: &String) -> Self {
        P::Text(v.clone())
    }
}

impl From<String> for P {
    fn from(v: String) -> Self {
        P::Text(v)
    }
}

impl<T: Into<P>> From<Option<T>> for P {
    fn from(v: Option<T>) -> Self {
        v.map_or(P::Null, Into::into)
    }
}

/// A value read back, in whichever form its database stored it.
#[derive(Debug, Clone)]
pub(crate) enum DbVal {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
    Time(DateTime<Utc>),
    Date(NaiveDate),
    Numeric(Decimal),
}

/// One result row. The getters accept both storage forms of a type, so feature code reads
/// SQLite's integer microseconds and PostgreSQL's `TIMESTAMPTZ` with the same call.
#[derive(Debug, Clone)]
pub(crate) struct DbRow(pub(crate) Vec<DbVal>);

fn unexpected(i: usize, want: &str, got: &DbVal) -> StoreError {
    StoreError::Database(anyhow::anyhow!("column {i}: expected {want}, found {got:?}"))
}

impl DbRow {
    fn at(&self, i: usize) -> Result<&DbVal> {
        self.0.get(i).ok_or_else(|| StoreError::Database(anyhow::anyhow!("no column {i}")))
    }

    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            DbVal::Null => Ok(None),
            DbVal::Int(v) => Ok(Some(*v)),
            DbVal::Bool(b) => Ok(Some(*b as i64)),
            other => Err(unexpected(i, "an integer", other)),
        }
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?.ok_or_else(|| unexpected(i, "an integer", &DbVal::Null))
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            DbVal::Null => Ok(None),
            DbVal::Text(s) => Ok(Some(s.clone())),
            other => Err(unexpected(i, "text", other)),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| unexpected(i, "text", &DbVal::Null))
    }

    /// An instant as microseconds since the epoch ([`P::Micros`]).
    pub(crate) fn micros(&self, i: usize) -> Result<i64> {
        match self.at(i)? {
            DbVal::Int(v) => Ok(*v),
            DbVal::Time(t) => Ok(t.timestamp_micros()),
            other => Err(unexpected(i, "an instant", other)),
        }
    }

    /// An instant as RFC 3339 text ([`P::Time`]).
    pub(crate) fn time_text(&self, i: usize) -> Result<String> {
        match self.at(i)? {
            DbVal::Text(s) => Ok(s.clone()),
            DbVal::Time(t) => Ok(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
            other => Err(unexpected(i, "an instant", other)),
        }
    }

    /// A decimal in its shortest canonical text ([`P::Numeric`]).
    pub(crate) fn numeric_text(&self, i: usize) -> Result<String> {
        match self.at(i)? {
            DbVal::Text(s) => Ok(s.clone()),
            DbVal::Numeric(d) => Ok(d.normalize().to_string()),
            other => Err(unexpected(i, "a decimal", other)),
        }
    }

    /// A dataset value of column `c` ([`P::Value`]).
    pub(crate) fn value(&self, i: usize, c: &Column) -> Result<Value> {
        let v = self.at(i)?;
        let bad = || unexpected(i, &format!("a {:?} value", c.ty), v);
        Ok(match (c.ty, v) {
            (_, DbVal::Null) => Value::Null,
            (ColumnType::Integer, DbVal::Int(n)) => Value::Int(*n),
            (ColumnType::String, DbVal::Text(s)) => Value::Text(s.clone()),
            (ColumnType::Datetime, DbVal::Int(us)) => Value::DateTime(*us),
            (ColumnType::Datetime, DbVal::Time(t)) => Value::DateTime(t.timestamp_micros()),
            (ColumnType::Date, DbVal::Date(d)) => Value::Date(*d),
            (ColumnType::Date, DbVal::Text(s)) => {
                Value::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())?)
            }
            (ColumnType::Decimal, DbVal::Numeric(d)) => {
                let mut d = *d;
                d.rescale(c.scale);
                Value::Decimal(d)
            }
            (ColumnType::Decimal, DbVal::Text(s)) => Value::Decimal(Decimal::from_str(s).map_err(|_| bad())?),
            (ColumnType::Boolean, DbVal::Bool(b)) => Value::Bool(*b),
            (ColumnType::Boolean, DbVal::Int(n)) => Value::Bool(*n != 0),
            _ => return Err(bad()),
        })
    }
}

enum Inner<'a> {
    Sqlite(&'a mut rusqlite::Connection),
    Postgres(postgres::PgConn<'a>),
}

/// A connection to one scope (the control plane or one tenant), usually inside a transaction
/// that whoever opened it commits: a caller can run several features' statements in one
/// transaction by passing the same `Tx` along.
pub struct Tx<'a> {
    inner: Inner<'a>,
    /// Prefix that qualifies a table name: `"tenant_x".` on PostgreSQL, empty on SQLite.
    prefix: String,
}

impl<'a> Tx<'a> {
    pub(crate) fn sqlite(c: &'a mut rusqlite::Connection) -> Self {
        Tx { inner: Inner::Sqlite(c), prefix: String::new() }
    }

    pub(crate) fn postgres(c: postgres::PgConn<'a>, schema: &str) -> Self {
        Tx { inner: Inner::Postgres(c), prefix: format!("{schema}.") }
    }

    pub fn dialect(&self) -> Dialect {
        match self.inner {
            Inner::Sqlite(_) => Dialect::Sqlite,
            Inner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The SQLite connection under this `Tx`, for the row writer's prepared statements.
    pub(crate) fn sqlite_conn(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    /// The PostgreSQL transaction under this `Tx`, for the COPY writer.
    pub(crate) fn pg_tx(&self) -> Option<&tokio_postgres::Transaction<'a>> {
        match &self.inner {
            Inner::Sqlite(_) => None,
            Inner::Postgres(c) => c.transaction(),
        }
    }

    /// The quoted schema of this scope on PostgreSQL (empty on SQLite).
    pub(crate) fn schema(&self) -> &str {
        self.prefix.strip_suffix('.').unwrap_or("")
    }

    /// `name` as this scope holds it.
    pub(crate) fn t(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Runs a statement; the number of rows it changed.
    pub(crate) async fn execute(&mut self, sql: &str, params: &[P]) -> Result<u64> {
        match &mut self.inner {
            Inner::Sqlite(c) => sqlite::execute(c, sql, params),
            Inner::Postgres(c) => c.execute(sql, params).await,
        }
    }

    pub(crate) async fn query(&mut self, sql: &str, params: &[P]) -> Result<Vec<DbRow>> {
        match &mut self.inner {
            Inner::Sqlite(c) => sqlite::query(c, sql, params),
            Inner::Postgres(c) => c.query(sql, params).await,
        }
    }

    pub(crate) async fn query_opt(&mut self, sql: &str, params: &[P]) -> Result<Option<DbRow>> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    pub(crate) async fn query_one(&mut self, sql: &str, params: &[P]) -> Result<DbRow> {
        self.query_opt(sql, params)
            .await?
            .ok_or_else(|| StoreError::Database(anyhow::anyhow!("a query that returns one row returned none")))
    }

    /// Runs statements without parameters (DDL, savepoints).
    pub(crate) async fn batch(&mut self, sql: &str) -> Result<()> {
        match &mut self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(c) => c.batch(sql).await,
        }
    }
}

/// `$1, $2, ...` for `n` parameters starting after `from`: for `IN (...)` lists.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from + 1..=from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// The current instant as RFC 3339 text with microseconds, as SQLite stores [`P::Time`].
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
