//! Data written by an earlier release keeps working with this binary.
//!
//! `tests/fixtures/upgrade-0.1` holds what strata 0.1.0 (this repository at the end of issue
//! 11, before the storage layout of issue 12) wrote with `scripts/make-upgrade-fixture.sh`: a
//! SQLite data directory and a PostgreSQL dump with the HR tables and their rejection log, a
//! second dataset, an idempotent batch, backups (one table and a set), three BTC orders with
//! their events projected and a raised cap, and a blue -> green switch. The test starts the
//! current binary on a copy of each and checks that every row, backup, order and deployment
//! record is still there and that every kind of endpoint works on them. Schema migrations
//! (issue 12) must keep it green: an upgrade never loses data.

mod common;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade-0.1")
}

fn manifest() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("fixture.json")).unwrap()).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Everything the fixture's story stored, checked through the API of a server running on it.
async fn check_everything_is_still_there(storage: Vec<String>, backend: &str) {
    let m = manifest();
    let key = m[backend]["key"].as_str().unwrap().to_string();
    let admin = m["admin_token"].as_str().unwrap().to_string();
    // The fixture predates schema versions: everything is at version 0, and looking changes
    // nothing. Starting the server adopts it as version 1 in place and upgrades tenants to 2
    // (on SQLite, rebuilding the order idempotency table with its rows).
    let status = |storage: &[String]| -> Vec<(String, i64)> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .env_remove("STRATA_DATABASE_URL")
            .env_remove("STRATA_DATA_DIR")
            .args(storage)
            .args(["migrate", "status", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| (s["scope"].as_str().unwrap().to_string(), s["version"].as_i64().unwrap()))
            .collect()
    };
    let before = [("control".to_string(), 0), ("tenant acme".to_string(), 0)];
    assert_eq!(status(&storage), before);
    assert_eq!(status(&storage), before, "status applies nothing");
    let mut args: Vec<&str> = storage.iter().map(String::as_str).collect();
    args.extend([
        "serve",
        // The fixture's last switch made green the active stack.
        "--stack",
        "green",
        "--http-addr",
        "127.0.0.1:0",
        "--rate-provider",
        "fixed",
        "--fixed-rates",
        "USD=48478.88,EUR=59000,GBP=51000.5",
        "--admin-token",
        &admin,
    ]);
    let server = common::serve_with(&args);
    assert_eq!(status(&storage), [("control".to_string(), 1), ("tenant acme".to_string(), 2)]);
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", server.base)).bearer_auth(&key).send();

    // Every HR row, including the batch's, and the load's 70 rejections with their raw lines.
    let mut rows = 0;
    let mut after = String::new();
    loop {
        let page: Value =
            get(&format!("/v1/tables/employees/rows?limit=1000{after}")).await.unwrap().json().await.unwrap();
        rows += page["rows"].as_array().unwrap().len();
        match page["next"].as_str() {
            Some(n) => after = format!("&after={n}"),
            None => break,
        }
    }
    assert_eq!(rows, 1930, "{backend}: the 1929 loaded employees and the batch's one");
    let log: Value = get("/v1/tables/employees/rejections?limit=100").await.unwrap().json().await.unwrap();
    let log = log["rejections"].as_array().unwrap();
    assert_eq!(log.len(), 70);
    assert!(log.iter().all(|r| !r["raw"].as_str().unwrap().is_empty()));
    let row: Value = get("/v1/tables/products/rows/C-3").await.unwrap().json().await.unwrap();
    assert_eq!(
        row,
        json!({"sku": "C-3", "price": "123456.70", "launched": null, "active": true,
                           "updated_at": "1999-12-31T23:59:59Z"})
    );

    // Reports read the old tables (the batch added one 2021 hire; Testing is not loaded).
    let r: Value = get("/v1/reports/departments-above-mean?year=2021").await.unwrap().json().await.unwrap();
    assert_eq!((r["total_hires"].as_i64(), r["mean"].as_str()), (Some(1644), Some("137.00")));

    // The orders, their exact amounts, the read model, the cap, and replays of old keys.
    let ids = &m[backend]["orders"];
    let list: Value = get("/v1/buy-orders?limit=10").await.unwrap().json().await.unwrap();
    let listed: Vec<(&str, &str)> = list["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_str().unwrap(), o["btc_amount"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (ids["fixture-order-3"].as_str().unwrap(), "0.00024196"),
            (ids["fixture-order-2"].as_str().unwrap(), "0.00424577"),
            (ids["fixture-order-1"].as_str().unwrap(), "0.00206276"),
        ]
    );
    let replay = http
        .post(format!("{}/v1/buy-orders", server.base))
        .bearer_auth(&key)
        .header("idempotency-key", "fixture-order-1")
        .json(&json!({"currency": "USD", "amount": "100.00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap()), Some("true"));
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], ids["fixture-order-1"]);
    let fresh = http
        .post(format!("{}/v1/buy-orders", server.base))
        .bearer_auth(&key)
        .header("idempotency-key", "after-the-upgrade")
        .json(&json!({"currency": "USD", "amount": "10"}))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 201);

    // The deployment history, through the admin API.
    let deploy: Value = http
        .get(format!("{}/v1/admin/deploy", server.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deploy["active"], "green");
    let history = deploy["history"].as_array().unwrap();
    assert!(
        history.iter().any(|h| h["from"] == "blue" && h["to"] == "green" && h["outcome"] == "completed"),
        "{deploy}"
    );

    // SQL over gRPC on the old tables.
    let conn = strata_client::Connection::connect(strata_client::Config::new(
        format!("http://{}", server.grpc),
        "acme",
        key.clone(),
    ))
    .await
    .unwrap();
    let mut cur = conn.cursor();
    cur.execute("SELECT count(*) FROM hr.employees").await.unwrap();
    assert_eq!(cur.fetch_all().await.unwrap(), vec![vec![strata_client::Value::Int(1930)]]);

    // The old backups: listed, and a restore from one puts its rows back (the table backup was
    // taken before the batch's row).
    let backups: Value = get("/v1/tables/employees/backups").await.unwrap().json().await.unwrap();
    let backups = backups["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 2);
    let oldest = backups.last().unwrap()["id"].as_str().unwrap().to_string();
    let r = http
        .post(format!("{}/v1/tables/employees/restore", server.base))
        .bearer_auth(&key)
        .json(&json!({ "backup_id": oldest }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let page: Value = get("/v1/tables/employees/rows/5000").await.unwrap().json().await.unwrap();
    assert_eq!(page["error"]["code"], "row_not_found", "the restore put the older rows back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_data_directory_written_by_the_last_release_keeps_every_row_backup_and_order() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture().join("sqlite"), dir.path());
    check_everything_is_still_there(vec!["--data-dir".into(), dir.path().display().to_string()], "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_database_written_by_the_last_release_keeps_every_row_backup_and_order() {
    let db = common::Db::create().await;
    let dump = std::fs::read_to_string(fixture().join("postgres.sql")).unwrap();
    let out = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &db.url()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(dump.as_bytes())?;
            child.wait_with_output()
        })
        .expect("psql loads the dump");
    assert!(out.status.success(), "the dump did not load");
    let backups = tempfile::tempdir().unwrap();
    copy_dir(&fixture().join("postgres-backups"), backups.path());
    check_everything_is_still_there(
        vec!["--database-url".into(), db.url(), "--backup-dir".into(), backups.path().display().to_string()],
        "postgres",
    )
    .await;
}
