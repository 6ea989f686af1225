//! Secrets given to `strata` (the database password, the admin token) never reach its output,
//! whatever form they come in, and can be passed as files instead of flags.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const SENTINEL: &str = "Sentinel-Pw-7f3a9c";

fn strata() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.env_remove("STRATA_DATABASE_URL").env_remove("STRATA_DATA_DIR").env_remove("STRATA_ADMIN_TOKEN");
    c
}

#[test]
fn a_password_in_any_connection_string_form_stays_out_of_errors() {
    for url in [
        format!("host=127.0.0.1 port=1 user=u password={SENTINEL} dbname=x"),
        format!("host=127.0.0.1 port=1 user=u password='{SENTINEL} x' dbname=x"),
        format!("postgres://u@127.0.0.1:1/x?password={SENTINEL}"),
        format!("postgres://u:{SENTINEL}@127.0.0.1:1/x"),
        format!("postgres://u@127.0.0.1:1/x?sslpassword={SENTINEL}&password={SENTINEL}"),
    ] {
        let out = strata().args(["--database-url", &url, "tenant", "list"]).output().unwrap();
        assert!(!out.status.success(), "{url}");
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains(SENTINEL), "{url} leaked: {all}");
        assert!(all.contains("cannot open storage"), "{all}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_passed_as_files_work_and_never_appear_in_the_log() {
    let db = common::Db::create().await;
    let dir = tempfile::tempdir().unwrap();
    // Trust authentication ignores the password, so the server starts with it in the URL.
    let url_file = dir.path().join("database-url");
    std::fs::write(&url_file, format!("{}?password={SENTINEL}\n", db.url())).unwrap();
    let token = format!("admin-{SENTINEL}-token");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut child = strata()
        .args(["--database-url-file", url_file.to_str().unwrap(), "serve", "--http-addr", "127.0.0.1:0"])
        .args(["--grpc-addr", "127.0.0.1:0", "--admin-token-file", token_file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = Vec::new();
    let http = loop {
        let line = lines.next().expect("server exited").unwrap();
        log.push(line.clone());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "strata listening" {
            assert!(v["storage"].as_str().unwrap().contains("password=***"), "{line}");
            break v["http_addr"].as_str().unwrap().to_string();
        }
    };
    // The token from the file opens the admin API.
    let c = reqwest::Client::new();
    let r = c.get(format!("http://{http}/v1/admin/deploy")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r =
        c.get(format!("http://{http}/v1/admin/deploy")).bearer_auth("wrong-token-wrong-token").send().await.unwrap();
    assert_eq!(r.status(), 401);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    log.extend(lines.map_while(Result::ok));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let all = format!("{}\n{err}", log.join("\n"));
    assert!(!all.contains(SENTINEL), "{all}");

    // Both forms of a flag at once are refused rather than silently picking one.
    let out = strata()
        .args(["--database-url-file", url_file.to_str().unwrap(), "--database-url", &db.url(), "tenant", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = strata().args(["--database-url-file", "/no/such/file", "tenant", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /no/such/file"));
}
