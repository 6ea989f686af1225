//! Runs checked queries on a tenant's SQLite file: a fresh read-only connection per query, an
//! authorizer that admits only the tenant's dataset tables and allowlisted functions, and a
//! progress handler that enforces cancel and the time limit between VM steps.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use strata_domain::dataset::Table;
use strata_domain::tenant::TenantId;
use tokio::sync::mpsc;

use super::guard::Checked;
use super::{
    date_micros, guard, Batch, Canceller, ColKind, ColumnBuilder, ColumnDesc, Event, QueryError, QueryOptions,
    RunningQuery, TIMED_OUT,
};
use crate::slots::TenantPermit;
use crate::sqlite::SqliteStore;

pub(super) fn start(
    s: &SqliteStore,
    tenant: &TenantId,
    tables: Vec<Table>,
    q: Checked,
    opts: QueryOptions,
    slot: Option<TenantPermit>,
) -> Result<RunningQuery, QueryError> {
    start_at(s.tenant_file(tenant)?, tables, q, opts, slot)
}

/// `slot` is held by the executor thread until it ends.
pub(super) fn start_at(
    path: PathBuf,
    tables: Vec<Table>,
    q: Checked,
    opts: QueryOptions,
    slot: Option<TenantPermit>,
) -> Result<RunningQuery, QueryError> {
    let (tx, rx) = mpsc::channel(2);
    let canceller = Canceller::new(None);
    let c = canceller.clone();
    let watchdog = canceller.watchdog(opts.timeout);
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let send = |ev: Event| rt.block_on(c.send(&tx, ev)).is_ok();
        let result = run(path, &tables, &q, opts, &c, &send);
        let stopped = c.error(opts.timeout);
        c.finish();
        drop(watchdog);
        if let Err(e) = result {
            // Best effort: a reader that stopped reading learns the reason from the canceller.
            let _ = tx.try_send(Event::Error(stopped.unwrap_or(e)));
        }
    });
    Ok(RunningQuery::new(rx, canceller, opts.timeout))
}

pub(super) async fn explain(
    s: &SqliteStore,
    tenant: &TenantId,
    tables: Vec<Table>,
    sql: String,
) -> Result<String, QueryError> {
    let path = s.tenant_file(tenant)?;
    tokio::task::spawn_blocking(move || {
        let c = Canceller::new(None);
        let conn =
            open(&path, &tables, &c, Instant::now() + std::time::Duration::from_secs(10), &QueryOptions::default())?;
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).map_err(db_error)?;
        let mut rows = stmt.query([]).map_err(db_error)?;
        let mut depth: HashMap<i64, usize> = HashMap::new();
        let mut out = String::new();
        while let Some(r) = rows.next().map_err(db_error)? {
            let id: i64 = r.get(0).map_err(db_error)?;
            let parent: i64 = r.get(1).map_err(db_error)?;
            let detail: String = r.get(3).map_err(db_error)?;
            let d = depth.get(&parent).map_or(0, |d| d + 1);
            depth.insert(id, d);
            out.push_str(&"  ".repeat(d));
            out.push_str(&detail);
            out.push('\n');
        }
        Ok(out)
    })
    .await
    .map_err(|e| QueryError::Failed(e.to_string()))?
}

fn open(
    path: &PathBuf,
    tables: &[Table],
    c: &Canceller,
    deadline: Instant,
    opts: &QueryOptions,
) -> Result<Connection, QueryError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| QueryError::Storage(e.to_string()))?;
    let storage = |e: rusqlite::Error| QueryError::Storage(e.to_string());
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(storage)?;
    // Memory: no string or blob longer than a row may be (SQLite refuses to build it, so a
    // `printf('%.*c', 1e9, 'x')` or a doubling recursive CTE fails at once); sorts and
    // temporary tables spill to files beyond a small page cache instead of growing in memory.
    let max_len = i32::try_from(opts.max_row_bytes()).unwrap_or(i32::MAX);
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, max_len).map_err(storage)?;
    conn.pragma_update(None, "temp_store", "FILE").map_err(storage)?;
    conn.pragma_update(None, "cache_size", -4096).map_err(storage)?;
    *c.sqlite.lock().unwrap() = Some(conn.get_interrupt_handle());
    // The guard already admitted only dataset tables and CTE names; the only other tables in
    // a tenant file are SQLite's catalog and Strata's own bookkeeping, so deny those by name
    // (CTE reads arrive as reads of their own name, without a database).
    let _ = tables;
    conn.authorizer(Some(move |ctx: AuthContext<'_>| match ctx.action {
        AuthAction::Select | AuthAction::Recursive => Authorization::Allow,
        AuthAction::Read { table_name, .. } => {
            let t = table_name.to_ascii_lowercase();
            let other_db = matches!(ctx.database_name, Some(d) if d != "main");
            if other_db || t.starts_with("sqlite_") || t.starts_with("_strata") {
                Authorization::Deny
            } else {
                Authorization::Allow
            }
        }
        AuthAction::Function { function_name } if guard::function_allowed(function_name) => Authorization::Allow,
        _ => Authorization::Deny,
    }));
    let c = c.clone();
    conn.progress_handler(
        4_000,
        Some(move || {
            if c.stopped().is_some() {
                return true;
            }
            if Instant::now() >= deadline {
                c.stop(TIMED_OUT);
                return true;
            }
            false
        }),
    );
    Ok(conn)
}

