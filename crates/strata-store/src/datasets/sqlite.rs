//! Dataset tables on SQLite: STRICT tables whose types hold each value exactly.

use strata_domain::dataset::{Column, ColumnType, Table};

use crate::ident;

fn sql_type(c: &Column) -> &'static str {
    match c.ty {
        ColumnType::Integer | ColumnType::Datetime | ColumnType::Boolean => "INTEGER",
        ColumnType::String | ColumnType::Date | ColumnType::Decimal => "TEXT",
    }
}

/// SQLite DDL for a table. Datetimes are stored as integer microseconds (exact, sortable),
/// dates as `YYYY-MM-DD`, decimals as canonical text at the column's scale.
pub(crate) fn create_table_sql(t: &Table) -> String {
    let mut cols = Vec::new();
    for (i, c) in t.columns.iter().enumerate() {
        let mut s = format!("{} {}", ident(&c.name), sql_type(c));
        if i == t.pk {
            s.push_str(" PRIMARY KEY");
        }
        if c.required {
            s.push_str(" NOT NULL");
        }
        cols.push(s);
    }
    format!("CREATE TABLE {} ({}) STRICT;", ident(&t.name), cols.join(", "))
}
