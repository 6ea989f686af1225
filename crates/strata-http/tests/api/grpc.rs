//! The gRPC query service (e6data protocol) through the Rust connector and raw protocol calls,
//! on both backends. Blue/green routing through nginx is in `bluegreen.rs`.

use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::json;
use strata_client::proto::query_engine_service_client::QueryEngineServiceClient;
use strata_client::proto::*;
use strata_client::{Config, Connection, Error, Value};
use strata_grpc::GrpcOptions;
use strata_store::deploy::Stack;
use tonic::Code;

use crate::helpers::*;

pub struct Grpc {
    pub endpoint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Grpc {
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.handle.take().unwrap().await;
    }
}

/// Starts a gRPC query service of `stack` over the app's store.
pub async fn grpc(app: &TestApp, stack: Stack, tweak: impl FnOnce(&mut GrpcOptions)) -> Grpc {
    let mut o = GrpcOptions::new(stack, app.base.trim_start_matches("http://").to_string());
    o.poll = Duration::from_millis(20);
    tweak(&mut o);
    let server = strata_grpc::GrpcServer::build("127.0.0.1:0".parse().unwrap(), app.store.clone(), o).await.unwrap();
    let endpoint = format!("http://{}", server.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.run_until(async move {
        let _ = rx.await;
    }));
    Grpc { endpoint, stop: Some(tx), handle: Some(handle) }
}

pub async fn connect(endpoint: &str, tenant: &str, key: &str) -> Connection {
    Connection::connect(Config::new(endpoint, tenant, key)).await.unwrap()
}

pub async fn raw(endpoint: &str) -> QueryEngineServiceClient<tonic::transport::Channel> {
    QueryEngineServiceClient::connect(endpoint.to_string()).await.unwrap()
}

pub fn with_strategy<T>(msg: T, strategy: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("strategy", strategy.parse().unwrap());
    r
}

pub async fn session(
    c: &mut QueryEngineServiceClient<tonic::transport::Channel>,
    strategy: &str,
    tenant: &str,
    key: &str,
) -> String {
    c.authenticate(with_strategy(
        AuthenticateRequest { user: tenant.into(), password: key.into(), ..Default::default() },
        strategy,
    ))
    .await
    .unwrap()
    .into_inner()
    .session_id
}

/// Shared with the multi-process tests in strata-cli.
const TYPES_TOML: &str = include_str!("shop_types.toml");

async fn shop(app: &TestApp, tenant: &str) -> String {
    let key = app.tenant(tenant, false).await;
    let r = app
        .client
        .put(app.url("/v1/datasets/shop"))
        .bearer_auth(&key)
        .header("content-type", "application/toml")
        .body(TYPES_TOML)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let rows = json!({"rows": [
        {"sku": "A-1", "price": "19.99", "launched": "2024-02-29", "active": true, "updated_at": "2024-02-29T12:34:56.789123Z", "stock": 7},
        {"sku": "B-2", "price": "-0.05", "launched": "1969-07-20", "active": false, "updated_at": "1969-12-31T23:59:59Z", "stock": -3},
        {"sku": "C-3", "price": "123456.70", "launched": null, "active": null, "updated_at": null, "stock": null},
    ]});
    let r = app.post_rows(&key, "products", rows).await;
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["accepted"], 3);
    key
}

fn dt(s: &str) -> Value {
    Value::DateTime(chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc))
}