fn db_error(e: rusqlite::Error) -> QueryError {
    let msg = e.to_string();
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::TooBig) {
        QueryError::ResourceExhausted(
            "a value in this query grows larger than a result row may be; select shorter values".into(),
        )
    } else if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OutOfMemory) {
        QueryError::ResourceExhausted("the query ran out of memory".into())
    } else if msg.contains("not authorized") {
        QueryError::Rejected("the query reads something outside your datasets".into())
    } else {
        QueryError::Failed(msg)
    }
}

fn run(
    path: PathBuf,
    tables: &[Table],
    q: &Checked,
    opts: QueryOptions,
    c: &Canceller,
    send: &dyn Fn(Event) -> bool,
) -> Result<(), QueryError> {
    let deadline = Instant::now() + opts.timeout;
    let conn = open(&path, tables, c, deadline, &opts)?;
    let (max_row, max_batch) = (opts.max_row_bytes(), opts.batch_bytes());
    let mut stmt = conn.prepare(&q.sql).map_err(db_error)?;
    let n = stmt.column_count();
    // Columns read straight from a dataset table keep their dictionary type (SQLite stores a
    // datetime as an integer, a decimal as text); computed columns take the type the query
    // gives them (super::types), so both databases agree, and only where it says nothing are
    // they typed by their values.
    let mut kinds: Vec<Option<ColKind>> = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    for (i, meta) in stmt.columns_with_metadata().iter().enumerate() {
        names.push(meta.name().to_string());
        let kind = match (meta.table_name(), meta.origin_name()) {
            (Some(t), Some(col)) => tables
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case(t))
                .and_then(|x| x.columns.iter().find(|k| k.name.eq_ignore_ascii_case(col)))
                .map(|k| ColKind::of(k.ty)),
            _ => None,
        };
        debug_assert_eq!(kinds.len(), i);
        kinds.push(kind);
    }
    let mut rows = stmt.raw_query();
    let batch_rows = opts.batch_rows.max(1);

    // First batch: buffered as owned values so computed columns can be typed.
    let mut first: Vec<Vec<SqlValue>> = Vec::new();
    let mut bytes = 0usize;
    let mut more = true;
    while first.len() < batch_rows && bytes < max_batch {
        match rows.next().map_err(db_error)? {
            Some(r) => {
                let mut row_bytes = 0;
                for i in 0..n {
                    row_bytes += value_bytes(r.get_ref(i).map_err(db_error)?);
                }
                if row_bytes > max_row {
                    return Err(opts.row_too_big(row_bytes));
                }
                bytes += row_bytes;
                let mut row = Vec::with_capacity(n);
                for i in 0..n {
                    row.push(r.get_ref(i).map_err(db_error)?.into());
                }
                first.push(row);
            }
            None => {
                more = false;
                break;
            }
        }
    }
    let kinds: Vec<ColKind> = kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            k.or_else(|| q.kinds.get(i).copied().flatten().filter(|t| first.iter().all(|r| fits(*t, &r[i]))))
                .unwrap_or_else(|| infer(first.iter().map(|r| &r[i])))
        })
        .collect();
    let columns: Vec<ColumnDesc> =
        names.into_iter().zip(&kinds).map(|(name, &kind)| ColumnDesc { name, kind }).collect();
    if !send(Event::Schema(columns.clone())) {
        return c.error(opts.timeout).map_or(Ok(()), Err);
    }
    let mut builders: Vec<ColumnBuilder> = kinds.iter().map(|&k| ColumnBuilder::new(k, first.len())).collect();
    for row in &first {
        for (i, v) in row.iter().enumerate() {
            push(&mut builders[i], kinds[i], ValueRef::from(v), &columns[i].name)?;
        }
    }
    let mut count = first.len();
    drop(first);
    loop {
        if count > 0 && (count >= batch_rows || bytes >= max_batch || !more) {
            let next: Vec<ColumnBuilder> = kinds.iter().map(|&k| ColumnBuilder::new(k, batch_rows)).collect();
            let done = std::mem::replace(&mut builders, next);
            let batch = Batch { rows: count, columns: done.into_iter().map(ColumnBuilder::finish).collect() };
            if !send(Event::Batch(batch, !more)) {
                return c.error(opts.timeout).map_or(Ok(()), Err); // stopped, or the reader is gone
            }
            count = 0;
            bytes = 0;
        }
        if !more {
            if count == 0 {
                // The previous batch was full and happened to be the last: say so.
                let _ = send(Event::Batch(Batch { rows: 0, columns: Vec::new() }, true));
            }
            return Ok(());
        }
        match rows.next().map_err(db_error)? {
            Some(r) => {
                let mut row_bytes = 0;
                for i in 0..n {
                    row_bytes += value_bytes(r.get_ref(i).map_err(db_error)?);
                }
                if row_bytes > max_row {
                    return Err(opts.row_too_big(row_bytes));
                }
                bytes += row_bytes;
                for (i, b) in builders.iter_mut().enumerate() {
                    push(b, kinds[i], r.get_ref(i).map_err(db_error)?, &columns[i].name)?;
                }
                count += 1;
            }
            None => more = false,
        }
    }
}

