//! The gate every query passes before it reaches a database: one read-only SELECT over the
//! tenant's own tables, calling only functions on an allowlist.
//!
//! Why parse instead of trusting the database's read-only mode: a read-only transaction still
//! lets a query read system catalogs, other schemas, server files (`pg_read_file`) or Strata's
//! own bookkeeping tables. The parser is the first wall; SQLite's authorizer and PostgreSQL's
//! `READ ONLY` transaction with a tenant-only `search_path` are the second.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement, TableFactor, Visit, VisitMut, Visitor,
    VisitorMut,
};
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use super::QueryError;

/// The longest SQL text accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 256 * 1024;

/// Functions a query may call. Everything an analyst uses to aggregate, format and compare,
/// and nothing that reads files, settings, other databases or the server's state.
pub(crate) const ALLOWED_FUNCTIONS: &[&str] = &[
    // aggregates
    "count", "sum", "avg", "min", "max", "total", "group_concat", "string_agg", "bool_and", "bool_or",
    "every", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp",
    // window functions
    "row_number", "rank", "dense_rank", "ntile", "lag", "lead", "first_value", "last_value", "nth_value",
    "percent_rank", "cume_dist",
    // conditionals
    "coalesce", "nullif", "ifnull", "iif", "greatest", "least", "likely", "unlikely",
    // numbers
    "abs", "round", "ceil", "ceiling", "floor", "sign", "sqrt", "power", "pow", "mod", "trunc", "exp", "ln",
    "log", "log10", "div",
    // text
    "lower", "upper", "length", "char_length", "character_length", "octet_length", "trim", "ltrim", "rtrim",
    "btrim", "substr", "substring", "replace", "instr", "strpos", "position", "concat", "concat_ws", "left",
    "right", "lpad", "rpad", "reverse", "initcap", "split_part", "starts_with", "printf", "format", "like",
    "glob", "md5", "hex",
    // dates and times
    "date", "time", "datetime", "julianday", "unixepoch", "strftime", "date_trunc", "date_part", "extract",
    "to_char", "to_date", "to_timestamp", "make_date", "age", "now", "current_date", "current_timestamp",
    "timezone",
];

pub(crate) fn function_allowed(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ALLOWED_FUNCTIONS.contains(&lower.as_str())
}

/// Which SQL dialect the query will run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlDialect {
    Sqlite,
    Postgres,
}

/// What the tenant may read: its dataset tables, and the dataset names usable as schema
/// qualifiers (`hr.employees`). Names compare case-insensitively, as both databases do for
/// unquoted identifiers.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: HashSet<String>,
    pub schemas: HashSet<String>,
}

impl Catalog {
    pub fn new<'a>(tables: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut c = Self::default();
        for (schema, table) in tables {
            c.schemas.insert(schema.to_ascii_lowercase());
            c.tables.insert(table.to_ascii_lowercase());
        }
        c
    }
}

/// Checks `sql` and returns the text to run: the same query with dataset qualifiers removed
/// (tables live unqualified in the tenant's own database or schema).
pub fn check(sql: &str, dialect: SqlDialect, catalog: &Catalog) -> Result<String, QueryError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(QueryError::Rejected(format!(
            "the query is {} bytes; the limit is {MAX_SQL_BYTES}",
            sql.len()
        )));
    }
    if sql.trim().is_empty() {
        return Err(QueryError::Rejected("the query is empty".into()));
    }
    let d: Box<dyn Dialect> = match dialect {
        SqlDialect::Sqlite => Box::new(SQLiteDialect {}),
        SqlDialect::Postgres => Box::new(PostgreSqlDialect {}),
    };
    let mut statements = Parser::new(d.as_ref())
        .with_recursion_limit(64)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| QueryError::Syntax(e.to_string()))?;
    if statements.len() != 1 {
        return Err(QueryError::Rejected(format!(
            "send exactly one SELECT statement (got {})",
            statements.len()
        )));
    }
    let mut stmt = statements.pop().expect("one statement");
    if !matches!(stmt, Statement::Query(_)) {
        return Err(QueryError::Rejected(
            "only SELECT queries can run here; data and schema changes go through the REST API".into(),
        ));
    }
    let mut ctes = CteNames::default();
    let _ = stmt.visit(&mut ctes);
    for name in &ctes.0 {
        if reserved(name) {
            return Err(QueryError::Rejected(format!("`{name}` is a reserved name")));
        }
    }
    let mut checker = Checker { catalog, ctes: &ctes.0 };
    if let ControlFlow::Break(e) = stmt.visit(&mut checker) {
        return Err(e);
    }
    let mut unqualify = Unqualify { catalog };
    let _ = VisitMut::visit(&mut stmt, &mut unqualify);
    Ok(stmt.to_string())
}

