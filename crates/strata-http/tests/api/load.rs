use serde_json::{json, Value as Json};

use crate::helpers::*;

async fn the_canonical_files_load_with_the_expected_counts_and_reasons(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let mut counts = Vec::new();
    for t in ["departments", "jobs", "employees"] {
        let r = app.load(&key, t, data_file(&format!("{t}.csv"))).await;
        assert_eq!(r.status(), 200);
        let report: Json = r.json().await.unwrap();
        counts.push((report["inserted"].as_u64().unwrap(), report["rejected"].as_u64().unwrap()));
    }
    assert_eq!(counts, vec![(12, 0), (183, 0), (1929, 70)]);

    // Every rejected employee is in the log with its line, raw content and reason.
    let mut rejections = Vec::new();
    let mut after = String::new();
    loop {
        let page: Json = app
            .get(&key, &format!("/v1/tables/employees/rejections?limit=30&after={after}"))
            .await
            .json()
            .await
            .unwrap();
        rejections.extend(page["rejections"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    assert_eq!(rejections.len(), 70);
    let ids: Vec<i64> = rejections.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    for r in &rejections {
        assert_eq!(r["source"], "load");
        let errors = r["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{r}");
        assert_eq!(errors[0]["code"], "missing_field");
        assert!(r["line"].as_u64().unwrap() >= 1);
        assert!(r["raw"].as_str().unwrap().contains(','));
    }
    let line2 = rejections.iter().find(|r| r["line"] == 2).unwrap();
    assert_eq!(line2["raw"], "2,Ty Hofer,2021-05-30T05:43:46Z,8,");
    assert_eq!(line2["errors"][0]["column"], "job_id");
}

async fn loading_the_same_file_twice_does_not_duplicate_rows(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let r: Json = app.load(&key, "employees", data_file("employees.csv")).await.json().await.unwrap();
    assert_eq!(r["inserted"], 0);
    assert_eq!(r["unchanged"], 1929);
    assert_eq!(r["rejected"], 70);
    assert_eq!(app.all_rows(&key, "employees").await.len(), 1929);
}

async fn crlf_lf_quoting_and_a_missing_final_newline_all_load(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let body = b"1,\"Research, \"\"Advanced\"\" Projects\"\r\n2,Sales\n3,\"Multi\nLine\"".to_vec();
    let r: Json = app.load(&key, "departments", body).await.json().await.unwrap();
    assert_eq!(r["inserted"], 3, "{r}");
    let row: Json = app.get(&key, "/v1/tables/departments/rows/1").await.json().await.unwrap();
    assert_eq!(row["department_name"], "Research, \"Advanced\" Projects");
    let row: Json = app.get(&key, "/v1/tables/departments/rows/3").await.json().await.unwrap();
    assert_eq!(row["department_name"], "Multi\nLine");
}

async fn every_kind_of_bad_row_is_rejected_with_its_reason_and_nothing_else_changes(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    app.load(&key, "departments", b"1,Sales\n2,Support".to_vec()).await;
    app.load(&key, "jobs", b"1,Engineer".to_vec()).await;
    let body = [
        "10,Ann,2021-01-01T00:00:00Z,1,1",                         // ok
        "11,Bob,2021-01-01T00:00:00Z,3,1",                         // unknown department
        "12,Cid,2021-13-01T00:00:00Z,1,1",                         // bad datetime
        "x13,Dan,2021-01-01T00:00:00Z,1,1",                        // not an integer
        "14,Eve,2021-01-01T00:00:00Z,1",                           // wrong column count
        "10,Ann Changed,2021-01-01T00:00:00Z,1,1",                 // duplicate key, different values
        "10,Ann,2021-01-01T00:00:00Z,1,1",                         // duplicate key, same values
        "15,Fay\"s,2021-01-01T00:00:00Z,1,1",                      // stray quote
        ",,,,",                                                    // everything missing
        "16,'; DROP TABLE employees; --,2021-01-01T00:00:00Z,2,1", // stored literally
    ]
    .join("\n");
    let r: Json = app.load(&key, "employees", body.into_bytes()).await.json().await.unwrap();
    assert_eq!(r["rows_read"], 10);
    assert_eq!(r["inserted"], 2, "{r}");
    assert_eq!(r["unchanged"], 1);
    assert_eq!(r["rejected"], 7);
    let codes: Vec<(u64, String)> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["errors"][0]["code"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (2, "unknown_foreign_key".to_string()),
            (3, "invalid_datetime".to_string()),
            (4, "invalid_integer".to_string()),
            (5, "wrong_column_count".to_string()),
            (6, "duplicate_key".to_string()),
            (8, "malformed_record".to_string()),
            (9, "missing_field".to_string()),
        ]
    );
    let all_missing = &r["errors"][6]["errors"];
    assert_eq!(all_missing.as_array().unwrap().len(), 5, "every reason is listed");
    let row: Json = app.get(&key, "/v1/tables/employees/rows/16").await.json().await.unwrap();
    assert_eq!(row["employee_name"], "'; DROP TABLE employees; --");
    let row: Json = app.get(&key, "/v1/tables/employees/rows/10").await.json().await.unwrap();
    assert_eq!(row["employee_name"], "Ann", "the first version wins");
}

async fn an_interrupted_upload_changes_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let mut lines = String::new();
    for i in 0..20_000 {
        lines.push_str(&format!("{},Name {i},2021-01-01T00:00:00Z,1,1\n", 100_000 + i));
    }
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(lines.into_bytes()), Err(std::io::Error::other("client went away"))];
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let _ = app
        .client
        .post(app.url("/v1/tables/employees/load"))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await;
    // Give the server a moment to notice and roll back, then check nothing landed.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.all_rows(&key, "employees").await.len(), 1929);
}

