use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use strata_app::ports::rates::RateProvider;
use strata_domain::tenant::TenantId;
use strata_http::startup::Options;

use uuid::Uuid;

use crate::helpers::*;

/// A local stand-in for the Coinbase price API: `fail_first` answers 500 that many times,
/// `mode` picks what the rest get. It counts every call.
#[derive(Clone)]
struct Stub {
    calls: Arc<AtomicUsize>,
    fail_first: Arc<AtomicUsize>,
    mode: &'static str,
}

async fn stub(mode: &'static str, fail_first: usize) -> (String, Stub) {
    use axum::extract::{Path, State};
    let st = Stub { calls: Arc::new(AtomicUsize::new(0)), fail_first: Arc::new(AtomicUsize::new(fail_first)), mode };
    let app = axum::Router::new()
        .route(
            "/v2/prices/{pair}/spot",
            axum::routing::get(|State(s): State<Stub>, Path(pair): Path<String>| async move {
                s.calls.fetch_add(1, Ordering::SeqCst);
                if s.fail_first.load(Ordering::SeqCst) > 0 {
                    s.fail_first.fetch_sub(1, Ordering::SeqCst);
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom".to_string());
                }
                let cur = pair.trim_start_matches("BTC-").to_string();
                match s.mode {
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        (axum::http::StatusCode::OK, String::new())
                    }
                    "garbage" => (axum::http::StatusCode::OK, "{\"data\": {\"amount\": 48478.88}}".into()),
                    "down" => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down".into()),
                    _ => (
                        axum::http::StatusCode::OK,
                        json!({"data": {"amount": "48478.88", "base": "BTC", "currency": cur}}).to_string(),
                    ),
                }
            }),
        )
        .with_state(st.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), st)
}

fn coinbase(base: &str, timeout_ms: u64, retries: u32) -> Options {
    Options {
        rates: RateProvider::coinbase(base, Duration::from_millis(timeout_ms), retries, Duration::ZERO),
        ..Options::default()
    }
}

