//! The data dictionary: datasets, tables, columns.
//!
//! A dataset definition is written by people (TOML or YAML, JSON over the API), so it is parsed
//! leniently where that is harmless (limits may be numbers or strings) and strictly everywhere
//! else (unknown fields are errors, not ignored). [`DatasetDef::check`] turns a definition into
//! [`Table`]s, the compiled form the validator and the storage layer use; it reports every
//! problem at once, each with the path of the offending field.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::value::{parse_text, Value};

/// Longest identifier we accept: PostgreSQL's limit.
pub const MAX_IDENT_LEN: usize = 63;
pub const MAX_TABLES: usize = 100;
/// Largest definition file accepted: 100 tables of 200 columns fit, with descriptions.
pub const MAX_DEFINITION_BYTES: usize = 1 << 20;
pub const MAX_COLUMNS: usize = 200;
/// rust_decimal holds 28 significant digits; we never round silently, so that is the ceiling.
pub const MAX_DECIMAL_PRECISION: u32 = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Integer,
    String,
    /// An instant, ISO 8601 / RFC 3339 with an explicit offset; stored in UTC.
    Datetime,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An exact decimal with a declared scale.
    Decimal,
    Boolean,
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::Integer => "integer",
            ColumnType::String => "string",
            ColumnType::Datetime => "datetime",
            ColumnType::Date => "date",
            ColumnType::Decimal => "decimal",
            ColumnType::Boolean => "boolean",
        })
    }
}

/// A bound as written in the file: a number or a string, kept as text and parsed with the
/// column's type, so `min = 0` and `min = "2020-01-01"` both work without floats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    Int(i64),
    Text(String),
}

impl Bound {
    fn text(&self) -> String {
        match self {
            Bound::Int(i) => i.to_string(),
            Bound::Text(s) => s.clone(),
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Every field is mandatory unless declared otherwise.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `table` (its primary key) or `table.column` (which must be that table's primary key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub primary_key: String,
    pub columns: Vec<ColumnDef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub tables: Vec<TableDef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
    Json,
}

impl Format {
    /// From a file name's extension.
    pub fn from_path(path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".toml") {
            Some(Format::Toml)
        } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Some(Format::Yaml)
        } else if lower.ends_with(".json") {
            Some(Format::Json)
        } else {
            None
        }
    }

    /// From an HTTP media type (parameters ignored).
    pub fn from_media_type(mt: &str) -> Option<Self> {
        let essence = mt.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/toml" | "text/toml" | "application/x-toml" => Some(Format::Toml),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => Some(Format::Yaml),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// One thing wrong with a definition, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DatasetError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for DatasetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.problems.iter().map(|p| p.to_string()).collect();
        write!(f, "invalid dataset definition: {}", parts.join("; "))
    }
}

impl DatasetError {
    fn one(path: &str, message: impl Into<String>) -> Self {
        Self { problems: vec![Problem { path: path.to_string(), message: message.into() }] }
    }
}

/// A foreign key, resolved: the referenced table and its primary-key column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub table: String,
    pub column: String,
}

/// A compiled column: limits parsed into values of the column's type.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub required: bool,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub min: Option<Value>,
    pub max: Option<Value>,
    /// Decimal columns only.
    pub precision: u32,
    pub scale: u32,
    pub references: Option<ForeignKey>,
}

/// A compiled table: what validation and storage work from.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub dataset: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// Index of the primary-key column.
    pub pk: usize,
    pub def: TableDef,
}

