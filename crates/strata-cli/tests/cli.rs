//! The `strata` binary as a user runs it.

use std::process::{Command, Output};

fn strata(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("STRATA_DATABASE_URL")
        .output()
        .unwrap()
}

fn data(name: &str) -> String {
    format!("{}/../../data/hr/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn tenant_create_prints_only_the_key_so_scripts_can_capture_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = strata(dir.path(), &["tenant", "create", "acme", "--dataset", "hr"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.trim_end();
    assert_eq!(stdout.lines().count(), 1);
    assert!(strata_domain::tenant::looks_like_api_key(key), "{key}");
    // The key is stored only as a hash.
    let control = std::fs::read(dir.path().join("control.db")).unwrap();
    assert!(!control.windows(key.len()).any(|w| w == key.as_bytes()));

    let out = strata(dir.path(), &["tenant", "create", "beta", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tenant"], "beta");
    assert!(v["api_key"].as_str().unwrap().starts_with("strata_"));
}

#[test]
fn bad_tenant_ids_duplicates_and_unknown_datasets_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["tenant", "create", "Acme"], "lowercase"),
        (vec!["tenant", "create", "../etc"], "invalid tenant id"),
        (vec!["tenant", "create", &"a".repeat(52)], "51"),
        (vec!["tenant", "create", "x", "--dataset", "nope"], "unknown built-in dataset"),
    ] {
        let out = strata(dir.path(), &args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    assert!(strata(dir.path(), &["tenant", "create", "acme"]).status.success());
    let out = strata(dir.path(), &["tenant", "create", "acme"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn load_reads_the_canonical_files_and_summarises_rejections() {
    let dir = tempfile::tempdir().unwrap();
    assert!(strata(dir.path(), &["tenant", "create", "acme", "--dataset", "hr"]).status.success());
    for t in ["departments", "jobs"] {
        let out = strata(dir.path(), &["load", "--tenant", "acme", "--table", t, &data(&format!("{t}.csv"))]);
        assert!(out.status.success());
    }
    let out =
        strata(dir.path(), &["load", "--tenant", "acme", "--table", "employees", &data("employees.csv"), "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["inserted"].as_u64(), r["rejected"].as_u64()), (Some(1929), Some(70)));
    let out = strata(dir.path(), &["load", "--tenant", "acme", "--table", "employees", &data("employees.csv")]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("0 inserted, 1929 unchanged, 70 rejected"), "{text}");
    assert!(text.contains("line 2: job_id: value is required but missing"), "{text}");

    let out = strata(dir.path(), &["load", "--tenant", "acme", "--table", "nope", &data("jobs.csv")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("table \"nope\" does not exist"));
    let out = strata(dir.path(), &["load", "--tenant", "ghost", "--table", "jobs", &data("jobs.csv")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant \"ghost\" does not exist"));
    let out = strata(dir.path(), &["load", "--tenant", "acme", "--table", "jobs", "/no/such/file.csv"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));
}

#[test]
fn load_summaries_list_every_reason_of_a_row_and_the_log_keeps_its_line() {
    let dir = tempfile::tempdir().unwrap();
    assert!(strata(dir.path(), &["tenant", "create", "acme", "--dataset", "hr"]).status.success());
    let csv = dir.path().join("e.csv");
    std::fs::write(dir.path().join("d.csv"), "1,Sales\n").unwrap();
    std::fs::write(dir.path().join("j.csv"), "1,Engineer\n").unwrap();
    std::fs::write(&csv, "3,Cy,2021-01-01T00:00:00Z,99,9x\n4,Di,2021-01-01T00:00:00Z,7,1\n").unwrap();
    for (t, f) in [("departments", "d.csv"), ("jobs", "j.csv")] {
        let path = dir.path().join(f).display().to_string();
        assert!(strata(dir.path(), &["load", "--tenant", "acme", "--table", t, &path]).status.success());
    }
    let out = strata(dir.path(), &["load", "--tenant", "acme", "--table", "employees", &csv.display().to_string()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("line 1: department_id: department_id 99 does not exist in table departments; job_id: "),
        "{text}"
    );
    assert!(text.contains("line 2: department_id: department_id 7 does not exist"), "{text}");
    // The rejection log has the raw line of a row refused for its foreign key alone.
    let db = tenant_file_bytes(&dir.path().join("tenants/acme.db"));
    assert!(db.windows(26).any(|w| w == b"4,Di,2021-01-01T00:00:00Z,"), "the raw line is in the log");
}

/// The tenant database and its write-ahead log, as bytes: a short text value sits in them as
/// written, so a test can look for it without a SQLite client of its own.
fn tenant_file_bytes(path: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap_or_default();
    if let Ok(wal) = std::fs::read(path.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    bytes
}

#[test]
fn dataset_apply_names_the_problem_in_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    assert!(strata(dir.path(), &["tenant", "create", "acme"]).status.success());
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: shop\ntables:\n  - name: t\n    primary_key: id\n    columns: [{name: id, type: decimal}]\n",
    )
    .unwrap();
    let out = strata(dir.path(), &["dataset", "apply", "--tenant", "acme", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("tables[0].columns[0].scale"), "{err}");
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "name = \"shop\"\n[[tables]]\nname = \"t\"\nprimary_key = \"id\"\ncolumns = [{name = \"id\", type = \"string\"}]\n").unwrap();
    let out = strata(dir.path(), &["dataset", "apply", "--tenant", "acme", good.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("created tables: t"));
    let out = strata(dir.path(), &["dataset", "apply", "--tenant", "acme", good.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing changed"));
}