async fn order(app: &TestApp, key: &str, idem: &str, body: Json) -> reqwest::Response {
    app.client
        .post(app.url("/v1/buy-orders"))
        .bearer_auth(key)
        .header("idempotency-key", idem)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn book(app: &TestApp, tenant: &str) -> (i64, i64) {
    let b = app.store.orders().book(&TenantId::parse(tenant).unwrap()).await.unwrap();
    (b.total_sats, b.cap_sats)
}

/// Lists every order through the API, waiting until the read model shows `expect` of them.
async fn list_all(app: &TestApp, key: &str, expect: usize) -> Vec<Json> {
    for _ in 0..100 {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let page: Json =
                app.get(key, &format!("/v1/buy-orders?limit=7&cursor={cursor}")).await.json().await.unwrap();
            out.extend(page["orders"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = c.to_string(),
                None => break,
            }
        }
        if out.len() == expect {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the read model never showed {expect} orders");
}

async fn an_order_gets_the_exact_btc_amount_rounded_up(b: Backend) {
    let (base, _) = stub("ok", 0).await;
    let app = spawn_app_with(b, coinbase(&base, 1000, 0)).await;
    let key = app.tenant("acme", false).await;
    let r = order(&app, &key, "k1", json!({"currency": "USD", "amount": "100", "note": "extra fields are fine"})).await;
    assert_eq!(r.status(), 201);
    let location = r.headers().get("location").unwrap().to_str().unwrap().to_string();
    let o: Json = r.json().await.unwrap();
    assert_eq!(o["btc_amount"], "0.00206276", "100 / 48478.88 rounded up, not the seed's 0.00206275");
    assert_eq!(
        (o["amount"].as_str(), o["currency"].as_str(), o["exchange_rate"].as_str()),
        (Some("100.00"), Some("USD"), Some("48478.88"))
    );
    assert!(o["created_at"].as_str().unwrap().ends_with('Z'));
    let got: Json = app.get(&key, &location).await.json().await.unwrap();
    assert_eq!(got, o);
    assert_eq!(book(&app, "acme").await.0, 206_276);
}

async fn bad_orders_get_field_errors_and_store_nothing(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", false).await;
    for (i, (body, field)) in [
        (json!({"currency": "JPY", "amount": "10"}), "currency"),
        (json!({"currency": "usd", "amount": "10"}), "currency"),
        (json!({"currency": 1, "amount": "10"}), "currency"),
        (json!({"amount": "10"}), "currency"),
        (json!({"currency": "EUR", "amount": "ten"}), "amount"),
        (json!({"currency": "EUR", "amount": "0"}), "amount"),
        (json!({"currency": "EUR", "amount": "-5"}), "amount"),
        (json!({"currency": "EUR", "amount": "1.001"}), "amount"),
        (json!({"currency": "EUR", "amount": "1000000000"}), "amount"),
        (json!({"currency": "EUR", "amount": 10.5}), "amount"),
        (json!({"currency": "EUR", "amount": "1e3"}), "amount"),
        (json!({"currency": "EUR"}), "amount"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = order(&app, &key, &format!("bad-{i}"), body.clone()).await;
        let (s, e) = (r.status().as_u16(), r.json::<Json>().await.unwrap());
        assert_eq!((s, e["error"]["code"].as_str().unwrap()), (422, "invalid_order"), "{body}");
        assert_eq!(e["error"]["details"]["fields"][0]["field"], field, "{body}");
    }
    let r = app
        .client
        .post(app.url("/v1/buy-orders"))
        .bearer_auth(&key)
        .json(&json!({"currency": "EUR", "amount": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "missing_idempotency_key".into()));
    let r = order(&app, &key, &"k".repeat(256), json!({"currency": "EUR", "amount": "1"})).await;
    assert_eq!(error_code(r).await, (400, "invalid_idempotency_key".into()));
    let r = app
        .client
        .post(app.url("/v1/buy-orders"))
        .bearer_auth(&key)
        .header("idempotency-key", "x")
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "malformed_json".into()));
    let r = app
        .client
        .post(app.url("/v1/buy-orders"))
        .bearer_auth(&key)
        .header("idempotency-key", "x")
        .body("currency=EUR")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (415, "unsupported_media_type".into()));
    assert_eq!(book(&app, "acme").await.0, 0);
    assert_eq!(list_all(&app, &key, 0).await.len(), 0);
}

async fn replays_return_the_original_answer_without_calling_the_rate_provider(b: Backend) {
    let (base, stub) = stub("ok", 0).await;
    let app = spawn_app_with(b, coinbase(&base, 1000, 0)).await;
    let key = app.tenant("acme", false).await;
    let first = order(&app, &key, "same", json!({"currency": "EUR", "amount": "250.50"})).await;
    let first_body: Json = first.json().await.unwrap();
    assert_eq!(stub.calls.load(Ordering::SeqCst), 1);
    let again = order(&app, &key, "same", json!({"currency": "EUR", "amount": "250.5"})).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.json::<Json>().await.unwrap(), first_body);
    assert_eq!(stub.calls.load(Ordering::SeqCst), 1, "a replay never asks for a price");
    let other = order(&app, &key, "same", json!({"currency": "EUR", "amount": "999"})).await;
    assert_eq!(error_code(other).await, (409, "idempotency_key_reused".into()));
    // The book fills up; the replay still answers as the first time.
    app.store.orders().set_cap(&TenantId::parse("acme").unwrap(), book(&app, "acme").await.0).await.unwrap();
    let full = order(&app, &key, "new", json!({"currency": "EUR", "amount": "1"})).await;
    assert_eq!(error_code(full).await, (409, "btc_cap_exceeded".into()));
    let again = order(&app, &key, "same", json!({"currency": "EUR", "amount": "250.50"})).await;
    assert_eq!(again.status(), 201);
    // Keys are per tenant.
    let other_key = app.tenant("beta", false).await;
    let r = order(&app, &other_key, "same", json!({"currency": "EUR", "amount": "999"})).await;
    assert_eq!(r.status(), 201);
    assert_eq!(list_all(&app, &key, 1).await.len(), 1);
}

async fn racing_identical_requests_create_exactly_one_order(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", false).await;
    let mut handles = Vec::new();
    for _ in 0..20 {
        let (c, url, key) = (app.client.clone(), app.url("/v1/buy-orders"), key.clone());
        handles.push(tokio::spawn(async move {
            let r = c
                .post(url)
                .bearer_auth(key)
                .header("idempotency-key", "race")
                .json(&json!({"currency": "GBP", "amount": "10"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Json>().await.unwrap())
        }));
    }
    let mut bodies = Vec::new();
    for h in handles {
        let (s, body) = h.await.unwrap();
        assert_eq!(s, 201);
        bodies.push(body);
    }
    assert!(bodies.iter().all(|x| x == &bodies[0]));
    assert_eq!(list_all(&app, &key, 1).await.len(), 1);
}

async fn the_cap_holds_under_concurrency_and_says_how_much_room_is_left(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", false).await;
    // At 64000.12 USD, 6400.01 USD is 0.1 BTC (rounded up): 1 BTC of cap takes 9 of them.
    app.store.orders().set_cap(&TenantId::parse("acme").unwrap(), 100_000_000).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..50 {
        let (c, url, key) = (app.client.clone(), app.url("/v1/buy-orders"), key.clone());
        handles.push(tokio::spawn(async move {
            let r = c
                .post(url)
                .bearer_auth(key)
                .header("idempotency-key", format!("c{i}"))
                .json(&json!({"currency": "USD", "amount": "6400.01"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Json>().await.unwrap())
        }));
    }
    let mut created = Vec::new();
    for h in handles {
        let (s, body) = h.await.unwrap();
        match s {
            201 => created.push(body["id"].as_str().unwrap().to_string()),
            409 => {
                assert_eq!(body["error"]["code"], "btc_cap_exceeded");
                assert!(body["error"]["details"]["room_btc"].as_str().unwrap().starts_with("0.0"));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let (total, cap) = book(&app, "acme").await;
    assert!(total <= cap);
    let per = strata_domain::order::btc_sats(
        strata_domain::order::FiatAmount::parse(strata_domain::order::Currency::USD, "6400.01").unwrap(),
        strata_domain::order::Rate::parse("64000.12").unwrap(),
    ) as i64;
    assert_eq!(created.len() as i64, cap / per, "as many orders as fit, no more");
    assert_eq!(total, per * created.len() as i64);
    for id in &created {
        assert_eq!(app.get(&key, &format!("/v1/buy-orders/{id}")).await.status(), 200);
    }
    assert_eq!(list_all(&app, &key, created.len()).await.len(), created.len());
}

async fn orders_list_newest_first_with_opaque_cursors(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", false).await;
    let mut ids = Vec::new();
    for i in 0..23 {
        let o: Json =
            order(&app, &key, &format!("l{i}"), json!({"currency": "EUR", "amount": format!("{}.00", i + 1)}))
                .await
                .json()
                .await
                .unwrap();
        ids.push(o["id"].as_str().unwrap().to_string());
    }
    let listed = list_all(&app, &key, 23).await;
    let listed_ids: Vec<String> = listed.iter().map(|o| o["id"].as_str().unwrap().to_string()).collect();
    ids.reverse();
    assert_eq!(listed_ids, ids, "newest first, every order once");
    for q in ["limit=0", "limit=101", "limit=x", "cursor=bogus", "cursor=eyJ0IjoxLCJpIjoieCJ9", "page=2"] {
        let r = app.get(&key, &format!("/v1/buy-orders?{q}")).await;
        assert_eq!(error_code(r).await.0, 400, "{q}");
    }
    // The read model can be rebuilt from the write model.
    let n = app.store.orders().rebuild_read_model(&TenantId::parse("acme").unwrap()).await.unwrap();
    assert_eq!(n, 23);
    assert_eq!(list_all(&app, &key, 23).await, listed);
    // Another tenant sees none of them.
    let other = app.tenant("beta", false).await;
    assert_eq!(app.get(&other, &format!("/v1/buy-orders/{}", ids[0])).await.status(), 404);
    assert_eq!(list_all(&app, &other, 0).await.len(), 0);
    assert_eq!(app.get(&key, "/v1/buy-orders/not-a-uuid").await.status(), 404);
}

async fn rate_provider_failures_are_503_and_store_nothing(b: Backend) {
    for (mode, fail_first, retries) in [("down", 0, 1), ("garbage", 0, 1), ("slow", 0, 0), ("ok", 5, 2)] {
        let (base, stub) = stub(mode, fail_first).await;
        let app = spawn_app_with(b, coinbase(&base, 300, retries)).await;
        let key = app.tenant("acme", false).await;
        let r = order(&app, &key, "k", json!({"currency": "USD", "amount": "10"})).await;
        let (s, body) = (r.status().as_u16(), r.json::<Json>().await.unwrap());
        assert_eq!((s, body["error"]["code"].as_str().unwrap()), (503, "rate_unavailable"), "{mode}");
        assert_eq!(book(&app, "acme").await.0, 0);
        if mode == "down" || mode == "ok" {
            assert_eq!(stub.calls.load(Ordering::SeqCst), 1 + retries as usize, "bounded retries ({mode})");
        }
        // A later retry with the same key works once the provider is back.
        if mode == "ok" {
            stub.fail_first.store(0, Ordering::SeqCst);
            assert_eq!(order(&app, &key, "k", json!({"currency": "USD", "amount": "10"})).await.status(), 201);
        }
    }
    // Retries hide one transient failure.
    let (base, stub) = stub("ok", 1).await;
    let app = spawn_app_with(b, coinbase(&base, 1000, 2)).await;
    let key = app.tenant("acme", false).await;
    assert_eq!(order(&app, &key, "k", json!({"currency": "USD", "amount": "10"})).await.status(), 201);
    assert_eq!(stub.calls.load(Ordering::SeqCst), 2);
}

async fn the_py_dist_arch_surface_is_off_by_default_and_bound_to_one_tenant(b: Backend) {
    let app = spawn_app(b).await;
    let r = app
        .client
        .put(app.url("/compat/py-dist-arch/buy_order"))
        .json(&json!({"currency": "USD", "amount": "1", "idempotence_key": Uuid::now_v7().to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let app =
        spawn_app_with(b, Options { compat_tenant: Some(TenantId::parse("legacy").unwrap()), ..Options::default() })
            .await;
    let key = app.tenant("legacy", false).await;
    let mut first = Json::Null;
    let keys: Vec<String> = (0..5).map(|_| Uuid::now_v7().to_string()).collect();
    for (i, k) in keys.iter().enumerate() {
        let r = app
            .client
            .put(app.url("/compat/py-dist-arch/buy_order"))
            .json(&json!({"currency": "USD", "amount": "100", "idempotence_key": k}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Json = r.json().await.unwrap();
        assert_eq!(&body["idempotence_key"], k);
        for f in ["id", "created_at", "currency", "currency_amount", "btc_rate", "btc_amount"] {
            assert!(body["buy_order"][f].is_string(), "{f}");
        }
        if i == 0 {
            first = body;
        }
    }
    let replay: Json = app
        .client
        .put(app.url("/compat/py-dist-arch/buy_order"))
        // The same UUID spelt another way is the same key, as it is for the seed.
        .json(&json!({"currency": "USD", "amount": "100", "idempotence_key": keys[0].to_uppercase().replace('-', "")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replay, first);
    let r = app
        .client
        .put(app.url("/compat/py-dist-arch/buy_order"))
        .json(&json!({"currency": "USD", "amount": "-1", "idempotence_key": Uuid::now_v7().to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    list_all(&app, &key, 5).await;
    let page: Json = app
        .client
        .get(app.url("/compat/py-dist-arch/buy_orders?page_size=3"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["rows"].as_array().unwrap().len(), 3);
    let next = page["last_reference"].as_str().unwrap();
    assert_eq!(next, page["rows"][2]["id"].as_str().unwrap(), "the reference is the last row's id, as in the seed");
    let page2: Json = app
        .client
        .get(app.url(&format!("/compat/py-dist-arch/buy_orders?page_size=3&last_reference={next}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page2["rows"].as_array().unwrap().len(), 2, "the second page works (the seed's did not)");
    assert_eq!(page2["last_reference"], Json::Null);
}

async fn the_py_dist_arch_surface_accepts_and_refuses_what_the_seeds_models_do(b: Backend) {
    let app =
        spawn_app_with(b, Options { compat_tenant: Some(TenantId::parse("legacy").unwrap()), ..Options::default() })
            .await;
    let key = app.tenant("legacy", false).await;
    let put = |body: Json| {
        let req = app.client.put(app.url("/compat/py-dist-arch/buy_order"));
        async move { req.json(&body).send().await.unwrap() }
    };
    let uuid = || Uuid::now_v7().to_string();
    // Refused with 422 and FastAPI's {"detail": [...]}, naming each field at fault.
    let refused: Vec<(Json, &[&str])> = vec![
        // The seed's own suite sends a missing key as the string "None".
        (json!({"currency": "USD", "amount": "0.01", "idempotence_key": "None"}), &["idempotence_key"]),
        (json!({"currency": "USD", "amount": "0.01"}), &["idempotence_key"]),
        (json!({"currency": "USD", "amount": "0.01", "idempotence_key": null}), &["idempotence_key"]),
        (json!({"currency": "USD", "amount": "0.01", "idempotence_key": 7}), &["idempotence_key"]),
        (json!({"currency": "USD", "amount": "0.01", "idempotence_key": "key-1"}), &["idempotence_key"]),
        (json!({"currency": "usd", "amount": "1", "idempotence_key": uuid()}), &["currency"]),
        (json!({"currency": " USD", "amount": "1", "idempotence_key": uuid()}), &["currency"]),
        (json!({"currency": "ZAR", "amount": "1", "idempotence_key": uuid()}), &["currency"]),
        (json!({"amount": "1", "idempotence_key": uuid()}), &["currency"]),
        (json!({"currency": "USD", "amount": 100, "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "amount": null, "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "amount": "-1.00", "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "amount": "0", "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "amount": "-0", "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "amount": "1000000000", "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "amount": "1e9", "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "amount": "1e999999", "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "amount": "Infinity", "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "amount": "NaN", "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "amount": "abc", "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "amount": "", "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "USD", "amount": "1__0", "idempotence_key": uuid()}), &["amount"]),
        // The seed's database rounded these silently; Strata refuses instead of rounding.
        (json!({"currency": "USD", "amount": "10.005", "idempotence_key": uuid()}), &["amount"]),
        (json!({"currency": "EUR", "amount": "-5", "idempotence_key": "None"}), &["amount", "idempotence_key"]),
        (json!([1, 2]), &[]),
        (json!("USD"), &[]),
    ];
    for (body, fields) in &refused {
        let r = put(body.clone()).await;
        assert_eq!(r.status(), 422, "{body}");
        let detail: Json = r.json().await.unwrap();
        let locs: Vec<&str> =
            detail["detail"].as_array().unwrap().iter().filter_map(|d| d["loc"][1].as_str()).collect();
        assert_eq!(&locs, fields, "{body}: {detail}");
    }
    let r = app
        .client
        .put(app.url("/compat/py-dist-arch/buy_order"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // FastAPI reads JSON when the type says JSON or nothing; another type is 422.
    let good = r#"{"currency": "USD", "amount": "1", "idempotence_key": "8d2f0c8e-3b1a-4c5d-9e7f-1a2b3c4d5e6f"}"#;
    let r = app
        .client
        .put(app.url("/compat/py-dist-arch/buy_order"))
        .header("content-type", "text/plain")
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    list_all(&app, &key, 0).await;
    let r = app.client.put(app.url("/compat/py-dist-arch/buy_order")).body(good).send().await.unwrap();
    assert_eq!(r.status(), 200, "no Content-Type: read as JSON, as FastAPI does");
    list_all(&app, &key, 1).await;

    // Accepted as the seed's models accept them: Python Decimal spellings of an amount, any
    // spelling of a UUID, extra fields ignored.
    let accepted = [
        ("1e3", "1000.00"),
        (" 5 ", "5.00"),
        ("1_000", "1000.00"),
        ("+7.5", "7.50"),
        ("2.500", "2.50"),
        (".5", "0.50"),
        ("999999999.99", "999999999.99"),
    ];
    for (i, (amount, stored)) in accepted.iter().enumerate() {
        let k = Uuid::now_v7();
        let spelt = match i % 3 {
            0 => k.simple().to_string(),
            1 => format!("{{{}}}", k.hyphenated()).to_uppercase(),
            _ => k.urn().to_string(),
        };
        let r = put(json!({"currency": "GBP", "amount": amount, "idempotence_key": spelt, "note": "extra"})).await;
        // The last one passes the 100 BTC cap at this rate: refused by the cap, not the model.
        if *amount == "999999999.99" {
            assert_eq!(r.status(), 409, "{amount}");
            continue;
        }
        assert_eq!(r.status(), 200, "{amount}");
        let body: Json = r.json().await.unwrap();
        assert_eq!(body["idempotence_key"], k.hyphenated().to_string());
        assert_eq!(body["buy_order"]["currency_amount"], *stored, "{amount}");
    }
    list_all(&app, &key, accepted.len()).await;

    // The listing: page_size as the seed reads it, unknown parameters ignored.
    let get = |q: &'static str| {
        let req = app.client.get(app.url(&format!("/compat/py-dist-arch/buy_orders{q}")));
        async move { req.send().await.unwrap() }
    };
    let rows = |r: Json| r["rows"].as_array().unwrap().len();
    assert_eq!(rows(get("").await.json().await.unwrap()), 7, "default page of 10");
    assert_eq!(rows(get("?page_size=2&utm=x").await.json().await.unwrap()), 2);
    assert_eq!(rows(get("?page_size=%207%20").await.json().await.unwrap()), 7);
    assert_eq!(rows(get("?page_size=0").await.json().await.unwrap()), 0);
    for bad in ["?page_size=abc", "?page_size=1.5", "?page_size=", "?page_size=-1", "?last_reference=nope"] {
        assert_eq!(get(bad).await.status(), 422, "{bad}");
    }
    let unknown = format!("/compat/py-dist-arch/buy_orders?last_reference={}", Uuid::now_v7());
    assert_eq!(app.client.get(app.url(&unknown)).send().await.unwrap().status(), 422);
}

crate::on_both_backends!(
    the_py_dist_arch_surface_accepts_and_refuses_what_the_seeds_models_do,
    an_order_gets_the_exact_btc_amount_rounded_up,
    bad_orders_get_field_errors_and_store_nothing,
    replays_return_the_original_answer_without_calling_the_rate_provider,
    racing_identical_requests_create_exactly_one_order,
    the_cap_holds_under_concurrency_and_says_how_much_room_is_left,
    orders_list_newest_first_with_opaque_cursors,
    rate_provider_failures_are_503_and_store_nothing,
    the_py_dist_arch_surface_is_off_by_default_and_bound_to_one_tenant,
);
