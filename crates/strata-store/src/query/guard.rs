//! The gate every query passes before it reaches a database: one read-only SELECT over the
//! tenant's own tables, calling only functions on an allowlist.
//!
//! Why parse instead of trusting the database's read-only mode: a read-only transaction still
//! lets a query read system catalogs, other schemas, server files (`pg_read_file`) or Strata's
//! own bookkeeping tables. The parser is the first wall; SQLite's authorizer and PostgreSQL's
//! `READ ONLY` transaction with a tenant-only `search_path` are the second.
//!
//! The guard is also where a hostile query's *shape* is bounded. A parsed statement is a tree,
//! and everything done with it (visiting, printing, even dropping it) recurses once per level.
//! `1+1+1+...` parses without recursion into a tree as deep as it has operators, so an 11 KB
//! query could once overflow a worker thread's stack and abort the process. Three walls:
//!
//! 1. before parsing, a pass over the tokens bounds how long an operator chain can be
//!    ([`MAX_CHAIN_TOKENS`]) and how many set operations a query has ([`MAX_SET_OPERATIONS`]);
//! 2. after parsing, the exact expression depth is measured and refused above
//!    [`MAX_EXPR_DEPTH`] (SQLite's own limit, so both databases accept the same queries);
//! 3. all of it runs on one of [`GUARD_THREADS`] long-lived threads with a known, large stack
//!    ([`GUARD_STACK_BYTES`]): even a tree that slipped past the first wall cannot
//!    overflow it (measured: the deepest tree a 256 KiB query can make, 131,072 levels, needs
//!    under 16 MiB in a release build).

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    ArrayElemTypeDef, DataType, Expr, ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement, TableFactor,
    Visit, VisitMut, Visitor, VisitorMut,
};
use sqlparser::dialect::{Dialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::QueryError;

/// The longest SQL text accepted, in bytes.
pub const MAX_SQL_BYTES: usize = 256 * 1024;

/// Deepest expression nesting a query may have: SQLite's own `SQLITE_MAX_EXPR_DEPTH`, so a
/// query runs on both databases or on neither.
pub const MAX_EXPR_DEPTH: usize = 1000;

/// Operators (and other tokens that can deepen an expression) allowed in a row without a comma
/// or a bracket in between, summed over the enclosing brackets: a cheap upper bound on the
/// depth, checked before the parser builds a tree. Four per level leaves room for the
/// comparisons inside a long `OR` chain, which the exact depth check then judges.
pub const MAX_CHAIN_TOKENS: usize = 4 * MAX_EXPR_DEPTH;

/// `UNION`, `INTERSECT` and `EXCEPT` per query: they chain like operators. SQLite's own limit
/// (`SQLITE_MAX_COMPOUND_SELECT`).
pub const MAX_SET_OPERATIONS: usize = 500;

/// Nesting of subqueries and parentheses the parser itself allows.
const PARSER_RECURSION_LIMIT: usize = 64;

/// Stack of the thread that parses and checks a query (reserved address space; only what a
/// query really uses is ever touched).
pub const GUARD_STACK_BYTES: usize = 64 << 20;

/// Queries checked at once, process-wide. Checking is CPU work of a few milliseconds at most;
/// the bound keeps a flood of large queries from holding more than a few parse trees.
pub const GUARD_THREADS: usize = 4;

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
fn type_allowed(t: &DataType) -> bool {
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
    /// Each table's columns (lower-cased) with their types, when known: they type the result
    /// columns of a query ([`super::types`]).
    pub columns: std::collections::HashMap<String, Vec<(String, Option<super::ColKind>)>>,
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

    /// The catalog of a tenant's dataset tables, with their column types.
    pub fn of_tables(tables: &[strata_domain::dataset::Table]) -> Self {
        let mut c = Self::new(tables.iter().map(|t| (t.dataset.as_str(), t.name.as_str())));
        for t in tables {
            let cols =
                t.columns.iter().map(|col| (col.name.to_ascii_lowercase(), Some(super::ColKind::of(col.ty)))).collect();
            c.columns.insert(t.name.to_ascii_lowercase(), cols);
        }
        c
    }
}

/// A query that passed the guard: the SQL to run, and the type of each result column where
/// the query itself says it (see [`super::types`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub sql: String,
    pub kinds: Vec<Option<super::ColKind>>,
}

