//! The type of each result column, worked out from the query itself.
//!
//! Why: the two databases type computed columns differently. SQLite keeps datetimes as
//! integer microseconds and has no boolean, so `MIN(hiring_date)` would come back as a
//! number and `a = b` as 0/1, while PostgreSQL answers a timestamp and a boolean; PostgreSQL
//! answers `numeric` for `SUM` and `AVG` of integers, SQLite an integer and a float. A result's
//! types must not depend on where the data lives, so the type of an expression is decided here,
//! once, from the dataset's column types and the SQL, and both executors deliver that type.
//!
//! The rules (the type a client sees):
//!
//! | expression | type |
//! |---|---|
//! | a column (through subqueries, CTEs, joins, `*`) | the column's |
//! | `MIN`, `MAX`, `ANY_VALUE`, `FIRST_VALUE`, `LAST_VALUE`, `NTH_VALUE`, `LAG`, `LEAD` | the argument's |
//! | `COALESCE`, `IFNULL`, `NULLIF`, `CASE`, `abs`, unary `-` | the first typed argument or branch |
//! | `COUNT`, `ROW_NUMBER`, `RANK`, `DENSE_RANK`, `NTILE`, `LENGTH` | `LONG` |
//! | `SUM` of an integer | `LONG` |
//! | `AVG`, `TOTAL` of an integer or a float | `DOUBLE` |
//! | comparisons, `AND`/`OR`/`NOT`, `IS [NOT] NULL`, `IN`, `BETWEEN`, `LIKE`, `EXISTS` | `BOOLEAN` |
//! | integer `+ - * / %` integer | `LONG` (integer division on both) |
//! | `+ - * /` with a float | `DOUBLE` |
//! | `\|\|`, text functions (`lower`, `upper`, `trim`, `substr`, `replace`...) | `STRING` |
//! | `CAST(x AS integer/bigint/...)`, `AS text/varchar`, `AS real/double/float`, `AS boolean` | that type |
//! | an integer literal, another number literal (`1.5`, `1e3`) | `LONG`, `DOUBLE` |
//! | a string literal, `TRUE`/`FALSE` | `STRING`, `BOOLEAN` |
//!
//! Anything else (decimal arithmetic, dates computed by functions, casts to dates) is left to
//! the database: `None` here. Known gap: SQLite stores decimals as text, so arithmetic on them
//! is floating point there; such expressions are not typed, and come back as `DOUBLE` on SQLite
//! and `DECIMAL128` on PostgreSQL (`CAST` the result to pin it).

use std::collections::HashMap;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectNamePart, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableFactor, UnaryOperator, Value,
};

use super::ColKind;

/// A relation's columns, by lower-cased name, in order.
type Columns = Vec<(String, Option<ColKind>)>;

/// The types of the result columns of `stmt`, one per column (`None` where the query does not
/// say). `tables` maps each lower-cased table name to its columns.
pub(crate) fn output_kinds(stmt: &Statement, tables: &HashMap<String, Columns>) -> Vec<Option<ColKind>> {
    match stmt {
        Statement::Query(q) => query(q, &Env { tables, ctes: Vec::new() }).into_iter().map(|(_, k)| k).collect(),
        _ => Vec::new(),
    }
}

#[derive(Clone)]
struct Env<'a> {
    tables: &'a HashMap<String, Columns>,
    /// CTEs in scope, innermost last (they shadow tables and earlier CTEs).
    ctes: Vec<(String, Columns)>,
}

impl Env<'_> {
    fn relation(&self, name: &str) -> Option<Columns> {
        let name = name.to_ascii_lowercase();
        if let Some((_, c)) = self.ctes.iter().rev().find(|(n, _)| *n == name) {
            return Some(c.clone());
        }
        self.tables.get(&name).cloned()
    }
}

/// The relations visible in one SELECT: (alias or name, columns); `None` columns for a
/// relation whose columns are unknown (a table function...), which makes unqualified names
/// ambiguous.
type Scope = Vec<(String, Option<Columns>)>;

fn query(q: &Query, env: &Env<'_>) -> Columns {
    let mut env = env.clone();
    if let Some(with) = &q.with {
        for cte in &with.cte_tables {
            let mut cols = query(&cte.query, &env);
            rename(&mut cols, cte.alias.columns.iter().map(|c| &c.name.value));
            env.ctes.push((cte.alias.name.value.to_ascii_lowercase(), cols));
        }
    }
    set_expr(&q.body, &env)
}

/// Applies a column alias list (`AS t(a, b)`).
fn rename<'a>(cols: &mut Columns, names: impl Iterator<Item = &'a String>) {
    for (c, n) in cols.iter_mut().zip(names) {
        c.0 = n.to_ascii_lowercase();
    }
}

