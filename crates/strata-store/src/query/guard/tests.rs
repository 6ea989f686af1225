//! The guard's unit tests: what it refuses and what it lets through, on both dialects.

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
    for sql in ["SELECT 1 AS pg_x", "SELECT strata_control FROM employees", "SELECT e.name FROM employees AS sqlite_x"]
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
