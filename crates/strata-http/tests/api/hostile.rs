//! What a tenant with a valid key can throw at the query service: each of these once crashed,
//! froze or bloated the whole server. Every test ends by checking the server still serves.

use std::time::{Duration, Instant};

use strata_client::Value;
use strata_store::deploy::Stack;
use tonic::Code;

use crate::grpc::{connect, grpc};
use crate::helpers::*;

fn chain(term: &str, op: &str, n: usize) -> String {
    vec![term; n].join(op)
}

async fn still_serves(conn: &strata_client::Connection) {
    let mut cur = conn.cursor();
    cur.execute("SELECT count(*) FROM employees").await.unwrap();
    assert!(matches!(cur.fetch_one().await.unwrap().unwrap()[0], Value::Int(_)));
}

async fn deeply_chained_expressions_are_refused_and_the_server_keeps_serving(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    for sql in [
        format!("SELECT {}", chain("1", "+", 5_500)),
        format!("SELECT {}", chain("employee_name", "||", 6_000)),
        format!("SELECT {}", chain("2", "*", 6_000)),
        format!("SELECT employee_name FROM employees WHERE {}", chain("employee_id = 1", " OR ", 6_000)),
        format!("SELECT employee_name FROM employees WHERE {}", chain("employee_id = 1", " AND ", 6_000)),
        format!("SELECT {}", chain("1", "+", 120_000)),
    ] {
        let err = conn.cursor().execute(&sql).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
        assert!(err.to_string().contains("too deeply"), "{err}");
    }
    // A long but legal chain runs, with the same answer on both databases.
    let mut cur = conn.cursor();
    cur.execute(&format!("SELECT {}", chain("1", "+", 900))).await.unwrap();
    assert_eq!(cur.fetch_one().await.unwrap().unwrap()[0], Value::Int(900));
    still_serves(&conn).await;
    g.stop().await;
}

async fn casts_that_name_objects_are_refused_so_other_tenants_stay_unknown(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    app.tenant("other", true).await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    for sql in [
        "SELECT 'tenant_other.departments'::regclass::text",
        "SELECT 'tenant_nosuch.departments'::regclass::text",
        "SELECT CAST('tenant_other' AS regnamespace)",
        "SELECT 'strata_control.api_keys'::regclass",
        "SELECT regclass 'tenant_other.departments'",
        "SELECT 'pg_sleep'::regproc",
    ] {
        let err = conn.cursor().execute(sql).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::InvalidArgument), "{sql}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("casts to"), "{sql}: {msg}");
        assert!(!msg.contains("does not exist"), "{sql}: {msg}");
    }
    still_serves(&conn).await;
    g.stop().await;
}

async fn huge_values_end_the_query_with_resource_exhausted(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    let big: &[&str] = match b {
        Backend::Sqlite => &[
            "SELECT replace(printf('%.*c', 5000000, 'x'), 'x', 'xxxxxxxxxx')",
            "WITH RECURSIVE t(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM t WHERE length(s) < 1000000000) SELECT length(s) FROM t",
            "SELECT group_concat(printf('%.*c', 100000, 'x')) FROM employees",
        ],
        Backend::Postgres => &[
            "SELECT rpad(department_name, 100000000, 'y') FROM departments LIMIT 5",
            "SELECT lpad('', 20000000, 'z')",
            "SELECT string_agg(rpad(employee_name, 100000, 'x'), ',') FROM employees",
            "SELECT rpad('a', 3000000, 'b'), rpad('a', 3000000, 'b'), rpad('a', 3000000, 'b')",
        ],
    };
    for sql in big {
        let t0 = Instant::now();
        let mut cur = conn.cursor();
        let err = match cur.execute(sql).await {
            Ok(_) => cur.fetch_all().await.map(|r| r.len()).expect_err(sql),
            Err(e) => e,
        };
        assert_eq!(err.code(), Some(Code::ResourceExhausted), "{sql}: {err}");
        assert!(t0.elapsed() < Duration::from_secs(30), "{sql} took {:?}", t0.elapsed());
    }
    if b == Backend::Sqlite {
        // SQLite's printf answers NULL when its result would pass the length limit, rather
        // than failing; either way nothing near 200 MB is ever built.
        let mut cur = conn.cursor();
        cur.execute("SELECT printf('%.*c', 200000000, 'x')").await.unwrap();
        assert_eq!(cur.fetch_all().await.unwrap(), vec![vec![Value::Null]]);
    }
    // Values within the budget still come back whole.
    let mut cur = conn.cursor();
    cur.execute("SELECT length(lower(substr(upper(employee_name), 1, 3))) FROM employees LIMIT 1").await.unwrap();
    assert!(cur.fetch_one().await.unwrap().is_some());
    let sql = match b {
        Backend::Sqlite => "SELECT printf('%.*c', 1000000, 'x') FROM employees LIMIT 20",
        Backend::Postgres => "SELECT rpad('', 1000000, 'x') FROM employees LIMIT 20",
    };
    let mut cur = conn.cursor();
    cur.execute(sql).await.unwrap();
    let rows = cur.fetch_all().await.unwrap();
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| matches!(&r[0], Value::String(s) if s.len() == 1_000_000)));
    still_serves(&conn).await;
    g.stop().await;
}