async fn a_load_needs_a_csv_body_and_a_known_table(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let r = app
        .client
        .post(app.url("/v1/tables/employees/load"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (415, "unsupported_media_type".into()));
    let r = app.load(&key, "nope", b"1,a".to_vec()).await;
    assert_eq!(error_code(r).await, (404, "table_not_found".into()));
    let r = app.load(&key, "..%2F..%2Fetc%2Fpasswd", b"1,a".to_vec()).await;
    assert_eq!(error_code(r).await.0, 404);
    let r = app.load(&key, "_strata_rejections", b"1,a".to_vec()).await;
    assert_eq!(error_code(r).await, (404, "table_not_found".into()));
    let r: Json = app.load(&key, "departments", Vec::new()).await.json().await.unwrap();
    assert_eq!(r["rows_read"], 0);
}

async fn a_large_load_with_one_conflicting_key_keeps_every_other_row(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    // Big enough for the bulk path; row 300 reuses employee 1 with other values.
    let mut body = String::new();
    for i in 0..500 {
        let id = if i == 300 { 1 } else { 50_000 + i };
        body.push_str(&format!("{id},Bulk {i},2021-05-05T05:05:05Z,1,1\n"));
    }
    let r: Json = app.load(&key, "employees", body.into_bytes()).await.json().await.unwrap();
    assert_eq!((r["inserted"].as_u64(), r["rejected"].as_u64()), (Some(499), Some(1)), "{r}");
    assert_eq!(r["errors"][0]["line"], 301);
    assert_eq!(r["errors"][0]["errors"][0]["code"], "duplicate_key");
    assert_eq!(app.all_rows(&key, "employees").await.len(), 1929 + 499);
    let harold: Json = app.get(&key, "/v1/tables/employees/rows/1").await.json().await.unwrap();
    assert_eq!(harold["employee_name"], "Harold Vogt");
}

/// Sends `csv` through each CSV path (`/load`, a `text/csv` batch) and a JSON batch of the
/// same rows, and returns each path's rejection log entries (oldest first).
async fn rejections_by_path(app: &TestApp, key: &str, table: &str, csv: &str, json_rows: Json) -> Vec<Vec<Json>> {
    let mut out = Vec::new();
    for path in ["load", "csv", "json"] {
        let before =
            app.get(key, &format!("/v1/tables/{table}/rejections?limit=1")).await.json::<Json>().await.unwrap()
                ["rejections"][0]["id"]
                .as_i64()
                .unwrap_or(0);
        let r = match path {
            "load" => app.load(key, table, csv.as_bytes().to_vec()).await,
            "csv" => app
                .client
                .post(app.url(&format!("/v1/tables/{table}/rows")))
                .bearer_auth(key)
                .header("content-type", "application/csv")
                .body(csv.to_string())
                .send()
                .await
                .unwrap(),
            _ => app.post_rows(key, table, json!({ "rows": json_rows.clone() })).await,
        };
        assert_eq!(r.status(), 200, "{path}");
        let log: Json = app.get(key, &format!("/v1/tables/{table}/rejections?limit=100")).await.json().await.unwrap();
        let mut mine: Vec<Json> = log["rejections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["id"].as_i64().unwrap() > before)
            .cloned()
            .collect();
        mine.reverse();
        out.push(mine);
    }
    out
}

async fn every_rejection_keeps_its_raw_line_and_every_reason_on_every_path(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    app.load(&key, "departments", b"1,Sales".to_vec()).await;
    app.load(&key, "jobs", b"1,Engineer".to_vec()).await;
    app.load(&key, "employees", b"1,Ann,2021-01-01T00:00:00Z,1,1".to_vec()).await;
    let lines = [
        "2,Bo,2021-01-01T00:00:00Z,7,1",    // unknown department only
        "1,Ann B,2021-01-01T00:00:00Z,1,1", // duplicate key
        "3,Cy,2021-01-01T00:00:00Z,99,9x",  // a bad job_id and an unknown department
        "4,   ,2021-01-01T00:00:00Z,1,8",   // a blank name and an unknown job
    ];
    let json_rows = json!([
        {"employee_id": 2, "employee_name": "Bo", "hiring_date": "2021-01-01T00:00:00Z", "department_id": 7, "job_id": 1},
        {"employee_id": 1, "employee_name": "Ann B", "hiring_date": "2021-01-01T00:00:00Z", "department_id": 1, "job_id": 1},
        {"employee_id": 3, "employee_name": "Cy", "hiring_date": "2021-01-01T00:00:00Z", "department_id": 99, "job_id": "9x"},
        {"employee_id": 4, "employee_name": "   ", "hiring_date": "2021-01-01T00:00:00Z", "department_id": 1, "job_id": 8},
    ]);
    let expected = [
        vec![("department_id", "unknown_foreign_key")],
        vec![("employee_id", "duplicate_key")],
        vec![("department_id", "unknown_foreign_key"), ("job_id", "invalid_integer")],
        vec![("employee_name", "missing_field"), ("job_id", "unknown_foreign_key")],
    ];
    let paths = rejections_by_path(&app, &key, "employees", &lines.join("\n"), json_rows.clone()).await;
    for (path, log) in ["load", "csv", "json"].iter().zip(&paths) {
        assert_eq!(log.len(), 4, "{path}: {log:?}");
        for (i, entry) in log.iter().enumerate() {
            let got: Vec<(&str, &str)> = entry["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["column"].as_str().unwrap(), e["code"].as_str().unwrap()))
                .collect();
            assert_eq!(got, expected[i], "{path} row {i}");
            let raw = entry["raw"].as_str().unwrap();
            if *path == "json" {
                let sent: Json = serde_json::from_str(raw).unwrap();
                assert_eq!(sent, json_rows[i], "{path} row {i}");
            } else {
                assert_eq!(raw, lines[i], "{path} row {i}: the raw line is kept");
                assert_eq!(entry["line"], i as u64 + 1);
            }
        }
    }
    assert_eq!(app.all_rows(&key, "employees").await.len(), 1, "nothing else went in");
}

async fn surrounding_blanks_are_trimmed_from_every_value_and_blank_is_missing(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    app.load(&key, "departments", b"1,Sales".to_vec()).await;
    app.load(&key, "jobs", b"1,Engineer".to_vec()).await;
    // One rule for every type and path: blanks (spaces, tabs) around a value go, and a value
    // of blanks only is missing.
    let r: Json = app
        .load(&key, "employees", b" 10 ,\t  Name \t, 2022-03-15T10:00:00Z , 1,1\n11,   ,2022-03-15T10:00:00Z,1,1\n12,\" Quoted \",2022-03-15T10:00:00Z,1,1".to_vec())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((r["inserted"].as_u64(), r["rejected"].as_u64()), (Some(2), Some(1)), "{r}");
    assert_eq!(r["errors"][0]["errors"][0]["code"], "missing_field");
    let row: Json = app.get(&key, "/v1/tables/employees/rows/10").await.json().await.unwrap();
    assert_eq!(row["employee_name"], "Name");
    assert_eq!(row["hiring_date"], "2022-03-15T10:00:00Z");
    let row: Json = app.get(&key, "/v1/tables/employees/rows/12").await.json().await.unwrap();
    assert_eq!(row["employee_name"], "Quoted", "quoting does not protect blanks either");
    let r: Json = app
        .post_rows(&key, "employees", json!({"rows": [
            {"employee_id": 13, "employee_name": "  Json Name ", "hiring_date": " 2022-03-15T10:00:00Z", "department_id": 1, "job_id": 1},
            {"employee_id": 14, "employee_name": "\t", "hiring_date": "2022-03-15T10:00:00Z", "department_id": 1, "job_id": 1},
        ]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["accepted"], 1, "{r}");
    assert_eq!(r["errors"][0]["errors"][0]["code"], "missing_field");
    let row: Json = app.get(&key, "/v1/tables/employees/rows/13").await.json().await.unwrap();
    assert_eq!(row["employee_name"], "Json Name");
    // A line break inside a quoted value is data, not a blank.
    app.load(&key, "employees", b"15,\"Two\nLines\",2022-03-15T10:00:00Z,1,1".to_vec()).await;
    let row: Json = app.get(&key, "/v1/tables/employees/rows/15").await.json().await.unwrap();
    assert_eq!(row["employee_name"], "Two\nLines");
}

async fn only_the_documented_csv_media_types_are_loaded(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    for (ct, status) in [
        ("text/csv", 200),
        ("text/csv; charset=utf-8", 200),
        ("application/csv", 200),
        ("text/plain", 415),
        ("application/octet-stream", 415),
    ] {
        let r = app
            .client
            .post(app.url("/v1/tables/departments/load"))
            .bearer_auth(&key)
            .header("content-type", ct)
            .body("1,Sales")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{ct}");
    }
}

crate::on_both_backends!(
    every_rejection_keeps_its_raw_line_and_every_reason_on_every_path,
    surrounding_blanks_are_trimmed_from_every_value_and_blank_is_missing,
    only_the_documented_csv_media_types_are_loaded,
    a_large_load_with_one_conflicting_key_keeps_every_other_row,
    the_canonical_files_load_with_the_expected_counts_and_reasons,
    loading_the_same_file_twice_does_not_duplicate_rows,
    crlf_lf_quoting_and_a_missing_final_newline_all_load,
    every_kind_of_bad_row_is_rejected_with_its_reason_and_nothing_else_changes,
    an_interrupted_upload_changes_nothing,
    a_load_needs_a_csv_body_and_a_known_table,
);