async fn the_connector_reads_every_column_type_with_exact_values(b: Backend) {
    let app = spawn_app(b).await;
    let key = shop(&app, "acme").await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    let mut cur = conn.cursor();
    cur.execute("SELECT sku, price, launched, active, updated_at, stock FROM products ORDER BY sku;").await.unwrap();
    let types: Vec<_> = cur.description().iter().map(|c| (c.name.as_str(), c.type_name.as_str())).collect();
    assert_eq!(
        types,
        [
            ("sku", "STRING"),
            ("price", "DECIMAL128"),
            ("launched", "DATE"),
            ("active", "BOOLEAN"),
            ("updated_at", "DATETIME"),
            ("stock", "LONG")
        ]
    );
    assert_eq!(cur.rowcount(), 3, "a small result knows its row count at execute");
    let rows = cur.fetch_all().await.unwrap();
    let d = |s: &str| Value::Date(chrono::NaiveDate::from_str(s).unwrap());
    assert_eq!(
        rows,
        vec![
            vec![
                Value::String("A-1".into()),
                Value::Decimal(Decimal::from_str("19.99").unwrap()),
                d("2024-02-29"),
                Value::Bool(true),
                dt("2024-02-29T12:34:56.789123Z"),
                Value::Int(7)
            ],
            vec![
                Value::String("B-2".into()),
                Value::Decimal(Decimal::from_str("-0.05").unwrap()),
                d("1969-07-20"),
                Value::Bool(false),
                dt("1969-12-31T23:59:59Z"),
                Value::Int(-3)
            ],
            vec![
                Value::String("C-3".into()),
                Value::Decimal(Decimal::from_str("123456.70").unwrap()),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null
            ],
        ]
    );
    // Computed columns get a type from the database.
    let mut cur = conn.cursor();
    cur.execute("SELECT count(*) AS n, sum(stock) AS s, avg(stock * 1.0) AS a, max(sku) AS m FROM products")
        .await
        .unwrap();
    let row = cur.fetch_one().await.unwrap().unwrap();
    assert_eq!(row[0], Value::Int(3));
    // PostgreSQL sums bigints into numeric; SQLite into an integer.
    assert!(matches!(&row[1], Value::Int(4)) || row[1] == Value::Decimal(Decimal::from(4)), "{:?}", row[1]);
    match &row[2] {
        Value::Double(x) => assert!((x - 2.0).abs() < 1e-9),
        Value::Decimal(x) => assert_eq!(x.round_dp(6), Decimal::from(2)),
        other => panic!("avg came back as {other:?}"),
    }
    assert_eq!(row[3], Value::String("C-3".into()));
    g.stop().await;
}

async fn hr_joins_aggregates_and_ctes_agree_with_the_rest_api(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let employees = app.all_rows(&key, "employees").await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    let mut cur = conn.cursor();
    cur.execute("SELECT count(*) FROM hr.employees").await.unwrap();
    assert_eq!(cur.fetch_all().await.unwrap(), vec![vec![Value::Int(employees.len() as i64)]]);

    let mut expected: std::collections::BTreeMap<i64, i64> = Default::default();
    for e in &employees {
        *expected.entry(e["department_id"].as_i64().unwrap()).or_default() += 1;
    }
    let mut cur = conn.cursor();
    cur.execute(
        "WITH per AS (SELECT department_id, count(*) AS n FROM employees GROUP BY department_id)
         SELECT d.department_id, d.department_name, per.n FROM departments d JOIN per ON per.department_id = d.department_id
         ORDER BY d.department_id",
    )
    .await
    .unwrap();
    let got: std::collections::BTreeMap<i64, i64> = cur
        .fetch_all()
        .await
        .unwrap()
        .into_iter()
        .map(|r| match (&r[0], &r[2]) {
            (Value::Int(d), Value::Int(n)) => (*d, *n),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, expected);

    // Nullable job ids and datetimes survive, row by row.
    let mut cur = conn.cursor();
    cur.execute("SELECT employee_id, employee_name, hiring_date, job_id FROM employees ORDER BY employee_id LIMIT 5")
        .await
        .unwrap();
    let rows = cur.fetch_all().await.unwrap();
    for (row, e) in rows.iter().zip(&employees) {
        assert_eq!(row[0], Value::Int(e["employee_id"].as_i64().unwrap()));
        assert_eq!(row[1], Value::String(e["employee_name"].as_str().unwrap().into()));
        assert_eq!(row[2], dt(e["hiring_date"].as_str().unwrap()));
        assert_eq!(row[3], e["job_id"].as_i64().map_or(Value::Null, Value::Int));
    }
    g.stop().await;
}

async fn a_large_result_streams_in_bounded_batches(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let g = grpc(&app, Stack::Blue, |o| o.query.batch_rows = 1000).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    let mut cur = conn.cursor();
    cur.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25000) SELECT i, 'row ' || i AS label FROM n",
    )
    .await
    .unwrap();
    assert_eq!(cur.rowcount(), -1, "the total is not known before the end");
    let (mut rows, mut batches, mut sum) = (0i64, 0, 0i64);
    while let Some(batch) = cur.fetch_batch().await.unwrap() {
        assert!(batch.len() <= 1000, "a batch of {} rows", batch.len());
        batches += 1;
        for r in batch {
            rows += 1;
            let Value::Int(i) = r[0] else { panic!("{r:?}") };
            assert_eq!(r[1], Value::String(format!("row {i}")));
            sum += i;
        }
    }
    assert_eq!((rows, batches, sum), (25_000, 25, 25_000 * 25_001 / 2));
    assert_eq!(cur.rowcount(), 25_000);
    g.stop().await;
}

