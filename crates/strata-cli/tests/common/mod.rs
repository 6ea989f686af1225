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

#[allow(unused_imports)]
pub use strata_testkit::{admin_url as admin, PgDatabase as Db};
