//! Starting real `strata` processes for tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Server {
    pub child: Child,
    /// `http://host:port` of the HTTP API.
    pub base: String,
    /// `host:port` of the gRPC query service.
    pub grpc: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `strata` with `args` and waits for the log line that says where it listens. A
/// `serve` without `--grpc-addr` gets an ephemeral gRPC port, so tests can run side by side.
pub fn serve_with(args: &[&str]) -> Server {
    let mut args: Vec<&str> = args.to_vec();
    if args.contains(&"serve") && !args.contains(&"--grpc-addr") {
        args.extend(["--grpc-addr", "127.0.0.1:0"]);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(&args)
        .env_remove("STRATA_DATA_DIR")
        .env_remove("STRATA_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (http, grpc) = loop {
        let line = lines.next().expect("server exited").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "strata listening" {
            break (v["http_addr"].as_str().unwrap().to_string(), v["grpc_addr"].as_str().unwrap().to_string());
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, base: format!("http://{http}"), grpc }
}

pub fn admin() -> String {
    std::env::var("STRATA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct Db(pub String);

impl Db {
    pub async fn create() -> Db {
        let name = format!("strata_test_{}", uuid::Uuid::now_v7().simple());
        let (c, conn) = tokio_postgres::connect(&admin(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        c.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        Db(name)
    }
    pub fn url(&self) -> String {
        format!("{}/{}", &admin()[..admin().rfind('/').unwrap()], self.0)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok((c, conn)) = tokio_postgres::connect(&admin(), tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}
