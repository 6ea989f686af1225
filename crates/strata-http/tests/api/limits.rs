//! A tenant that holds connections open (slow headers, trickled bodies, many uploads at once)
//! stalls only itself: other tenants, `/ready` and the server's own shutdown go on.

use std::time::Duration;

use strata_http::limits::HttpLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

fn limits() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        body_idle_timeout: Duration::from_secs(3),
        body_min_rate: 1024,
        body_rate_window: Duration::from_secs(1),
        ..Default::default()
    }
}

async fn app_with_limits(b: Backend, limits: HttpLimits, slots: usize) -> TestApp {
    let options = strata_http::startup::Options { limits, ..Default::default() };
    spawn_app_tuned(b, options, 4, |s| s.with_tenant_slots(slots, Duration::from_millis(500))).await
}

/// Sends a request's headers with a large declared body, then `first` bytes of it, and keeps
/// the connection open (sending one byte every `every` if set).
async fn slow_upload(app: &TestApp, key: &str, path: &str, first: &[u8], every: Option<Duration>) -> TcpStream {
    let mut s = TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: text/csv\r\nContent-Length: 10000000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(first).await.unwrap();
    if let Some(every) = every {
        let mut dup = s.into_std().unwrap();
        let clone = dup.try_clone().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            for _ in 0..200 {
                if dup.write_all(b"9").is_err() {
                    return;
                }
                std::thread::sleep(every);
            }
        });
        clone.set_nonblocking(true).unwrap();
        return TcpStream::from_std(clone).unwrap();
    }
    s
}

/// The status line the server answers on `s` (waiting up to `within`).
async fn status_line(s: &mut TcpStream, within: Duration) -> String {
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let _ = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).lines().next().unwrap_or("").to_string()
}

async fn trickled_uploads_end_with_408_and_starve_no_other_tenant(b: Backend) {
    let app = app_with_limits(b, limits(), 2).await;
    let hostile = app.tenant_with_canonical_data("hostile").await;
    let other = app.tenant_with_canonical_data("other").await;
    // 17 uploads that declare 10 MB and then send a byte every 200 ms.
    let mut uploads = Vec::new();
    for _ in 0..17 {
        uploads.push(
            slow_upload(&app, &hostile, "/v1/tables/employees/load", b"1,", Some(Duration::from_millis(200))).await,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Meanwhile another tenant reads and writes, and the server is ready.
    for i in 0..5 {
        let r = app.get(&other, "/v1/tables/employees/rows?limit=5").await;
        assert_eq!(r.status(), 200);
        let r =
            app.post_rows(&other, "employees", serde_json::json!({"rows": [employee(50_000 + i, "New", 1, 1)]})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(app.client.get(app.url("/ready")).send().await.unwrap().status(), 200);
    }
    // The trickles are cut: 408, and nothing of them was loaded.
    let mut codes = Vec::new();
    for s in &mut uploads {
        codes.push(status_line(s, Duration::from_secs(10)).await);
    }
    assert!(codes.iter().all(|c| c.contains("408") || c.contains("429")), "{codes:?}");
    assert!(codes.iter().any(|c| c.contains("408")), "{codes:?}");
    assert_eq!(app.all_rows(&hostile, "employees").await.len(), 1929);
}

async fn half_sent_headers_are_closed_after_the_header_timeout(b: Backend) {
    let app = app_with_limits(b, limits(), 8).await;
    let mut conns = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        conns.push(s);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut closed = 0;
    for s in &mut conns {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1, // EOF, a 408 line, or a reset: the server let go
            Err(_) => {}
        }
    }
    assert_eq!(closed, 200);
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
}

async fn a_tenant_past_its_storage_slots_gets_429_while_others_are_served(b: Backend) {
    // No minimum rate here: the uploads hold their slots for as long as the test needs.
    let l = HttpLimits { body_min_rate: 0, body_idle_timeout: Duration::from_secs(30), ..limits() };
    let app = app_with_limits(b, l, 1).await;
    let hostile = app.tenant_with_canonical_data("hostile").await;
    let other = app.tenant_with_canonical_data("other").await;
    let _holding = slow_upload(&app, &hostile, "/v1/tables/employees/load", b"1,", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = app.get(&hostile, "/v1/tables").await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(error_code(r).await.1, "tenant_busy");
    for _ in 0..3 {
        assert_eq!(app.get(&other, "/v1/tables").await.status(), 200);
        assert_eq!(app.get(&other, "/v1/tables/jobs/rows/1").await.status(), 200);
    }
}

async fn bodies_that_are_too_big_too_slow_or_encoded_get_json_errors(b: Backend) {
    let app = app_with_limits(b, limits(), 4).await;
    let key = app.tenant_with_canonical_data("acme").await;
    // A declared length over the limit is refused before any of the body is read (raw TCP:
    // the server closes without reading the rest, which a client still writing would see as
    // a broken pipe).
    for (path, declared) in
        [("/v1/buy-orders", 3 << 20), ("/v1/tables/employees/rows", 17 << 20), ("/v1/datasets/x", 2 << 20)]
    {
        let mut s = TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
        let method = if path.starts_with("/v1/datasets") { "PUT" } else { "POST" };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let line = status_line(&mut s, Duration::from_secs(5)).await;
        assert!(line.contains("413"), "{path}: {line}");
    }
    let r = app
        .client
        .post(app.url("/reports/session"))
        .header("content-type", "application/json")
        .body(vec![b' '; 64 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (413, "body_too_large".to_string()));
    let r = app
        .client
        .post(app.url("/v1/tables/employees/rows"))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (415, "unsupported_media_type".to_string()));
    // A batch trickled in is cut with 408.
    let mut s = slow_upload(&app, &key, "/v1/tables/employees/rows", b"1,", Some(Duration::from_millis(300))).await;
    let line = status_line(&mut s, Duration::from_secs(10)).await;
    assert!(line.contains("408"), "{line}");
}

async fn repeated_idempotency_keys_and_undecodable_paths_get_json_errors(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant_with_canonical_data("acme").await;
    for (path, body) in [
        ("/v1/tables/employees/rows", serde_json::json!({"rows": [employee(9001, "A", 1, 1)]})),
        ("/v1/buy-orders", serde_json::json!({"currency": "USD", "amount": "10"})),
    ] {
        let r = app
            .client
            .post(app.url(path))
            .bearer_auth(&key)
            .header("idempotency-key", "one")
            .header("idempotency-key", "two")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(r).await, (400, "invalid_idempotency_key".to_string()), "{path}");
    }
    assert_eq!(app.all_rows(&key, "employees").await.len(), 1929);
    for path in ["/v1/tables/%FF/rows", "/v1/tables/employees/rows/%FF%FE"] {
        let r = app.get(&key, path).await;
        assert_eq!(r.headers()["content-type"], "application/json", "{path}");
        assert_eq!(error_code(r).await, (400, "invalid_path".to_string()), "{path}");
    }
}

crate::on_both_backends!(
    repeated_idempotency_keys_and_undecodable_paths_get_json_errors,
    trickled_uploads_end_with_408_and_starve_no_other_tenant,
    half_sent_headers_are_closed_after_the_header_timeout,
    a_tenant_past_its_storage_slots_gets_429_while_others_are_served,
    bodies_that_are_too_big_too_slow_or_encoded_get_json_errors,
);
