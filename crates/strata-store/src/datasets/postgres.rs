//! Dataset columns on PostgreSQL: text in the "C" collation, so keys sort as on SQLite.

use strata_domain::dataset::{Column, ColumnType};

pub(crate) fn sql_type(c: &Column) -> String {
    match c.ty {
        ColumnType::Integer => "BIGINT".into(),
        ColumnType::String => "TEXT COLLATE \"C\"".into(),
        ColumnType::Datetime => "TIMESTAMPTZ".into(),
        ColumnType::Date => "DATE".into(),
        ColumnType::Decimal => format!("NUMERIC({}, {})", c.precision, c.scale),
        ColumnType::Boolean => "BOOLEAN".into(),
    }
}