impl Table {
    pub fn pk_column(&self) -> &Column {
        &self.columns[self.pk]
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// `^[a-z][a-z0-9_]*$`, at most 63 bytes, and not in the `_strata` namespace Strata keeps for
/// itself. Identifiers are also always quoted in SQL; this rule keeps them portable and readable.
pub fn check_identifier(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_IDENT_LEN {
        return Err(format!("is {} characters long; the limit is {MAX_IDENT_LEN}", s.len()));
    }
    let mut bytes = s.bytes();
    let first = bytes.next().unwrap();
    if !first.is_ascii_lowercase() {
        return Err(format!("{s:?} must start with a lowercase letter a-z"));
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(format!("{s:?} may contain only lowercase letters, digits and '_'"));
    }
    if s.starts_with("strata_") || s.starts_with("pg_") || s.starts_with("sqlite_") {
        return Err(format!("{s:?} uses a prefix reserved for the system"));
    }
    Ok(())
}

impl DatasetDef {
    /// Parses text in the given format. Syntax errors keep the parser's line and column.
    /// Parses a definition, after checking its size and shape ([`crate::nesting`]) so that no
    /// parser ever sees a document whose cost grows faster than its length.
    pub fn parse(text: &str, format: Format) -> Result<Self, DatasetError> {
        if text.len() > MAX_DEFINITION_BYTES {
            return Err(DatasetError::one(
                "",
                format!("the definition is {} bytes; the limit is {MAX_DEFINITION_BYTES}", text.len()),
            ));
        }
        crate::nesting::check(text, format).map_err(|m| DatasetError::one("", m))?;
        let parsed = match format {
            Format::Toml => toml::from_str::<DatasetDef>(text).map_err(|e| e.to_string()),
            Format::Yaml => serde_yaml::from_str::<DatasetDef>(text).map_err(|e| e.to_string()),
            Format::Json => serde_json::from_str::<DatasetDef>(text).map_err(|e| e.to_string()),
        };
        parsed.map_err(|e| DatasetError::one("", e.trim().replace('\n', " ")))
    }

    /// Checks the definition and compiles its tables. `existing` resolves references to tables
    /// that other datasets of the same tenant already declare.
    pub fn check(&self, existing: &dyn Fn(&str) -> Option<Table>) -> Result<Vec<Table>, DatasetError> {
        let mut problems = Vec::new();
        let mut push = |path: String, message: String| problems.push(Problem { path, message });

        if let Err(e) = check_identifier(&self.name) {
            push("name".into(), format!("dataset name {e}"));
        }
        if self.tables.is_empty() {
            push("tables".into(), "a dataset declares at least one table".into());
        }
        if self.tables.len() > MAX_TABLES {
            push("tables".into(), format!("{} tables; the limit is {MAX_TABLES}", self.tables.len()));
        }

        // Pass 1: names, columns, types, limits. Collect what pass 2 needs to resolve references.
        let mut seen_tables = HashSet::new();
        let mut compiled: Vec<Table> = Vec::new();
        for (ti, t) in self.tables.iter().enumerate() {
            let tpath = format!("tables[{ti}]");
            if let Err(e) = check_identifier(&t.name) {
                push(format!("{tpath}.name"), format!("table name {e}"));
            }
            if !seen_tables.insert(t.name.clone()) {
                push(format!("{tpath}.name"), format!("table {:?} is declared twice", t.name));
            }
            if t.columns.is_empty() {
                push(format!("{tpath}.columns"), "a table declares at least one column".into());
            }
            if t.columns.len() > MAX_COLUMNS {
                push(format!("{tpath}.columns"), format!("{} columns; the limit is {MAX_COLUMNS}", t.columns.len()));
            }
            let mut seen_cols = HashSet::new();
            let mut columns = Vec::new();
            for (ci, c) in t.columns.iter().enumerate() {
                let cpath = format!("{tpath}.columns[{ci}]");
                if let Err(e) = check_identifier(&c.name) {
                    push(format!("{cpath}.name"), format!("column name {e}"));
                }
                if !seen_cols.insert(c.name.clone()) {
                    push(format!("{cpath}.name"), format!("column {:?} is declared twice", c.name));
                }
                match compile_column(c, c.name == t.primary_key) {
                    Ok(col) => columns.push(col),
                    Err(errs) => {
                        for (field, msg) in errs {
                            push(format!("{cpath}.{field}"), msg);
                        }
                    }
                }
            }
            let pk = t.columns.iter().position(|c| c.name == t.primary_key);
            match pk {
                None => push(
                    format!("{tpath}.primary_key"),
                    format!("primary key {:?} is not a column of table {:?}", t.primary_key, t.name),
                ),
                Some(i) => {
                    let c = &t.columns[i];
                    if !matches!(c.ty, ColumnType::Integer | ColumnType::String) {
                        push(
                            format!("{tpath}.primary_key"),
                            format!("primary key {:?} is a {}; keys must be integer or string", c.name, c.ty),
                        );
                    }
                    if !c.required {
                        push(
                            format!("{tpath}.columns[{i}].required"),
                            "a primary-key column cannot be optional".into(),
                        );
                    }
                }
            }
            if columns.len() == t.columns.len() {
                if let Some(pk) = pk {
                    compiled.push(Table {
                        dataset: self.name.clone(),
                        name: t.name.clone(),
                        columns,
                        pk,
                        def: t.clone(),
                    });
                }
            }
        }

        // Pass 2: resolve foreign keys within this dataset first, then among existing tables.
        let local: HashMap<String, Table> = compiled.iter().map(|t| (t.name.clone(), t.clone())).collect();
        for (ti, t) in self.tables.iter().enumerate() {
            for (ci, c) in t.columns.iter().enumerate() {
                let Some(reference) = &c.references else { continue };
                let path = format!("tables[{ti}].columns[{ci}].references");
                let (rt, rc) = match reference.split_once('.') {
                    Some((a, b)) => (a.to_string(), Some(b.to_string())),
                    None => (reference.clone(), None),
                };
                let target = local.get(&rt).cloned().or_else(|| existing(&rt));
                let Some(target) = target else {
                    push(path, format!("references unknown table {rt:?}"));
                    continue;
                };
                let tpk = target.pk_column();
                if let Some(rc) = &rc {
                    if rc != &tpk.name {
                        push(
                            path,
                            format!("a reference must point at the primary key of {rt:?} ({:?}), not {rc:?}", tpk.name),
                        );
                        continue;
                    }
                }
                if tpk.ty != c.ty {
                    push(path, format!("column {:?} is a {} but {rt}.{} is a {}", c.name, c.ty, tpk.name, tpk.ty));
                    continue;
                }
                if let Some(table) = compiled.iter_mut().find(|x| x.name == t.name) {
                    if let Some(col) = table.columns.iter_mut().find(|x| x.name == c.name) {
                        col.references = Some(ForeignKey { table: rt.clone(), column: tpk.name.clone() });
                    }
                }
            }
        }

        if problems.is_empty() {
            Ok(compiled)
        } else {
            Err(DatasetError { problems })
        }
    }
}

/// Compiles one column, returning every (field, problem) pair it finds.
fn compile_column(c: &ColumnDef, is_pk: bool) -> Result<Column, Vec<(&'static str, String)>> {
    let mut errs = Vec::new();
    let is = |t: ColumnType| c.ty == t;

    if (c.min_length.is_some() || c.max_length.is_some()) && !is(ColumnType::String) {
        errs.push(("max_length", format!("length limits apply to strings, not to a {}", c.ty)));
    }
    if let (Some(a), Some(b)) = (c.min_length, c.max_length) {
        if a > b {
            errs.push(("min_length", format!("min_length {a} is greater than max_length {b}")));
        }
    }
    if c.max_length == Some(0) {
        errs.push(("max_length", "max_length must be at least 1".into()));
    }
    if (c.min.is_some() || c.max.is_some()) && matches!(c.ty, ColumnType::String | ColumnType::Boolean) {
        errs.push(("min", format!("range limits do not apply to a {}", c.ty)));
    }
    if (c.precision.is_some() || c.scale.is_some()) && !is(ColumnType::Decimal) {
        errs.push(("scale", format!("precision and scale apply to decimals, not to a {}", c.ty)));
    }
    let (mut precision, mut scale) = (0, 0);
    if is(ColumnType::Decimal) {
        precision = c.precision.unwrap_or(MAX_DECIMAL_PRECISION);
        match c.scale {
            None => errs.push(("scale", "a decimal column needs a scale: the number of digits after the point".into())),
            Some(s) => scale = s,
        }
        if precision == 0 || precision > MAX_DECIMAL_PRECISION {
            errs.push(("precision", format!("precision must be between 1 and {MAX_DECIMAL_PRECISION}")));
        }
        if scale > precision {
            errs.push(("scale", format!("scale {scale} is greater than precision {precision}")));
        }
    }
    let mut column = Column {
        name: c.name.clone(),
        ty: c.ty,
        required: c.required || is_pk,
        min_length: c.min_length.map(|v| v as usize),
        max_length: c.max_length.map(|v| v as usize),
        min: None,
        max: None,
        precision,
        scale,
        references: None,
    };
    if errs.is_empty() {
        for (field, bound) in [("min", &c.min), ("max", &c.max)] {
            let Some(bound) = bound else { continue };
            match parse_text(&column, &bound.text()) {
                Ok(v) => {
                    if field == "min" {
                        column.min = Some(v)
                    } else {
                        column.max = Some(v)
                    }
                }
                Err(e) => errs.push((field, format!("{field} {:?}: {}", bound.text(), e.reason))),
            }
        }
        if let (Some(a), Some(b)) = (&column.min, &column.max) {
            if a.partial_cmp(b) == Some(std::cmp::Ordering::Greater) {
                errs.push(("min", "min is greater than max".into()));
            }
        }
    }
    if errs.is_empty() {
        Ok(column)
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<Table> {
        None
    }

    #[test]
    fn the_builtin_hr_dataset_compiles_with_its_foreign_keys() {
        let def = crate::hr::definition();
        let tables = def.check(&none).unwrap();
        let employees = tables.iter().find(|t| t.name == "employees").unwrap();
        assert_eq!(employees.pk_column().name, "employee_id");
        let dep = &employees.columns[employees.column_index("department_id").unwrap()];
        assert_eq!(dep.references, Some(ForeignKey { table: "departments".into(), column: "department_id".into() }));
    }

    #[test]
    fn yaml_and_toml_definitions_are_equivalent() {
        let toml = r#"
name = "shop"
[[tables]]
name = "items"
primary_key = "sku"
columns = [
  { name = "sku", type = "string", max_length = 20 },
  { name = "price", type = "decimal", scale = 2, min = 0 },
  { name = "added", type = "date", required = false },
]
"#;
        let yaml = r#"
name: shop
tables:
  - name: items
    primary_key: sku
    columns:
      - {name: sku, type: string, max_length: 20}
      - {name: price, type: decimal, scale: 2, min: 0}
      - {name: added, type: date, required: false}
"#;
        let a = DatasetDef::parse(toml, Format::Toml).unwrap();
        let b = DatasetDef::parse(yaml, Format::Yaml).unwrap();
        assert_eq!(a, b);
        assert!(a.check(&none).is_ok());
    }

    #[test]
    fn every_problem_in_a_definition_is_reported_with_its_path() {
        let json = r#"{"name": "Bad", "tables": [
            {"name": "t", "primary_key": "nope", "columns": [
                {"name": "a", "type": "string", "min": 3},
                {"name": "a", "type": "integer", "references": "ghost"},
                {"name": "d", "type": "decimal"}
            ]}]}"#;
        let err = DatasetDef::parse(json, Format::Json).unwrap().check(&none).unwrap_err();
        let text = err.to_string();
        for needle in [
            "name: dataset name",
            "tables[0].primary_key",
            "tables[0].columns[0].min",
            "declared twice",
            "unknown table \"ghost\"",
            "needs a scale",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
    }

    #[test]
    fn unknown_fields_and_types_are_syntax_errors() {
        let e = DatasetDef::parse("name = \"x\"\ntables = []\ncolour = \"red\"\n", Format::Toml).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = DatasetDef::parse(
            "name: x\ntables: [{name: t, primary_key: a, columns: [{name: a, type: float}]}]",
            Format::Yaml,
        )
        .unwrap_err();
        assert!(e.to_string().contains("float"), "{e}");
    }

    #[test]
    fn references_must_match_the_target_key_type() {
        let def = DatasetDef::parse(
            r#"{"name":"x","tables":[
              {"name":"p","primary_key":"id","columns":[{"name":"id","type":"string"}]},
              {"name":"c","primary_key":"id","columns":[{"name":"id","type":"integer"},
                 {"name":"p_id","type":"integer","references":"p.id"}]}]}"#,
            Format::Json,
        )
        .unwrap();
        let e = def.check(&none).unwrap_err().to_string();
        assert!(e.contains("is a integer but p.id is a string") || e.contains("p.id is a string"), "{e}");
    }

    #[test]
    fn reserved_and_hostile_identifiers_are_refused() {
        for bad in ["strata_x", "a-b", "a;drop table x", "../etc", "A", "1a", ""] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
        assert!(check_identifier(&"a".repeat(64)).is_err());
        assert!(check_identifier("employees").is_ok());
    }
}