fn reserved(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("_strata") || n.starts_with("sqlite_") || n.starts_with("pg_") || n == "information_schema"
}

#[derive(Default)]
struct CteNames(HashSet<String>);

impl Visitor for CteNames {
    type Break = ();
    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                self.0.insert(cte.alias.name.value.to_ascii_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
}

struct Checker<'a> {
    catalog: &'a Catalog,
    ctes: &'a HashSet<String>,
}

fn reject<T>(msg: impl Into<String>) -> ControlFlow<QueryError, T> {
    ControlFlow::Break(QueryError::Rejected(msg.into()))
}

fn parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(i.value.clone()),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

impl Visitor for Checker<'_> {
    type Break = QueryError;

    fn pre_visit_statement(&mut self, s: &Statement) -> ControlFlow<QueryError> {
        // Data-modifying CTEs (`WITH x AS (DELETE ...)`) arrive as nested statements.
        match s {
            Statement::Query(_) => ControlFlow::Continue(()),
            _ => reject("only SELECT queries can run here"),
        }
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<QueryError> {
        if !q.locks.is_empty() {
            return reject("locking clauses (FOR UPDATE/SHARE) are not allowed in a read-only query");
        }
        if q.for_clause.is_some() || q.settings.is_some() || q.format_clause.is_some() || !q.pipe_operators.is_empty()
        {
            return reject("this query clause is not supported");
        }
        if let SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) = q.body.as_ref() {
            return reject("only SELECT queries can run here");
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, s: &Select) -> ControlFlow<QueryError> {
        if s.into.is_some() {
            return reject("SELECT ... INTO creates a table; only plain SELECT queries can run here");
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<QueryError> {
        let Some(parts) = parts(name) else {
            return reject("computed table names are not allowed");
        };
        let lower: Vec<String> = parts.iter().map(|p| p.to_ascii_lowercase()).collect();
        let known = match lower.as_slice() {
            [t] => self.catalog.tables.contains(t) || self.ctes.contains(t),
            [s, t] => self.catalog.schemas.contains(s) && self.catalog.tables.contains(t),
            _ => false,
        };
        if known {
            ControlFlow::Continue(())
        } else {
            // Say nothing about whether the name exists elsewhere (another tenant, a catalog).
            reject(format!("no table named `{}` in your datasets", parts.join(".")))
        }
    }

    fn pre_visit_table_factor(&mut self, f: &TableFactor) -> ControlFlow<QueryError> {
        match f {
            TableFactor::Table { args: None, with_hints, .. } if with_hints.is_empty() => ControlFlow::Continue(()),
            TableFactor::Table { .. } => reject("table functions and table hints are not allowed"),
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            _ => reject("this kind of FROM item (table function, UNNEST, PIVOT, ...) is not allowed"),
        }
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<QueryError> {
        if let Expr::Function(f) = e {
            let Some(parts) = parts(&f.name) else {
                return reject("computed function names are not allowed");
            };
            if parts.len() != 1 || !function_allowed(&parts[0]) {
                return reject(format!("the function `{}` is not allowed in queries", parts.join(".")));
            }
        }
        ControlFlow::Continue(())
    }
}

/// Drops the dataset qualifier of `dataset.table` references.
struct Unqualify<'a> {
    catalog: &'a Catalog,
}

impl VisitorMut for Unqualify<'_> {
    type Break = ();
    fn pre_visit_relation(&mut self, name: &mut ObjectName) -> ControlFlow<()> {
        if name.0.len() == 2 {
            if let ObjectNamePart::Identifier(s) = &name.0[0] {
                if self.catalog.schemas.contains(&s.value.to_ascii_lowercase()) {
                    name.0.remove(0);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hr() -> Catalog {
        Catalog::new([("hr", "employees"), ("hr", "departments"), ("hr", "jobs")])
    }

    fn ok(sql: &str) -> String {
        for d in [SqlDialect::Sqlite, SqlDialect::Postgres] {
            check(sql, d, &hr()).unwrap_or_else(|e| panic!("{sql} refused on {d:?}: {e}"));
        }
        check(sql, SqlDialect::Sqlite, &hr()).unwrap()
    }

    fn refused(sql: &str) -> String {
        let mut last = String::new();
        for d in [SqlDialect::Sqlite, SqlDialect::Postgres] {
            match check(sql, d, &hr()) {
                Ok(s) => panic!("{sql} accepted on {d:?} as {s}"),
                Err(e) => last = e.to_string(),
            }
        }
        last
    }

    #[test]
    fn selects_joins_ctes_aggregates_and_windows_pass() {
        ok("SELECT id, name FROM employees ORDER BY id LIMIT 10");
        ok("select e.name, d.department from employees e join departments d on d.id = e.department_id");
        ok("WITH c AS (SELECT department_id, count(*) AS n FROM employees GROUP BY department_id) SELECT * FROM c WHERE n > 2");
        ok("SELECT name, row_number() OVER (ORDER BY id) FROM employees");
        ok("SELECT 1");
        ok("SELECT id FROM employees WHERE id IN (SELECT id FROM jobs) UNION SELECT 2");
    }

    #[test]
    fn dataset_qualified_names_are_unqualified_for_execution() {
        let sql = ok("SELECT count(*) FROM hr.employees");
        assert_eq!(sql, "SELECT count(*) FROM employees");
    }

    #[test]
    fn writes_ddl_and_several_statements_are_refused() {
        for sql in [
            "DELETE FROM employees",
            "INSERT INTO employees (id) VALUES (1)",
            "UPDATE employees SET name = 'x'",
            "DROP TABLE employees",
            "CREATE TABLE x (a int)",
            "SELECT 1; SELECT 2",
            "SELECT 1; DROP TABLE employees",
            "ATTACH DATABASE '/etc/passwd' AS x",
            "PRAGMA table_info(employees)",
            "SELECT * INTO stolen FROM employees",
            "SELECT * FROM employees FOR UPDATE",
            "",
        ] {
            refused(sql);
        }
    }

    #[test]
    fn system_catalogs_internal_tables_and_unknown_tables_are_refused() {
        for sql in [
            "SELECT * FROM sqlite_master",
            "SELECT * FROM pg_catalog.pg_tables",
            "SELECT * FROM pg_shadow",
            "SELECT * FROM information_schema.tables",
            "SELECT * FROM _strata_idempotency",
            "SELECT * FROM strata_control.api_keys",
            "SELECT * FROM tenant_other.employees",
            "SELECT * FROM other.employees",
            "SELECT * FROM employees e, main.sqlite_master",
            "WITH _strata_orders AS (SELECT 1) SELECT * FROM _strata_orders",
        ] {
            let msg = refused(sql);
            assert!(!msg.contains("SELECT"), "{msg}");
        }
    }

    #[test]
    fn file_and_server_functions_are_refused() {
        for sql in [
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT load_extension('x')",
            "SELECT readfile('/etc/passwd')",
            "SELECT current_setting('data_directory')",
            "SELECT * FROM generate_series(1, 10)",
            "SELECT pg_sleep(10)",
            "SELECT lo_import('/etc/passwd')",
            "SELECT name FROM employees WHERE id = (SELECT pg_catalog.version())",
        ] {
            refused(sql);
        }
    }

    #[test]
    fn syntax_errors_say_what_is_wrong() {
        let e = check("SELEC id FROM employees", SqlDialect::Sqlite, &hr()).unwrap_err();
        assert!(matches!(e, QueryError::Syntax(_)), "{e:?}");
    }

    #[test]
    fn oversized_queries_are_refused() {
        let sql = format!("SELECT 1 -- {}", "x".repeat(MAX_SQL_BYTES));
        assert!(matches!(check(&sql, SqlDialect::Sqlite, &hr()), Err(QueryError::Rejected(_))));
    }
}