async fn the_time_limit_holds_for_heavy_string_work(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let g = grpc(&app, Stack::Blue, |o| o.query.timeout = Duration::from_secs(1)).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    let pad = match b {
        Backend::Sqlite => "printf('%.*c', 4000000, 'x')",
        Backend::Postgres => "rpad('', 4000000, 'x')",
    };
    let sql = format!(
        "WITH RECURSIVE t(i, s) AS (SELECT 1, {pad} UNION ALL SELECT i + 1, replace(s, 'x', 'y') FROM t WHERE i < 100000) SELECT count(*) FROM t"
    );
    let t0 = Instant::now();
    let err = conn.cursor().execute(&sql).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::DeadlineExceeded), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(6), "a 1 s limit took {:?}", t0.elapsed());
    still_serves(&conn).await;
    g.stop().await;
}

async fn a_session_opens_only_what_it_was_issued_for(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    // The dashboard's cookie is no SQL session...
    let r =
        app.client.post(app.url("/reports/session")).json(&serde_json::json!({"api_key": key})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let dashboard_token = cookie.split_once('=').unwrap().1.to_string();
    let mut c = crate::grpc::raw(&g.endpoint).await;
    let err = c
        .prepare_statement(crate::grpc::with_strategy(
            strata_client::proto::PrepareStatementRequest {
                session_id: dashboard_token.clone(),
                query_string: "SELECT employee_name FROM employees".into(),
                ..Default::default()
            },
            "blue",
        ))
        .await
        .unwrap_err();
    assert!(err.message().contains("Access denied"), "{err:?}");
    // ...and a SQL session is no dashboard cookie.
    let sql_session = crate::grpc::session(&mut c, "blue", "acme", &key).await;
    assert!(!sql_session.is_empty());
    for path in ["/v1/reports/hires-by-quarter", "/v1/reports/departments-above-mean", "/reports/session"] {
        let r = app
            .client
            .get(app.url(path))
            .header("cookie", format!("strata_session={sql_session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    // Each works where it belongs.
    let r = app.client.get(app.url("/v1/reports/hires-by-quarter")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ok = c
        .prepare_statement(crate::grpc::with_strategy(
            strata_client::proto::PrepareStatementRequest {
                session_id: sql_session,
                query_string: "SELECT employee_name FROM employees".into(),
                ..Default::default()
            },
            "blue",
        ))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    // The cookie never opens data endpoints either.
    let r = app.client.get(app.url("/v1/tables/employees/rows")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), 401);
    g.stop().await;
}

async fn a_nul_byte_rejects_only_its_row_on_every_path(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let mut csv = b"950,ab\x00c\n".to_vec();
    for i in 0..20_000 {
        csv.extend(format!("{},Dept {i}\n", 1000 + i).bytes());
    }
    let r = app.load(&key, "departments", csv).await;
    assert_eq!(r.status(), 200);
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!((report["inserted"].as_u64(), report["rejected"].as_u64()), (Some(20_000), Some(1)), "{report}");
    assert_eq!(report["errors"][0]["errors"][0]["code"], "invalid_string");
    let r = app
        .client
        .post(app.url("/v1/tables/departments/rows"))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .body(b"951,x\x00y\n952,fine\n".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: serde_json::Value = r.json().await.unwrap();
    assert_eq!((report["accepted"].as_u64(), report["rejected"].as_u64()), (Some(1), Some(1)), "{report}");
    let log: serde_json::Value = app.get(&key, "/v1/tables/departments/rejections").await.json().await.unwrap();
    let raws: Vec<&str> = log["rejections"].as_array().unwrap().iter().map(|r| r["raw"].as_str().unwrap()).collect();
    assert_eq!(raws, ["951,x\u{FFFD}y", "950,ab\u{FFFD}c"]);
}

async fn an_order_beyond_every_cap_is_refused_with_its_true_size(b: Backend) {
    let options = strata_http::startup::Options {
        rates: strata_app::ports::rates::RateProvider::fixed_from_spec("USD=0.01,EUR=0.01,GBP=0.01").unwrap(),
        ..Default::default()
    };
    let app = spawn_app_with(b, options).await;
    let key = app.tenant("acme", false).await;
    let order = |idem: &'static str, amount: &'static str| {
        app.client
            .post(app.url("/v1/buy-orders"))
            .bearer_auth(&key)
            .header("idempotency-key", idem)
            .json(&serde_json::json!({"currency": "USD", "amount": amount}))
            .send()
    };
    // Something in the book first: 0.01 USD at 0.01 USD per BTC is one BTC.
    assert_eq!(order("first", "0.01").await.unwrap().status(), 201);
    for _ in 0..2 {
        let r = order("huge", "999999999.99").await.unwrap();
        assert_eq!(r.status(), 409);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "btc_cap_exceeded");
        assert_eq!(body["error"]["details"]["requested_btc"], "99999999999.00000000", "{body}");
        assert_eq!(body["error"]["details"]["room_btc"], "99.00000000", "{body}");
    }
    // Just past an i64 of satoshis, and just below it: refused the same way.
    for (idem, amount) in [("edge1", "92233720.37"), ("edge2", "92233720.36")] {
        assert_eq!(order(idem, amount).await.unwrap().status(), 409, "{amount}");
    }
    // Only the first order is in the book.
    assert_eq!(
        app.store.orders().book(&strata_domain::tenant::TenantId::parse("acme").unwrap()).await.unwrap().total_sats,
        100_000_000
    );
}

async fn nested_definitions_are_refused_at_once_and_nobody_else_waits(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", false).await;
    let bombs: Vec<(&str, String)> = vec![
        ("application/yaml", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))),
        ("application/yaml", format!("{}x", "- ".repeat(100_000))),
        ("application/json", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000))),
        ("application/toml", format!("{} = 1", vec!["a"; 50_000].join("."))),
        ("application/toml", format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000))),
    ];
    let sends = bombs.iter().map(|(ct, body)| {
        app.client
            .put(app.url("/v1/datasets/x"))
            .bearer_auth(&key)
            .header("content-type", *ct)
            .body(body.clone())
            .send()
    });
    let (answers, health) = tokio::join!(futures::future::join_all(sends), async {
        tokio::time::timeout(Duration::from_secs(5), app.client.get(app.url("/health")).send()).await
    });
    assert_eq!(health.expect("/health answered while the bombs were parsed").unwrap().status(), 200);
    for (r, (ct, _)) in answers.into_iter().zip(&bombs) {
        let (status, code) = error_code(r.unwrap()).await;
        assert_eq!((status, code.as_str()), (422, "invalid_dataset"), "{ct}");
    }
    let r = app.get(&key, "/v1/datasets").await;
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["datasets"], serde_json::json!([]));
}

