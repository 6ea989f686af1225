//! Row validation against a compiled table: every reason a row is wrong, not just the first.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::dataset::Table;
use crate::value::{parse_json, parse_text, FieldError, Reason, Value};

pub type RowResult = Result<Vec<Value>, Vec<FieldError>>;

/// Validates a CSV record's fields (in column order).
pub fn validate_fields<S: AsRef<str>>(table: &Table, fields: &[S]) -> RowResult {
    if fields.len() != table.columns.len() {
        return Err(vec![FieldError {
            column: None,
            code: Reason::WrongColumnCount,
            reason: format!(
                "row has {} fields; table {} has {} columns",
                fields.len(),
                table.name,
                table.columns.len()
            ),
        }]);
    }
    let mut values = Vec::with_capacity(fields.len());
    let mut errors = Vec::new();
    for (col, field) in table.columns.iter().zip(fields) {
        match parse_text(col, field.as_ref()) {
            Ok(v) => values.push(v),
            Err(e) => errors.push(FieldError { column: Some(col.name.clone()), code: e.code, reason: e.reason }),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// Like [`validate_fields`], but moves string fields into the values instead of copying them:
/// the bulk-load path, where allocations are a large share of the cost.
pub fn validate_owned(table: &Table, fields: Vec<String>) -> RowResult {
    if fields.len() != table.columns.len() {
        return validate_fields(table, &fields);
    }
    let mut values = Vec::with_capacity(fields.len());
    let mut errors = Vec::new();
    for (col, field) in table.columns.iter().zip(fields) {
        let parsed = if col.ty == crate::dataset::ColumnType::String && !field.is_empty() && !field.contains('\0') {
            let v = Value::Text(field);
            crate::value::check_limits(col, &v).map(|_| v)
        } else {
            parse_text(col, &field)
        };
        match parsed {
            Ok(v) => values.push(v),
            Err(e) => errors.push(FieldError { column: Some(col.name.clone()), code: e.code, reason: e.reason }),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// Validates a JSON object row. Absent columns count as missing; unknown ones are errors, since
/// a typo would otherwise drop data silently.
pub fn validate_object(table: &Table, row: &HashMap<String, Box<RawValue>>) -> RowResult {
    let mut values = Vec::with_capacity(table.columns.len());
    let mut errors = Vec::new();
    for col in &table.columns {
        let result = match row.get(&col.name) {
            Some(raw) => parse_json(col, raw),
            None => parse_text(col, ""),
        };
        match result {
            Ok(v) => values.push(v),
            Err(e) => errors.push(FieldError { column: Some(col.name.clone()), code: e.code, reason: e.reason }),
        }
    }
    let mut unknown: Vec<&String> = row.keys().filter(|k| table.column_index(k).is_none()).collect();
    unknown.sort();
    for k in unknown {
        let name: String = k.chars().take(64).collect();
        errors.push(FieldError {
            column: Some(name.clone()),
            code: Reason::UnknownColumn,
            reason: format!("table {} has no column {name:?}", table.name),
        });
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
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
        let errs = validate_fields(&t, &["x", "", "2021-99-01T00:00:00Z", "1", "2"]).unwrap_err();
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
        let errs = validate_fields(&t, &["1", "a"]).unwrap_err();
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
        let errs = validate_object(&t, &row).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].code, Reason::MissingField);
        assert_eq!(errs[0].column.as_deref(), Some("job_id"));
        assert_eq!(errs[1].code, Reason::UnknownColumn);
    }
}
