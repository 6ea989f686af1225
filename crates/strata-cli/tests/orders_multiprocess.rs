//! The 100 BTC cap across several Strata processes sharing one PostgreSQL database.

mod common;

use std::process::{Command, Stdio};

use common::{serve_with, Server};

fn serve(url: &str) -> Server {
    serve_with(&["--database-url", url, "serve", "--http-addr", "127.0.0.1:0", "--rate-provider", "fixed"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_racing_two_processes_never_break_the_cap() {
    let db = common::Db::create().await;
    let url = db.url();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--database-url", &url, "tenant", "create", "acme"])
        .output()
        .unwrap();
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // A cap of 0.05 BTC: room for four orders of 0.01000014 BTC, and fifty clients want one each.
    let status = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--database-url", &url, "orders", "set-cap", "--tenant", "acme", "--btc", "0.05"])
        .status()
        .unwrap();
    assert!(status.success());
    let servers = [serve(&url), serve(&url)];
    let client = reqwest::Client::new();
    let mut handles = Vec::new();
    for i in 0..50 {
        let base = servers[i % 2].base.clone();
        let (client, key) = (client.clone(), key.clone());
        handles.push(tokio::spawn(async move {
            // 640.01 USD at the fixed 64000.12 USD/BTC is 0.01000014 BTC, rounded up.
            let r = client
                .post(format!("{base}/v1/buy-orders"))
                .bearer_auth(&key)
                .header("idempotency-key", format!("race-{i}"))
                .json(&serde_json::json!({"currency": "USD", "amount": "640.01"}))
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut ok = Vec::new();
    for h in handles {
        let (s, body) = h.await.unwrap();
        match s {
            201 => ok.push(body["id"].as_str().unwrap().to_string()),
            409 => assert_eq!(body["error"]["code"], "btc_cap_exceeded"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(ok.len(), 4, "0.05 BTC holds four orders of 0.01000014 BTC");
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--database-url", &url, "orders", "book", "--tenant", "acme"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "0.04000056 BTC of 0.05000000 BTC");
    for id in &ok {
        let r = client.get(format!("{}/v1/buy-orders/{id}", servers[0].base)).bearer_auth(&key).send().await.unwrap();
        assert_eq!(r.status(), 200, "every order that got 201 is stored");
    }
    drop(servers);
    drop(db);
}

/// A projector killed mid-stream (SIGKILL, no cleanup) and a new process taking over: every
/// order reaches the read model exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_stream_resumes_without_duplicates() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nats_dir = tempfile::tempdir().unwrap();
    let mut nats = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(nats_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let nats_url = format!("nats://127.0.0.1:{port}");
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--data-dir", &d, "tenant", "create", "acme"])
        .output()
        .unwrap();
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let serve_with_nats = || {
        serve_with(&[
            "--data-dir",
            &d,
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--rate-provider",
            "fixed",
            "--events-url",
            &nats_url,
        ])
    };
    let client = reqwest::Client::new();
    let a = serve_with_nats();
    for i in 0..30 {
        let r = client
            .post(format!("{}/v1/buy-orders", a.base))
            .bearer_auth(&key)
            .header("idempotency-key", format!("k{i}"))
            .json(&serde_json::json!({"currency": "EUR", "amount": "5"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    drop(a); // SIGKILL, whatever it was doing
    let b = serve_with_nats();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let page: serde_json::Value = client
            .get(format!("{}/v1/buy-orders?limit=100", b.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids = page["orders"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_string()).collect();
        if ids.len() >= 30 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (30, 30));
    drop(b);
    let _ = nats.kill();
    let _ = nats.wait();
}
