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

mod allow;

pub(crate) use allow::function_allowed;
use allow::{reserved, type_allowed, OBJECT_ID_TYPES};
use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, Select, SetExpr, Statement, TableFactor, Visit, VisitMut, Visitor,
    VisitorMut,
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

pub(super) fn parts(name: &ObjectName) -> Option<Vec<String>> {
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
mod tests;