fn set_expr(body: &SetExpr, env: &Env<'_>) -> Columns {
    match body {
        SetExpr::Select(s) => select(s, env),
        SetExpr::Query(q) => query(q, env),
        SetExpr::SetOperation { left, right, .. } => {
            // The first branch names the columns; a type holds only if every branch agrees.
            let mut l = set_expr(left, env);
            let r = set_expr(right, env);
            for (i, c) in l.iter_mut().enumerate() {
                if r.get(i).map(|x| x.1) != Some(c.1) {
                    c.1 = None;
                }
            }
            l
        }
        _ => Vec::new(),
    }
}

fn select(s: &Select, env: &Env<'_>) -> Columns {
    let mut scope: Scope = Vec::new();
    for twj in &s.from {
        add_relation(&mut scope, &twj.relation, env);
        for j in &twj.joins {
            add_relation(&mut scope, &j.relation, env);
        }
    }
    let mut out = Columns::new();
    for item in &s.projection {
        match item {
            SelectItem::UnnamedExpr(e) => out.push((expr_name(e), expr(e, &scope, env))),
            SelectItem::ExprWithAlias { expr: e, alias } => {
                out.push((alias.value.to_ascii_lowercase(), expr(e, &scope, env)))
            }
            SelectItem::Wildcard(_) => {
                for (_, cols) in &scope {
                    match cols {
                        Some(cols) => out.extend(cols.iter().cloned()),
                        // Unknown width: the positions after it cannot be typed.
                        None => return out.into_iter().map(|(n, _)| (n, None)).collect(),
                    }
                }
            }
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => {
                let t = name.0.last().and_then(|p| match p {
                    ObjectNamePart::Identifier(i) => Some(i.value.to_ascii_lowercase()),
                    _ => None,
                });
                match t.and_then(|t| scope.iter().find(|(n, _)| *n == t)).and_then(|(_, c)| c.clone()) {
                    Some(cols) => out.extend(cols),
                    None => return out.into_iter().map(|(n, _)| (n, None)).collect(),
                }
            }
            _ => out.push((String::new(), None)),
        }
    }
    out
}

fn add_relation(scope: &mut Scope, t: &TableFactor, env: &Env<'_>) {
    match t {
        TableFactor::Table { name, alias, .. } => {
            let table = name.0.last().and_then(|p| match p {
                ObjectNamePart::Identifier(i) => Some(i.value.clone()),
                _ => None,
            });
            let mut cols = table.as_deref().and_then(|t| env.relation(t));
            if let (Some(cols), Some(a)) = (cols.as_mut(), alias) {
                rename(cols, a.columns.iter().map(|c| &c.name.value));
            }
            let name = alias.as_ref().map(|a| a.name.value.clone()).or(table).unwrap_or_default();
            scope.push((name.to_ascii_lowercase(), cols));
        }
        TableFactor::Derived { subquery, alias, .. } => {
            let mut cols = query(subquery, env);
            if let Some(a) = alias {
                rename(&mut cols, a.columns.iter().map(|c| &c.name.value));
            }
            let name = alias.as_ref().map(|a| a.name.value.to_ascii_lowercase()).unwrap_or_default();
            scope.push((name, Some(cols)));
        }
        TableFactor::NestedJoin { table_with_joins, alias } => {
            let mut inner = Scope::new();
            add_relation(&mut inner, &table_with_joins.relation, env);
            for j in &table_with_joins.joins {
                add_relation(&mut inner, &j.relation, env);
            }
            match alias {
                None => scope.extend(inner),
                Some(a) => {
                    let cols = inner.into_iter().try_fold(Columns::new(), |mut acc, (_, c)| {
                        acc.extend(c?);
                        Some(acc)
                    });
                    scope.push((a.name.value.to_ascii_lowercase(), cols));
                }
            }
        }
        _ => scope.push((String::new(), None)),
    }
}

/// The name a database gives an unaliased result column that is a plain column reference.
fn expr_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => i.value.to_ascii_lowercase(),
        Expr::CompoundIdentifier(ids) => ids.last().map(|i| i.value.to_ascii_lowercase()).unwrap_or_default(),
        _ => String::new(),
    }
}

fn column(scope: &Scope, table: Option<&str>, name: &str) -> Option<ColKind> {
    let name = name.to_ascii_lowercase();
    match table {
        Some(t) => {
            let t = t.to_ascii_lowercase();
            let (_, cols) = scope.iter().find(|(n, _)| *n == t)?;
            cols.as_ref()?.iter().find(|(n, _)| *n == name)?.1
        }
        None => {
            // Unqualified: exactly one relation in scope may have it (else the database
            // refuses the query as ambiguous, or it is an outer query's column).
            let mut found = None;
            for (_, cols) in scope {
                match cols {
                    None => return None,
                    Some(cols) => {
                        if let Some((_, k)) = cols.iter().find(|(n, _)| *n == name) {
                            if found.is_some() {
                                return None;
                            }
                            found = Some(*k);
                        }
                    }
                }
            }
            found.flatten()
        }
    }
}

