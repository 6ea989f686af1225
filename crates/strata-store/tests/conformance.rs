//! The conformance suite: every repository of the store, called directly (not through HTTP),
//! with one test body run on SQLite and on PostgreSQL, so a feature cannot drift between the
//! two databases. The HTTP and gRPC suites test the same features end to end.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use strata_domain::dataset::Table;
use strata_domain::order::{Currency, FiatAmount, Order, Rate};
use strata_domain::report::Year;
use strata_domain::tenant::{KeyHash, SessionScope, TenantId};
use strata_domain::value::Value;
use strata_store::deploy::{Instance, Stack, SwitchRecord};
use strata_store::ingest::candidates_from_csv;
use strata_store::orders::{CreateOutcome, Cursor, OrderEvent};
use strata_store::{BatchOutcome, Idempotency, Store, StoreError};
use strata_testkit::{Kind, Storage};

/// A fresh store of `kind`, with tenant `acme` holding the HR dataset.
async fn store(kind: Kind) -> (Storage, Store, TenantId) {
    let storage = Storage::new(kind).await;
    let store = Store::open(&storage.config()).await.unwrap();
    let acme = TenantId::parse("acme").unwrap();
    store.tenants().create(&acme).await.unwrap();
    store.apply_dataset(&acme, &strata_domain::hr::definition()).await.unwrap();
    (storage, store, acme)
}

async fn table(store: &Store, t: &TenantId, name: &str) -> Table {
    store.table(t, name).await.unwrap()
}

async fn load(store: &Store, t: &TenantId, name: &str, csv: &str) -> strata_store::LoadReport {
    let table = table(store, t, name).await;
    let input = std::io::Cursor::new(csv.as_bytes().to_vec());
    store.load(t, &table, input, Arc::new(AtomicU64::new(0))).await.unwrap()
}

async fn hr_rows(store: &Store, t: &TenantId) {
    load(store, t, "departments", "1,Accounting\n2,Training\n").await;
    load(store, t, "jobs", "1,Actuary\n2,Web Developer\n").await;
    let r = load(
        store,
        t,
        "employees",
        "1,Ann,2021-02-01T10:00:00Z,1,1\n2,Bob,2021-05-01T10:00:00Z,1,2\n3,Cy,2021-11-30T23:59:59Z,2,2\n4,Di,2021-01-01T00:00:00Z,9,1\n",
    )
    .await;
    assert_eq!((r.inserted, r.rejected), (3, 1), "{r:?}");
}

async fn tenants_keys_and_sessions(kind: Kind) {
    let (_s, store, acme) = store(kind).await;
    assert!(matches!(store.tenants().create(&acme).await, Err(StoreError::TenantExists(_))));
    assert!(store.tenants().exists(&acme).await.unwrap());
    let other = TenantId::parse("other").unwrap();
    assert!(!store.tenants().exists(&other).await.unwrap());
    assert!(matches!(store.tenants().create_api_key(&other).await, Err(StoreError::TenantNotFound(_))));
    let key = store.tenants().create_api_key(&acme).await.unwrap();
    assert_eq!(store.tenants().authenticate(&key.hash).await.unwrap(), Some(acme.clone()));
    assert_eq!(store.tenants().authenticate(&KeyHash::of("sk_nothing")).await.unwrap(), None);
    let list = store.tenants().list().await.unwrap();
    assert_eq!(list.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["acme"]);
    assert!(chrono::DateTime::parse_from_rfc3339(&list[0].created_at).is_ok(), "{}", list[0].created_at);

    let token = store.sessions().create(&acme, SessionScope::Sql, 60).await.unwrap();
    assert_eq!(store.sessions().tenant(token.expose(), SessionScope::Sql).await.unwrap(), Some(acme.clone()));
    assert_eq!(store.sessions().tenant(token.expose(), SessionScope::Dashboard).await.unwrap(), None);
    store.sessions().delete(token.expose(), SessionScope::Sql).await.unwrap();
    assert_eq!(store.sessions().tenant(token.expose(), SessionScope::Sql).await.unwrap(), None);
    let expired = store.sessions().create(&acme, SessionScope::Sql, -1).await.unwrap();
    assert_eq!(store.sessions().tenant(expired.expose(), SessionScope::Sql).await.unwrap(), None);
}

