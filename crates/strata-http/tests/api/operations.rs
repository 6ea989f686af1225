use serde_json::Value as Json;

use crate::helpers::*;

async fn health_ready_and_metrics_answer_without_a_key(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    let r: Json = app.client.get(app.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["status"], "ok");
    let r: Json = app.client.get(app.url("/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["database"], if b == Backend::Sqlite { "sqlite" } else { "postgres" });
    app.get(&key, "/v1/tables").await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("strata_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/v1/tables/{table}/load\""));
    assert!(text.contains("strata_http_request_duration_seconds"));
    assert!(text.contains("strata_rows_accepted_total{table=\"employees\"}"));
    assert!(text.contains("strata_rows_rejected_total{table=\"employees\"}"));
}

async fn unknown_routes_and_methods_get_json_errors(b: Backend) {
    let app = spawn_app(b).await;
    let r = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(error_code(r).await, (404, "route_not_found".into()));
    let r = app.client.delete(app.url("/v1/tables")).send().await.unwrap();
    assert_eq!(error_code(r).await, (405, "method_not_allowed".into()));
}

async fn in_flight_requests_finish_during_graceful_shutdown(b: Backend) {
    let mut app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    // A slow upload: the first half now, the rest after shutdown has begun.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let req = app
        .client
        .post(app.url("/v1/tables/departments/load"))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .body(body)
        .send();
    let pending = tokio::spawn(req);
    tx.send(Ok(b"1,Sales\n".to_vec())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    app.shutdown.take().unwrap().send(()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    tx.send(Ok(b"2,Support".to_vec())).await.unwrap();
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let report: Json = resp.json().await.unwrap();
    assert_eq!(report["inserted"], 2);
    app.server.take().unwrap().await.unwrap().unwrap();
    // New connections are refused once drained.
    assert!(reqwest::get(app.url("/health")).await.is_err());
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn every_route_is_in_the_openapi_document_and_docs_work_offline(b: Backend) {
    let app = spawn_app(b).await;
    let doc: Json = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut routes: Vec<(&str, &str)> = crate::auth::V1_ENDPOINTS.iter().map(|(m, p)| (*m, *p)).collect();
    routes.extend([
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/reports"),
        ("GET", "/reports/session"),
        ("POST", "/reports/session"),
        ("DELETE", "/reports/session"),
        ("POST", "/v1/buy-orders"),
        ("GET", "/v1/buy-orders"),
        ("GET", "/v1/buy-orders/01a20134-fe56-70fd-8b8a-805d1b2869c3"),
        ("PUT", "/compat/py-dist-arch/buy_order"),
        ("GET", "/compat/py-dist-arch/buy_orders"),
        ("GET", "/v1/admin/deploy"),
        ("POST", "/v1/admin/deploy/switch"),
        ("POST", "/v1/admin/deploy/rollback"),
    ]);
    for (method, path) in routes {
        let templ = path
            .replace("/employees/", "/{table}/")
            .replace("/v1/datasets/hr", "/v1/datasets/{name}")
            .replace("/rows/1", "/rows/{id}")
            .replace("/backups/01a20134-fe56-70fd-8b8a-805d1b2869c3", "/backups/{id}")
            .replace("/buy-orders/01a20134-fe56-70fd-8b8a-805d1b2869c3", "/buy-orders/{id}");
        let op = &paths.get(&templ).unwrap_or_else(|| panic!("{templ} is not documented"))[method.to_lowercase()];
        assert!(op.is_object(), "{method} {templ} is not documented");
        // The compatibility surface is off here, so its routes answer route_not_found by design.
        if path.starts_with("/compat/") {
            continue;
        }
        // And the route really exists: anything but route_not_found.
        let r = app.client.request(method.parse().unwrap(), app.url(path)).send().await.unwrap();
        assert_ne!(error_code(r).await.1, "route_not_found", "{method} {path}");
    }
    let html = app.client.get(app.url("/docs")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("/openapi.json"));
    for external in ["src=\"http", "href=\"http", "src=\"//", "@import"] {
        assert!(!html.contains(external), "docs must work offline: found {external}");
    }
}

crate::on_both_backends!(
    health_ready_and_metrics_answer_without_a_key,
    unknown_routes_and_methods_get_json_errors,
    in_flight_requests_finish_during_graceful_shutdown,
    every_route_is_in_the_openapi_document_and_docs_work_offline,
);
