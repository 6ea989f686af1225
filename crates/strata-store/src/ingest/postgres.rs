//! PostgreSQL's chunk writer: a chunk of candidates per round trip, set-based (typed arrays
//! and `unnest`, or COPY for larger chunks).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use strata_domain::dataset::{Column, ColumnType, Table};
use strata_domain::value::Value;

use super::{duplicate_key, key_of, same_values, unknown_fk, Candidate, Key, RejectionRow, RowOutcome};
use crate::datasets::column_list;
use crate::postgres::qualified;
use crate::{ident, Result};

fn array_type(c: &Column) -> &'static str {
    match c.ty {
        ColumnType::Integer => "int8[]",
        ColumnType::String => "text[]",
        ColumnType::Datetime => "timestamptz[]",
        ColumnType::Date => "date[]",
        ColumnType::Decimal => "numeric[]",
        ColumnType::Boolean => "bool[]",
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

/// One typed array holding a column of values, for `unnest`.
fn column_array<'a>(c: &Column, values: impl Iterator<Item = &'a Value>) -> Param {
    match c.ty {
        ColumnType::Integer => Box::new(
            values
                .map(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        ColumnType::String => Box::new(
            values
                .map(|v| match v {
                    Value::Text(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        ColumnType::Datetime => Box::new(
            values
                .map(|v| match v {
                    Value::DateTime(us) => DateTime::<Utc>::from_timestamp_micros(*us),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
        ColumnType::Date => Box::new(
            values
                .map(|v| match v {
                    Value::Date(d) => Some(*d),
                    _ => None,
                })
                .collect::<Vec<Option<NaiveDate>>>(),
        ),
        ColumnType::Decimal => Box::new(
            values
                .map(|v| match v {
                    Value::Decimal(d) => Some(*d),
                    _ => None,
                })
                .collect::<Vec<Option<Decimal>>>(),
        ),
        ColumnType::Boolean => Box::new(
            values
                .map(|v| match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<Vec<_>>(),
        ),
    }
}

fn read_value(r: &Row, i: usize, c: &Column) -> Value {
    let v = match c.ty {
        ColumnType::Integer => r.get::<_, Option<i64>>(i).map(Value::Int),
        ColumnType::String => r.get::<_, Option<String>>(i).map(Value::Text),
        ColumnType::Datetime => r.get::<_, Option<DateTime<Utc>>>(i).map(|t| Value::DateTime(t.timestamp_micros())),
        ColumnType::Date => r.get::<_, Option<NaiveDate>>(i).map(Value::Date),
        ColumnType::Decimal => r.get::<_, Option<Decimal>>(i).map(|mut d| {
            d.rescale(c.scale);
            Value::Decimal(d)
        }),
        ColumnType::Boolean => r.get::<_, Option<bool>>(i).map(Value::Bool),
    };
    v.unwrap_or(Value::Null)
}

pub(crate) fn read_row(r: &Row, t: &Table) -> Result<Vec<Value>> {
    Ok(t.columns.iter().enumerate().map(|(i, c)| read_value(r, i, c)).collect())
}

fn read_key(r: &Row, i: usize, c: &Column) -> Option<Key> {
    match c.ty {
        ColumnType::Integer => Some(Key::I(r.get(i))),
        ColumnType::String => Some(Key::S(r.get(i))),
        _ => None,
    }
}

/// Writes chunks of candidates set-based.
pub(crate) struct ChunkWriter<'a> {
    schema: &'a str,
    table: &'a Table,
    /// Skip per-row checks of references into the same table (restore checks them at the end).
    pub(crate) defer_self_refs: bool,
}

impl<'a> ChunkWriter<'a> {
    pub(crate) fn new(schema: &'a str, table: &'a Table) -> Self {
        Self { schema, table, defer_self_refs: false }
    }

    /// Which of `keys` exist in `table`'s primary key.
    async fn existing_keys(
        &self,
        c: &PgTx<'_>,
        table: &str,
        column: &Column,
        keys: Vec<&Value>,
    ) -> Result<HashSet<Key>> {
        let arr = column_array(column, keys.into_iter());
        let sql = format!(
            "SELECT {pk} FROM {t} WHERE {pk} = ANY($1::{ty})",
            pk = ident(&column.name),
            t = qualified(self.schema, table),
            ty = array_type(column)
        );
        let rows = c.query(&sql, &[arr.as_ref()]).await?;
        Ok(rows.iter().filter_map(|r| read_key(r, 0, column)).collect())
    }

    pub(crate) async fn write(&self, c: &PgTx<'_>, cands: &[Candidate]) -> Result<Vec<RowOutcome>> {
        let t = self.table;
        // Foreign keys: one query per referencing column per chunk.
        let mut fk_errors: HashMap<usize, Vec<_>> = HashMap::new();
        for (ci, col) in t.columns.iter().enumerate() {
            let Some(fk) = &col.references else { continue };
            if self.defer_self_refs && fk.table == t.name {
                continue;
            }
            let mut wanted: Vec<&Value> = Vec::new();
            let mut seen = HashSet::new();
            for cand in cands {
                if let Some(v) = cand.fk_value(ci) {
                    if let Some(k) = key_of(v) {
                        if seen.insert(k) {
                            wanted.push(v);
                        }
                    }
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let parent_pk = t_column_for(t, fk, col);
            let mut found = self.existing_keys(c, &fk.table, &parent_pk, wanted).await?;
            let self_ref = fk.table == t.name;
            for (ri, cand) in cands.iter().enumerate() {
                if self_ref {
                    // Valid rows earlier in the same chunk count as parents, as they do on SQLite.
                    if let Ok(values) = &cand.result {
                        if let Some(k) = key_of(&values[t.pk]) {
                            found.insert(k);
                        }
                    }
                }
                let Some(v) = cand.fk_value(ci) else { continue };
                if let Some(k) = key_of(v) {
                    if !found.contains(&k) {
                        fk_errors.entry(ri).or_default().push(unknown_fk(t, ci, v));
                    }
                }
            }
        }
        let mut outcomes: Vec<Option<RowOutcome>> = cands
            .iter()
            .enumerate()
            .map(|(ri, c)| {
                let fk = fk_errors.remove(&ri).unwrap_or_default();
                if c.result.is_err() {
                    c.refused(t, fk)
                } else if fk.is_empty() {
                    None
                } else {
                    Some(RowOutcome::Rejected(fk))
                }
            })
            .collect();

        let to_insert: Vec<usize> = (0..cands.len()).filter(|i| outcomes[*i].is_none()).collect();
        if to_insert.is_empty() {
            return Ok(outcomes.into_iter().map(|o| o.unwrap()).collect());
        }
        let rows: Vec<&Vec<Value>> = to_insert.iter().map(|i| cands[*i].result.as_ref().unwrap()).collect();

        // Optimistic path: binary COPY, which PostgreSQL inserts in bulk (several times faster
        // than INSERT .. SELECT). It fails as a whole on any existing key, so it runs under a
        // savepoint and, on a unique violation, the chunk takes the row-by-row-aware path below.
        // A first-time migration never conflicts; a re-load conflicts on its first row.
        if rows.len() >= COPY_MIN_ROWS {
            c.batch_execute("SAVEPOINT strata_chunk").await?;
            match self.copy_rows(c, &rows).await {
                Ok(()) => {
                    c.batch_execute("RELEASE SAVEPOINT strata_chunk").await?;
                    for ri in &to_insert {
                        outcomes[*ri] = Some(RowOutcome::Inserted);
                    }
                    return Ok(outcomes.into_iter().map(|o| o.unwrap()).collect());
                }
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    c.batch_execute("ROLLBACK TO SAVEPOINT strata_chunk").await?;
                }
                Err(e) => return Err(e.into()),
            }
        }

        // Insert the rest in one statement; RETURNING tells which keys were new.
        let params: Vec<Param> =
            t.columns.iter().enumerate().map(|(ci, col)| column_array(col, rows.iter().map(|r| &r[ci]))).collect();
        let names = column_list(t);
        let casts = t
            .columns
            .iter()
            .enumerate()
            .map(|(i, col)| format!("${}::{}", i + 1, array_type(col)))
            .collect::<Vec<_>>()
            .join(", ");
        let pk = ident(&t.pk_column().name);
        let sql = format!(
            "INSERT INTO {} ({names}) SELECT * FROM unnest({casts}) ON CONFLICT ({pk}) DO NOTHING RETURNING {pk}",
            qualified(self.schema, &t.name)
        );
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
        let inserted = c.query(&sql, &refs).await?;
        let mut fresh: HashSet<Key> = inserted.iter().filter_map(|r| read_key(r, 0, t.pk_column())).collect();
        let mut conflicts = Vec::new();
        for (pos, ri) in to_insert.iter().enumerate() {
            let k = key_of(&rows[pos][t.pk]);
            // The first row with a new key is the one that went in.
            if k.as_ref().is_some_and(|k| fresh.remove(k)) {
                outcomes[*ri] = Some(RowOutcome::Inserted);
            } else {
                conflicts.push(*ri);
            }
        }
        if !conflicts.is_empty() {
            let keys: Vec<&Value> = conflicts.iter().map(|ri| &cands[*ri].result.as_ref().unwrap()[t.pk]).collect();
            let arr = column_array(t.pk_column(), keys.into_iter());
            let sql = format!(
                "SELECT {} FROM {} WHERE {pk} = ANY($1::{})",
                names,
                qualified(self.schema, &t.name),
                array_type(t.pk_column())
            );
            let existing: HashMap<Key, Vec<Value>> = c
                .query(&sql, &[arr.as_ref()])
                .await?
                .iter()
                .filter_map(|r| {
                    let row = read_row(r, t).ok()?;
                    Some((key_of(&row[t.pk])?, row))
                })
                .collect();
            for ri in conflicts {
                let values = cands[ri].result.as_ref().unwrap();
                let same = key_of(&values[t.pk]).and_then(|k| existing.get(&k)).is_some_and(|e| same_values(e, values));
                outcomes[ri] = Some(if same {
                    RowOutcome::Unchanged
                } else {
                    RowOutcome::Rejected(vec![duplicate_key(t, &values[t.pk])])
                });
            }
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap()).collect())
    }

    async fn copy_rows(&self, c: &PgTx<'_>, rows: &[&Vec<Value>]) -> Result<(), tokio_postgres::Error> {
        let t = self.table;
        let sql = format!("COPY {} ({}) FROM STDIN (FORMAT binary)", qualified(self.schema, &t.name), column_list(t));
        let types: Vec<Type> = t.columns.iter().map(pg_type).collect();
        let sink = c.copy_in(&sql).await?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        for row in rows {
            let cells: Vec<PgVal<'_>> = row.iter().map(PgVal).collect();
            let refs: Vec<&(dyn ToSql + Sync)> = cells.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            writer.as_mut().write(&refs).await?;
        }
        writer.finish().await?;
        Ok(())
    }

    pub(crate) async fn log_rejections(
        &self,
        c: &PgTx<'_>,
        source: &str,
        source_id: &str,
        rows: &[RejectionRow],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let lines: Vec<Option<i64>> = rows.iter().map(|r| r.line).collect();
        let idx: Vec<i64> = rows.iter().map(|r| r.row).collect();
        let raw: Vec<&str> = rows.iter().map(|r| r.raw.as_str()).collect();
        let errors: Vec<&str> = rows.iter().map(|r| r.errors.as_str()).collect();
        c.execute(
            &format!(
                "INSERT INTO {}._strata_rejections (table_name, source, source_id, line, row_index, raw, errors)
                 SELECT $1, $2, $3, l, i, r, e FROM unnest($4::int8[], $5::int8[], $6::text[], $7::text[]) AS u(l, i, r, e)",
                self.schema
            ),
            &[&self.table.name, &source, &source_id, &lines, &idx, &raw, &errors],
        )
        .await?;
        Ok(())
    }
}

/// Rows below this go straight to INSERT: COPY's setup costs more than it saves.
const COPY_MIN_ROWS: usize = 64;

pub(crate) type PgTx<'a> = tokio_postgres::Transaction<'a>;

fn pg_type(c: &Column) -> Type {
    match c.ty {
        ColumnType::Integer => Type::INT8,
        ColumnType::String => Type::TEXT,
        ColumnType::Datetime => Type::TIMESTAMPTZ,
        ColumnType::Date => Type::DATE,
        ColumnType::Decimal => Type::NUMERIC,
        ColumnType::Boolean => Type::BOOL,
    }
}

/// A value encoded as the PostgreSQL type of its column, without boxing each cell.
#[derive(Debug)]
struct PgVal<'a>(&'a Value);

impl ToSql for PgVal<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Value::Null => Ok(tokio_postgres::types::IsNull::Yes),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::DateTime(us) => {
                DateTime::<Utc>::from_timestamp_micros(*us).ok_or("datetime out of range")?.to_sql(ty, out)
            }
            Value::Date(d) => d.to_sql(ty, out),
            Value::Decimal(d) => d.to_sql(ty, out),
            Value::Bool(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The referenced primary-key column, typed like the referencing column (types must match).
fn t_column_for(_t: &Table, fk: &strata_domain::dataset::ForeignKey, col: &Column) -> Column {
    Column { name: fk.column.clone(), ..col.clone() }
}

/// The PostgreSQL side of [`super::write`].
pub(crate) struct PgWriters;

/// A chunk writer with the transaction it writes in.
pub(crate) struct PgSink<'c> {
    writer: ChunkWriter<'c>,
    tx: &'c PgTx<'c>,
}

impl super::write::Writers for PgWriters {
    type Sink<'c> = PgSink<'c>;

    fn open<'c>(c: &'c crate::db::Tx<'_>, table: &'c Table, defer_self_refs: bool) -> Result<PgSink<'c>> {
        let mut writer = ChunkWriter::new(c.schema(), table);
        writer.defer_self_refs = defer_self_refs;
        let tx = c.pg_tx().expect("the PostgreSQL writer runs inside a transaction");
        Ok(PgSink { writer, tx })
    }

    async fn next(chunks: &mut super::Chunks) -> Option<super::Chunk> {
        chunks.recv().await
    }
}

impl super::write::Sink for PgSink<'_> {
    async fn write(&mut self, chunk: &[Candidate]) -> Result<Vec<RowOutcome>> {
        self.writer.write(self.tx, chunk).await
    }

    async fn log(&mut self, source: &str, source_id: &str, rows: &[RejectionRow]) -> Result<()> {
        self.writer.log_rejections(self.tx, source, source_id, rows).await
    }
}