async fn datasets_rows_and_rejections(kind: Kind) {
    let (_s, store, acme) = store(kind).await;
    let again = store.apply_dataset(&acme, &strata_domain::hr::definition()).await.unwrap();
    assert!(!again.changed);
    let ds = store.datasets(&acme).await.unwrap();
    assert_eq!((ds.len(), ds[0].name.as_str(), ds[0].version), (1, "hr", 1));
    hr_rows(&store, &acme).await;
    let emp = table(&store, &acme, "employees").await;
    let row = store.get_row(&acme, &emp, &Value::Int(2)).await.unwrap().unwrap();
    assert_eq!(row[1], Value::Text("Bob".into()));
    assert_eq!(
        row[2],
        Value::DateTime(chrono::DateTime::parse_from_rfc3339("2021-05-01T10:00:00Z").unwrap().timestamp_micros())
    );
    assert!(store.get_row(&acme, &emp, &Value::Int(99)).await.unwrap().is_none());
    let page = store.list_rows(&acme, &emp, Some(Value::Int(1)), 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0][0], Value::Int(2));
    let log = store.list_rejections(&acme, "employees", None, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].raw, "4,Di,2021-01-01T00:00:00Z,9,1");
    assert_eq!(log[0].line, Some(4));
    assert!(store.list_rejections(&acme, "employees", Some(log[0].id), 10).await.unwrap().is_empty());
}

async fn batches_honour_idempotency_keys(kind: Kind) {
    let (_s, store, acme) = store(kind).await;
    let dept = table(&store, &acme, "departments").await;
    let rows = || candidates_from_csv(&dept, b"7,Legal\n8,\n").unwrap();
    let idem = |fp: &str| Some(Idempotency { key: "k1".into(), fingerprint: fp.into() });
    let BatchOutcome::Fresh(first) = store.ingest_batch(&acme, &dept, rows(), idem("a")).await.unwrap() else {
        panic!("a fresh key writes")
    };
    assert_eq!((first.accepted, first.rejected), (1, 1));
    let BatchOutcome::Replayed(body) = store.ingest_batch(&acme, &dept, rows(), idem("a")).await.unwrap() else {
        panic!("a known key replays")
    };
    assert_eq!(body, serde_json::to_string(&first).unwrap());
    assert!(matches!(store.ingest_batch(&acme, &dept, rows(), idem("b")).await, Err(StoreError::IdempotencyKeyReused)));
    // The replay wrote nothing: one rejection, one row.
    assert_eq!(store.list_rejections(&acme, "departments", None, 10).await.unwrap().len(), 1);
    assert_eq!(store.list_rows(&acme, &dept, None, 10).await.unwrap().len(), 1);
}

fn order(sats: i64) -> Order {
    Order {
        id: uuid::Uuid::now_v7().to_string(),
        created_at: chrono::Utc::now().timestamp_micros(),
        amount: FiatAmount { currency: Currency::USD, minor: 10_000 },
        rate: Rate::parse("48478.88").unwrap(),
        sats,
    }
}

async fn orders_cap_replays_and_the_read_model(kind: Kind) {
    let (_s, store, acme) = store(kind).await;
    let orders = store.orders();
    orders.set_cap(&acme, 1_000).await.unwrap();
    let o = order(600);
    let CreateOutcome::Created { order: created, body } =
        orders.create(&acme, "k1", "fp", o.clone(), 600).await.unwrap()
    else {
        panic!("an order under the cap is created")
    };
    assert_eq!(created, o);
    let CreateOutcome::Replayed { status: 201, body: again } =
        orders.create(&acme, "k1", "fp", order(600), 600).await.unwrap()
    else {
        panic!("a known key replays")
    };
    assert_eq!(again, body);
    assert!(matches!(orders.create(&acme, "k1", "other", order(1), 1).await, Err(StoreError::IdempotencyKeyReused)));
    let answer = orders.idempotency(&acme, "k1").await.unwrap().unwrap();
    assert_eq!((answer.fingerprint.as_str(), answer.status), ("fp", 201));
    assert!(matches!(
        orders.create(&acme, "k2", "fp", order(500), 500).await.unwrap(),
        CreateOutcome::CapExceeded { .. }
    ));
    let huge = i64::MAX as i128 + 1;
    assert!(matches!(
        orders.create(&acme, "k3", "fp", order(i64::MAX), huge).await.unwrap(),
        CreateOutcome::CapExceeded { .. }
    ));
    let book = orders.book(&acme).await.unwrap();
    assert_eq!((book.total_sats, book.cap_sats), (600, 1_000));
    assert!(matches!(orders.set_cap(&acme, 599).await, Err(StoreError::CapBelowTotal)));
    assert_eq!(orders.get(&acme, &o.id).await.unwrap(), Some(o.clone()));
    assert_eq!(orders.get(&acme, "not-a-uuid").await.unwrap(), None);

    // The read model follows the outbox; projecting twice changes nothing.
    assert!(orders.list(&acme, None, 10).await.unwrap().is_empty());
    let events: Vec<OrderEvent> = orders.pending_events(&acme, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].to_order(), Some(o.clone()));
    orders.project(&acme, events.clone()).await.unwrap();
    orders.project(&acme, events.clone()).await.unwrap();
    orders.mark_published(&acme, events.iter().map(|e| e.seq).collect()).await.unwrap();
    assert!(orders.pending_events(&acme, 10).await.unwrap().is_empty());
    assert_eq!(orders.list(&acme, None, 10).await.unwrap(), std::slice::from_ref(&o));
    let after = Cursor { created_at: o.created_at, id: o.id.clone() };
    assert!(orders.list(&acme, Some(after), 10).await.unwrap().is_empty());
    assert_eq!(orders.rebuild_read_model(&acme).await.unwrap(), 1);
    assert_eq!(orders.list(&acme, None, 10).await.unwrap(), [o]);
}

