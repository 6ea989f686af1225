use serde_json::{json, Value as Json};

use crate::helpers::*;

async fn setup(b: Backend) -> (TestApp, String) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    (app, key)
}

async fn a_valid_json_batch_is_accepted_and_readable(b: Backend) {
    let (app, key) = setup(b).await;
    let rows: Vec<Json> = (0..1000).map(|i| employee(10_000 + i, &format!("E{i}"), 1 + i % 12, 1 + i % 183)).collect();
    let r = app.post_rows(&key, "employees", json!({ "rows": rows })).await;
    assert_eq!(r.status(), 200);
    let report: Json = r.json().await.unwrap();
    assert_eq!(report["accepted"], 1000);
    assert_eq!(report["rejected"], 0);
    assert!(report["batch_id"].as_str().unwrap().len() == 36);
    let row: Json = app.get(&key, "/v1/tables/employees/rows/10999").await.json().await.unwrap();
    assert_eq!(row, employee(10_999, "E999", 1 + 999 % 12, 1 + 999 % 183));
}

async fn only_the_valid_rows_of_a_mixed_batch_are_committed_and_the_rest_logged(b: Backend) {
    let (app, key) = setup(b).await;
    let body = json!({"rows": [
        employee(5000, "Good", 1, 1),
        {"employee_id": 5001, "employee_name": "No job", "hiring_date": "2021-01-01T00:00:00Z", "department_id": 1},
        {"employee_id": "5002", "employee_name": 7, "hiring_date": "2021-01-01", "department_id": 99, "job_id": 1, "salary": 10},
        employee(5003, "Also good", 2, 2),
        employee(1, "Harold Vogt changed", 2, 96),
    ]});
    let report: Json = app.post_rows(&key, "employees", body).await.json().await.unwrap();
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(report["rejected"], 3);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors[0]["row"], 1);
    assert_eq!(
        errors[0]["errors"],
        json!([{"column": "job_id", "code": "missing_field", "reason": "value is required but missing"}])
    );
    assert_eq!(errors[1]["row"], 2);
    let cols: Vec<&str> =
        errors[1]["errors"].as_array().unwrap().iter().map(|e| e["column"].as_str().unwrap()).collect();
    // The department that parsed is checked too: every reason, in column order.
    assert_eq!(cols, vec!["employee_id", "employee_name", "hiring_date", "department_id", "salary"]);
    assert_eq!(errors[1]["errors"][3]["code"], "unknown_foreign_key");
    assert_eq!(errors[2]["errors"][0]["code"], "duplicate_key");
    assert_eq!(app.get(&key, "/v1/tables/employees/rows/5001").await.status(), 404);
    assert_eq!(app.get(&key, "/v1/tables/employees/rows/5003").await.status(), 200);
    let log: Json = app.get(&key, "/v1/tables/employees/rejections?limit=3").await.json().await.unwrap();
    let log = log["rejections"].as_array().unwrap();
    assert_eq!(log[0]["source"], "batch");
    assert_eq!(log[0]["source_id"], report["batch_id"]);
    assert_eq!(log[0]["row"], 4, "newest first");
    // An unknown department is caught too once the row is otherwise valid.
    let r: Json =
        app.post_rows(&key, "employees", json!({"rows": [employee(5004, "X", 99, 1)]})).await.json().await.unwrap();
    assert_eq!(r["errors"][0]["errors"][0]["code"], "unknown_foreign_key");
}

