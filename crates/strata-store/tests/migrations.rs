//! Schema versions on both backends, through the store's own API: a fresh storage is at the
//! latest version everywhere, a database a newer strata wrote is refused, and so is one whose
//! applied migration differs from the shipped one.

use strata_domain::tenant::TenantId;
use strata_store::migrate::{SchemaStatus, PG_CONTROL, PG_TENANT, SQLITE_CONTROL, SQLITE_TENANT};
use strata_store::{Store, StoreConfig};

use strata_testkit::Storage;

/// A fresh storage of each kind (see `strata_testkit`), with what these tests need to know of it.
struct Backend(Storage);

impl Backend {
    async fn new(pg: bool) -> Self {
        let kind = if pg { strata_testkit::Kind::Postgres } else { strata_testkit::Kind::Sqlite };
        Backend(Storage::new(kind).await)
    }

    fn config(&self) -> StoreConfig {
        self.0.config()
    }

    fn latest(&self) -> (i64, i64) {
        let last = |l: &[strata_store::migrate::Migration]| l.last().unwrap().version;
        match &self.0 {
            Storage::Sqlite(_) => (last(SQLITE_CONTROL), last(SQLITE_TENANT)),
            Storage::Postgres(_) => (last(PG_CONTROL), last(PG_TENANT)),
        }
    }

    /// Runs `sql` against the control plane's version table's database.
    async fn control_sql(&self, sql: &str) {
        match &self.0 {
            Storage::Sqlite(d) => {
                let c = rusqlite::Connection::open(d.path().join("control.db")).unwrap();
                c.execute_batch(sql).unwrap();
            }
            Storage::Postgres(_) => {
                let StoreConfig::Postgres { url, .. } = self.config() else { unreachable!() };
                let (c, conn) = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                c.batch_execute(sql).await.unwrap();
            }
        }
    }

    fn control_table(&self) -> &'static str {
        match &self.0 {
            Storage::Sqlite(_) => "_strata_schema",
            Storage::Postgres(_) => "strata_control.schema_migrations",
        }
    }
}

async fn fresh_storage_is_at_the_latest_version_everywhere_and_migrating_again_changes_nothing(pg: bool) {
    let b = Backend::new(pg).await;
    let store = Store::open(&b.config()).await.unwrap();
    store.tenants().create(&TenantId::parse("acme").unwrap()).await.unwrap();
    let (control, tenant) = b.latest();
    let status: Vec<SchemaStatus> = store.schema_status().await.unwrap();
    let got: Vec<(String, i64, i64)> = status.into_iter().map(|s| (s.scope, s.version, s.latest)).collect();
    assert_eq!(got, [("control".to_string(), control, control), ("tenant acme".to_string(), tenant, tenant)]);
    let again = store.migrate().await.unwrap();
    assert!(again.iter().all(|r| r.applied.is_empty()), "{again:?}");
    drop(store);
    // A second process opening the same storage finds nothing to do either.
    let store = Store::open(&b.config()).await.unwrap();
    assert!(store.migrate().await.unwrap().iter().all(|r| r.applied.is_empty()));
}

async fn a_schema_written_by_a_newer_strata_is_refused_and_shown(pg: bool) {
    let b = Backend::new(pg).await;
    drop(Store::open(&b.config()).await.unwrap());
    let table = b.control_table();
    b.control_sql(&format!(
        "INSERT INTO {table} (version, name, checksum, applied_at) VALUES (999, 'future', 'x', '2099-01-01T00:00:00Z')"
    ))
    .await;
    let e = Store::open(&b.config()).await.err().expect("refused").to_string();
    assert!(e.contains("version 999") && e.contains("newer strata"), "{e}");
    // Looking is still possible.
    let status = Store::open_unmigrated(&b.config()).await.unwrap().schema_status().await.unwrap();
    assert_eq!(status[0].version, 999);
}

async fn an_edited_applied_migration_is_refused(pg: bool) {
    let b = Backend::new(pg).await;
    drop(Store::open(&b.config()).await.unwrap());
    let table = b.control_table();
    b.control_sql(&format!("UPDATE {table} SET checksum = 'edited' WHERE version = 1")).await;
    let e = Store::open(&b.config()).await.err().expect("refused").to_string();
    assert!(e.contains("must never change"), "{e}");
}

async fn processes_starting_together_migrate_once_and_all_start(pg: bool) {
    let b = Backend::new(pg).await;
    // Four stores opening a fresh storage at the same moment: each migrates or waits for the
    // one that does (PostgreSQL's advisory lock, SQLite's IMMEDIATE transactions).
    let config = b.config();
    let opens = (0..4).map(|_| {
        let c = config.clone();
        tokio::spawn(async move { Store::open(&c).await.map(|_| ()) })
    });
    for r in futures::future::join_all(opens).await {
        r.unwrap().unwrap();
    }
    let store = Store::open(&b.config()).await.unwrap();
    let status = store.schema_status().await.unwrap();
    assert_eq!(status[0].version, status[0].latest);
    // Each version is recorded once.
    let table = b.control_table();
    match &b.0 {
        Storage::Sqlite(d) => {
            let c = rusqlite::Connection::open(d.path().join("control.db")).unwrap();
            let n: i64 = c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap();
            assert_eq!(n, status[0].latest);
        }
        Storage::Postgres(_) => {
            let StoreConfig::Postgres { url, .. } = b.config() else { unreachable!() };
            let (c, conn) = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            let n: i64 = c.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0);
            assert_eq!(n, status[0].latest);
        }
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(false).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(true).await } )*
        }
    };
}

on_both_backends!(
    fresh_storage_is_at_the_latest_version_everywhere_and_migrating_again_changes_nothing,
    a_schema_written_by_a_newer_strata_is_refused_and_shown,
    an_edited_applied_migration_is_refused,
    processes_starting_together_migrate_once_and_all_start,
);
