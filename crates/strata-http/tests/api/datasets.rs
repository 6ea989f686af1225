use serde_json::{json, Value as Json};

use crate::helpers::*;

const SHOP_TOML: &str = r#"
name = "shop"
[[tables]]
name = "products"
primary_key = "sku"
columns = [
  { name = "sku", type = "string", max_length = 12 },
  { name = "price", type = "decimal", precision = 10, scale = 2, min = "0" },
  { name = "launched", type = "date", required = false },
  { name = "active", type = "boolean" },
  { name = "updated_at", type = "datetime", required = false },
  { name = "stock", type = "integer", min = 0, max = 1000000, required = false },
]
[[tables]]
name = "sales"
primary_key = "id"
columns = [
  { name = "id", type = "integer" },
  { name = "sku", type = "string", references = "products" },
]
"#;

async fn put(app: &TestApp, key: &str, name: &str, ct: &str, body: &str) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/v1/datasets/{name}")))
        .bearer_auth(key)
        .header("content-type", ct)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn a_tenant_declares_its_own_dataset_and_every_type_round_trips(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", false).await;
    let r = put(&app, &key, "shop", "application/toml", SHOP_TOML).await;
    assert_eq!(r.status(), 201);
    let report: Json = r.json().await.unwrap();
    assert_eq!(report["created_tables"], json!(["products", "sales"]));
    let again: Json = put(&app, &key, "shop", "application/toml", SHOP_TOML).await.json().await.unwrap();
    assert_eq!(again["changed"], false);

    let row = json!({"sku": "A-1", "price": "19.90", "launched": "2024-02-29", "active": true,
        "updated_at": "2024-03-01T12:00:00.250Z", "stock": 5});
    let r: Json = app
        .post_rows(
            &key,
            "products",
            json!({"rows": [row,
        {"sku": "B-2", "price": 3.5, "active": false},
        {"sku": "C-3", "price": "1.999", "active": "yes"},
        {"sku": "TOO-LONG-SKU-1", "price": "-1", "active": true, "stock": 2000000}]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["accepted"], 2, "{r}");
    let codes: Vec<Vec<&str>> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["errors"].as_array().unwrap().iter().map(|x| x["code"].as_str().unwrap()).collect())
        .collect();
    assert_eq!(
        codes,
        vec![vec!["invalid_decimal", "invalid_boolean"], vec!["too_long", "out_of_range", "out_of_range"]]
    );
    let got: Json = app.get(&key, "/v1/tables/products/rows/A-1").await.json().await.unwrap();
    assert_eq!(got, row);
    let got: Json = app.get(&key, "/v1/tables/products/rows/B-2").await.json().await.unwrap();
    assert_eq!(
        got,
        json!({"sku": "B-2", "price": "3.50", "launched": null, "active": false, "updated_at": null, "stock": null})
    );
    let r: Json = app
        .post_rows(&key, "sales", json!({"rows": [{"id": 1, "sku": "A-1"}, {"id": 2, "sku": "Z-9"}]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["accepted"], 1);
    assert_eq!(r["errors"][0]["errors"][0]["code"], "unknown_foreign_key");

    let tables: Json = app.get(&key, "/v1/tables").await.json().await.unwrap();
    let names: Vec<&str> = tables["tables"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["products", "sales"]);
    assert_eq!(tables["tables"][1]["columns"][1]["references"], json!({"table": "products", "column": "sku"}));
}

async fn yaml_definitions_work_and_invalid_ones_name_the_problem(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let yaml = "name: notes\ntables:\n  - name: notes\n    primary_key: id\n    columns:\n      - {name: id, type: integer}\n      - {name: emp, type: integer, references: employees}\n";
    let r = put(&app, &key, "notes", "application/yaml", yaml).await;
    assert_eq!(r.status(), 201, "references into another dataset resolve");

    let r = put(
        &app,
        &key,
        "bad",
        "application/json",
        r#"{"name":"bad","tables":[{"name":"t","primary_key":"x","columns":[{"name":"a","type":"float"}]}]}"#,
    )
    .await;
    let (s, body) = (r.status().as_u16(), r.json::<Json>().await.unwrap());
    assert_eq!((s, body["error"]["code"].as_str().unwrap()), (422, "invalid_dataset"));
    assert!(body["error"]["message"].as_str().unwrap().contains("float"));

    let r = put(&app, &key, "bad", "application/json",
        r#"{"name":"bad","tables":[{"name":"t","primary_key":"x","columns":[{"name":"a","type":"string","references":"ghost"}]}]}"#).await;
    let body: Json = r.json().await.unwrap();
    let paths: Vec<&str> =
        body["error"]["details"]["problems"].as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec!["tables[0].primary_key", "tables[0].columns[0].references"]);

    let r = put(&app, &key, "other", "application/toml", SHOP_TOML).await;
    assert_eq!(error_code(r).await, (422, "invalid_dataset".into()), "path and body names differ");
    let r = put(&app, &key, "shop", "text/plain", SHOP_TOML).await;
    assert_eq!(error_code(r).await, (415, "unsupported_media_type".into()));
    let r = put(&app, &key, "shop", "application/toml", "name = ").await;
    assert_eq!(error_code(r).await, (422, "invalid_dataset".into()));
    let changed =
        strata_domain::hr::HR_TOML.replace("max_length = 255, description = \"Name of the job\"", "max_length = 100");
    let r = put(&app, &key, "hr", "application/toml", &changed).await;
    assert_eq!(error_code(r).await, (409, "dataset_conflict".into()));
    let clash = "name = \"x\"\n[[tables]]\nname = \"jobs\"\nprimary_key = \"id\"\ncolumns = [{name = \"id\", type = \"integer\"}]\n";
    let r = put(&app, &key, "x", "application/toml", clash).await;
    assert_eq!(error_code(r).await, (409, "dataset_conflict".into()));
    // The server answers 413 before reading the body and drops the connection: send it on a
    // connection of its own so the next request does not reuse a dead one.
    let r = app
        .client
        .put(app.url("/v1/datasets/shop"))
        .bearer_auth(&key)
        .header("connection", "close")
        .header("content-type", "application/toml")
        .body("#".repeat(2 << 20))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (413, "body_too_large".into()));
    let sets: Json = app.get(&key, "/v1/datasets").await.json().await.unwrap();
    let names: Vec<&str> = sets["datasets"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["hr", "notes"]);
}

crate::on_both_backends!(
    a_tenant_declares_its_own_dataset_and_every_type_round_trips,
    yaml_definitions_work_and_invalid_ones_name_the_problem,
);