/// What a value costs in a batch: its bytes, or a machine word.
fn value_bytes(v: ValueRef<'_>) -> usize {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => t.len() + 8,
        _ => 8,
    }
}

/// Whether a value SQLite produced can be delivered as `kind` (see [`push`]).
fn fits(kind: ColKind, v: &SqlValue) -> bool {
    match (kind, v) {
        (_, SqlValue::Null) => true,
        (ColKind::Long, SqlValue::Integer(_)) => true,
        (ColKind::Long, SqlValue::Real(f)) => f.fract() == 0.0 && f.abs() < 9.0e18,
        (ColKind::Double, SqlValue::Real(_) | SqlValue::Integer(_)) => true,
        (ColKind::Boolean | ColKind::DateTime, SqlValue::Integer(_)) => true,
        (ColKind::String, _) => true,
        (ColKind::Date, SqlValue::Text(t)) => chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok(),
        (ColKind::Decimal, SqlValue::Integer(_)) => true,
        (ColKind::Decimal, SqlValue::Text(t)) => rust_decimal::Decimal::from_str(t).is_ok(),
        _ => false,
    }
}

fn infer<'a>(values: impl Iterator<Item = &'a SqlValue>) -> ColKind {
    let mut kind = None;
    for v in values {
        match (v, kind) {
            (SqlValue::Null, _) => {}
            (SqlValue::Real(_), _) => kind = Some(ColKind::Double),
            (SqlValue::Integer(_), None) => kind = Some(ColKind::Long),
            (SqlValue::Integer(_), Some(_)) => {}
            (SqlValue::Text(_) | SqlValue::Blob(_), _) => return ColKind::String,
        }
    }
    kind.unwrap_or(ColKind::String)
}

fn mismatch(col: &str, kind: ColKind, v: ValueRef<'_>) -> QueryError {
    QueryError::Failed(format!(
        "column `{col}` started as {} but a later row holds a {:?}; CAST the expression to one type",
        kind.type_name(),
        v.data_type()
    ))
}

fn push(b: &mut ColumnBuilder, kind: ColKind, v: ValueRef<'_>, col: &str) -> Result<(), QueryError> {
    use super::ColumnValues as V;
    if let ValueRef::Null = v {
        b.push_null();
        return Ok(());
    }
    match (kind, &mut b.values, v) {
        (ColKind::Long, V::Long(out), ValueRef::Integer(i)) => out.push(i),
        (ColKind::Long, V::Long(out), ValueRef::Real(f)) if f.fract() == 0.0 && f.abs() < 9.0e18 => out.push(f as i64),
        (ColKind::Double, V::Double(out), ValueRef::Real(f)) => out.push(f),
        (ColKind::Double, V::Double(out), ValueRef::Integer(i)) => out.push(i as f64),
        (ColKind::Boolean, V::Boolean(out), ValueRef::Integer(i)) => out.push(i != 0),
        (ColKind::String, V::Text(out), ValueRef::Text(t)) => out.push(String::from_utf8_lossy(t).into_owned()),
        (ColKind::String, V::Text(out), ValueRef::Integer(i)) => out.push(i.to_string()),
        (ColKind::String, V::Text(out), ValueRef::Real(f)) => out.push(f.to_string()),
        (ColKind::String, V::Text(out), ValueRef::Blob(bl)) => {
            // Binary travels as hex text: the e6data client decodes every string as UTF-8.
            out.push(bl.iter().map(|x| format!("{x:02x}")).collect())
        }
        (ColKind::DateTime, V::Micros(out), ValueRef::Integer(i)) => out.push(i),
        (ColKind::Date, V::Micros(out), ValueRef::Text(t)) => {
            let d = std::str::from_utf8(t)
                .ok()
                .and_then(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .ok_or_else(|| mismatch(col, kind, v))?;
            out.push(date_micros(d));
        }
        (ColKind::Decimal, V::Decimal { .. }, _) => {
            let d = match v {
                ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(|s| rust_decimal::Decimal::from_str(s).ok()),
                ValueRef::Integer(i) => Some(rust_decimal::Decimal::from(i)),
                _ => None,
            }
            .ok_or_else(|| mismatch(col, kind, v))?;
            b.push_decimal(d);
            return Ok(());
        }
        _ => return Err(mismatch(col, kind, v)),
    }
    b.nulls.push(false);
    Ok(())
}