fn args(a: &FunctionArguments) -> Vec<&Expr> {
    match a {
        FunctionArguments::List(l) => l
            .args
            .iter()
            .filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                | FunctionArg::Named { arg: FunctionArgExpr::Expr(e), .. }
                | FunctionArg::ExprNamed { arg: FunctionArgExpr::Expr(e), .. } => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn numeric(k: Option<ColKind>) -> bool {
    matches!(k, Some(ColKind::Long | ColKind::Double))
}

fn expr(e: &Expr, scope: &Scope, env: &Env<'_>) -> Option<ColKind> {
    let ty = |e: &Expr| expr(e, scope, env);
    match e {
        Expr::Identifier(i) => column(scope, None, &i.value),
        Expr::CompoundIdentifier(ids) => match ids.as_slice() {
            [t, c] | [_, t, c] => column(scope, Some(&t.value), &c.value),
            _ => None,
        },
        Expr::Nested(inner) => ty(inner),
        Expr::Value(v) => match &v.value {
            // An integer literal is an integer; one with a point or an exponent is a float
            // (SQLite's reading; PostgreSQL's `numeric` is delivered as DOUBLE to match).
            Value::Number(n, _) => {
                let n = n.to_string();
                if n.bytes().all(|b| b.is_ascii_digit()) {
                    n.parse::<i64>().ok().map(|_| ColKind::Long)
                } else {
                    Some(ColKind::Double)
                }
            }
            Value::SingleQuotedString(_) => Some(ColKind::String),
            Value::Boolean(_) => Some(ColKind::Boolean),
            _ => None,
        },
        Expr::Cast { data_type, .. } => {
            let t = data_type.to_string().to_ascii_uppercase();
            let base = t.split(['(', ' ']).next().unwrap_or("");
            match base {
                "INT" | "INTEGER" | "BIGINT" | "SMALLINT" | "INT2" | "INT4" | "INT8" => Some(ColKind::Long),
                "TEXT" | "VARCHAR" | "CHAR" | "CHARACTER" | "STRING" => Some(ColKind::String),
                "REAL" | "DOUBLE" | "FLOAT" | "FLOAT4" | "FLOAT8" => Some(ColKind::Double),
                "BOOLEAN" | "BOOL" => Some(ColKind::Boolean),
                _ => None,
            }
        }
        Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsNotTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotFalse(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::InList { .. }
        | Expr::InSubquery { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::Exists { .. } => Some(ColKind::Boolean),
        Expr::UnaryOp { op, expr: inner } => match op {
            UnaryOperator::Not => Some(ColKind::Boolean),
            UnaryOperator::Minus | UnaryOperator::Plus => ty(inner).filter(|k| numeric(Some(*k))),
            _ => None,
        },
        Expr::BinaryOp { left, op, right } => match op {
            BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
            | BinaryOperator::And
            | BinaryOperator::Or => Some(ColKind::Boolean),
            BinaryOperator::StringConcat => Some(ColKind::String),
            BinaryOperator::Plus | BinaryOperator::Minus | BinaryOperator::Multiply | BinaryOperator::Divide => {
                match (ty(left), ty(right)) {
                    (Some(ColKind::Long), Some(ColKind::Long)) => Some(ColKind::Long),
                    (l, r) if numeric(l) && numeric(r) => Some(ColKind::Double),
                    _ => None,
                }
            }
            BinaryOperator::Modulo => {
                (ty(left) == Some(ColKind::Long) && ty(right) == Some(ColKind::Long)).then_some(ColKind::Long)
            }
            _ => None,
        },
        Expr::Case { conditions, else_result, .. } => {
            conditions.iter().map(|c| &c.result).chain(else_result.as_deref()).find_map(&ty)
        }
        Expr::Subquery(q) => query(q, env).first().and_then(|c| c.1),
        Expr::Substring { .. } | Expr::Trim { .. } => Some(ColKind::String),
        Expr::Function(f) => {
            let name = f.name.0.last().and_then(|p| match p {
                ObjectNamePart::Identifier(i) => Some(i.value.to_ascii_lowercase()),
                _ => None,
            })?;
            let a = args(&f.args);
            let first = || a.first().and_then(|e| ty(e));
            match name.as_str() {
                "count" | "row_number" | "rank" | "dense_rank" | "ntile" | "length" | "char_length"
                | "character_length" | "octet_length" => Some(ColKind::Long),
                "min" | "max" | "any_value" | "first_value" | "last_value" | "nth_value" | "lag" | "lead" => first(),
                "coalesce" | "ifnull" | "nullif" => a.iter().find_map(|e| ty(e)),
                "abs" => first().filter(|k| numeric(Some(*k))),
                "sum" => first().filter(|k| *k == ColKind::Long || *k == ColKind::Double),
                "avg" | "total" => numeric(first()).then_some(ColKind::Double),
                "lower" | "upper" | "trim" | "ltrim" | "rtrim" | "substr" | "substring" | "replace" | "concat"
                | "concat_ws" | "lpad" | "rpad" | "left" | "right" | "reverse" | "initcap" | "repeat" => {
                    Some(ColKind::String)
                }
                _ => None,
            }
        }
        _ => None,
    }
}
