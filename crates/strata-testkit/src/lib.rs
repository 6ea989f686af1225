//! Test support shared by every test suite: a PostgreSQL database of the test's own (created
//! on the machine's server, dropped when the test ends) and a fresh [`Storage`] of either kind,
//! so one test body can run on both backends.
//!
//! The server is `STRATA_TEST_DATABASE_URL` (an admin URL whose user may create databases),
//! `postgres://postgres@127.0.0.1:5432/postgres` by default.

use strata_domain::secret::Secret;
use strata_store::StoreConfig;

pub fn admin_url() -> String {
    std::env::var("STRATA_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A PostgreSQL database of the test's own, dropped (with its connections) when dropped.
pub struct PgDatabase {
    pub name: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        let name = format!("strata_test_{}", uuid::Uuid::now_v7().simple());
        let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL must run for the test suite (see STRATA_TEST_DATABASE_URL)");
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        Self { name }
    }

    pub fn url(&self) -> String {
        let base = admin_url();
        let cut = base.rfind('/').expect("an admin URL with a database name");
        format!("{}/{}", &base[..cut], self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a test's runtime; a thread with a runtime of its own can block.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A fresh, empty storage: a temporary SQLite data directory or a PostgreSQL database.
pub enum Storage {
    Sqlite(tempfile::TempDir),
    Postgres(PgDatabase),
}

impl Storage {
    pub async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Sqlite => Storage::Sqlite(tempfile::tempdir().unwrap()),
            Kind::Postgres => Storage::Postgres(PgDatabase::create().await),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Storage::Sqlite(_) => Kind::Sqlite,
            Storage::Postgres(_) => Kind::Postgres,
        }
    }

    pub fn config(&self) -> StoreConfig {
        match self {
            Storage::Sqlite(d) => StoreConfig::Sqlite { data_dir: d.path().to_path_buf() },
            Storage::Postgres(db) => StoreConfig::Postgres { url: Secret::new(db.url()), pool_size: 4 },
        }
    }
}
