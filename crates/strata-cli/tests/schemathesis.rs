//! The HTTP API against its own served `/openapi.json`, judged by Schemathesis (written by
//! others) with every check it has: no 5xx, documented statuses, content types and headers,
//! response bodies that match their schemas, schema-valid requests accepted and
//! schema-violating ones refused, authentication that is never ignored. On SQLite and on
//! PostgreSQL, each bounded in time (`STRATA_SCHEMATHESIS_SECS`, default 45).
//!
//! The rules a JSON Schema cannot express are listed, with their reasons, in
//! crates/strata-http/tests/schemathesis.toml. scripts/test.sh installs Schemathesis into the
//! test virtualenv named by `STRATA_TEST_PYTHON`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

fn strata(storage: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.env_remove("STRATA_DATABASE_URL").env_remove("STRATA_DATA_DIR").args(storage);
    c
}

fn run(storage: &[String], args: &[&str]) -> String {
    let out = strata(storage).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn schemathesis_passes(storage: Vec<String>, dir: &Path) {
    let python = std::env::var("STRATA_TEST_PYTHON").expect("STRATA_TEST_PYTHON (scripts/test.sh sets it)");
    let bin = Path::new(&python).parent().unwrap().join("schemathesis");
    assert!(bin.exists(), "{} is missing: run scripts/test.sh, which installs it", bin.display());
    let key = run(&storage, &["tenant", "create", "acme", "--dataset", "hr"]).trim().to_string();
    for t in ["departments", "jobs", "employees"] {
        run(&storage, &["load", "--tenant", "acme", "--table", t, repo(&format!("data/hr/{t}.csv")).to_str().unwrap()]);
    }
    let admin = "schemathesis-admin-token";
    let admin_file = dir.join("admin-token");
    std::fs::write(&admin_file, admin).unwrap();
    let backups = dir.join("backups");
    let mut args: Vec<&str> = storage.iter().map(String::as_str).collect();
    args.extend([
        "--backup-dir",
        backups.to_str().unwrap(),
        "serve",
        "--http-addr",
        "127.0.0.1:0",
        "--rate-provider",
        "fixed",
        "--compat-py-dist-arch-tenant",
        "acme",
        "--admin-token-file",
        admin_file.to_str().unwrap(),
    ]);
    let server = common::serve_with(&args);
    let secs = std::env::var("STRATA_SCHEMATHESIS_SECS").unwrap_or_else(|_| "45".into());
    let out = Command::new(&bin)
        .current_dir(dir)
        .env("STRATA_ST_KEY", &key)
        .env("STRATA_ST_ADMIN", admin)
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", repo("crates/strata-http/tests"))
        .args(["--config-file", repo("crates/strata-http/tests/schemathesis.toml").to_str().unwrap()])
        .args(["run", &format!("{}/openapi.json", server.base), "--checks", "all", "--max-time", &secs])
        .args(["--workers", "1", "--request-timeout", "10", "--seed", "1", "--no-color"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{}\n{}",
        stdout.chars().rev().take(20_000).collect::<String>().chars().rev().collect::<String>(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
    // And the server is still there.
    let health = std::net::TcpStream::connect(server.base.trim_start_matches("http://"));
    assert!(health.is_ok());
}

#[test]
fn schemathesis_finds_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    schemathesis_passes(vec!["--data-dir".into(), dir.path().join("data").display().to_string()], dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_on_postgres() {
    let db = common::Db::create().await;
    let dir = tempfile::tempdir().unwrap();
    let url = db.url();
    tokio::task::spawn_blocking(move || {
        let dir = dir;
        schemathesis_passes(vec!["--database-url".into(), url], dir.path())
    })
    .await
    .unwrap();
}