async fn anything_but_a_select_over_the_tenants_tables_is_refused_and_changes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let other = shop(&app, "globex").await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    for sql in [
        "DELETE FROM employees",
        "DROP TABLE employees",
        "UPDATE jobs SET job_name = 'x'",
        "INSERT INTO jobs VALUES (999, 'x')",
        "CREATE TABLE t (a int)",
        "SELECT 1; DELETE FROM employees",
        "SELECT * FROM products",
        "SELECT * FROM shop.products",
        "SELECT * FROM tenant_globex.products",
        "SELECT * FROM sqlite_master",
        "SELECT * FROM pg_catalog.pg_tables",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM _strata_datasets",
        "SELECT * FROM strata_control.api_keys",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT load_extension('/tmp/x')",
        "SELECT * FROM generate_series(1, 3)",
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "SELECT * INTO stolen FROM employees",
        "SELECT employee_name FROM employees WHERE 1 = 1 OR '' = ''; DROP TABLE jobs; --",
    ] {
        let err = conn.cursor().execute(sql).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::InvalidArgument), "{sql}: {err}");
    }
    // Syntax and runtime errors are clear too.
    let err = conn.cursor().execute("SELEC 1").await.unwrap_err();
    assert!(err.to_string().contains("syntax"), "{err}");
    let err = conn.cursor().execute("SELECT no_such_column FROM employees").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument), "{err}");
    // Nothing changed, for either tenant.
    let mut cur = conn.cursor();
    cur.execute("SELECT (SELECT count(*) FROM employees), (SELECT count(*) FROM jobs)").await.unwrap();
    let n = app.all_rows(&key, "employees").await.len() as i64;
    assert_eq!(
        cur.fetch_all().await.unwrap(),
        vec![vec![Value::Int(n), Value::Int(app.all_rows(&key, "jobs").await.len() as i64)]]
    );
    assert_eq!(app.all_rows(&other, "products").await.len(), 3);
    g.stop().await;
}

const ENDLESS: &str =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000000) SELECT count(*) FROM n";

async fn cancel_really_stops_a_running_query(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    let mut cur = conn.cursor();
    let q = cur.prepare(ENDLESS).await.unwrap();
    let t0 = Instant::now();
    let running = tokio::spawn(async move { cur.run().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.cancel_query(&q).await.unwrap();
    let err = running.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Some(Code::Cancelled), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(20), "cancel took {:?}", t0.elapsed());
    // Cancels and clears are idempotent, and fine for unknown or empty ids.
    conn.cancel_query(&q).await.unwrap();
    let mut c = raw(&g.endpoint).await;
    let s = session(&mut c, "blue", "acme", &key).await;
    for id in ["", "nope", &q.id, &q.id] {
        c.clear_or_cancel_query(with_strategy(
            ClearOrCancelQueryRequest { session_id: s.clone(), query_id: id.into(), ..Default::default() },
            "green",
        ))
        .await
        .unwrap();
    }
    g.stop().await;
}

async fn a_query_over_its_time_limit_is_stopped(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let g = grpc(&app, Stack::Blue, |o| o.query.timeout = Duration::from_millis(500)).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    let t0 = Instant::now();
    let err = conn.cursor().execute(ENDLESS).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::DeadlineExceeded), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(20));
    g.stop().await;
}

async fn bad_credentials_get_an_empty_session(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let other = app.tenant("globex", true).await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    let mut c = raw(&g.endpoint).await;
    for (user, pw) in [
        ("acme", "wrong"),
        ("acme", other.as_str()),
        ("globex", key.as_str()),
        ("", ""),
        ("../etc", key.as_str()),
        ("acme' OR '1'='1", key.as_str()),
    ] {
        assert_eq!(session(&mut c, "blue", user, pw).await, "", "{user}");
    }
    assert!(!session(&mut c, "blue", "acme", &key).await.is_empty());
    let err = Connection::connect(Config::new(&g.endpoint, "acme", "strata_wrong")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidCredentials), "{err}");
    // Debug output never shows the password.
    assert!(!format!("{:?}", Config::new(&g.endpoint, "acme", &key)).contains(&key));
    // A call with an unknown session gets the answer on which the connector re-authenticates.
    let err = c
        .prepare_statement_v2(with_strategy(
            PrepareStatementV2Request {
                session_id: "forged".into(),
                query_string: "SELECT 1".into(),
                ..Default::default()
            },
            "blue",
        ))
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.message().starts_with("Access denied")), (Code::Internal, true));
    g.stop().await;
}

