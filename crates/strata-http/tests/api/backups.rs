use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

async fn backup(app: &TestApp, key: &str, table: &str, query: &str) -> Json {
    let r =
        app.client.post(app.url(&format!("/v1/tables/{table}/backups{query}"))).bearer_auth(key).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

async fn restore_id(app: &TestApp, key: &str, table: &str, id: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/tables/{table}/restore")))
        .bearer_auth(key)
        .json(&json!({"backup_id": id}))
        .send()
        .await
        .unwrap()
}

async fn restore_file(app: &TestApp, key: &str, table: &str, bytes: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/tables/{table}/restore")))
        .bearer_auth(key)
        .header("content-type", "application/vnd.apache.avro.file")
        .body(bytes)
        .send()
        .await
        .unwrap()
}

async fn download(app: &TestApp, key: &str, table: &str, id: &str) -> Vec<u8> {
    let r = app.get(key, &format!("/v1/tables/{table}/backups/{id}")).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap().to_vec()
}

fn python() -> String {
    std::env::var("STRATA_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn fastavro(args: &[&str]) -> String {
    let script = format!("{}/tests/api/fastavro_interop.py", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(python()).arg(script).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "fastavro helper failed (run scripts/test.sh, which installs fastavro): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn the_hr_tables_come_back_row_for_row_after_a_restore(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let before: Vec<Vec<Json>> =
        futures::future::join_all(["departments", "jobs", "employees"].map(|t| app.all_rows(&key, t))).await;
    let mut ids = Vec::new();
    for t in ["departments", "jobs", "employees"] {
        let m = backup(&app, &key, t, "").await;
        assert_eq!(m["codec"], "zstandard");
        assert_eq!(m["dataset"], "hr");
        assert_eq!(m["dataset_version"], 1);
        assert_eq!(m["tenant"], "acme");
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    // Change everything: new rows everywhere, then put the backups back.
    app.post_rows(&key, "departments", json!({"rows": [{"department_id": 50, "department_name": "New"}]})).await;
    app.post_rows(&key, "employees", json!({"rows": [employee(90_000, "Later", 50, 1)]})).await;
    let r = restore_id(&app, &key, "employees", &ids[2]).await;
    assert_eq!(r.status(), 200);
    let report: Json = r.json().await.unwrap();
    assert_eq!(report["tables"][0]["rows"], 1929);
    for (t, id) in ["departments", "jobs"].iter().zip(&ids) {
        assert_eq!(restore_id(&app, &key, t, id).await.status(), 200);
    }
    let after: Vec<Vec<Json>> =
        futures::future::join_all(["departments", "jobs", "employees"].map(|t| app.all_rows(&key, t))).await;
    assert_eq!(before, after);
}

async fn every_column_type_round_trips_with_every_codec(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", false).await;
    let def = "name = \"shop\"\n[[tables]]\nname = \"products\"\nprimary_key = \"sku\"\ncolumns = [\n\
        {name = \"sku\", type = \"string\"}, {name = \"price\", type = \"decimal\", precision = 12, scale = 3},\n\
        {name = \"launched\", type = \"date\", required = false}, {name = \"active\", type = \"boolean\"},\n\
        {name = \"updated_at\", type = \"datetime\", required = false}, {name = \"stock\", type = \"integer\", required = false}]\n";
    let r = app
        .client
        .put(app.url("/v1/datasets/shop"))
        .bearer_auth(&key)
        .header("content-type", "application/toml")
        .body(def)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rows = json!({"rows": [
        {"sku": "a", "price": "-123456789.125", "launched": "1900-02-28", "active": true, "updated_at": "1969-12-31T23:59:59.999999Z", "stock": -9007199254740993i64},
        {"sku": "b", "price": "0.001", "active": false},
        {"sku": "ü", "price": "5", "launched": "2024-02-29", "active": true, "updated_at": "2024-02-29T12:00:00Z", "stock": 0}]});
    assert_eq!(app.post_rows(&key, "products", rows).await.json::<Json>().await.unwrap()["accepted"], 3);
    let before = app.all_rows(&key, "products").await;
    for codec in ["null", "deflate", "snappy", "zstd"] {
        let m = backup(&app, &key, "products", &format!("?codec={codec}")).await;
        app.post_rows(&key, "products", json!({"rows": [{"sku": "zz", "price": "1", "active": true}]})).await;
        let file = download(&app, &key, "products", m["id"].as_str().unwrap()).await;
        let line = fastavro(&["read", &write_temp(&file)]);
        let mut lines = line.lines();
        let head: Json = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(head["schema"]["name"], "strata.shop.products");
        let recs: Vec<Json> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(recs.len(), 3, "{codec}");
        assert_eq!(recs[0]["price"], "-123456789.125");
        assert_eq!(recs[0]["updated_at"], "1969-12-31T23:59:59.999999Z");
        assert_eq!(recs[0]["launched"], "1900-02-28");
        assert_eq!(recs[1]["launched"], Json::Null);
        assert_eq!(restore_id(&app, &key, "products", m["id"].as_str().unwrap()).await.status(), 200);
        assert_eq!(app.all_rows(&key, "products").await, before, "{codec}");
    }
}

fn write_temp(bytes: &[u8]) -> String {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    let (_, path) = f.keep().unwrap();
    path.to_string_lossy().into_owned()
}

async fn fastavro_reads_our_backups_exactly(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let m = backup(&app, &key, "employees", "").await;
    let file = download(&app, &key, "employees", m["id"].as_str().unwrap()).await;
    assert_eq!(format!("{:x}", Sha256::digest(&file)), m["sha256"].as_str().unwrap());
    assert_eq!(file.len() as u64, m["bytes"].as_u64().unwrap());
    let out = fastavro(&["read", &write_temp(&file)]);
    let mut lines = out.lines();
    let head: Json = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(head["codec"], "zstandard");
    assert_eq!(head["schema"]["fields"][2]["type"]["logicalType"], "timestamp-micros");
    let rows = app.all_rows(&key, "employees").await;
    let recs: Vec<Json> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), rows.len());
    for (rec, row) in recs.iter().zip(&rows) {
        assert_eq!(rec["employee_id"], row["employee_id"]);
        assert_eq!(rec["employee_name"], row["employee_name"]);
        assert_eq!(rec["department_id"], row["department_id"]);
        let t = row["hiring_date"].as_str().unwrap().trim_end_matches('Z');
        assert_eq!(rec["hiring_date"].as_str().unwrap(), format!("{t}.000000Z"));
    }
}

async fn files_fastavro_writes_with_the_seed_schemas_restore(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let expected = app.all_rows(&key, "employees").await;
    app.post_rows(&key, "employees", json!({"rows": [employee(70_000, "Extra", 1, 1)]})).await;
    for t in ["departments", "jobs", "employees"] {
        let out = tempfile::NamedTempFile::new().unwrap();
        let csv = format!("{}/../../data/hr/{t}.csv", env!("CARGO_MANIFEST_DIR"));
        let n = fastavro(&["write-seed", t, &csv, out.path().to_str().unwrap()]);
        let r = restore_file(&app, &key, t, std::fs::read(out.path()).unwrap()).await;
        assert_eq!(r.status(), 200, "{t}");
        let report: Json = r.json().await.unwrap();
        assert_eq!(report["tables"][0]["rows"].to_string(), n.trim(), "{t}");
    }
    assert_eq!(app.all_rows(&key, "employees").await, expected, "dates parsed from strings, same rows");
}

async fn failed_restores_leave_the_table_exactly_as_it_was(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let m = backup(&app, &key, "employees", "?codec=null").await;
    let id = m["id"].as_str().unwrap();
    let good = download(&app, &key, "employees", id).await;
    app.post_rows(&key, "employees", json!({"rows": [employee(60_000, "Marker", 1, 1)]})).await;
    let before = app.all_rows(&key, "employees").await;

    // Truncated and corrupted uploads.
    let r = restore_file(&app, &key, "employees", good[..good.len() - 40].to_vec()).await;
    assert_eq!(error_code(r).await, (422, "invalid_backup".into()));
    let mut flipped = good.clone();
    let n = flipped.len();
    flipped[n / 2] ^= 0x55;
    let r = restore_file(&app, &key, "employees", flipped.clone()).await;
    assert_eq!(error_code(r).await.0, 422);
    let r = restore_file(&app, &key, "employees", b"not avro at all".to_vec()).await;
    assert_eq!(error_code(r).await, (422, "invalid_backup".into()));
    // The registered file altered on disk: the checksum catches it.
    let path = app.backups.path().join("acme/employees").join(format!("{id}.avro"));
    let mut on_disk = std::fs::read(&path).unwrap();
    let last = on_disk.len() - 20;
    on_disk[last] ^= 0x01;
    std::fs::write(&path, &on_disk).unwrap();
    let r = restore_id(&app, &key, "employees", id).await;
    let (status, body) = (r.status().as_u16(), r.json::<Json>().await.unwrap());
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("checksum")
            || body["error"]["message"].as_str().unwrap().contains("corrupt"),
        "{body}"
    );
    // A schema that does not resolve: a departments backup into employees.
    let dm = backup(&app, &key, "departments", "").await;
    let dfile = download(&app, &key, "departments", dm["id"].as_str().unwrap()).await;
    let r = restore_file(&app, &key, "employees", dfile).await;
    let (status, body) = (r.status().as_u16(), r.json::<Json>().await.unwrap());
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (422, "invalid_backup"));
    assert!(body["error"]["message"].as_str().unwrap().contains("required column employee_id"), "{body}");
    // Rows the dictionary refuses, and foreign keys the rows would break.
    let seed = tempfile::NamedTempFile::new().unwrap();
    let bad_csv = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad_csv.path(), "1,A,2021-01-01T00:00:00Z,1,1\n2,B,not-a-date,1,1\n").unwrap();
    fastavro(&["write-seed", "employees", bad_csv.path().to_str().unwrap(), seed.path().to_str().unwrap()]);
    let r = restore_file(&app, &key, "employees", std::fs::read(seed.path()).unwrap()).await;
    let (status, body) = (r.status().as_u16(), r.json::<Json>().await.unwrap());
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (422, "restore_refused"));
    assert!(body["error"]["message"].as_str().unwrap().contains("row 2"), "{body}");
    std::fs::write(bad_csv.path(), "1,A,2021-01-01T00:00:00Z,999,1\n").unwrap();
    fastavro(&["write-seed", "employees", bad_csv.path().to_str().unwrap(), seed.path().to_str().unwrap()]);
    let r = restore_file(&app, &key, "employees", std::fs::read(seed.path()).unwrap()).await;
    assert_eq!(error_code(r).await, (422, "restore_refused".into()));
    // A parent restore that would strand child rows is refused.
    std::fs::write(bad_csv.path(), "1,Only one\n").unwrap();
    fastavro(&["write-seed", "departments", bad_csv.path().to_str().unwrap(), seed.path().to_str().unwrap()]);
    let r = restore_file(&app, &key, "departments", std::fs::read(seed.path()).unwrap()).await;
    let (status, body) = (r.status().as_u16(), r.json::<Json>().await.unwrap());
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (409, "restore_would_orphan_rows"));
    assert!(body["error"]["message"].as_str().unwrap().contains("--all"), "{body}");

    assert_eq!(app.all_rows(&key, "employees").await, before);
    assert_eq!(app.all_rows(&key, "departments").await.len(), 12);
}

