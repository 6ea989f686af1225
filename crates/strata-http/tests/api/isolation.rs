use serde_json::{json, Value as Json};

use crate::helpers::*;

async fn a_tenant_never_sees_or_changes_another_tenants_data(b: Backend) {
    let app = spawn_app(b).await;
    let a = app.tenant_with_canonical_data("tenant-a").await;
    let b_key = app.tenant("tenant-b", true).await;
    let c_key = app.tenant("tenant-c", false).await;

    // B has the same table names, but its own (empty) tables.
    let r = app.get(&b_key, "/v1/tables/employees/rows/1").await;
    assert_eq!(error_code(r).await, (404, "row_not_found".into()));
    let page: Json = app.get(&b_key, "/v1/tables/employees/rows").await.json().await.unwrap();
    assert_eq!(page["rows"], json!([]));
    let page: Json = app.get(&b_key, "/v1/tables/employees/rejections").await.json().await.unwrap();
    assert_eq!(page["rejections"], json!([]));
    // A cursor issued to A is just a key; it reveals nothing of A to B.
    let a_page: Json = app.get(&a, "/v1/tables/employees/rows?limit=1").await.json().await.unwrap();
    let cursor = a_page["next"].as_str().unwrap();
    let page: Json = app.get(&b_key, &format!("/v1/tables/employees/rows?after={cursor}")).await.json().await.unwrap();
    assert_eq!(page["rows"], json!([]));

    // B's writes land in B only, even with A's ids.
    let r: Json = app
        .post_rows(&b_key, "departments", json!({"rows": [{"department_id": 1, "department_name": "B's own"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["accepted"], 1);
    let r = app.load(&b_key, "jobs", b"1,B job".to_vec()).await;
    assert_eq!(r.status(), 200);
    let a_dep: Json = app.get(&a, "/v1/tables/departments/rows/1").await.json().await.unwrap();
    assert_eq!(a_dep["department_name"], "Product Management");
    let a_job: Json = app.get(&a, "/v1/tables/jobs/rows/1").await.json().await.unwrap();
    assert_eq!(a_job["job_name"], "Marketing Assistant");

    // C has no dataset: A's tables do not exist for it at all.
    let tables: Json = app.get(&c_key, "/v1/tables").await.json().await.unwrap();
    assert_eq!(tables["tables"], json!([]));
    for path in ["/v1/tables/employees/rows", "/v1/tables/employees/rows/1", "/v1/tables/employees/rejections"] {
        let r = app.get(&c_key, path).await;
        assert_eq!(error_code(r).await, (404, "table_not_found".into()), "{path}");
    }
    let r = app.post_rows(&c_key, "employees", json!({"rows": [employee(1, "x", 1, 1)]})).await;
    assert_eq!(error_code(r).await, (404, "table_not_found".into()));
    let r = app.load(&c_key, "employees", b"1,x,2021-01-01T00:00:00Z,1,1".to_vec()).await;
    assert_eq!(error_code(r).await, (404, "table_not_found".into()));
    let r = app
        .client
        .put(app.url("/v1/datasets/hr"))
        .bearer_auth(&c_key)
        .header("content-type", "application/toml")
        .body(strata_domain::hr::HR_TOML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "C may install HR for itself");
    let page: Json = app.get(&c_key, "/v1/tables/employees/rows").await.json().await.unwrap();
    assert_eq!(page["rows"], json!([]), "and still sees none of A's rows");

    // Idempotency keys are per tenant: the same key in B is a different request.
    let body = json!({"rows": [{"department_id": 2, "department_name": "B two"}]});
    for key in [&a, &b_key] {
        let r = app
            .client
            .post(app.url("/v1/tables/departments/rows"))
            .bearer_auth(key)
            .header("idempotency-key", "shared")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("idempotent-replayed").is_none());
    }
    assert_eq!(app.all_rows(&a, "employees").await.len(), 1929);
}

crate::on_both_backends!(a_tenant_never_sees_or_changes_another_tenants_data);
