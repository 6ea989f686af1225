//! Row validation against a compiled table: every reason a row is wrong, not just the first.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::dataset::Table;
use crate::value::{parse_json, parse_text, FieldError, Reason, Value};

pub type RowResult = Result<Vec<Value>, Invalid>;

/// A row that cannot go in: every reason found so far, and the values that did parse (in
/// column order, `None` where a field was refused), so that the store can still check their
/// foreign keys and report those reasons too. `parsed` is empty when the record could not be
/// split into fields at all.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub errors: Vec<FieldError>,
    pub parsed: Vec<Option<Value>>,
}

impl Invalid {
    /// A row refused as a whole (a broken record, a wrong field count): no field parsed.
    pub fn whole(error: FieldError) -> Self {
        Self { errors: vec![error], parsed: Vec::new() }
    }
}

/// Collects per-column outcomes into a row result.
#[derive(Default)]
pub struct RowBuilder {
    values: Vec<Option<Value>>,
    errors: Vec<FieldError>,
}

impl RowBuilder {
    pub fn with_capacity(n: usize) -> Self {
        Self { values: Vec::with_capacity(n), errors: Vec::new() }
    }

    pub fn push(&mut self, col: &crate::dataset::Column, v: Result<Value, crate::value::ValueError>) {
        match v {
            Ok(v) => self.values.push(Some(v)),
            Err(e) => {
                self.values.push(None);
                self.errors.push(FieldError { column: Some(col.name.clone()), code: e.code, reason: e.reason });
            }
        }
    }

    pub fn error(&mut self, e: FieldError) {
        self.errors.push(e);
    }

    pub fn finish(self) -> RowResult {
        if self.errors.is_empty() {
            Ok(self.values.into_iter().map(|v| v.unwrap_or(Value::Null)).collect())
        } else {
            Err(Invalid { errors: self.errors, parsed: self.values })
        }
    }
}

/// Validates a CSV record's fields (in column order).
pub fn validate_fields<S: AsRef<str>>(table: &Table, fields: &[S]) -> RowResult {
    if fields.len() != table.columns.len() {
        return Err(Invalid::whole(FieldError {
            column: None,
            code: Reason::WrongColumnCount,
            reason: format!(
                "row has {} fields; table {} has {} columns",
                fields.len(),
                table.name,
                table.columns.len()
            ),
        }));
    }
    let mut row = RowBuilder::with_capacity(fields.len());
    for (col, field) in table.columns.iter().zip(fields) {
        row.push(col, parse_text(col, field.as_ref()));
    }
    row.finish()
}

/// Like [`validate_fields`], but moves string fields into the values instead of copying them:
/// the bulk-load path, where allocations are a large share of the cost.
pub fn validate_owned(table: &Table, fields: Vec<String>) -> RowResult {
    if fields.len() != table.columns.len() {
        return validate_fields(table, &fields);
    }
    let mut row = RowBuilder::with_capacity(fields.len());
    for (col, field) in table.columns.iter().zip(fields) {
        row.push(col, crate::value::parse_text_owned(col, field));
    }
    row.finish()
}

/// Validates a JSON object row. Absent columns count as missing; unknown ones are errors, since
/// a typo would otherwise drop data silently.
pub fn validate_object(table: &Table, row: &HashMap<String, Box<RawValue>>) -> RowResult {
    let mut out = RowBuilder::with_capacity(table.columns.len());
    for col in &table.columns {
        let result = match row.get(&col.name) {
            Some(raw) => parse_json(col, raw),
            None => parse_text(col, ""),
        };
        out.push(col, result);
    }
    let mut unknown: Vec<&String> = row.keys().filter(|k| table.column_index(k).is_none()).collect();
    unknown.sort();
    for k in unknown {
        let name: String = k.chars().take(64).collect();
        out.error(FieldError {
            column: Some(name.clone()),
            code: Reason::UnknownColumn,
            reason: format!("table {} has no column {name:?}", table.name),
        });
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn employees() -> Table {
        crate::hr::definition().check(&|_| None).unwrap().into_iter().find(|t| t.name == "employees").unwrap()
    }

    #[test]
    fn a_row_with_several_problems_lists_them_all() {
        let t = employees();
        let errs = validate_fields(&t, &["x", "", "2021-99-01T00:00:00Z", "1", "2"]).unwrap_err().errors;
        let codes: Vec<Reason> = errs.iter().map(|e| e.code).collect();
        assert_eq!(codes, vec![Reason::InvalidInteger, Reason::MissingField, Reason::InvalidDatetime]);
        assert_eq!(errs[1].column.as_deref(), Some("employee_name"));
    }

    #[test]
    fn owned_and_borrowed_validation_agree() {
        let t = employees();
        for row in [
            vec!["1", "Ann", "2021-01-01T00:00:00Z", "1", "2"],
            vec!["x", "", "bad", "1", "2"],
            vec!["1", "nul\0", "2021-01-01T00:00:00Z", "1", "2"],
            vec!["1", "a"],
        ] {
            let owned: Vec<String> = row.iter().map(|s| s.to_string()).collect();
            assert_eq!(validate_owned(&t, owned), validate_fields(&t, &row), "{row:?}");
        }
    }

    #[test]
    fn wrong_column_counts_are_one_clear_error() {
        let t = employees();
        let errs = validate_fields(&t, &["1", "a"]).unwrap_err().errors;
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].code, Reason::WrongColumnCount);
        assert!(errs[0].reason.contains("2 fields"));
    }

    #[test]
    fn json_rows_report_missing_and_unknown_columns() {
        let t = employees();
        let row: HashMap<String, Box<RawValue>> = serde_json::from_str(
            r#"{"employee_id": 1, "employee_name": "A", "hiring_date": "2021-01-01T00:00:00Z",
                "department_id": 1, "salary": 3}"#,
        )
        .unwrap();
        let errs = validate_object(&t, &row).unwrap_err().errors;
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].code, Reason::MissingField);
        assert_eq!(errs[0].column.as_deref(), Some("job_id"));
        assert_eq!(errs[1].code, Reason::UnknownColumn);
    }
}