/// Checks `sql` and returns the text to run: the same query with dataset qualifiers removed
/// (tables live unqualified in the tenant's own database or schema).
///
/// Runs on a guard thread (see the module docs) and blocks the caller until it is done;
/// async callers use [`check_async`].
pub fn check(sql: &str, dialect: SqlDialect, catalog: &Catalog) -> Result<String, QueryError> {
    check_typed(sql, dialect, catalog).map(|c| c.sql)
}

/// [`check`], with the result columns' types.
pub fn check_typed(sql: &str, dialect: SqlDialect, catalog: &Catalog) -> Result<Checked, QueryError> {
    let (tx, rx) = std::sync::mpsc::channel();
    on_guard_thread(sql, dialect, catalog, move |r| {
        let _ = tx.send(r);
    })?;
    rx.recv().map_err(|_| QueryError::Failed("the query checker failed".into()))?
}

/// [`check`] for async callers: at most [`GUARD_THREADS`] checks run at once, and the caller's
/// task waits without blocking its thread.
pub async fn check_async(sql: &str, dialect: SqlDialect, catalog: &Catalog) -> Result<Checked, QueryError> {
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(GUARD_THREADS);
    if sql.len() > MAX_SQL_BYTES {
        return Err(too_long(sql.len()));
    }
    let _slot = SLOTS.acquire().await.map_err(|_| QueryError::Failed("the query checker is closed".into()))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    on_guard_thread(sql, dialect, catalog, move |r| {
        let _ = tx.send(r);
    })?;
    rx.await.map_err(|_| QueryError::Failed("the query checker failed".into()))?
}

type GuardJob = Box<dyn FnOnce() + Send>;

/// Runs a check on one of [`GUARD_THREADS`] long-lived threads with [`GUARD_STACK_BYTES`] of
/// stack. The threads are started once and reused: a thread per query cost a 64 MiB mapping
/// and unmapping (with its TLB shootdowns) every time, a fifth of a small query's CPU.
fn on_guard_thread(
    sql: &str,
    dialect: SqlDialect,
    catalog: &Catalog,
    reply: impl FnOnce(Result<Checked, QueryError>) + Send + 'static,
) -> Result<(), QueryError> {
    static POOL: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<GuardJob>>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<GuardJob>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..GUARD_THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("strata-sql-guard-{i}"))
                .stack_size(GUARD_STACK_BYTES)
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    // A panic fails this check (its reply is dropped), not the thread.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a query checker thread");
            }
        }
        std::sync::Mutex::new(tx)
    });
    let (sql, catalog) = (sql.to_string(), catalog.clone());
    let job: GuardJob = Box::new(move || reply(check_here(&sql, dialect, &catalog)));
    pool.lock()
        .map_err(|_| QueryError::Storage("the query checker is unavailable".into()))?
        .send(job)
        .map_err(|_| QueryError::Storage("the query checker is unavailable".into()))
}

fn too_long(n: usize) -> QueryError {
    QueryError::Rejected(format!("the query is {n} bytes; the limit is {MAX_SQL_BYTES}"))
}

fn too_deep() -> QueryError {
    QueryError::Rejected(format!(
        "the query nests or chains expressions too deeply: at most {MAX_EXPR_DEPTH} levels; split long chains of operators (AND, OR, +, ||, ...) with parentheses or IN lists"
    ))
}

/// Everything that walks a parsed tree happens in here, on the guard's own thread; the tree is
/// dropped here too (dropping recurses as well).
fn check_here(sql: &str, dialect: SqlDialect, catalog: &Catalog) -> Result<Checked, QueryError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(too_long(sql.len()));
    }
    if sql.trim().is_empty() {
        return Err(QueryError::Rejected("the query is empty".into()));
    }
    let d: Box<dyn Dialect> = match dialect {
        SqlDialect::Sqlite => Box::new(SQLiteDialect {}),
        SqlDialect::Postgres => Box::new(PostgreSqlDialect {}),
    };
    let tokens =
        Tokenizer::new(d.as_ref(), sql).tokenize_with_location().map_err(|e| QueryError::Syntax(e.to_string()))?;
    check_shape(&tokens)?;
    check_names(&tokens)?;
    let mut statements = Parser::new(d.as_ref())
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| QueryError::Syntax(e.to_string()))?;
    if statements.len() != 1 {
        return Err(QueryError::Rejected(format!("send exactly one SELECT statement (got {})", statements.len())));
    }
    let mut stmt = statements.pop().expect("one statement");
    let mut depth = Depth::default();
    if stmt.visit(&mut depth).is_break() {
        return Err(too_deep());
    }
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
    let kinds = super::types::output_kinds(&stmt, &catalog.columns);
    let out = stmt.to_string();
    drop(stmt);
    // What runs must be what was checked: the printed query, parsed again, prints the same.
    // (A printer that loses quoting would let the database read something the guard never saw.)
    let again = Parser::new(d.as_ref())
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .try_with_sql(&out)
        .and_then(|mut p| p.parse_statements())
        .ok()
        .map(|s| s.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
    if again.as_deref() != Some(out.as_str()) {
        return Err(QueryError::Rejected("the query uses quoting that cannot be checked reliably; rewrite it with plain or double-quoted identifiers".into()));
    }
    Ok(Checked { sql: out, kinds })
}