async fn deployment_state_is_compare_and_set(kind: Kind) {
    let (_s, store, _) = store(kind).await;
    let s = store.deploy_state().await.unwrap();
    assert_eq!((s.active, s.target), (Stack::Blue, None));
    assert!(store.deploy_announce(Stack::Blue, Stack::Green, "s1").await.unwrap());
    assert!(!store.deploy_announce(Stack::Blue, Stack::Green, "s2").await.unwrap(), "one switch at a time");
    assert!(!store.deploy_flip("s2").await.unwrap());
    assert!(store.deploy_flip("s1").await.unwrap());
    let s = store.deploy_state().await.unwrap();
    assert_eq!((s.active, s.target, s.switch_id), (Stack::Green, None, None));
    assert!(store.deploy_announce(Stack::Green, Stack::Blue, "s3").await.unwrap());
    assert!(store.deploy_abort("s3").await.unwrap());
    assert_eq!(store.deploy_state().await.unwrap().target, None);

    let record = SwitchRecord {
        id: "s1".into(),
        actor: "ops".into(),
        from: Stack::Blue,
        to: Stack::Green,
        started_at_ms: 1,
        finished_at_ms: 5,
        outcome: "switched".into(),
        detail: String::new(),
    };
    store.record_switch(&record).await.unwrap();
    assert_eq!(store.deploy_history(10).await.unwrap(), [record]);

    let now = strata_store::deploy::now_ms();
    let i = Instance {
        id: "i1".into(),
        stack: Stack::Green,
        http_addr: "127.0.0.1:1".into(),
        grpc_addr: "127.0.0.1:2".into(),
        inflight: 3,
        heartbeat_at_ms: now,
    };
    store.heartbeat(&i).await.unwrap();
    store.heartbeat(&Instance { inflight: 0, ..i.clone() }).await.unwrap();
    assert_eq!(store.instances(60_000).await.unwrap(), [Instance { inflight: 0, ..i.clone() }]);
    store.forget_instance("i1").await.unwrap();
    assert!(store.instances(60_000).await.unwrap().is_empty());
}

async fn reports_count_hires_by_quarter(kind: Kind) {
    let (_s, store, acme) = store(kind).await;
    hr_rows(&store, &acme).await;
    let rows = store.hires_by_quarter(&acme, Year::parse("2021").unwrap()).await.unwrap();
    let got: Vec<_> =
        rows.iter().map(|r| (r.department_name.as_str(), r.job_name.as_str(), r.q1, r.q2, r.q3, r.q4)).collect();
    assert_eq!(
        got,
        [
            ("Accounting", "Actuary", 1, 0, 0, 0),
            ("Accounting", "Web Developer", 0, 1, 0, 0),
            ("Training", "Web Developer", 0, 0, 0, 1)
        ]
    );
    let above = store.departments_above_mean(&acme, Year::parse("2021").unwrap()).await.unwrap();
    let json = serde_json::to_value(&above).unwrap().to_string();
    assert!(json.contains("Accounting") && !json.contains("Training"), "{json}");
    let none = TenantId::parse("none").unwrap();
    store.tenants().create(&none).await.unwrap();
    assert!(matches!(
        store.hires_by_quarter(&none, Year::parse("2021").unwrap()).await,
        Err(StoreError::ReportUnavailable(_))
    ));
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(strata_testkit::Kind::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(strata_testkit::Kind::Postgres).await })*
        }
    };
}

on_both!(
    tenants_keys_and_sessions,
    datasets_rows_and_rejections,
    batches_honour_idempotency_keys,
    orders_cap_replays_and_the_read_model,
    deployment_state_is_compare_and_set,
    reports_count_hires_by_quarter,
);
