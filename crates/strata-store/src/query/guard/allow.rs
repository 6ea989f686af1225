//! What a query may name: the function allowlist, the types it may cast to, and the names it
//! may never use (system schemas, Strata's own tables, object-identifier types).

use sqlparser::ast::{ArrayElemTypeDef, DataType};

use super::parts;

/// Functions a query may call. Everything an analyst uses to aggregate, format and compare,
/// and nothing that reads files, settings, other databases or the server's state.
pub(crate) const ALLOWED_FUNCTIONS: &[&str] = &[
    // aggregates
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "total",
    "group_concat",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    // window functions
    "row_number",
    "rank",
    "dense_rank",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    "percent_rank",
    "cume_dist",
    // conditionals
    "coalesce",
    "nullif",
    "ifnull",
    "iif",
    "greatest",
    "least",
    "likely",
    "unlikely",
    // numbers
    "abs",
    "round",
    "ceil",
    "ceiling",
    "floor",
    "sign",
    "sqrt",
    "power",
    "pow",
    "mod",
    "trunc",
    "exp",
    "ln",
    "log",
    "log10",
    "div",
    // text
    "lower",
    "upper",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "trim",
    "ltrim",
    "rtrim",
    "btrim",
    "substr",
    "substring",
    "replace",
    "instr",
    "strpos",
    "position",
    "concat",
    "concat_ws",
    "left",
    "right",
    "lpad",
    "rpad",
    "reverse",
    "initcap",
    "split_part",
    "starts_with",
    "printf",
    "format",
    "like",
    "glob",
    "md5",
    "hex",
    // dates and times
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "date_trunc",
    "date_part",
    "extract",
    "to_char",
    "to_date",
    "to_timestamp",
    "make_date",
    "age",
    "now",
    "current_date",
    "current_timestamp",
    "timezone",
];

pub(crate) fn function_allowed(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ALLOWED_FUNCTIONS.contains(&lower.as_str())
}

/// Types a query may cast to: the values a dataset holds, and the usual SQL scalars. Object
/// identifier types (`regclass`, `regnamespace`, `oid`, ...) are not among them: a cast of a
/// name to one of those asks the catalog whether another tenant's schema or table exists.
pub(super) fn type_allowed(t: &DataType) -> bool {
    use DataType as D;
    match t {
        D::Character(_)
        | D::Char(_)
        | D::CharacterVarying(_)
        | D::CharVarying(_)
        | D::Varchar(_)
        | D::Nvarchar(_)
        | D::Text
        | D::String(_)
        | D::Uuid
        | D::Bytea
        | D::Numeric(_)
        | D::Decimal(_)
        | D::Dec(_)
        | D::Float(_)
        | D::TinyInt(_)
        | D::SmallInt(_)
        | D::Int2(_)
        | D::Int(_)
        | D::Int4(_)
        | D::Int8(_)
        | D::Integer(_)
        | D::BigInt(_)
        | D::Float4
        | D::Float8
        | D::Real
        | D::Double(_)
        | D::DoublePrecision
        | D::Bool
        | D::Boolean
        | D::Date
        | D::Time(..)
        | D::Datetime(_)
        | D::Timestamp(..)
        | D::Interval { .. } => true,
        D::Array(ArrayElemTypeDef::SquareBracket(inner, _) | ArrayElemTypeDef::Qualified(inner, _)) => {
            type_allowed(inner)
        }
        D::Custom(name, modifiers) if modifiers.is_empty() => match parts(name).as_deref() {
            Some([one]) => matches!(
                one.to_ascii_lowercase().as_str(),
                "int"
                    | "int2"
                    | "int4"
                    | "int8"
                    | "float4"
                    | "float8"
                    | "timestamptz"
                    | "timetz"
                    | "varchar"
                    | "bpchar"
                    | "numeric"
                    | "decimal"
                    | "text"
                    | "bool"
            ),
            _ => false,
        },
        _ => false,
    }
}

pub(super) fn reserved(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("_strata")
        || n.starts_with("strata_")
        || n.starts_with("sqlite_")
        || n.starts_with("pg_")
        || n == "information_schema"
}

/// PostgreSQL's object-identifier types: a name turned into one of them is looked up in the
/// catalog, across every schema.
pub(super) const OBJECT_ID_TYPES: &[&str] = &[
    "regclass",
    "regcollation",
    "regconfig",
    "regdictionary",
    "regnamespace",
    "regoper",
    "regoperator",
    "regproc",
    "regprocedure",
    "regrole",
    "regtype",
];
