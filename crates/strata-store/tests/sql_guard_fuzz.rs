//! A bounded-time fuzzer for the SQL guard, run by the test command.
//!
//! Every input a tenant can send over gRPC goes through `guard::check` first, so the guard must
//! never crash (a stack overflow aborts the whole server), never hang, and never accept
//! something it would not accept again. This test replays the corpus in `fuzz/sql_guard/`
//! (kept in the repository; add every input that ever broke the guard), then generates random
//! queries (deep and wide expressions, operator chains, nested brackets, casts, subqueries, set
//! operations) and mutations of the corpus until its time is up.
//!
//! `STRATA_FUZZ_SECS` sets the time (default 8 s), `STRATA_FUZZ_SEED` replays one run; a
//! failing input is printed and written to `$CARGO_TARGET_TMPDIR/sql_guard_failure.sql`.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_store::query::guard::{check, Catalog, SqlDialect, MAX_EXPR_DEPTH, MAX_SQL_BYTES};
use strata_store::query::QueryError;

fn catalog() -> Catalog {
    Catalog::new([("hr", "employees"), ("hr", "departments"), ("hr", "jobs")])
}

const COLUMNS: &[&str] = &["employee_id", "employee_name", "hiring_date", "department_id", "job_id", "e.job_id"];
const OPERATORS: &[&str] = &[
    "+",
    "-",
    "*",
    "/",
    "%",
    "||",
    "=",
    "<>",
    "!=",
    "<",
    ">",
    "<=",
    ">=",
    " AND ",
    " OR ",
    " LIKE ",
    " IS ",
    " IS NOT ",
    "::text::",
    " COLLATE \"C\" || ",
    " & ",
    " | ",
    " << ",
];
const FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "lower",
    "upper",
    "coalesce",
    "rpad",
    "printf",
    "substr",
    "pg_read_file",
    "pg_sleep",
    "current_setting",
    "load_extension",
    "readfile",
    "pg_catalog.version",
    "to_regclass",
    "generate_series",
];
const TYPES: &[&str] = &[
    "int",
    "bigint",
    "text",
    "date",
    "numeric(10, 2)",
    "boolean",
    "regclass",
    "regnamespace",
    "oid",
    "tenant_other.t",
    "varchar(5)",
    "timestamp",
    "interval",
    "regproc",
];
const TABLES: &[&str] = &[
    "employees",
    "hr.employees",
    "departments d",
    "jobs",
    "sqlite_master",
    "pg_catalog.pg_class",
    "_strata_idempotency",
    "tenant_other.employees",
    "strata_control.api_keys",
    "information_schema.tables",
];

/// Lengths with a heavy tail: mostly short, sometimes far past every limit.
fn length(rng: &mut StdRng) -> usize {
    match rng.random_range(0..10) {
        0..=5 => rng.random_range(1..6),
        6..=7 => rng.random_range(6..200),
        8 => rng.random_range(200..2_000),
        _ => rng.random_range(2_000..20_000),
    }
}

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

fn leaf(rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        0 => rng.random_range(-5..100_000).to_string(),
        1 => format!("'{}'", "x".repeat(rng.random_range(0..5))),
        2 => "NULL".into(),
        3 => "TRUE".into(),
        _ => pick(rng, COLUMNS).into(),
    }
}

fn expr(rng: &mut StdRng, budget: u32) -> String {
    if budget == 0 {
        return leaf(rng);
    }
    let b = budget - 1;
    match rng.random_range(0..12) {
        0 | 1 => leaf(rng),
        2 => {
            let n = length(rng);
            let op = pick(rng, OPERATORS);
            (0..n).map(|_| if rng.random_bool(0.9) { leaf(rng) } else { expr(rng, b / 2) }).collect::<Vec<_>>().join(op)
        }
        3 => format!("({})", expr(rng, b)),
        4 => {
            let args: Vec<String> = (0..rng.random_range(0..4)).map(|_| expr(rng, b / 2)).collect();
            format!("{}({})", pick(rng, FUNCTIONS), args.join(", "))
        }
        5 => format!("CAST({} AS {})", expr(rng, b), pick(rng, TYPES)),
        6 => format!("{}::{}", leaf(rng), pick(rng, TYPES)),
        7 => {
            let whens: String =
                (0..length(rng).min(500)).map(|_| format!(" WHEN {} THEN {}", expr(rng, b / 2), leaf(rng))).collect();
            format!("CASE{whens} ELSE {} END", leaf(rng))
        }
        8 => format!("(SELECT {} FROM {} WHERE {})", expr(rng, b / 2), pick(rng, TABLES), expr(rng, b / 2)),
        9 => {
            let items: Vec<String> = (0..length(rng)).map(|_| leaf(rng)).collect();
            format!("{} IN ({})", pick(rng, COLUMNS), items.join(", "))
        }
        10 => format!("{}{}{}", "(".repeat(length(rng).min(300)), leaf(rng), ")".repeat(rng.random_range(0..300))),
        _ => format!("NOT {}", expr(rng, b)),
    }
}

