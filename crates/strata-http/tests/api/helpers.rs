use serde_json::Value as Json;
use strata_domain::secret::Secret;
use strata_domain::tenant::TenantId;
use strata_store::{Store, StoreConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::helpers::Backend::Postgres).await } )*
        }
    };
}

pub use strata_testkit::PgDatabase;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pub backups: tempfile::TempDir,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

pub fn store_config(backend: Backend, dir: Option<&tempfile::TempDir>, pg: Option<&PgDatabase>) -> StoreConfig {
    match backend {
        Backend::Sqlite => StoreConfig::Sqlite { data_dir: dir.unwrap().path().to_path_buf() },
        Backend::Postgres => StoreConfig::Postgres { url: Secret::new(pg.unwrap().url()), pool_size: 8 },
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, strata_http::startup::Options::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: strata_http::startup::Options) -> TestApp {
    spawn_app_tuned(backend, options, 8, |s| s).await
}

/// A server whose store has a data pool of `pool_size` (PostgreSQL) and is shaped by `tune`
/// (tenant slots, say).
pub async fn spawn_app_tuned(
    backend: Backend,
    options: strata_http::startup::Options,
    pool_size: usize,
    tune: impl FnOnce(Store) -> Store,
) -> TestApp {
    let (dir, pg) = match backend {
        Backend::Sqlite => (Some(tempfile::tempdir().unwrap()), None),
        Backend::Postgres => (None, Some(PgDatabase::create().await)),
    };
    let backups = tempfile::tempdir().unwrap();
    let mut config = store_config(backend, dir.as_ref(), pg.as_ref());
    if let StoreConfig::Postgres { pool_size: p, .. } = &mut config {
        *p = pool_size;
    }
    let store = tune(Store::open(&config).await.unwrap().with_backup_dir(backups.path().to_path_buf()));
    let app = strata_http::startup::Application::build_with("127.0.0.1:0".parse().unwrap(), store.clone(), options)
        .await
        .unwrap();
    let addr = app.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        store,
        shutdown: Some(tx),
        server: Some(server),
        backups,
        _dir: dir,
        _pg: pg,
    }
}

pub fn data_file(name: &str) -> Vec<u8> {
    let path = format!("{}/../../data/hr/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates a tenant (optionally with the HR dataset) and returns its API key.
    pub async fn tenant(&self, id: &str, hr: bool) -> String {
        let tid = TenantId::parse(id).unwrap();
        let key = self.store.tenants().create(&tid).await.unwrap();
        if hr {
            self.store.apply_dataset(&tid, &strata_domain::hr::definition()).await.unwrap();
        }
        key.plaintext.expose().clone()
    }

    /// A tenant with the HR dataset and the canonical files loaded through the API.
    pub async fn tenant_with_canonical_data(&self, id: &str) -> String {
        let key = self.tenant(id, true).await;
        for t in ["departments", "jobs", "employees"] {
            let r = self.load(&key, t, data_file(&format!("{t}.csv"))).await;
            assert_eq!(r.status(), 200, "{t}");
        }
        key
    }

    pub async fn load(&self, key: &str, table: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/tables/{table}/load")))
            .bearer_auth(key)
            .header("content-type", "text/csv")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(key).send().await.unwrap()
    }

    pub async fn post_rows(&self, key: &str, table: &str, body: Json) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/tables/{table}/rows")))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Every row of a table, through the paged API.
    pub async fn all_rows(&self, key: &str, table: &str) -> Vec<Json> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let r = self.get(key, &format!("/v1/tables/{table}/rows?limit=1000&after={after}")).await;
            assert_eq!(r.status(), 200);
            let page: Json = r.json().await.unwrap();
            out.extend(page["rows"].as_array().unwrap().iter().cloned());
            match page["next"].as_str() {
                Some(n) => after = n.to_string(),
                None => return out,
            }
        }
    }
}

pub async fn error_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Json = r.json().await.unwrap_or(Json::Null);
    (status, body["error"]["code"].as_str().unwrap_or("<no error code>").to_string())
}

pub fn employee(id: i64, name: &str, dep: i64, job: i64) -> Json {
    serde_json::json!({
        "employee_id": id, "employee_name": name, "hiring_date": "2021-07-27T16:02:08Z",
        "department_id": dep, "job_id": job
    })
}
