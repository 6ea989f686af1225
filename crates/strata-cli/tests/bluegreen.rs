//! Zero-downtime blue/green with real processes: two `strata serve` instances (blue, green)
//! over one PostgreSQL database, the repo's nginx config in front, `strata deploy switch`
//! from the command line, and clients on both the Rust connector and the real, unmodified
//! e6data Python connector (installed by scripts/test.sh; STRATA_TEST_PYTHON points at it).

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{serve_with, Db, Server};
use strata_client::{Config, Connection, Value};

fn strata(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_strata")).arg("--database-url").arg(url).args(args).output().unwrap();
    assert!(out.status.success(), "strata {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn repo(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

struct Nginx {
    child: Child,
    port: u16,
    prefix: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM lets the master take its workers down with it; a SIGKILL of the master alone
        // left the workers running after the tests.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn nginx(blue: &str, green: &str) -> Nginx {
    let prefix = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(repo("scripts/nginx-grpc.sh"))
        .args([prefix.path().to_str().unwrap(), &format!("127.0.0.1:{port}"), blue, green, "blue"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Built at once, so its Drop kills nginx even if it never comes up.
    let nginx = Nginx { child, port, prefix };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return nginx;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nginx did not start");
}

const SHOP: &str = include_str!("../../strata-http/tests/api/shop_types.toml");

struct Deployment {
    url: String,
    key: String,
    blue: Server,
    green: Server,
    nginx: Nginx,
    _db: Db,
    _files: tempfile::TempDir,
}

/// Two instances over one fresh database with the HR data and a table of every type.
async fn deployment() -> Deployment {
    let db = Db::create().await;
    let url = db.url();
    let key = strata(&url, &["tenant", "create", "acme", "--dataset", "hr"]).trim().to_string();
    for t in ["departments", "jobs", "employees"] {
        strata(&url, &["load", "--tenant", "acme", "--table", t, &repo(&format!("data/hr/{t}.csv"))]);
    }
    let files = tempfile::tempdir().unwrap();
    let shop = files.path().join("shop.toml");
    std::fs::write(&shop, SHOP).unwrap();
    strata(&url, &["dataset", "apply", "--tenant", "acme", shop.to_str().unwrap()]);
    let csv = files.path().join("products.csv");
    std::fs::write(&csv, "A-1,19.99,2024-02-29,true,2024-02-29T12:34:56.789Z,7\nB-2,-0.05,1969-07-20,false,1969-12-31T23:59:59Z,-3\nC-3,123456.70,,,,\n").unwrap();
    strata(&url, &["load", "--tenant", "acme", "--table", "products", csv.to_str().unwrap()]);
    let start = |stack: &str| {
        serve_with(&[
            "--database-url",
            &url,
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--rate-provider",
            "fixed",
            "--stack",
            stack,
            "--deploy-poll-ms",
            "50",
        ])
    };
    let blue = start("blue");
    let green = start("green");
    let nginx = nginx(&blue.grpc, &green.grpc).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    Deployment { url, key, blue, green, nginx, _db: db, _files: files }
}

impl Deployment {
    fn switch(&self, to: &str) -> String {
        let p = self.nginx.prefix.path().display().to_string();
        strata(
            &self.url,
            &[
                "deploy",
                "switch",
                "--to",
                to,
                "--announce-ms",
                "400",
                "--drain-timeout-secs",
                "60",
                "--actor",
                "test",
                "--nginx-active-file",
                &format!("{p}/active-stack.conf"),
                "--nginx-reload",
                &format!("nginx -p {p} -c {p}/nginx.conf -s reload"),
            ],
        )
    }
}

fn python() -> String {
    std::env::var("STRATA_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_clients_see_no_failed_query_across_ten_switches() {
    let d = deployment().await;
    let endpoint = format!("http://127.0.0.1:{}", d.nginx.port);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..8u64 {
        let (endpoint, key, stop, done) = (endpoint.clone(), d.key.clone(), stop.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let conn = Connection::connect(Config::new(endpoint, "acme", key)).await.unwrap();
            let mut failures = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // Every other client runs long fetches: 20,000 rows read a batch at a time,
                // slowly, so switches happen while they are in flight.
                let long = c % 2 == 0 && i.is_multiple_of(3);
                let n = if long { 20_000 } else { 10 + (c * 7 + i) % 300 };
                let sql = format!("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i, i * 2 FROM s");
                let mut cur = conn.cursor();
                let r = async {
                    cur.execute(&sql).await?;
                    let mut rows = Vec::new();
                    while let Some(b) = cur.fetch_batch().await? {
                        rows.extend(b);
                        if long {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    Ok::<_, strata_client::Error>(rows)
                }
                .await;
                match r {
                    Ok(rows) => {
                        let want: Vec<Vec<Value>> = (1..=n as i64).map(|k| vec![Value::Int(k), Value::Int(2 * k)]).collect();
                        if rows != want {
                            failures.push(format!("client {c} query {i}: wrong result ({} rows)", rows.len()));
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.push(format!("client {c} query {i}: {e}")),
                }
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut log = Vec::new();
    for round in 0..5 {
        for to in ["green", "blue"] {
            let out = tokio::task::block_in_place(|| d.switch(to));
            assert!(out.contains("completed"), "round {round} to {to}: {out}");
            log.push(out.trim().to_string());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    assert!(failures.is_empty(), "{} failed queries: {failures:#?}\nswitches: {log:#?}", failures.len());
    assert!(done.load(Ordering::Relaxed) > 100, "only {} queries ran", done.load(Ordering::Relaxed));
    let status = strata(&d.url, &["deploy", "status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(s["active"], "blue");
    assert_eq!(s["history"].as_array().unwrap().iter().filter(|h| h["outcome"] == "completed").count(), 10);
    drop(d.blue);
    drop(d.green);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_real_python_connector_reads_every_type_and_rides_through_a_switch() {
    let d = deployment().await;
    let script = repo("crates/strata-cli/tests/e6data_client.py");
    let port = d.nginx.port.to_string();
    let out = Command::new(python()).args([&script, "types", "127.0.0.1", &port, "acme", &d.key]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["products"];
    assert_eq!(
        p["description"],
        serde_json::json!([
            ["sku", "STRING"],
            ["price", "DECIMAL128"],
            ["launched", "DATE"],
            ["active", "BOOLEAN"],
            ["updated_at", "DATETIME"],
            ["stock", "LONG"]
        ])
    );
    assert_eq!(
        p["rows"],
        serde_json::json!([
            ["A-1", {"decimal": "19.99"}, "2024-02-29", true, "2024-02-29T12:34:56.789+00:00", 7],
            ["B-2", {"decimal": "-0.05"}, "1969-07-20", false, "1969-12-31T23:59:59.000+00:00", -3],
            // The connector divides the 16-byte unscaled value by 10^scale in Python, which drops
            // trailing zeros: the same number as 123456.70.
            ["C-3", {"decimal": "123456.7"}, null, null, null, null],
        ])
    );
    assert_eq!(p["rowcount"], 3);
    assert_eq!(v["products_v1"]["rows"], p["rows"]);
    assert_eq!(v["products_v2"]["rows"], p["rows"]);
    let e = &v["employees"]["rows"];
    assert_eq!(e[0], serde_json::json!([1, "Harold Vogt", "2021-11-07T02:48:42.000+00:00", 2, 96]));
    // Row 2 of the file lacks its job and was rejected at load.
    assert_eq!(e[1], serde_json::json!([3, "Lyman Hadye", "2021-09-01T23:27:38.000+00:00", 5, 52]));
    let per: i64 = v["per_department"]["rows"].as_array().unwrap().iter().map(|r| r[1].as_i64().unwrap()).sum();
    let conn =
        Connection::connect(Config::new(format!("http://127.0.0.1:{port}"), "acme", d.key.clone())).await.unwrap();
    let mut cur = conn.cursor();
    cur.execute("SELECT count(*) FROM employees WHERE department_id IS NOT NULL").await.unwrap();
    assert_eq!(cur.fetch_all().await.unwrap(), vec![vec![Value::Int(per)]]);
    assert_eq!(v["schemas"], serde_json::json!(["hr", "shop"]));
    assert_eq!(v["tables"], serde_json::json!(["departments", "employees", "jobs"]));
    assert_eq!(v["columns"][2], serde_json::json!({"fieldName": "hiring_date", "fieldType": "TIMESTAMP"}));
    // A SQLAlchemy user of the connector reflects every column with a type of its kind, and
    // reads values of the right Python type through the reflected table.
    assert_eq!(
        v["sqlalchemy"]["employees"],
        serde_json::json!({"employee_id": "BigInteger", "employee_name": "String", "hiring_date": "E6dataTimestamp",
                           "department_id": "BigInteger", "job_id": "BigInteger"})
    );
    assert_eq!(
        v["sqlalchemy"]["employees_row"],
        serde_json::json!({"employee_id": "int", "employee_name": "str", "hiring_date": "datetime",
                           "department_id": "int", "job_id": "int"})
    );
    assert_eq!(
        v["sqlalchemy"]["products"],
        serde_json::json!({"sku": "String", "price": "E6dataDecimal", "launched": "E6dataDate", "active": "Boolean",
                           "updated_at": "E6dataTimestamp", "stock": "BigInteger"})
    );
    assert_eq!(
        v["sqlalchemy"]["products_row"],
        serde_json::json!({"sku": "str", "price": "Decimal", "launched": "date", "active": "bool",
                           "updated_at": "datetime", "stock": "int"})
    );
    assert!(v["delete"].as_str().unwrap().contains("only SELECT"), "{}", v["delete"]);
    assert!(v["explain_analyse"].as_str().unwrap().contains("total_query_time"), "{}", v["explain_analyse"]);
    assert!(v["dry_run"].as_str().unwrap().contains("\"valid\":true"), "{}", v["dry_run"]);

    // Across a switch there and back, while the real connector loops.
    let stopfile = d._files.path().join("stop");
    let looping = Command::new(python())
        .args([&script, "loop", "127.0.0.1", &port, "acme", &d.key, stopfile.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for to in ["green", "blue"] {
        let out = tokio::task::block_in_place(|| d.switch(to));
        assert!(out.contains("completed"), "{out}");
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    std::fs::write(&stopfile, "").unwrap();
    let out = looping.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["failures"], serde_json::json!([]), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(r["ok"].as_i64().unwrap() > 20, "{r}");
}