async fn another_tenants_query_ids_look_unknown(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.tenant("acme", true).await;
    let z = app.tenant("globex", true).await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    let conn = connect(&g.endpoint, "acme", &a).await;
    let mut cur = conn.cursor();
    let q = cur.prepare("SELECT 1").await.unwrap();
    let mut c = raw(&g.endpoint).await;
    let s = session(&mut c, "blue", "globex", &z).await;
    let r = QueryRef { engine_ip: q.engine_ip.clone(), session_id: s.clone(), query_id: q.id.clone() };
    let err = c
        .execute_statement(with_strategy(
            ExecuteStatementRequest {
                engine_ip: q.engine_ip.clone(),
                session_id: s.clone(),
                query_id: q.id.clone(),
                ..Default::default()
            },
            "blue",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(c.get_next_result_batch(with_strategy(r.clone(), "blue")).await.unwrap_err().code(), Code::NotFound);
    // Their cancel is answered OK (cleanup never fails) but does nothing to acme's query.
    c.cancel_query(with_strategy(r, "blue")).await.unwrap();
    cur.run().await.unwrap();
    assert_eq!(cur.fetch_all().await.unwrap(), vec![vec![Value::Int(1)]]);
    g.stop().await;
}

async fn catalog_calls_list_only_the_tenants_datasets(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    shop(&app, "globex").await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    assert_eq!(conn.get_schema_names().await.unwrap(), ["hr"]);
    let mut tables = conn.get_tables("hr").await.unwrap();
    tables.sort();
    assert_eq!(tables, ["departments", "employees", "jobs"]);
    assert!(conn.get_tables("shop").await.unwrap().is_empty());
    let cols = conn.get_columns("hr", "employees").await.unwrap();
    assert_eq!(cols[2], ("hiring_date".to_string(), "TIMESTAMP".to_string()));
    assert_eq!(cols[0], ("employee_id".to_string(), "BIGINT".to_string()));
    let err = conn.get_columns("shop", "products").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NotFound));
    // Explain shows the database's plan.
    let mut cur = conn.cursor();
    cur.execute("SELECT * FROM employees WHERE employee_id = 5").await.unwrap();
    assert!(!cur.explain().await.unwrap().is_empty());
    g.stop().await;
}

async fn a_client_that_never_clears_hits_the_open_query_limit(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let g = grpc(&app, Stack::Blue, |o| o.max_queries = 3).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut c = conn.cursor();
        c.prepare("SELECT 1").await.unwrap();
        open.push(c);
    }
    let err = conn.cursor().prepare("SELECT 1").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
    open.pop().unwrap().close().await.unwrap();
    let mut c = conn.cursor();
    c.execute("SELECT 2").await.unwrap();
    assert_eq!(c.fetch_all().await.unwrap(), vec![vec![Value::Int(2)]]);
    g.stop().await;
}

