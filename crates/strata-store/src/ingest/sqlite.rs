//! SQLite's row writer: candidates one by one with cached prepared statements.

use std::collections::HashSet;
use std::str::FromStr;

use rusqlite::{params, Connection, OptionalExtension};
use strata_domain::dataset::{Column, ColumnType, Table};
use strata_domain::value::Value;

use super::{duplicate_key, key_of, same_values, unknown_fk, Candidate, Key, RejectionRow, RowOutcome};
use crate::datasets::column_list;
use crate::db::sqlite::SqlVal;
use crate::{ident, now_rfc3339, Result};

fn read_value(r: &rusqlite::Row<'_>, i: usize, c: &Column) -> rusqlite::Result<Value> {
    let conv = |e: String| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into());
    Ok(match c.ty {
        ColumnType::Integer => r.get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int),
        ColumnType::Datetime => r.get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::DateTime),
        ColumnType::Boolean => r.get::<_, Option<i64>>(i)?.map_or(Value::Null, |b| Value::Bool(b != 0)),
        ColumnType::String => r.get::<_, Option<String>>(i)?.map_or(Value::Null, Value::Text),
        ColumnType::Date => match r.get::<_, Option<String>>(i)? {
            None => Value::Null,
            Some(s) => Value::Date(chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|e| conv(e.to_string()))?),
        },
        ColumnType::Decimal => match r.get::<_, Option<String>>(i)? {
            None => Value::Null,
            Some(s) => Value::Decimal(rust_decimal::Decimal::from_str(&s).map_err(|e| conv(e.to_string()))?),
        },
    })
}

pub(crate) fn read_row(r: &rusqlite::Row<'_>, t: &Table) -> rusqlite::Result<Vec<Value>> {
    t.columns.iter().enumerate().map(|(i, c)| read_value(r, i, c)).collect()
}

/// Writes candidates one by one with cached prepared statements: SQLite is in-process, so a
/// statement per row costs about a microsecond and keeps the logic obvious.
pub(crate) struct RowWriter<'c> {
    table: &'c Table,
    insert: rusqlite::Statement<'c>,
    select: rusqlite::Statement<'c>,
    reject: rusqlite::Statement<'c>,
    /// (column index, statement checking the parent key exists, parent keys already seen).
    /// Only hits are cached: parents are never deleted while we hold the write lock, but a
    /// missing parent may still arrive later in the same load.
    fks: Vec<(usize, rusqlite::Statement<'c>, HashSet<Key>)>,
}

/// Bound on cached parent keys per column, so memory stays flat on huge parent tables.
const FK_CACHE_MAX: usize = 100_000;

impl<'c> RowWriter<'c> {
    /// `defer_self_refs`: skip per-row checks of references into the same table (a restore
    /// checks them all at the end, since key order need not be parent-first).
    pub(crate) fn new(c: &'c Connection, table: &'c Table, defer_self_refs: bool) -> Result<Self> {
        let name = ident(&table.name);
        let cols = column_list(table);
        let marks = (1..=table.columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let insert = c.prepare(&format!("INSERT INTO {name} ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING"))?;
        let select = c.prepare(&format!("SELECT {cols} FROM {name} WHERE {} = ?1", ident(&table.pk_column().name)))?;
        let reject = c.prepare(
            "INSERT INTO _strata_rejections (table_name, source, source_id, line, row_index, raw, errors, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut fks = Vec::new();
        for (i, col) in table.columns.iter().enumerate() {
            if let Some(fk) = &col.references {
                if defer_self_refs && fk.table == table.name {
                    continue;
                }
                let st = c.prepare(&format!("SELECT 1 FROM {} WHERE {} = ?1", ident(&fk.table), ident(&fk.column)))?;
                fks.push((i, st, HashSet::new()));
            }
        }
        Ok(Self { table, insert, select, reject, fks })
    }

    pub(crate) fn write(&mut self, c: &Candidate) -> Result<RowOutcome> {
        let mut errors = Vec::new();
        for (i, st, seen) in &mut self.fks {
            let Some(v) = c.fk_value(*i) else { continue };
            let Some(k) = key_of(v) else { continue };
            if seen.contains(&k) {
                continue;
            }
            if st.exists([SqlVal(v)])? {
                if seen.len() >= FK_CACHE_MAX {
                    seen.clear();
                }
                seen.insert(k);
            } else {
                errors.push(unknown_fk(self.table, *i, v));
            }
        }
        let values = match &c.result {
            Err(_) => return Ok(c.refused(self.table, errors).expect("a refused row")),
            Ok(v) => v,
        };
        if !errors.is_empty() {
            return Ok(RowOutcome::Rejected(errors));
        }
        let binds: Vec<SqlVal<'_>> = values.iter().map(SqlVal).collect();
        let n = self.insert.execute(rusqlite::params_from_iter(binds.iter()))?;
        if n == 1 {
            return Ok(RowOutcome::Inserted);
        }
        let key = &values[self.table.pk];
        let table = self.table;
        let existing = self.select.query_row([SqlVal(key)], |r| read_row(r, table)).optional()?;
        Ok(match existing {
            Some(e) if same_values(&e, values) => RowOutcome::Unchanged,
            _ => RowOutcome::Rejected(vec![duplicate_key(self.table, key)]),
        })
    }

    pub(crate) fn log_rejection(&mut self, source: &str, source_id: &str, r: &RejectionRow) -> Result<()> {
        self.reject.execute(params![
            self.table.name,
            source,
            source_id,
            r.line,
            r.row,
            r.raw,
            r.errors,
            now_rfc3339()
        ])?;
        Ok(())
    }
}

/// The SQLite side of [`super::write`]: the whole transaction runs on the writer's thread.
pub(crate) struct SqliteWriters;

impl super::write::Writers for SqliteWriters {
    type Sink<'c> = RowWriter<'c>;

    fn open<'c>(c: &'c crate::db::Tx<'_>, table: &'c Table, defer_self_refs: bool) -> Result<RowWriter<'c>> {
        let conn = c.sqlite_conn().expect("a SQLite writer runs on a SQLite Tx");
        RowWriter::new(conn, table, defer_self_refs)
    }

    async fn next(chunks: &mut super::Chunks) -> Option<super::Chunk> {
        chunks.blocking_recv()
    }
}

impl super::write::Sink for RowWriter<'_> {
    async fn write(&mut self, chunk: &[Candidate]) -> Result<Vec<RowOutcome>> {
        chunk.iter().map(|c| RowWriter::write(self, c)).collect()
    }

    async fn log(&mut self, source: &str, source_id: &str, rows: &[RejectionRow]) -> Result<()> {
        rows.iter().try_for_each(|r| self.log_rejection(source, source_id, r))
    }
}

/// Tenant migration 2 (with `orders::sqlite::SCHEMA_V2`): a batch's idempotency key is claimed
/// before its response exists, as on PostgreSQL, so both run the same batch code; the response
/// may be empty until the claiming transaction commits. SQLite cannot drop NOT NULL: rebuild.
pub(crate) const SCHEMA_V2: &str = "
CREATE TABLE _strata_idempotency_v2 (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response TEXT,
    created_at TEXT NOT NULL
) STRICT;
INSERT INTO _strata_idempotency_v2 (key, fingerprint, response, created_at)
    SELECT key, fingerprint, response, created_at FROM _strata_idempotency;
DROP TABLE _strata_idempotency;
ALTER TABLE _strata_idempotency_v2 RENAME TO _strata_idempotency;
";
