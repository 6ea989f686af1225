//! Typed cell values, read from CSV text or JSON and written back.
//!
//! Parsing is exact: integers are `i64`, decimals go through a digit-counting parser and
//! `rust_decimal` (never a float), datetimes become microseconds since the epoch in UTC.
//! Empty text counts as a missing value in every format, so a CSV row and the same row sent as
//! JSON are judged alike.

use std::cmp::Ordering;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::dataset::{Column, ColumnType};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    /// Microseconds since 1970-01-01T00:00:00Z.
    DateTime(i64),
    Date(NaiveDate),
    /// Already rescaled to the column's scale.
    Decimal(Decimal),
    Bool(bool),
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        use Value::*;
        match (self, other) {
            (Int(a), Int(b)) => a.partial_cmp(b),
            (Text(a), Text(b)) => a.partial_cmp(b),
            (DateTime(a), DateTime(b)) => a.partial_cmp(b),
            (Date(a), Date(b)) => a.partial_cmp(b),
            (Decimal(a), Decimal(b)) => a.partial_cmp(b),
            (Bool(a), Bool(b)) => a.partial_cmp(b),
            _ => None,
        }
    }
}

/// Why a value was refused. The code is stable; the reason is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    MissingField,
    InvalidInteger,
    InvalidString,
    InvalidDatetime,
    InvalidDate,
    InvalidDecimal,
    InvalidBoolean,
    TooLong,
    TooShort,
    OutOfRange,
    WrongColumnCount,
    UnknownColumn,
    MalformedRecord,
    InvalidEncoding,
    UnknownForeignKey,
    DuplicateKey,
}

/// A refused value: which column (when one is to blame), the code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub column: Option<String>,
    pub code: Reason,
    pub reason: String,
}

/// The error of parsing one value, before a column name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub code: Reason,
    pub reason: String,
}

fn err(code: Reason, reason: impl Into<String>) -> ValueError {
    ValueError { code, reason: reason.into() }
}

/// Earliest and latest instants we accept: years 1 to 9999, which every backend can store.
const MIN_YEAR: i32 = 1;
const MAX_YEAR: i32 = 9999;

/// Parses CSV text (or a JSON string) for a column, then checks its limits.
pub fn parse_text(col: &Column, text: &str) -> Result<Value, ValueError> {
    let v = parse_text_unchecked(col, text)?;
    check_limits(col, &v)?;
    Ok(v)
}

/// The one trimming rule, for every type and every path (CSV, JSON strings, Avro, the CLI):
/// spaces and tabs around a value are dropped, and a value that is only spaces and tabs is
/// missing. Spreadsheets pad numbers and names alike, and a name of three spaces is no name.
/// Other whitespace (a newline inside a quoted field, say) is data and is kept.
pub fn trim_blanks(text: &str) -> &str {
    text.trim_matches(|c: char| c == ' ' || c == '\t')
}

/// Like [`parse_text`], but moves a string value instead of copying it when nothing is
/// trimmed: the bulk-load path, where allocations are a large share of the cost.
pub fn parse_text_owned(col: &Column, text: String) -> Result<Value, ValueError> {
    if col.ty == ColumnType::String && !text.is_empty() && trim_blanks(&text).len() == text.len() {
        if text.contains('\0') {
            return Err(err(Reason::InvalidString, "text contains a NUL character"));
        }
        let v = Value::Text(text);
        check_limits(col, &v)?;
        return Ok(v);
    }
    parse_text(col, &text)
}

fn parse_text_unchecked(col: &Column, text: &str) -> Result<Value, ValueError> {
    let trimmed = trim_blanks(text);
    if trimmed.is_empty() {
        return if col.required {
            Err(err(Reason::MissingField, "value is required but missing"))
        } else {
            Ok(Value::Null)
        };
    }
    match col.ty {
        ColumnType::Integer => parse_integer(trimmed).map(Value::Int),
        ColumnType::String => {
            if trimmed.contains('\0') {
                Err(err(Reason::InvalidString, "text contains a NUL character"))
            } else {
                Ok(Value::Text(trimmed.to_string()))
            }
        }
        ColumnType::Datetime => parse_datetime(trimmed).map(Value::DateTime),
        ColumnType::Date => parse_date(trimmed).map(Value::Date),
        ColumnType::Decimal => parse_decimal(trimmed, col.precision, col.scale).map(Value::Decimal),
        ColumnType::Boolean => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(err(
                Reason::InvalidBoolean,
                format!("{} is not a boolean (use true, false, 1 or 0)", quote(trimmed)),
            )),
        },
    }
}

