use crate::helpers::*;

/// Every `/v1` endpoint, with a body where it takes one.
pub const V1_ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/v1/tables"),
    ("GET", "/v1/datasets"),
    ("PUT", "/v1/datasets/hr"),
    ("POST", "/v1/tables/employees/load"),
    ("POST", "/v1/tables/employees/rows"),
    ("GET", "/v1/tables/employees/rows"),
    ("GET", "/v1/tables/employees/rows/1"),
    ("GET", "/v1/tables/employees/rejections"),
    ("POST", "/v1/tables/employees/backups"),
    ("GET", "/v1/tables/employees/backups"),
    ("GET", "/v1/tables/employees/backups/01a20134-fe56-70fd-8b8a-805d1b2869c3"),
    ("POST", "/v1/tables/employees/restore"),
    ("GET", "/v1/reports/hires-by-quarter"),
    ("GET", "/v1/reports/departments-above-mean"),
];

async fn send(app: &TestApp, method: &str, path: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .request(method.parse().unwrap(), app.url(path))
        .header("content-type", "application/json")
        .body("{\"rows\": []}");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

async fn every_v1_endpoint_refuses_requests_without_a_valid_key(b: Backend) {
    let app = spawn_app(b).await;
    let real = app.tenant_with_canonical_data("acme").await;
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing_authorization"),
        (Some("Basic dXNlcjpwYXNz".into()), "invalid_authorization"),
        (Some("Bearer".into()), "invalid_authorization"),
        (Some(real.clone()), "invalid_authorization"),
        (Some("Bearer not-a-key".into()), "invalid_api_key"),
        (Some(format!("Bearer strata_{}", "A".repeat(43))), "invalid_api_key"),
        (Some(format!("Bearer {}x", real)), "invalid_api_key"),
        (Some("Bearer ' OR 1=1 --".into()), "invalid_api_key"),
    ];
    for (method, path) in V1_ENDPOINTS {
        for (auth, code) in &cases {
            let r = send(&app, method, path, auth.as_deref()).await;
            assert_eq!(r.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
            let (status, got) = error_code(r).await;
            assert_eq!((status, got.as_str()), (401, *code), "{method} {path} with {auth:?}");
        }
    }
    // Nothing was written by any of those requests.
    assert_eq!(app.all_rows(&real, "employees").await.len(), 1929);
}

async fn error_bodies_never_echo_the_presented_key(b: Backend) {
    let app = spawn_app(b).await;
    let secretish = format!("strata_{}", "Z".repeat(43));
    let r = send(&app, "GET", "/v1/tables", Some(&format!("Bearer {secretish}"))).await;
    let text = r.text().await.unwrap();
    assert!(!text.contains(&secretish), "{text}");
}

crate::on_both_backends!(
    every_v1_endpoint_refuses_requests_without_a_valid_key,
    error_bodies_never_echo_the_presented_key,
);