async fn dry_run_status_explain_analyze_and_catalogs_answer(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    let mut c = raw(&g.endpoint).await;
    let s = session(&mut c, "blue", "acme", &key).await;
    let dry = |sql: &str| DryRunRequestV2 {
        session_id: s.clone(),
        query_string: sql.into(),
        catalog: "strata".into(),
        ..Default::default()
    };
    let ok: serde_json::Value = serde_json::from_str(
        &c.dry_run_v2(with_strategy(dry("SELECT count(*) FROM hr.jobs"), "blue"))
            .await
            .unwrap()
            .into_inner()
            .dryrun_value,
    )
    .unwrap();
    assert_eq!(ok, json!({"valid": true, "query": "SELECT count(*) FROM jobs"}));
    let bad: serde_json::Value = serde_json::from_str(
        &c.dry_run(with_strategy(
            DryRunRequest { session_id: s.clone(), query_string: "DELETE FROM jobs".into(), ..Default::default() },
            "blue",
        ))
        .await
        .unwrap()
        .into_inner()
        .dryrun_value,
    )
    .unwrap();
    assert_eq!(bad["valid"], false);
    assert!(bad["error"].as_str().unwrap().contains("only SELECT"), "{bad}");

    let p = c
        .prepare_statement(with_strategy(
            PrepareStatementRequest {
                session_id: s.clone(),
                query_string: "SELECT 1 UNION ALL SELECT 2".into(),
                ..Default::default()
            },
            "blue",
        ))
        .await
        .unwrap()
        .into_inner();
    let r = QueryRef { engine_ip: p.engine_ip.clone(), session_id: s.clone(), query_id: p.query_id.clone() };
    let st = c.status(with_strategy(r.clone(), "blue")).await.unwrap().into_inner();
    assert_eq!((st.status, st.row_count), (false, 0), "prepared, not run");
    c.execute_statement(with_strategy(
        ExecuteStatementRequest {
            engine_ip: r.engine_ip.clone(),
            session_id: s.clone(),
            query_id: r.query_id.clone(),
            ..Default::default()
        },
        "blue",
    ))
    .await
    .unwrap();
    let md = c.get_result_metadata(with_strategy(r.clone(), "blue")).await.unwrap().into_inner();
    let (rows, fields) = strata_client::wire::decode_metadata(&md.result_meta_data).unwrap();
    assert_eq!((rows, fields.len()), (2, 1));
    while !c.get_next_result_batch(with_strategy(r.clone(), "blue")).await.unwrap().into_inner().result_batch.is_empty()
    {
    }
    // After the end, more calls keep answering "end", and status says done.
    assert!(c
        .get_next_result_batch(with_strategy(r.clone(), "blue"))
        .await
        .unwrap()
        .into_inner()
        .result_batch
        .is_empty());
    let st = c.status(with_strategy(r.clone(), "blue")).await.unwrap().into_inner();
    assert_eq!((st.status, st.row_count), (true, 2));
    let ea = c.explain_analyze(with_strategy(r.clone(), "blue")).await.unwrap().into_inner();
    let doc: serde_json::Value = serde_json::from_str(&ea.explain_analyze).unwrap();
    for k in ["total_query_time", "executionQueueingTime", "parsingTime", "plan"] {
        assert!(doc.get(k).is_some(), "{k} missing from {doc}");
    }
    assert_eq!(doc["rows"], 2);
    let cats = c.get_cataloges(with_strategy(GetCatalogesRequest {}, "blue")).await.unwrap().into_inner();
    assert_eq!(cats.catalog_responses, vec![CatalogResponse { name: "strata".into(), is_default: true }]);
    g.stop().await;
}

