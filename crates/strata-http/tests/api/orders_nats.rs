//! Orders through NATS JetStream: the machine's server for the happy path, and a private
//! `nats-server -js` on another loopback port for the outage (the shared one is never touched).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value as Json};
use strata_http::startup::Options;

use crate::helpers::*;

fn nats_options(url: &str) -> (Options, String) {
    let stream = format!("T{}", uuid::Uuid::now_v7().simple()).to_uppercase();
    (Options { events: Some((url.to_string(), stream.clone())), ..Options::default() }, stream)
}

async fn delete_stream(url: &str, stream: &str) {
    if let Ok(c) = async_nats::connect(url).await {
        let _ = async_nats::jetstream::new(c).delete_stream(stream).await;
    }
}

async fn create(app: &TestApp, key: &str, i: usize) -> reqwest::StatusCode {
    app.client
        .post(app.url("/v1/buy-orders"))
        .bearer_auth(key)
        .header("idempotency-key", format!("n{i}"))
        .json(&json!({"currency": "EUR", "amount": "12.34"}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn listed(app: &TestApp, key: &str) -> Vec<String> {
    let page: Json = app.get(key, "/v1/buy-orders?limit=100").await.json().await.unwrap();
    page["orders"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_string()).collect()
}

async fn wait_for(app: &TestApp, key: &str, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let ids = listed(app, key).await;
        if ids.len() >= n {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the read model never reached {n} orders (has {})", listed(app, key).await.len());
}

async fn orders_reach_the_read_model_through_jetstream(b: Backend) {
    let url = "nats://127.0.0.1:4222";
    let (options, stream) = nats_options(url);
    let app = spawn_app_with(b, options).await;
    let key = app.tenant("acme", false).await;
    for i in 0..10 {
        assert_eq!(create(&app, &key, i).await, 201);
    }
    let ids = wait_for(&app, &key, 10).await;
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 10);
    delete_stream(url, &stream).await;
}

struct PrivateNats {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateNats {
    fn start(port: u16, dir: tempfile::TempDir) -> Self {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, dir }
    }

    fn stop(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (self.port, dir)
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn no_event_is_lost_when_nats_stops_and_restarts_mid_stream(b: Backend) {
    let nats = PrivateNats::start(free_port(), tempfile::tempdir().unwrap());
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let (options, _) = nats_options(&url);
    let app = spawn_app_with(b, options).await;
    let key = app.tenant("acme", false).await;
    for i in 0..5 {
        assert_eq!(create(&app, &key, i).await, 201);
    }
    wait_for(&app, &key, 5).await;
    // NATS goes away: orders are still taken (they wait in the outbox).
    let (port, dir) = nats.stop();
    for i in 5..12 {
        assert_eq!(create(&app, &key, i).await, 201);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(listed(&app, &key).await.len(), 5, "nothing projected while the stream is down");
    // Back on the same port and store: everything arrives, once.
    let _nats = PrivateNats::start(port, dir);
    let ids = wait_for(&app, &key, 12).await;
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (12, 12));
}

crate::on_both_backends!(
    orders_reach_the_read_model_through_jetstream,
    no_event_is_lost_when_nats_stops_and_restarts_mid_stream,
);
