//! Backups and restores under faults a test can only cause from outside the process: a restore
//! killed halfway, a disk that fills up during a backup.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn strata() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.env_remove("STRATA_DATABASE_URL").env_remove("STRATA_BACKUP_DIR");
    c
}

fn run(args: &[&str]) -> String {
    let out = strata().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn data(name: &str) -> String {
    format!("{}/../../data/hr/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A tenant with the HR data plus `extra` more employees, and the args selecting its storage.
fn setup(storage: &[String], extra: usize, dir: &std::path::Path) {
    let s: Vec<&str> = storage.iter().map(String::as_str).collect();
    run(&[&s[..], &["tenant", "create", "acme", "--dataset", "hr"]].concat());
    for t in ["departments", "jobs", "employees"] {
        run(&[&s[..], &["load", "--tenant", "acme", "--table", t, &data(&format!("{t}.csv"))]].concat());
    }
    let csv = dir.join("more.csv");
    let mut f = std::fs::File::create(&csv).unwrap();
    for i in 0..extra {
        writeln!(f, "{},Person {i},2022-03-04T05:06:07Z,{},{}", 100_000 + i, 1 + i % 12, 1 + i % 183).unwrap();
    }
    drop(f);
    run(&[&s[..], &["load", "--tenant", "acme", "--table", "employees", csv.to_str().unwrap()]].concat());
}

fn count_employees(storage: &[String]) -> u64 {
    // A backup reports the row count of a consistent snapshot.
    let s: Vec<&str> = storage.iter().map(String::as_str).collect();
    let out =
        run(&[&s[..], &["backup", "--tenant", "acme", "--table", "employees", "--codec", "null", "--json"]].concat());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["rows"].as_u64().unwrap()
}

fn restore_killed_halfway_leaves_the_table_as_it_was(storage: Vec<String>, dir: &std::path::Path) {
    setup(&storage, 60_000, dir);
    let s: Vec<&str> = storage.iter().map(String::as_str).collect();
    let out =
        run(&[&s[..], &["backup", "--tenant", "acme", "--table", "employees", "--codec", "null", "--json"]].concat());
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = m[0]["rows"].as_u64().unwrap();
    assert_eq!(rows, 1929 + 60_000);
    let file = std::fs::read(dir.join("backups/acme/employees").join(format!("{}.avro", m[0]["id"].as_str().unwrap())))
        .unwrap();
    // Change the table, so "as it was" differs from the backup.
    let one = dir.join("one.csv");
    std::fs::write(&one, "999999,Only Me,2023-01-01T00:00:00Z,1,1").unwrap();
    run(&[&s[..], &["load", "--tenant", "acme", "--table", "employees", one.to_str().unwrap()]].concat());

    // Feed the restore half the file through a pipe, let it work, then kill it.
    let mut child = strata()
        .args(&s)
        .args(["restore", "--tenant", "acme", "--table", "employees", "--file", "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&file[..file.len() * 2 / 3]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(child.try_wait().unwrap().is_none(), "the restore is still waiting for the rest");
    child.kill().unwrap(); // SIGKILL: no cleanup code runs
    child.wait().unwrap();
    drop(stdin);
    assert_eq!(count_employees(&storage), rows + 1, "the table is exactly as before the restore");
}

#[test]
fn a_restore_killed_halfway_on_sqlite_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = vec!["--data-dir".to_string(), dir.path().to_string_lossy().into_owned()];
    restore_killed_halfway_leaves_the_table_as_it_was(storage, dir.path());
}

#[test]
fn a_restore_killed_halfway_on_postgres_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = rt.block_on(strata_testkit::PgDatabase::create());
    let storage = vec![
        "--database-url".to_string(),
        db.url(),
        "--backup-dir".to_string(),
        dir.path().join("backups").to_string_lossy().into_owned(),
    ];
    restore_killed_halfway_leaves_the_table_as_it_was(storage, dir.path());
}

#[test]
fn a_disk_that_fills_up_during_a_backup_leaves_no_backup_registered() {
    let dir = tempfile::tempdir().unwrap();
    let storage = vec!["--data-dir".to_string(), dir.path().to_string_lossy().into_owned()];
    setup(&storage, 5000, dir.path());
    // The child may grow no file beyond 64 KiB: a full disk as far as the backup can tell.
    let out = unsafe {
        strata()
            .args(&storage)
            .args(["backup", "--tenant", "acme", "--table", "employees", "--codec", "null"])
            .pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit { rlim_cur: 64 * 1024, rlim_max: 64 * 1024 };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
            .output()
            .unwrap()
    };
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("backup failed"), "{err}");
    let backups = dir.path().join("backups/acme/employees");
    let left: Vec<String> = std::fs::read_dir(&backups)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing half-written stays behind: {left:?}");
    // And the next backup, with room, works and is the only one listed.
    let out = run(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "backup",
        "--tenant",
        "acme",
        "--table",
        "employees",
        "--json",
    ]);
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m[0]["rows"], 1929 + 5000);
}

#[test]
fn restore_all_brings_back_a_consistent_set_and_a_lone_parent_restore_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    setup(&["--data-dir".to_string(), d.to_string()], 0, dir.path());
    run(&["--data-dir", d, "backup", "--tenant", "acme", "--all"]);
    // New departments and employees in them; restoring departments alone would strand them.
    let deps = dir.path().join("deps.csv");
    std::fs::write(&deps, "77,Later Dept").unwrap();
    run(&["--data-dir", d, "load", "--tenant", "acme", "--table", "departments", deps.to_str().unwrap()]);
    let emps = dir.path().join("emps.csv");
    std::fs::write(&emps, "5000,Later Person,2024-01-01T00:00:00Z,77,1").unwrap();
    run(&["--data-dir", d, "load", "--tenant", "acme", "--table", "employees", emps.to_str().unwrap()]);
    let out =
        strata().args(["--data-dir", d, "restore", "--tenant", "acme", "--table", "departments"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--all") && err.contains("1 employees rows"), "{err}");
    let out = run(&["--data-dir", d, "restore", "--tenant", "acme", "--all"]);
    assert!(out.contains("departments: restored 12 rows") && out.contains("employees: restored 1929 rows"), "{out}");
    assert_eq!(count_employees(&["--data-dir".to_string(), d.to_string()]), 1929);
}