async fn computed_columns_have_the_same_types_and_values_on_both_databases(b: Backend) {
    let app = spawn_app(b).await;
    let key = shop(&app, "acme").await;
    let g = grpc(&app, Stack::Blue, |_| {}).await;
    let conn = connect(&g.endpoint, "acme", &key).await;
    let d = |s: &str| Value::Date(chrono::NaiveDate::from_str(s).unwrap());
    let dec = |s: &str| Value::Decimal(Decimal::from_str(s).unwrap());
    let row = "FROM products WHERE sku = 'A-1'";
    // (the query, the type every client sees, the value) - one expected answer for both.
    let matrix: Vec<(String, &str, Value)> = vec![
        ("SELECT MIN(updated_at) FROM products".into(), "DATETIME", dt("1969-12-31T23:59:59Z")),
        ("SELECT MAX(updated_at) FROM products".into(), "DATETIME", dt("2024-02-29T12:34:56.789123Z")),
        ("SELECT MAX(launched) FROM products".into(), "DATE", d("2024-02-29")),
        ("SELECT MIN(price) FROM products".into(), "DECIMAL128", dec("-0.05")),
        ("SELECT COUNT(*) FROM products".into(), "LONG", Value::Int(3)),
        ("SELECT COUNT(updated_at) FROM products".into(), "LONG", Value::Int(2)),
        ("SELECT SUM(stock) FROM products".into(), "LONG", Value::Int(4)),
        ("SELECT AVG(stock) FROM products".into(), "DOUBLE", Value::Double(2.0)),
        ("SELECT MAX(stock) - MIN(stock) FROM products".into(), "LONG", Value::Int(10)),
        (format!("SELECT stock > 0 {row}"), "BOOLEAN", Value::Bool(true)),
        (format!("SELECT stock IS NULL {row}"), "BOOLEAN", Value::Bool(false)),
        (format!("SELECT sku IN ('A-1', 'B-2') {row}"), "BOOLEAN", Value::Bool(true)),
        (format!("SELECT NOT active {row}"), "BOOLEAN", Value::Bool(false)),
        (format!("SELECT stock BETWEEN 1 AND 9 AND sku LIKE 'A%' {row}"), "BOOLEAN", Value::Bool(true)),
        (format!("SELECT stock + 1 {row}"), "LONG", Value::Int(8)),
        (format!("SELECT stock / 2 {row}"), "LONG", Value::Int(3)),
        (format!("SELECT stock % 4 {row}"), "LONG", Value::Int(3)),
        (format!("SELECT -stock {row}"), "LONG", Value::Int(-7)),
        (format!("SELECT stock * 1.5 {row}"), "DOUBLE", Value::Double(10.5)),
        (format!("SELECT CAST(stock AS TEXT) {row}"), "STRING", Value::String("7".into())),
        (format!("SELECT CAST(stock AS REAL) {row}"), "DOUBLE", Value::Double(7.0)),
        (format!("SELECT CAST('12' AS INTEGER) {row}"), "LONG", Value::Int(12)),
        (format!("SELECT sku || '!' {row}"), "STRING", Value::String("A-1!".into())),
        (format!("SELECT lower(sku) {row}"), "STRING", Value::String("a-1".into())),
        (format!("SELECT length(sku) {row}"), "LONG", Value::Int(3)),
        (format!("SELECT COALESCE(updated_at, updated_at) {row}"), "DATETIME", dt("2024-02-29T12:34:56.789123Z")),
        (format!("SELECT CASE WHEN active THEN launched END {row}"), "DATE", d("2024-02-29")),
        (format!("SELECT 1 {row}"), "LONG", Value::Int(1)),
        (format!("SELECT 'x' {row}"), "STRING", Value::String("x".into())),
        (format!("SELECT TRUE {row}"), "BOOLEAN", Value::Bool(true)),
        (format!("SELECT (SELECT MAX(updated_at) FROM products) {row}"), "DATETIME", dt("2024-02-29T12:34:56.789123Z")),
        (
            "WITH m AS (SELECT MIN(updated_at) AS t, SUM(stock) AS n FROM products) SELECT t, n FROM m".into(),
            "DATETIME",
            dt("1969-12-31T23:59:59Z"),
        ),
        ("SELECT x.t FROM (SELECT MAX(launched) AS t FROM products) AS x".into(), "DATE", d("2024-02-29")),
        ("SELECT ROW_NUMBER() OVER (ORDER BY sku) FROM products ORDER BY sku LIMIT 1".into(), "LONG", Value::Int(1)),
        (
            "SELECT LAG(updated_at) OVER (ORDER BY sku) FROM products ORDER BY sku DESC LIMIT 1".into(),
            "DATETIME",
            dt("1969-12-31T23:59:59Z"),
        ),
        ("SELECT p.* FROM (SELECT MIN(launched) FROM products) AS p".into(), "DATE", d("1969-07-20")),
    ];
    for (sql, ty, value) in matrix {
        let mut cur = conn.cursor();
        cur.execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(cur.description()[0].type_name, ty, "{sql}");
        let rows = cur.fetch_all().await.unwrap();
        assert_eq!(rows[0][0], value, "{sql}");
        if sql.starts_with("WITH m") {
            assert_eq!(cur.description()[1].type_name, "LONG");
            assert_eq!(rows[0][1], Value::Int(4));
        }
    }
}

crate::on_both_backends!(
    computed_columns_have_the_same_types_and_values_on_both_databases,
    dry_run_status_explain_analyze_and_catalogs_answer,
    a_client_that_never_clears_hits_the_open_query_limit,
    the_connector_reads_every_column_type_with_exact_values,
    hr_joins_aggregates_and_ctes_agree_with_the_rest_api,
    a_large_result_streams_in_bounded_batches,
    anything_but_a_select_over_the_tenants_tables_is_refused_and_changes_nothing,
    cancel_really_stops_a_running_query,
    a_query_over_its_time_limit_is_stopped,
    bad_credentials_get_an_empty_session,
    another_tenants_query_ids_look_unknown,
    catalog_calls_list_only_the_tenants_datasets,
);