/// The pre-parse bound (wall 1 of the module docs). Counts, per bracket level, the tokens since
/// the last comma that could deepen an expression: operators and keywords. Literals and plain
/// identifiers cannot, nor can the words of a `CASE`, whose branches the parser keeps in a
/// list; a comma always ends an expression at its level. The sum over the open brackets is an
/// upper bound on how deep the tree under that point can grow.
fn check_shape(tokens: &[TokenWithSpan]) -> Result<(), QueryError> {
    let mut levels: Vec<usize> = vec![0];
    let mut total = 0usize;
    let mut set_ops = 0usize;
    for t in tokens {
        let deepens = match &t.token {
            Token::Whitespace(_) | Token::EOF | Token::SemiColon => false,
            Token::LParen | Token::LBracket | Token::LBrace => {
                levels.push(0);
                continue;
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if levels.len() > 1 {
                    total -= levels.pop().unwrap_or(0);
                }
                continue;
            }
            Token::Comma => {
                total -= std::mem::take(levels.last_mut().expect("a level"));
                continue;
            }
            Token::Word(w) => match w.keyword {
                Keyword::NoKeyword => false,
                Keyword::CASE | Keyword::WHEN | Keyword::THEN | Keyword::ELSE | Keyword::END => false,
                Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT => {
                    set_ops += 1;
                    true
                }
                _ => w.quote_style.is_none(),
            },
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::DollarQuotedString(_)
            | Token::Placeholder(_) => false,
            _ => true,
        };
        if deepens {
            *levels.last_mut().expect("a level") += 1;
            total += 1;
            if total > MAX_CHAIN_TOKENS {
                return Err(too_deep());
            }
        }
    }
    if set_ops > MAX_SET_OPERATIONS {
        return Err(QueryError::Rejected(format!(
            "the query has {set_ops} UNION/INTERSECT/EXCEPT operations; the limit is {MAX_SET_OPERATIONS}"
        )));
    }
    Ok(())
}

/// The exact expression depth (wall 2), refused above [`MAX_EXPR_DEPTH`].
#[derive(Default)]
struct Depth {
    current: usize,
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.current += 1;
        if self.current > MAX_EXPR_DEPTH {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.current -= 1;
        ControlFlow::Continue(())
    }
}

fn reserved(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("_strata")
        || n.starts_with("strata_")
        || n.starts_with("sqlite_")
        || n.starts_with("pg_")
        || n == "information_schema"
}