/// Parses one JSON value for a column. Numbers are read from their text, so decimals stay exact.
pub fn parse_json(col: &Column, raw: &RawValue) -> Result<Value, ValueError> {
    let text = raw.get().trim();
    let first = text.as_bytes().first().copied().unwrap_or(b'n');
    let v = match first {
        b'n' => {
            if col.required {
                return Err(err(Reason::MissingField, "value is required but null"));
            }
            return Ok(Value::Null);
        }
        b'"' => {
            let s: String =
                serde_json::from_str(text).map_err(|_| err(Reason::InvalidString, "not a valid JSON string"))?;
            if col.ty == ColumnType::Integer {
                return Err(err(
                    Reason::InvalidInteger,
                    format!("expected a JSON integer, got the string {}", quote(&s)),
                ));
            }
            if col.ty == ColumnType::Boolean {
                return Err(err(
                    Reason::InvalidBoolean,
                    format!("expected true or false, got the string {}", quote(&s)),
                ));
            }
            parse_text_unchecked(col, &s)?
        }
        b't' | b'f' => match col.ty {
            ColumnType::Boolean => Value::Bool(first == b't'),
            _ => return Err(type_mismatch(col, "a boolean")),
        },
        b'-' | b'0'..=b'9' => match col.ty {
            ColumnType::Integer => Value::Int(parse_integer(text)?),
            ColumnType::Decimal => Value::Decimal(parse_decimal(text, col.precision, col.scale)?),
            _ => return Err(type_mismatch(col, "a number")),
        },
        b'[' => return Err(type_mismatch(col, "an array")),
        _ => return Err(type_mismatch(col, "an object")),
    };
    check_limits(col, &v)?;
    Ok(v)
}

fn type_mismatch(col: &Column, got: &str) -> ValueError {
    let (code, want) = match col.ty {
        ColumnType::Integer => (Reason::InvalidInteger, "an integer"),
        ColumnType::String => (Reason::InvalidString, "a string"),
        ColumnType::Datetime => (Reason::InvalidDatetime, "an ISO 8601 datetime string"),
        ColumnType::Date => (Reason::InvalidDate, "a YYYY-MM-DD date string"),
        ColumnType::Decimal => (Reason::InvalidDecimal, "a decimal string or number"),
        ColumnType::Boolean => (Reason::InvalidBoolean, "true or false"),
    };
    err(code, format!("expected {want}, got {got}"))
}

fn quote(s: &str) -> String {
    // Keep reasons short even when the value is huge.
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

fn parse_integer(s: &str) -> Result<i64, ValueError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(Reason::InvalidInteger, format!("{} is not an integer", quote(s))));
    }
    s.parse::<i64>().map_err(|_| err(Reason::OutOfRange, format!("{} does not fit in a 64-bit integer", quote(s))))
}

fn parse_datetime(s: &str) -> Result<i64, ValueError> {
    let bad = || {
        err(
            Reason::InvalidDatetime,
            format!("{} is not an ISO 8601 datetime with an offset, like 2021-07-27T16:02:08Z", quote(s)),
        )
    };
    // RFC 3339 fixes the shape: YYYY-MM-DDTHH:MM:SS, then fraction and offset.
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let dt = DateTime::parse_from_rfc3339(s).map_err(|_| bad())?;
    let utc = dt.with_timezone(&Utc);
    if utc.timestamp_subsec_nanos() % 1000 != 0 {
        return Err(err(Reason::InvalidDatetime, format!("{} has more precision than microseconds", quote(s))));
    }
    let year = chrono::Datelike::year(&utc);
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
        return Err(err(Reason::OutOfRange, format!("{} is outside the years 1 to 9999", quote(s))));
    }
    Ok(utc.timestamp_micros())
}

