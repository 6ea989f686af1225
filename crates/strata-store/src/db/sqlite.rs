//! SQLite under [`super::Tx`]: one file per scope, a writer and a pool of readers, and the
//! binding of [`P`] to SQLite's storage classes.
//!
//! Each file has one writer connection (behind an async mutex; SQLite allows one writer at a
//! time anyway) and a small pool of read-only connections, which WAL mode lets run beside the
//! writer. All SQLite calls run on blocking threads. Transactions that write start with
//! `BEGIN IMMEDIATE`, so even a second process on the same files serialises correctly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use strata_domain::value::Value;

use super::{DbRow, DbVal, Tx, P};
use crate::{Result, StoreError};

const READERS: usize = 8;

pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // WAL lets readers run beside the writer; FULL makes every acknowledged commit durable.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -32768)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// One SQLite file: a writer and a pool of readers.
pub(crate) struct Db {
    path: PathBuf,
    writer: Arc<tokio::sync::Mutex<Connection>>,
    readers: Arc<std::sync::Mutex<Vec<Connection>>>,
}

impl Db {
    pub(crate) fn open(path: &Path, create: bool) -> Result<Self> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags)?;
        configure(&conn)?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Arc::new(tokio::sync::Mutex::new(conn)),
            readers: Arc::new(std::sync::Mutex::new(Vec::new())),
        })
    }

    /// Runs `f` on a read-only connection.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap().pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    c.busy_timeout(std::time::Duration::from_secs(10))?;
                    c
                }
            };
            let out = f(&mut conn);
            let mut pool = readers.lock().unwrap();
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Database(e.into()))?
    }

    /// Runs `f` on the writer connection.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let mut guard = self.writer.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut guard)).await.map_err(|e| StoreError::Database(e.into()))?
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`), committed when it returns `Ok` and
    /// rolled back otherwise.
    pub(crate) async fn run_write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> AsyncFnOnce(&mut Tx<'t>) -> Result<T> + Send + 'static,
    {
        self.write(move |c| in_transaction(c, "BEGIN IMMEDIATE", f)).await
    }

    /// Runs `f` on a reader, in one read transaction (a consistent snapshot).
    pub(crate) async fn run_read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> AsyncFnOnce(&mut Tx<'t>) -> Result<T> + Send + 'static,
    {
        self.read(move |c| in_transaction(c, "BEGIN", f)).await
    }
}

/// Runs `f` between `begin` and `COMMIT` (or `ROLLBACK` when it fails) on this thread.
pub(crate) fn in_transaction<T, F>(c: &mut Connection, begin: &str, f: F) -> Result<T>
where
    F: for<'t> AsyncFnOnce(&mut Tx<'t>) -> Result<T>,
{
    c.execute_batch(begin)?;
    let out = {
        let mut tx = Tx::sqlite(c);
        // Nothing in a SQLite `Tx` waits, so the future is complete after one poll.
        f(&mut tx).now_or_never().expect("SQLite work never waits")
    };
    match out {
        Ok(v) => {
            c.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// `$n` placeholders as SQLite writes them (`?n`). Strata's SQL has no `$` elsewhere.
fn dialect_sql(sql: &str) -> std::borrow::Cow<'_, str> {
    if sql.contains('$') {
        std::borrow::Cow::Owned(sql.replace('$', "?"))
    } else {
        std::borrow::Cow::Borrowed(sql)
    }
}

pub(super) fn execute(c: &Connection, sql: &str, params: &[P]) -> Result<u64> {
    let mut st = c.prepare_cached(&dialect_sql(sql))?;
    Ok(st.execute(rusqlite::params_from_iter(params.iter()))? as u64)
}

pub(super) fn query(c: &Connection, sql: &str, params: &[P]) -> Result<Vec<DbRow>> {
    let mut st = c.prepare_cached(&dialect_sql(sql))?;
    let n = st.column_count();
    let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut vals = Vec::with_capacity(n);
        for i in 0..n {
            vals.push(match r.get_ref(i)? {
                ValueRef::Null => DbVal::Null,
                ValueRef::Integer(v) => DbVal::Int(v),
                ValueRef::Real(v) => DbVal::Text(v.to_string()),
                ValueRef::Text(t) => DbVal::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => DbVal::Text(String::from_utf8_lossy(b).into_owned()),
            });
        }
        out.push(DbRow(vals));
    }
    Ok(out)
}

/// Binds a dataset [`Value`] in its SQLite storage form: datetimes as integer microseconds,
/// booleans as 0/1, dates and decimals as canonical text.
pub(crate) struct SqlVal<'a>(pub(crate) &'a Value);

impl ToSql for SqlVal<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(value_to_sql(self.0))
    }
}

fn value_to_sql(v: &Value) -> ToSqlOutput<'_> {
    match v {
        Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
        Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        Value::DateTime(us) => ToSqlOutput::Borrowed(ValueRef::Integer(*us)),
        Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(*b as i64)),
        Value::Date(_) | Value::Decimal(_) => ToSqlOutput::from(v.to_text()),
    }
}

impl ToSql for P {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            P::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            P::Int(v) | P::Micros(v) | P::Secs(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            P::Text(s) | P::Numeric(s) | P::Uuid(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            P::Time(t) => ToSqlOutput::from(super::rfc3339(*t)),
            P::Value(v) => value_to_sql(v),
        })
    }
}