async fn batch_size_limits_are_enforced_and_nothing_is_inserted(b: Backend) {
    let (app, key) = setup(b).await;
    let r = app.post_rows(&key, "employees", json!({"rows": []})).await;
    let status = r.status().as_u16();
    let body: Json = r.json().await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (400, "empty_batch"));
    assert!(body["error"]["message"].as_str().unwrap().contains("1000"));
    let rows: Vec<Json> = (0..1001).map(|i| employee(20_000 + i, "E", 1, 1)).collect();
    let r = app.post_rows(&key, "employees", json!({ "rows": rows })).await;
    let status = r.status().as_u16();
    let body: Json = r.json().await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (413, "batch_too_large"));
    assert!(body["error"]["message"].as_str().unwrap().contains("at most 1000"));
    assert_eq!(app.get(&key, "/v1/tables/employees/rows/20000").await.status(), 404);
    // A body far beyond any real batch is refused before parsing.
    let huge = vec![b'x'; 17 << 20];
    let r = app
        .client
        .post(app.url("/v1/tables/employees/rows"))
        .bearer_auth(&key)
        .header("connection", "close")
        .header("content-type", "text/csv")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (413, "body_too_large".into()));
}

async fn malformed_and_unsupported_bodies_get_clear_errors(b: Backend) {
    let (app, key) = setup(b).await;
    let post = |ct: Option<&'static str>, body: &'static str| {
        let mut req = app.client.post(app.url("/v1/tables/employees/rows")).bearer_auth(&key).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    for (ct, body, expected) in [
        (Some("application/json"), "{not json", (400, "malformed_json")),
        (Some("application/json"), "{\"rows\": 5}", (400, "malformed_json")),
        (Some("application/json"), "{\"rows\": [1, 2]}", (400, "malformed_json")),
        (Some("application/json"), "{\"data\": []}", (400, "malformed_json")),
        (Some("application/json"), "[]", (400, "malformed_json")),
        (Some("application/xml"), "<rows/>", (415, "unsupported_media_type")),
        (None, "x", (415, "unsupported_media_type")),
        // CSV is text/csv (or application/csv); a body of another type is not guessed at.
        (Some("text/plain"), "13,Testing", (415, "unsupported_media_type")),
        (Some("application/octet-stream"), "13,Testing", (415, "unsupported_media_type")),
        (Some("application/x-www-form-urlencoded"), "13,Testing", (415, "unsupported_media_type")),
        (Some("text/csv"), "", (400, "empty_batch")),
    ] {
        let r = post(ct, body).await.unwrap();
        let (s, c) = error_code(r).await;
        assert_eq!((s, c.as_str()), expected, "{ct:?} {body}");
    }
    let r = app.post_rows(&key, "no_such_table", json!({"rows": [{}]})).await;
    assert_eq!(error_code(r).await, (404, "table_not_found".into()));
    let r = app.post_rows(&key, "employees; DROP TABLE employees", json!({"rows": [{}]})).await;
    assert_eq!(error_code(r).await.0, 404);
    assert_eq!(app.all_rows(&key, "employees").await.len(), 1929);
}

async fn csv_batches_use_the_same_rules_as_the_seed_incremental_files(b: Backend) {
    let (app, key) = setup(b).await;
    for (table, expect_accepted) in [("departments", 1), ("jobs", 1), ("employees", 0)] {
        let body = data_file(&format!("new_records/{table}.csv"));
        let r = app
            .client
            .post(app.url(&format!("/v1/tables/{table}/rows")))
            .bearer_auth(&key)
            .header("content-type", "text/csv")
            .body(body)
            .send()
            .await
            .unwrap();
        let report: Json = r.json().await.unwrap();
        assert_eq!(report["accepted"], expect_accepted, "{table}: {report}");
        if table == "employees" {
            // "2027-08-29T00:0:1Z" is not ISO 8601.
            assert_eq!(report["errors"][0]["errors"][0]["code"], "invalid_datetime");
        }
    }
    let row: Json = app.get(&key, "/v1/tables/departments/rows/13").await.json().await.unwrap();
    assert_eq!(row, json!({"department_id": 13, "department_name": "Testing"}));
}

async fn a_retried_batch_with_the_same_idempotency_key_is_applied_once(b: Backend) {
    let (app, key) = setup(b).await;
    let body = json!({"rows": [employee(7000, "Once", 1, 1), employee(1, "dup", 1, 1)]});
    let send = |k: &'static str, body: Json| {
        app.client
            .post(app.url("/v1/tables/employees/rows"))
            .bearer_auth(&key)
            .header("idempotency-key", k)
            .json(&body)
            .send()
    };
    let first = send("key-1", body.clone()).await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Json = first.json().await.unwrap();
    let again = send("key-1", body.clone()).await.unwrap();
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.json::<Json>().await.unwrap(), first);
    let other = send("key-1", json!({"rows": [employee(7001, "Other", 1, 1)]})).await.unwrap();
    assert_eq!(error_code(other).await, (409, "idempotency_key_reused".into()));
    assert_eq!(app.get(&key, "/v1/tables/employees/rows/7001").await.status(), 404);
    let log: Json = app.get(&key, "/v1/tables/employees/rejections?limit=1000").await.json().await.unwrap();
    let dup_logs = log["rejections"].as_array().unwrap().iter().filter(|r| r["source"] == "batch").count();
    assert_eq!(dup_logs, 1, "a replay logs nothing again");
    for bad in ["", &"k".repeat(256), "has space", "tab\there"] {
        let r = app
            .client
            .post(app.url("/v1/tables/employees/rows"))
            .bearer_auth(&key)
            .header("idempotency-key", bad)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await, (400, "invalid_idempotency_key".into()), "{bad:?}");
    }
}