fn parse_date(s: &str) -> Result<NaiveDate, ValueError> {
    let b = s.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    let date = if shaped { NaiveDate::parse_from_str(s, "%Y-%m-%d").ok() } else { None };
    match date {
        Some(d) if chrono::Datelike::year(&d) >= MIN_YEAR => Ok(d),
        _ => Err(err(Reason::InvalidDate, format!("{} is not a date like 2021-07-27", quote(s)))),
    }
}

/// Exact decimal parsing: plain notation only, at most `scale` digits after the point and
/// `precision - scale` before it. Never rounds.
pub fn parse_decimal(s: &str, precision: u32, scale: u32) -> Result<Decimal, ValueError> {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, f),
        None => (unsigned, ""),
    };
    let well_formed = !int_part.is_empty()
        && int_part.bytes().all(|b| b.is_ascii_digit())
        && frac_part.bytes().all(|b| b.is_ascii_digit())
        && !(unsigned.ends_with('.'));
    if !well_formed {
        return Err(err(Reason::InvalidDecimal, format!("{} is not a decimal number like 1234.56", quote(s))));
    }
    let frac_digits = frac_part.len() as u32;
    if frac_digits > scale {
        return Err(err(
            Reason::InvalidDecimal,
            format!("{} has {frac_digits} decimal places; at most {scale} allowed", quote(s)),
        ));
    }
    let int_digits = int_part.trim_start_matches('0').len() as u32;
    if int_digits > precision - scale {
        return Err(err(
            Reason::OutOfRange,
            format!("{} has {int_digits} digits before the point; at most {} allowed", quote(s), precision - scale),
        ));
    }
    let mut d = Decimal::from_str(s.strip_prefix('+').unwrap_or(s))
        .map_err(|_| err(Reason::InvalidDecimal, format!("{} is not a decimal number", quote(s))))?;
    d.rescale(scale);
    Ok(d)
}

/// Checks a typed value against the column's length and range limits.
pub fn check_limits(col: &Column, v: &Value) -> Result<(), ValueError> {
    if let Value::Text(s) = v {
        let n = s.chars().count();
        if let Some(max) = col.max_length {
            if n > max {
                return Err(err(Reason::TooLong, format!("text is {n} characters long; at most {max} allowed")));
            }
        }
        if let Some(min) = col.min_length {
            if n < min {
                return Err(err(Reason::TooShort, format!("text is {n} characters long; at least {min} required")));
            }
        }
    }
    if let Some(min) = &col.min {
        if v.partial_cmp(min) == Some(Ordering::Less) {
            return Err(err(Reason::OutOfRange, format!("{} is below the minimum {}", v.to_text(), min.to_text())));
        }
    }
    if let Some(max) = &col.max {
        if v.partial_cmp(max) == Some(Ordering::Greater) {
            return Err(err(Reason::OutOfRange, format!("{} is above the maximum {}", v.to_text(), max.to_text())));
        }
    }
    Ok(())
}

