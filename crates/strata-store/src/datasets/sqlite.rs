//! Dataset columns on SQLite: STRICT tables whose types hold each value exactly. Datetimes
//! are stored as integer microseconds (exact, sortable), dates as `YYYY-MM-DD`, decimals as
//! canonical text at the column's scale.

use strata_domain::dataset::{Column, ColumnType};

pub(crate) fn sql_type(c: &Column) -> String {
    match c.ty {
        ColumnType::Integer | ColumnType::Datetime | ColumnType::Boolean => "INTEGER".into(),
        ColumnType::String | ColumnType::Date | ColumnType::Decimal => "TEXT".into(),
    }
}