async fn racing_retries_with_one_idempotency_key_insert_once_and_answer_alike(b: Backend) {
    let (app, key) = setup(b).await;
    let body = json!({"rows": (0..200).map(|i| employee(8000 + i, "Race", 1, 1)).collect::<Vec<_>>()});
    let mut handles = Vec::new();
    for _ in 0..12 {
        let client = app.client.clone();
        let url = app.url("/v1/tables/employees/rows");
        let key = key.clone();
        let body = body.clone();
        handles.push(tokio::spawn(async move {
            let r =
                client.post(url).bearer_auth(key).header("idempotency-key", "race-1").json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Json>().await.unwrap()
        }));
    }
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.unwrap());
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "one response for all");
    assert_eq!(answers[0]["accepted"], 200);
    assert_eq!(answers[0]["unchanged"], 0, "the rows went in exactly once");
    assert_eq!(app.all_rows(&key, "employees").await.len(), 1929 + 200);
}

async fn hostile_values_are_stored_literally(b: Backend) {
    let (app, key) = setup(b).await;
    let names = ["Robert'); DROP TABLE employees;--", "\"quoted\"", "Zoë ✓ 名前", "<script>alert(1)</script>"];
    let rows: Vec<Json> = names.iter().enumerate().map(|(i, n)| employee(9000 + i as i64, n, 1, 1)).collect();
    let r: Json = app.post_rows(&key, "employees", json!({ "rows": rows })).await.json().await.unwrap();
    assert_eq!(r["accepted"], 4);
    for (i, n) in names.iter().enumerate() {
        let row: Json = app.get(&key, &format!("/v1/tables/employees/rows/{}", 9000 + i)).await.json().await.unwrap();
        assert_eq!(row["employee_name"], *n);
    }
    let r: Json = app
        .post_rows(&key, "employees", json!({"rows": [employee(9100, "nul\u{0}byte", 1, 1)]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["errors"][0]["errors"][0]["code"], "invalid_string");
}

crate::on_both_backends!(
    a_valid_json_batch_is_accepted_and_readable,
    only_the_valid_rows_of_a_mixed_batch_are_committed_and_the_rest_logged,
    batch_size_limits_are_enforced_and_nothing_is_inserted,
    malformed_and_unsupported_bodies_get_clear_errors,
    csv_batches_use_the_same_rules_as_the_seed_incremental_files,
    a_retried_batch_with_the_same_idempotency_key_is_applied_once,
    racing_retries_with_one_idempotency_key_insert_once_and_answer_alike,
    hostile_values_are_stored_literally,
);