/// Formats microseconds since the epoch as RFC 3339 in UTC with a `Z`.
pub fn format_datetime(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

impl Value {
    /// The canonical text form: what CSV exports and comparisons use.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Int(i) => i.to_string(),
            Value::Text(s) => s.clone(),
            Value::DateTime(us) => format_datetime(*us),
            Value::Date(d) => d.format("%Y-%m-%d").to_string(),
            Value::Decimal(d) => d.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }

    /// The JSON form: integers and booleans as JSON, decimals and times as strings.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            other => serde_json::Value::String(other.to_text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ty: ColumnType) -> Column {
        Column {
            name: "c".into(),
            ty,
            required: true,
            min_length: None,
            max_length: None,
            min: None,
            max: None,
            precision: 10,
            scale: 2,
            references: None,
        }
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn datetimes_are_parsed_to_utc_and_printed_back_identically() {
        let c = col(ColumnType::Datetime);
        let v = parse_text(&c, "2021-07-27T16:02:08Z").unwrap();
        assert_eq!(v.to_text(), "2021-07-27T16:02:08Z");
        let v = parse_text(&c, "2021-07-27T18:02:08+02:00").unwrap();
        assert_eq!(v.to_text(), "2021-07-27T16:02:08Z");
        let v = parse_text(&c, "2021-07-27T16:02:08.5Z").unwrap();
        assert_eq!(v.to_text(), "2021-07-27T16:02:08.500Z");
    }

    #[test]
    fn malformed_datetimes_are_refused() {
        let c = col(ColumnType::Datetime);
        for bad in [
            "2027-08-29T00:0:1Z",
            "2021-07-27",
            "2021-07-27T16:02:08",
            "2021-13-01T00:00:00Z",
            "yesterday",
            "2021-07-27T16:02:08.123456789Z",
        ] {
            let e = parse_text(&c, bad).unwrap_err();
            assert_eq!(e.code, Reason::InvalidDatetime, "{bad}");
        }
    }

    #[test]
    fn empty_required_values_are_missing_and_optional_ones_null() {
        let mut c = col(ColumnType::Integer);
        assert_eq!(parse_text(&c, "").unwrap_err().code, Reason::MissingField);
        c.required = false;
        assert_eq!(parse_text(&c, "").unwrap(), Value::Null);
        assert_eq!(parse_json(&c, &raw("null")).unwrap(), Value::Null);
    }

    #[test]
    fn decimals_are_exact_and_never_rounded() {
        let c = col(ColumnType::Decimal);
        assert_eq!(parse_text(&c, "12.5").unwrap().to_text(), "12.50");
        assert_eq!(parse_json(&c, &raw("12.34")).unwrap().to_text(), "12.34");
        assert_eq!(parse_text(&c, "12.345").unwrap_err().code, Reason::InvalidDecimal);
        assert_eq!(parse_text(&c, "123456789").unwrap_err().code, Reason::OutOfRange);
        assert_eq!(parse_text(&c, "1e3").unwrap_err().code, Reason::InvalidDecimal);
        assert_eq!(parse_text(&c, "1.").unwrap_err().code, Reason::InvalidDecimal);
        assert_eq!(parse_text(&c, "-0.01").unwrap().to_text(), "-0.01");
    }

    #[test]
    fn json_types_must_match_the_column() {
        let i = col(ColumnType::Integer);
        assert_eq!(parse_json(&i, &raw("42")).unwrap(), Value::Int(42));
        assert_eq!(parse_json(&i, &raw("\"42\"")).unwrap_err().code, Reason::InvalidInteger);
        assert_eq!(parse_json(&i, &raw("4.2")).unwrap_err().code, Reason::InvalidInteger);
        assert_eq!(parse_json(&i, &raw("{}")).unwrap_err().code, Reason::InvalidInteger);
        let s = col(ColumnType::String);
        assert_eq!(parse_json(&s, &raw("7")).unwrap_err().code, Reason::InvalidString);
        let b = col(ColumnType::Boolean);
        assert_eq!(parse_json(&b, &raw("true")).unwrap(), Value::Bool(true));
        assert_eq!(parse_text(&b, "0").unwrap(), Value::Bool(false));
    }

    #[test]
    fn integers_out_of_range_and_limits_are_reported() {
        let mut c = col(ColumnType::Integer);
        assert_eq!(parse_text(&c, "99999999999999999999").unwrap_err().code, Reason::OutOfRange);
        c.min = Some(Value::Int(1));
        assert_eq!(parse_text(&c, "0").unwrap_err().code, Reason::OutOfRange);
        assert_eq!(parse_text(&c, " 5 ").unwrap(), Value::Int(5));
        let mut s = col(ColumnType::String);
        s.max_length = Some(3);
        assert_eq!(parse_text(&s, "abcd").unwrap_err().code, Reason::TooLong);
        assert_eq!(parse_text(&s, "äöü").unwrap(), Value::Text("äöü".into()));
        assert_eq!(parse_text(&s, "a\0").unwrap_err().code, Reason::InvalidString);
    }

    #[test]
    fn dates_must_be_calendar_dates() {
        let c = col(ColumnType::Date);
        assert_eq!(parse_text(&c, "2024-02-29").unwrap().to_text(), "2024-02-29");
        assert_eq!(parse_text(&c, "2023-02-29").unwrap_err().code, Reason::InvalidDate);
        assert_eq!(parse_text(&c, "2023-2-1").unwrap_err().code, Reason::InvalidDate);
    }
}
