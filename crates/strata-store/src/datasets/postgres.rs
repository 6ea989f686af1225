//! Dataset tables on PostgreSQL: text in the "C" collation, so keys sort as on SQLite.

use strata_domain::dataset::{Column, ColumnType, Table};

use crate::ident;

fn sql_type(c: &Column) -> String {
    match c.ty {
        ColumnType::Integer => "BIGINT".into(),
        ColumnType::String => "TEXT COLLATE \"C\"".into(),
        ColumnType::Datetime => "TIMESTAMPTZ".into(),
        ColumnType::Date => "DATE".into(),
        ColumnType::Decimal => format!("NUMERIC({}, {})", c.precision, c.scale),
        ColumnType::Boolean => "BOOLEAN".into(),
    }
}

/// `name` is the qualified, quoted table name.
pub(crate) fn create_table_sql(name: &str, t: &Table) -> String {
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
    format!("CREATE TABLE {} ({});", name, cols.join(", "))
}