/// PostgreSQL's object-identifier types: a name turned into one of them is looked up in the
/// catalog, across every schema.
const OBJECT_ID_TYPES: &[&str] = &[
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

/// No word of a query, quoted or not and wherever it stands, may be a system name or an
/// object-identifier type. The tree checks refuse these where they act (tables, casts,
/// functions), but syntax the parser reads one way and a database another (`'t':regclass`,
/// which sqlparser takes for a JSON path and SQLite for a parameter) has slipped past them
/// before; refusing the word itself does not depend on how the query is read. Tenants lose
/// nothing: a dataset cannot use these prefixes ([`strata_domain::dataset::check_identifier`]).
fn check_names(tokens: &[TokenWithSpan]) -> Result<(), QueryError> {
    for t in tokens {
        if let Token::Word(w) = &t.token {
            let lower = w.value.to_ascii_lowercase();
            if OBJECT_ID_TYPES.contains(&lower.as_str()) {
                return Err(QueryError::Rejected(format!(
                    "casts to object-identifier types such as `{}` are not allowed (they would look names up across schemas), and the word may not appear in a query",
                    w.value
                )));
            }
            if reserved(&lower) {
                return Err(QueryError::Rejected(format!(
                    "`{}` is a reserved name; queries may name only the tenant's own datasets, tables and columns",
                    w.value
                )));
            }
        }
    }
    Ok(())
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

    fn pre_visit_ident(&mut self, i: &sqlparser::ast::Ident) -> ControlFlow<QueryError> {
        // SQLite ends a [bracketed] name at the first `]`, and nothing escapes one inside it;
        // the parser may read further. Names are double-quoted (or plain) here.
        if i.quote_style == Some('[') {
            return reject("names in [brackets] are not supported; use double quotes");
        }
        ControlFlow::Continue(())
    }

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
        if q.for_clause.is_some() || q.settings.is_some() || q.format_clause.is_some() || !q.pipe_operators.is_empty() {
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
        let cast_to = match e {
            Expr::Function(f) => {
                let Some(parts) = parts(&f.name) else {
                    return reject("computed function names are not allowed");
                };
                if parts.len() != 1 || !function_allowed(&parts[0]) {
                    return reject(format!("the function `{}` is not allowed in queries", parts.join(".")));
                }
                None
            }
            Expr::Cast { data_type, .. } => Some(data_type),
            Expr::TypedString(t) => Some(&t.data_type),
            Expr::Convert { data_type, .. } => data_type.as_ref(),
            // Nothing binds parameters here, and a placeholder's name is text the guard does
            // not read as SQL (`:regclass`): refuse it rather than let a database guess.
            Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::Placeholder(_)) => {
                return reject("query parameters ($1, ?, :name) are not supported; write the values into the query");
            }
            // `value:path` is Snowflake's JSON access; to SQLite and PostgreSQL the `:name`
            // part is a parameter or a syntax error, so what the guard checked is not what
            // would run (`'t':regclass::text`).
            Expr::JsonAccess { .. } => {
                return reject("the `value:path` operator is not supported");
            }
            _ => None,
        };
        match cast_to {
            Some(t) if !type_allowed(t) => reject(format!(
                "casts to `{t}` are not allowed; queries may cast to numbers, text, booleans, dates, times, timestamps and intervals"
            )),
            _ => ControlFlow::Continue(()),
        }
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

    /// `hr.employees.employee_id` (what SQLAlchemy writes for a table reflected with a
    /// schema) loses its dataset too, or it would name a relation the query no longer has.
    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Expr::CompoundIdentifier(ids) = e {
            if ids.len() == 3
                && self.catalog.schemas.contains(&ids[0].value.to_ascii_lowercase())
                && self.catalog.tables.contains(&ids[1].value.to_ascii_lowercase())
            {
                ids.remove(0);
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

    #[test]
    fn dataset_qualified_columns_lose_the_dataset_with_their_table() {
        let out = ok("SELECT hr.employees.employee_id FROM hr.employees WHERE hr.employees.job_id = 1");
        assert_eq!(out, "SELECT employees.employee_id FROM employees WHERE employees.job_id = 1");
        // A qualifier that is no dataset of the tenant stays, and the database refuses it.
        let out = ok("SELECT tenant_x.employees.employee_id FROM employees");
        assert!(out.contains("tenant_x.employees.employee_id"), "{out}");
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

    fn chain(term: &str, op: &str, n: usize) -> String {
        vec![term; n].join(op)
    }

    #[test]
    fn long_operator_chains_are_refused_with_a_clear_message_instead_of_overflowing_the_stack() {
        for sql in [
            format!("SELECT {}", chain("1", "+", 5_500)),
            format!("SELECT {}", chain("'a'", "||", 6_000)),
            format!("SELECT {}", chain("2", "*", 6_000)),
            format!("SELECT * FROM employees WHERE {}", chain("employee_id = 1", " OR ", 6_000)),
            format!("SELECT * FROM employees WHERE {}", chain("employee_id = 1", " AND ", 6_000)),
            format!("SELECT {}", chain("1", "+", 128 * 1024 - 8)),
            // Chains inside brackets add up: each level is short, together they are deep.
            format!("SELECT {}{}", format!("({}+", chain("1", "+", 200)).repeat(25), ")".repeat(25)),
            format!("SELECT x{}", "::text".repeat(3_000)),
            format!("SELECT 1 {}", "IS NULL ".repeat(3_000)),
        ] {
            let msg = refused(&sql);
            assert!(msg.contains("too deeply"), "{}: {msg}", &sql[..60]);
        }
    }

    #[test]
    fn the_exact_depth_limit_is_the_one_sqlite_has() {
        ok(&format!("SELECT {}", chain("1", "+", MAX_EXPR_DEPTH - 10)));
        let msg = refused(&format!("SELECT {}", chain("1", "+", MAX_EXPR_DEPTH + 10)));
        assert!(msg.contains("at most 1000 levels"), "{msg}");
        ok(&format!("SELECT name FROM employees WHERE {}", chain("id = 1", " OR ", 400)));
    }

    #[test]
    fn wide_but_shallow_queries_pass() {
        let list = (0..20_000).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        ok(&format!("SELECT name FROM employees WHERE id IN ({list})"));
        let whens: String = (0..1_500).map(|i| format!(" WHEN id = {i} THEN 'x{i}'")).collect();
        ok(&format!("SELECT CASE{whens} ELSE 'other' END FROM employees"));
        let cols = (0..3_000).map(|i| format!("id + {i}")).collect::<Vec<_>>().join(", ");
        ok(&format!("SELECT {cols} FROM employees"));
    }

    #[test]
    fn deep_parentheses_and_long_unions_are_refused() {
        refused(&format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200)));
        refused(&format!("SELECT {}1{}", "[".repeat(200), "]".repeat(200)));
        let msg = refused(&chain("SELECT 1", " UNION ALL ", MAX_SET_OPERATIONS + 2));
        assert!(msg.contains("UNION"), "{msg}");
        ok(&chain("SELECT id FROM employees", " UNION ", 50));
    }

    #[test]
    fn object_identifier_casts_that_would_probe_other_tenants_are_refused() {
        for sql in [
            "SELECT 'tenant_other.departments'::regclass::text",
            "SELECT CAST('tenant_other' AS regnamespace)",
            "SELECT 'strata_control.api_keys'::regclass",
            "SELECT 'pg_sleep'::regproc",
            "SELECT regclass 'tenant_other.departments'",
            "SELECT 1::oid",
            "SELECT name FROM employees WHERE id = 'x'::regtype::oid::int",
            "SELECT ARRAY['a']::regclass[]",
            "SELECT 'x'::tenant_other.sometype",
        ] {
            let msg = refused(sql);
            assert!(msg.contains("casts to"), "{sql}: {msg}");
        }
        ok("SELECT CAST(id AS text), id::bigint, '2021-01-01'::date, CAST('1.5' AS numeric(10, 2)), TIMESTAMP '2021-01-01 00:00:00' FROM employees");
        ok("SELECT '1'::int4, '1'::int8, 1::float8, 'true'::boolean, '1 day'::interval");
        check("SELECT ARRAY[1, 2]::int[]", SqlDialect::Postgres, &hr()).unwrap();
    }

    #[test]
    fn bracketed_names_whose_end_sqlite_reads_differently_are_refused() {
        for sql in ["SELECT 1 AS [a]", "SELECT 1 AS [a[b] FROM sqlite_master --]", "SELECT ARRAY[SELECT ARRAY[1]]"] {
            assert!(check(sql, SqlDialect::Sqlite, &hr()).is_err(), "{sql}");
        }
    }

    #[test]
    fn json_path_access_that_the_databases_would_read_as_a_parameter_is_refused() {
        for d in [SqlDialect::Sqlite, SqlDialect::Postgres] {
            for sql in ["SELECT 'tenant_other.departments':regclass::text", "SELECT name:first FROM employees"] {
                let err = check(sql, d, &hr()).expect_err(sql);
                assert!(matches!(err, QueryError::Rejected(_) | QueryError::Syntax(_)), "{sql}: {err:?}");
            }
        }
    }

    #[test]
    fn system_names_and_object_identifier_types_are_refused_wherever_they_stand() {
        for sql in
            ["SELECT 1 AS pg_x", "SELECT strata_control FROM employees", "SELECT e.name FROM employees AS sqlite_x"]
        {
            let msg = refused(sql);
            assert!(msg.contains("reserved name"), "{sql}: {msg}");
        }
        for sql in ["SELECT regclass::text", "SELECT 1 AS regnamespace", "SELECT \"RegClass\" FROM employees"] {
            let msg = refused(sql);
            assert!(msg.contains("casts to"), "{sql}: {msg}");
        }
        ok("SELECT regclass_count, 'regclass' FROM employees");
    }

    #[test]
    fn oversized_queries_are_refused() {
        let sql = format!("SELECT 1 -- {}", "x".repeat(MAX_SQL_BYTES));
        assert!(matches!(check(&sql, SqlDialect::Sqlite, &hr()), Err(QueryError::Rejected(_))));
    }
}