fn query(rng: &mut StdRng) -> String {
    let items: Vec<String> = (0..rng.random_range(1..5)).map(|_| expr(rng, 4)).collect();
    let mut q = format!("SELECT {} FROM {}", items.join(", "), pick(rng, TABLES));
    if rng.random_bool(0.5) {
        q += &format!(" WHERE {}", expr(rng, 5));
    }
    if rng.random_bool(0.2) {
        q += " GROUP BY 1 ORDER BY 1 DESC LIMIT 10";
    }
    if rng.random_bool(0.15) {
        let n = length(rng).min(1_000);
        q = vec![q; n].join(if rng.random_bool(0.5) { " UNION " } else { " EXCEPT " });
    }
    if rng.random_bool(0.15) {
        q = format!("WITH c AS ({q}) SELECT * FROM c");
    }
    q
}

/// Byte-level mutations: cut, duplicate (which lengthens chains), insert a token.
fn mutate(rng: &mut StdRng, s: &str) -> String {
    let mut b: Vec<u8> = s.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..4) {
        if b.is_empty() {
            break;
        }
        let i = rng.random_range(0..b.len());
        let j = (i + rng.random_range(1..64)).min(b.len());
        match rng.random_range(0..4) {
            0 => {
                b.drain(i..j);
            }
            1 => {
                let span = b[i..j].to_vec();
                for _ in 0..rng.random_range(1..200) {
                    b.splice(i..i, span.iter().copied());
                }
            }
            2 => {
                let tok = pick(rng, &["(", ")", ",", "+", "'", "\"", " OR ", "::regclass", ";", "--", "/*", "\0", "é"]);
                b.splice(i..i, tok.bytes());
            }
            _ => b[i] = rng.random(),
        }
    }
    b.truncate(MAX_SQL_BYTES + 16);
    String::from_utf8_lossy(&b).into_owned()
}

/// What must hold for any input: no crash (the process would abort), no internal failure, and
/// an accepted query is a fixed point (checking the checked text gives the same text).
fn judge(sql: &str) -> Result<(), String> {
    for d in [SqlDialect::Sqlite, SqlDialect::Postgres] {
        match check(sql, d, &catalog()) {
            Ok(out) => {
                let again = check(&out, d, &catalog())
                    .map_err(|e| format!("{d:?}: accepted, but its output is refused: {e}"))?;
                if again != out {
                    return Err(format!("{d:?}: checking the output changed it:\n{out}\n{again}"));
                }
                // Names the database would act on are words, not text inside a string literal or
                // a longer identifier (`'x'@fregclass` names a column, not the type).
                for word in words(&out, d) {
                    let w = word.to_ascii_lowercase();
                    let bad = ["sqlite_master", "pg_catalog", "strata_control", "regclass", "pg_read_file"]
                        .contains(&w.as_str())
                        || w.starts_with("_strata");
                    if bad {
                        return Err(format!("{d:?}: accepted a query that names {w}"));
                    }
                }
            }
            Err(QueryError::Rejected(_) | QueryError::Syntax(_)) => {}
            Err(e) => return Err(format!("{d:?}: the guard failed instead of judging: {e:?}")),
        }
    }
    Ok(())
}

/// The identifiers and keywords of `sql`, as the dialect's tokenizer reads them.
fn words(sql: &str, d: SqlDialect) -> Vec<String> {
    use sqlparser::dialect::{PostgreSqlDialect, SQLiteDialect};
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = match d {
        SqlDialect::Sqlite => Tokenizer::new(&SQLiteDialect {}, sql).tokenize(),
        SqlDialect::Postgres => Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize(),
    };
    tokens
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.value),
            _ => None,
        })
        .collect()
}

fn fail(sql: &str, why: &str, seed: u64) -> ! {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sql_guard_failure.sql");
    let _ = std::fs::write(&path, sql);
    let shown: String = sql.chars().take(300).collect();
    panic!("seed {seed}: {why}\ninput ({} bytes, saved to {}): {shown}", sql.len(), path.display());
}

#[test]
fn the_sql_guard_survives_the_corpus_and_random_deep_and_wide_queries() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/sql_guard");
    let mut corpus: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the corpus folder") {
        let path = entry.unwrap().path();
        corpus.push(String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned());
    }
    assert!(corpus.len() >= 10, "the corpus is in {}", dir.display());
    for sql in &corpus {
        if let Err(why) = judge(sql) {
            fail(sql, &why, 0);
        }
    }
    // The corpus holds chains just past the depth limit: they must be refused, not crash.
    let deep = format!("SELECT {}", vec!["1"; MAX_EXPR_DEPTH + 200].join("+"));
    assert!(check(&deep, SqlDialect::Sqlite, &catalog()).is_err());

    let secs: u64 = std::env::var("STRATA_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let seed: u64 = std::env::var("STRATA_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("sql guard fuzz: seed {seed} (STRATA_FUZZ_SEED={seed} replays it), {secs} s");
    let mut rng = StdRng::seed_from_u64(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let sql = if rng.random_bool(0.5) {
            query(&mut rng)
        } else {
            let base = corpus[rng.random_range(0..corpus.len())].clone();
            mutate(&mut rng, &base)
        };
        if let Err(why) = judge(&sql) {
            fail(&sql, &why, seed);
        }
        n += 1;
    }
    eprintln!("sql guard fuzz: {n} inputs, no failure");
}
