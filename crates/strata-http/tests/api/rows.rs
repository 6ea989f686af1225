use serde_json::Value as Json;

use crate::helpers::*;

async fn paging_through_a_table_returns_every_row_once_in_key_order(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let mut ids = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let page: Json =
            app.get(&key, &format!("/v1/tables/employees/rows?limit=500&after={after}")).await.json().await.unwrap();
        pages += 1;
        ids.extend(page["rows"].as_array().unwrap().iter().map(|r| r["employee_id"].as_i64().unwrap()));
        match page["next"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(ids.len(), 1929);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let default: Json = app.get(&key, "/v1/tables/employees/rows").await.json().await.unwrap();
    assert_eq!(default["rows"].as_array().unwrap().len(), 100);
}

async fn a_row_is_read_by_its_key_with_typed_values(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let row: Json = app.get(&key, "/v1/tables/employees/rows/1").await.json().await.unwrap();
    assert_eq!(
        row,
        serde_json::json!({"employee_id": 1, "employee_name": "Harold Vogt",
        "hiring_date": "2021-11-07T02:48:42Z", "department_id": 2, "job_id": 96})
    );
    let r = app.get(&key, "/v1/tables/employees/rows/2").await;
    assert_eq!(error_code(r).await, (404, "row_not_found".into()));
    let r = app.get(&key, "/v1/tables/employees/rows/abc").await;
    assert_eq!(error_code(r).await, (400, "invalid_key".into()));
    let r = app.get(&key, "/v1/tables/employees/rows/1%20OR%201=1").await;
    assert_eq!(error_code(r).await, (400, "invalid_key".into()));
    let r = app.get(&key, "/v1/tables/employees/rows/99999999999999999999").await;
    assert_eq!(error_code(r).await, (400, "invalid_key".into()));
}

async fn bad_limits_and_cursors_are_refused(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    for q in ["limit=0", "limit=1001", "limit=abc", "limit=-1"] {
        for path in ["rows", "rejections"] {
            let r = app.get(&key, &format!("/v1/tables/employees/{path}?{q}")).await;
            assert_eq!(error_code(r).await, (400, "invalid_limit".into()), "{path}?{q}");
        }
    }
    for c in ["garbage", "eyJrIjoiYSJ9", "%27%20OR%201%3D1", &"A".repeat(5000)] {
        for path in ["rows", "rejections"] {
            let r = app.get(&key, &format!("/v1/tables/employees/{path}?after={c}")).await;
            assert_eq!(error_code(r).await, (400, "invalid_cursor".into()), "{path} {c}");
        }
    }
    let r = app.get(&key, "/v1/tables/employees/rows?limt=5").await;
    assert_eq!(error_code(r).await, (400, "invalid_query".into()));
    let r = app.get(&key, "/v1/tables/nope/rows").await;
    assert_eq!(error_code(r).await, (404, "table_not_found".into()));
    let r = app.get(&key, "/v1/tables/nope/rejections").await;
    assert_eq!(error_code(r).await, (404, "table_not_found".into()));
}

crate::on_both_backends!(
    paging_through_a_table_returns_every_row_once_in_key_order,
    a_row_is_read_by_its_key_with_typed_values,
    bad_limits_and_cursors_are_refused,
);