async fn a_client_that_stops_reading_loses_its_query_at_the_time_limit(b: Backend) {
    let options = strata_http::startup::Options::default();
    let app = spawn_app_tuned(b, options, 4, |s| s.with_tenant_slots(1, Duration::from_millis(300))).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let g = grpc(&app, Stack::Blue, |o| {
        o.query.timeout = Duration::from_secs(2);
        o.query.batch_rows = 100;
    })
    .await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    let mut slow = conn.cursor();
    slow.execute("SELECT a.employee_name FROM employees a, employees b").await.unwrap();
    assert!(slow.fetch_batch().await.unwrap().is_some());
    // The one slot is held by the unread query: another query must wait, and is refused.
    let err = conn.cursor().execute("SELECT 1").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
    // Past the time limit the query is over, whether or not its client reads, and the slot
    // is free again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut cur = conn.cursor();
    cur.execute("SELECT 1").await.unwrap();
    assert_eq!(cur.fetch_all().await.unwrap(), vec![vec![Value::Int(1)]]);
    let mut outcome = Ok(());
    for _ in 0..100 {
        match slow.fetch_batch().await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    let err = outcome.expect_err("the unread query should have ended at its time limit");
    assert_eq!(err.code(), Some(Code::DeadlineExceeded), "{err}");
    g.stop().await;
}

crate::on_both_backends!(
    a_client_that_stops_reading_loses_its_query_at_the_time_limit,
    nested_definitions_are_refused_at_once_and_nobody_else_waits,
    an_order_beyond_every_cap_is_refused_with_its_true_size,
    a_nul_byte_rejects_only_its_row_on_every_path,
    a_session_opens_only_what_it_was_issued_for,
    deeply_chained_expressions_are_refused_and_the_server_keeps_serving,
    casts_that_name_objects_are_refused_so_other_tenants_stay_unknown,
    huge_values_end_the_query_with_resource_exhausted,
    the_time_limit_holds_for_heavy_string_work,
);