async fn backups_are_versioned_pruned_and_private_to_their_tenant(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.tenant_with_canonical_data("tenant-a").await;
    let other = app.tenant("tenant-b", true).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(backup(&app, &a, "jobs", "?retain=2").await["id"].as_str().unwrap().to_string());
    }
    let list: Json = app.get(&a, "/v1/tables/jobs/backups").await.json().await.unwrap();
    let listed: Vec<&str> = list["backups"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![ids[2].as_str(), ids[1].as_str()], "newest first, oldest pruned");
    let r = app.get(&a, &format!("/v1/tables/jobs/backups/{}", ids[0])).await;
    assert_eq!(error_code(r).await, (404, "backup_not_found".into()));

    // Tenant B sees none of A's backups and cannot restore or download them.
    let list: Json = app.get(&other, "/v1/tables/jobs/backups").await.json().await.unwrap();
    assert_eq!(list["backups"], json!([]));
    let r = app.get(&other, &format!("/v1/tables/jobs/backups/{}", ids[2])).await;
    assert_eq!(error_code(r).await, (404, "backup_not_found".into()));
    let r = restore_id(&app, &other, "jobs", &ids[2]).await;
    assert_eq!(error_code(r).await, (404, "backup_not_found".into()));
    assert_eq!(app.all_rows(&other, "jobs").await.len(), 0);

    // Hostile ids and parameters.
    for bad in ["..%2F..%2Fcontrol.db", "..", "x.json", "01a20134-fe56-70fd-8b8a-805d1b2869c3%00"] {
        let r = app.get(&a, &format!("/v1/tables/jobs/backups/{bad}")).await;
        assert_eq!(error_code(r).await.0, 404, "{bad}");
    }
    let r = restore_id(&app, &a, "jobs", "../../tenant-b/jobs/x").await;
    assert_eq!(error_code(r).await, (404, "backup_not_found".into()));
    let r = app.client.post(app.url("/v1/tables/jobs/backups?codec=lz4")).bearer_auth(&a).send().await.unwrap();
    assert_eq!(error_code(r).await, (400, "invalid_codec".into()));
    let r = app.client.post(app.url("/v1/tables/jobs/backups?retain=0")).bearer_auth(&a).send().await.unwrap();
    assert_eq!(error_code(r).await, (400, "invalid_query".into()));
    let r = app.client.post(app.url("/v1/tables/nope/backups")).bearer_auth(&a).send().await.unwrap();
    assert_eq!(error_code(r).await, (404, "table_not_found".into()));
    let r = app
        .client
        .post(app.url("/v1/tables/jobs/restore"))
        .bearer_auth(&a)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (415, "unsupported_media_type".into()));
    let r = app
        .client
        .post(app.url("/v1/tables/jobs/restore"))
        .bearer_auth(&a)
        .json(&json!({"id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "malformed_json".into()));
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("strata_backup_rows_total{table=\"jobs\"}"));
}

async fn a_self_referencing_table_restores_whatever_its_key_order(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", false).await;
    let def = "name = \"org\"\n[[tables]]\nname = \"people\"\nprimary_key = \"id\"\ncolumns = [{name = \"id\", type = \"integer\"}, {name = \"manager\", type = \"integer\", references = \"people\", required = false}]\n";
    let r = app
        .client
        .put(app.url("/v1/datasets/org"))
        .bearer_auth(&key)
        .header("content-type", "application/toml")
        .body(def)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Parents first when loading; in key order the child (1) comes before its manager (2).
    let r: Json = app
        .post_rows(&key, "people", json!({"rows": [{"id": 2}, {"id": 1, "manager": 2}, {"id": 3, "manager": 9}]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["accepted"], 2);
    let m = backup(&app, &key, "people", "").await;
    app.post_rows(&key, "people", json!({"rows": [{"id": 4}]})).await;
    let r = restore_id(&app, &key, "people", m["id"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        app.all_rows(&key, "people").await,
        vec![json!({"id": 1, "manager": 2}), json!({"id": 2, "manager": null})]
    );
}

crate::on_both_backends!(
    a_self_referencing_table_restores_whatever_its_key_order,
    the_hr_tables_come_back_row_for_row_after_a_restore,
    every_column_type_round_trips_with_every_codec,
    fastavro_reads_our_backups_exactly,
    files_fastavro_writes_with_the_seed_schemas_restore,
    failed_restores_leave_the_table_exactly_as_it_was,
    backups_are_versioned_pruned_and_private_to_their_tenant,
);
