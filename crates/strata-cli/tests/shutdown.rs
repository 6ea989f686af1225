//! Stopping `strata serve`: SIGTERM lets work in flight finish, but never waits past the drain
//! deadline, whatever a client is doing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn sigterm_honours_the_drain_deadline_even_with_a_stalled_upload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--data-dir", d, "tenant", "create", "acme", "--dataset", "hr"])
        .env_remove("STRATA_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // No minimum body rate and a long idle timeout: only the drain deadline can end the upload.
    let mut server = common::serve_with(&[
        "--data-dir",
        d,
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--drain-timeout-secs",
        "2",
        "--http-min-body-rate",
        "0",
        "--http-body-idle-timeout-secs",
        "600",
    ]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut upload = TcpStream::connect(&addr).unwrap();
    write!(
        upload,
        "POST /v1/tables/employees/load HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: text/csv\r\nContent-Length: 10000000\r\n\r\n1,Ann,2021-01-01T00:00:00Z,1,1\n2,"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "strata still runs {:?} after SIGTERM", t0.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    assert!(t0.elapsed() >= Duration::from_millis(1500), "it should have waited for the upload first");
    // The upload was cut, and nothing of it was loaded.
    let mut rest = Vec::new();
    let _ = upload.read_to_end(&mut rest);
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--data-dir", d, "backup", "--tenant", "acme", "--table", "employees", "--json"])
        .env_remove("STRATA_DATABASE_URL")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["rows"], 0);
}
