//! Blue/green: the strategy protocol, the switch procedure, the admin API, nginx routing and
//! the Rust connector's behaviour across switches (each of the real connector's bugs it fixes).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use strata_app::deploy::{self, SwitchOptions};
use strata_client::proto::*;
use strata_client::{Config, Connection, Value};
use strata_store::deploy::Stack;
use tonic::Code;

use crate::grpc::{connect, grpc, raw, session, with_strategy, Grpc};
use crate::helpers::*;

/// nginx in front of both stacks, from the repo's config (deploy/nginx) and start script.
pub struct Nginx {
    child: Child,
    pub endpoint: String,
    pub prefix: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM lets the master take its workers down with it; a SIGKILL of the master alone
        // left the workers running after the tests.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Nginx {
    pub async fn start(blue: &str, green: &str) -> Nginx {
        let prefix = tempfile::tempdir().unwrap();
        let port = free_port();
        let script = format!("{}/../../scripts/nginx-grpc.sh", env!("CARGO_MANIFEST_DIR"));
        let child = Command::new(script)
            .args([
                prefix.path().to_str().unwrap(),
                &format!("127.0.0.1:{port}"),
                blue.trim_start_matches("http://"),
                green.trim_start_matches("http://"),
                "blue",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx must be installed (scripts/test.sh installs it)");
        let log = prefix.path().join("error.log");
        // Built at once, so its Drop kills nginx even if it never comes up.
        let nginx = Nginx { child, endpoint: format!("http://127.0.0.1:{port}"), prefix };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nginx did not start; see {}", log.display());
    }

    pub fn active_file(&self) -> std::path::PathBuf {
        self.prefix.path().join("active-stack.conf")
    }

    pub fn reload_cmd(&self) -> String {
        let p = self.prefix.path().display();
        format!("nginx -p {p} -c {p}/nginx.conf -s reload")
    }
}

fn quick(actor: &str) -> SwitchOptions {
    SwitchOptions {
        actor: actor.into(),
        announce: Duration::from_millis(300),
        drain_timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

/// Blue and green instances over one store (as two processes over one database would be).
async fn two_stacks(app: &TestApp) -> (Grpc, Grpc) {
    let blue = grpc(app, Stack::Blue, |o| o.query.batch_rows = 500).await;
    let green = grpc(app, Stack::Green, |o| o.query.batch_rows = 500).await;
    // Let both report a heartbeat before anything validates them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    (blue, green)
}

const TEN_THOUSAND: &str =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) SELECT i FROM n";

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn a_stale_strategy_gets_456_while_registered_queries_finish_on_the_old_stack(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let (blue, green) = two_stacks(&app).await;
    let mut g = raw(&green.endpoint).await;
    let auth = AuthenticateRequest { user: "acme".into(), password: key.clone(), ..Default::default() };
    // Green is not active: new work there is refused with exactly the e6data mismatch error.
    let err = g.authenticate(with_strategy(auth.clone(), "green")).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Unknown, "status: 456"));
    let mut c = raw(&blue.endpoint).await;
    let err = c.authenticate(with_strategy(auth.clone(), "green")).await.unwrap_err();
    assert_eq!(err.message(), "status: 456");
    let s = session(&mut c, "blue", "acme", &key).await;
    let prep = c
        .prepare_statement_v2(with_strategy(
            PrepareStatementV2Request {
                session_id: s.clone(),
                catalog: "strata".into(),
                query_string: TEN_THOUSAND.into(),
                ..Default::default()
            },
            "blue",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((prep.engine_ip.as_str(), prep.new_strategy), ("blue", None));
    let r = QueryRef { engine_ip: prep.engine_ip.clone(), session_id: s.clone(), query_id: prep.query_id.clone() };
    c.execute_statement_v2(with_strategy(
        ExecuteStatementV2Request {
            engine_ip: r.engine_ip.clone(),
            session_id: s.clone(),
            query_id: r.query_id.clone(),
            ..Default::default()
        },
        "blue",
    ))
    .await
    .unwrap();
    let first = c.get_next_result_batch(with_strategy(r.clone(), "blue")).await.unwrap().into_inner();
    assert!(!first.result_batch.is_empty());

    // Switch in the background: it waits for blue to drain, i.e. for this query's clear.
    let store = app.store.clone();
    let switch = tokio::spawn(async move { deploy::switch(&store, Stack::Green, &quick("test")).await });
    // The announcement reaches clients on every response.
    wait_for("the announcement", async || {
        let r = c.status(with_strategy(r.clone(), "blue")).await.unwrap().into_inner();
        r.new_strategy.as_deref() == Some("green")
    })
    .await;
    // During the announcement the coming stack already takes new sessions.
    let gs = session(&mut g, "green", "acme", &key).await;
    assert!(!gs.is_empty());
    wait_for("the flip", async || app.store.deploy_state().await.unwrap().active == Stack::Green).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Blue refuses new work now...
    let err = c
        .prepare_statement_v2(with_strategy(
            PrepareStatementV2Request { session_id: s.clone(), query_string: "SELECT 1".into(), ..Default::default() },
            "blue",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.message(), "status: 456");
    // ...but serves the query it owns to the end, even with the green session and header
    // (sessions are valid on both stacks; the real connector sends such mixtures).
    let mut rows = decode_rows(&first.result_batch);
    let late = QueryRef { session_id: gs.clone(), ..r.clone() };
    loop {
        let b = c.get_next_result_batch(with_strategy(late.clone(), "green")).await.unwrap().into_inner();
        assert_eq!(b.new_strategy.as_deref(), None, "the header already names the active stack");
        if b.result_batch.is_empty() {
            break;
        }
        rows.extend(decode_rows(&b.result_batch));
    }
    assert_eq!(rows, (1..=10_000).collect::<Vec<i64>>());
    assert!(!switch.is_finished(), "the switch waits for blue to drain");
    c.clear_or_cancel_query(with_strategy(
        ClearOrCancelQueryRequest {
            engine_ip: r.engine_ip.clone(),
            session_id: s.clone(),
            query_id: r.query_id.clone(),
            is_done: None,
        },
        "blue",
    ))
    .await
    .unwrap();
    let record = switch.await.unwrap().unwrap();
    assert_eq!((record.from.as_str(), record.to.as_str(), record.outcome.as_str()), ("blue", "green", "completed"));
    let history = app.store.deploy_history(10).await.unwrap();
    assert_eq!(history[0], record);
    assert!(record.duration_ms() >= 300);
    blue.stop().await;
    green.stop().await;
}

fn decode_rows(chunk: &[u8]) -> Vec<i64> {
    strata_client::wire::decode_chunk(chunk, 1)
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|r| match r[0] {
            Value::Int(i) => i,
            ref v => panic!("{v:?}"),
        })
        .collect()
}

async fn a_switch_to_a_stack_that_is_not_ready_is_refused_and_recorded(b: Backend) {
    let app = spawn_app(b).await;
    app.tenant("acme", true).await;
    let blue = grpc(&app, Stack::Blue, |_| {}).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = deploy::switch(&app.store, Stack::Green, &quick("ops")).await.unwrap_err();
    assert!(err.to_string().contains("no live green instance"), "{err}");
    let err = deploy::switch(&app.store, Stack::Blue, &quick("ops")).await.unwrap_err();
    assert!(err.to_string().contains("already the active"), "{err}");
    let s = app.store.deploy_state().await.unwrap();
    assert_eq!((s.active, s.target), (Stack::Blue, None));
    let h = app.store.deploy_history(10).await.unwrap();
    assert_eq!(h.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>(), ["refused", "refused"]);
    assert_eq!(h[1].actor, "ops");
    blue.stop().await;
}

async fn the_admin_api_switches_and_rolls_back_and_refuses_bad_requests(b: Backend) {
    let token = "an-admin-token-of-some-length";
    let app = spawn_app_with(
        b,
        strata_http::startup::Options {
            admin_token: Some(token.into()),
            switch: quick("unused"),
            ..Default::default()
        },
    )
    .await;
    let tenant_key = app.tenant("acme", true).await;
    let (blue, green) = two_stacks(&app).await;
    let url = app.url("/v1/admin/deploy");
    assert_eq!(error_code(app.client.get(&url).send().await.unwrap()).await, (401, "missing_authorization".into()));
    assert_eq!(
        error_code(app.client.get(&url).bearer_auth("wrong").send().await.unwrap()).await,
        (401, "invalid_admin_token".into())
    );
    assert_eq!(
        error_code(app.client.get(&url).bearer_auth(&tenant_key).send().await.unwrap()).await,
        (401, "invalid_admin_token".into())
    );
    let post = |path: &str, body: &str| {
        app.client
            .post(app.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    assert_eq!(
        error_code(post("/v1/admin/deploy/switch", r#"{"to":"purple"}"#).await.unwrap()).await,
        (400, "invalid_stack".into())
    );
    assert_eq!(
        error_code(post("/v1/admin/deploy/switch", r#"{"to":"#).await.unwrap()).await,
        (400, "malformed_json".into())
    );
    assert_eq!(
        error_code(post("/v1/admin/deploy/switch", r#"{"to":"green","extra":1}"#).await.unwrap()).await,
        (400, "malformed_json".into())
    );
    // Only the documented media type: a form-encoded body (curl -d's default) is refused.
    for ct in [Some("application/x-www-form-urlencoded"), Some("text/plain"), None] {
        let mut req = app.client.post(app.url("/v1/admin/deploy/switch")).bearer_auth(token).body(r#"{"to":"green"}"#);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        assert_eq!(error_code(req.send().await.unwrap()).await, (415, "unsupported_media_type".into()), "{ct:?}");
    }
    let huge = format!(r#"{{"to":"green","actor":"{}"}}"#, "x".repeat(5000));
    assert_eq!(error_code(post("/v1/admin/deploy/switch", &huge).await.unwrap()).await, (413, "body_too_large".into()));
    assert_eq!(error_code(post("/v1/admin/deploy/switch", "").await.unwrap()).await, (400, "malformed_json".into()));
    assert_eq!(
        error_code(post("/v1/admin/deploy/switch", r#"{"to":"blue"}"#).await.unwrap()).await,
        (409, "switch_refused".into())
    );
    let r = post("/v1/admin/deploy/switch", r#"{"to":"green","actor":"alice"}"#).await.unwrap();
    assert_eq!(r.status(), 200);
    let rec: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (rec["from"].as_str(), rec["to"].as_str(), rec["outcome"].as_str(), rec["actor"].as_str()),
        (Some("blue"), Some("green"), Some("completed"), Some("admin-api:alice"))
    );
    let r = post("/v1/admin/deploy/rollback", "").await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["to"], "blue");
    let st: serde_json::Value = app.client.get(&url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    assert_eq!(st["active"], "blue");
    assert_eq!(st["instances"].as_array().unwrap().len(), 2);
    assert_eq!(
        st["history"].as_array().unwrap().iter().map(|h| h["outcome"].as_str().unwrap()).collect::<Vec<_>>(),
        ["completed", "completed", "refused"]
    );
    // Without a configured token the admin API does not exist.
    let plain = spawn_app(b).await;
    assert_eq!(
        error_code(plain.client.get(plain.url("/v1/admin/deploy")).bearer_auth(token).send().await.unwrap()).await,
        (404, "admin_api_disabled".into())
    );
    let _ = json!({});
    blue.stop().await;
    green.stop().await;
}

async fn a_switch_abandoned_after_its_announcement_can_be_aborted_and_redone(b: Backend) {
    let app = spawn_app(b).await;
    app.tenant("acme", true).await;
    let (blue, green) = two_stacks(&app).await;
    // A `strata deploy switch` killed between the announcement and the flip leaves this:
    assert!(app.store.deploy_announce(Stack::Blue, Stack::Green, "dead-switch").await.unwrap());
    let err = deploy::switch(&app.store, Stack::Green, &quick("ops")).await.unwrap_err();
    assert!(err.to_string().contains("strata deploy abort"), "{err}");
    let r = deploy::abort(&app.store, "ops").await.unwrap().unwrap();
    assert_eq!((r.outcome.as_str(), r.to.as_str()), ("aborted", "green"));
    assert_eq!(deploy::abort(&app.store, "ops").await.unwrap(), None, "nothing left to abort");
    let s = app.store.deploy_state().await.unwrap();
    assert_eq!((s.active, s.target), (Stack::Blue, None));
    assert_eq!(deploy::switch(&app.store, Stack::Green, &quick("ops")).await.unwrap().outcome, "completed");
    blue.stop().await;
    green.stop().await;
}

/// The real connector sends cancel (and 2.3.15's clear) with its *active* strategy; without a
/// proxy routing by `plannerip` the call reaches the other stack, which passes it to the owner.
async fn a_cancel_or_clear_that_reaches_the_other_stack_still_stops_the_query(b: Backend) {
    let app = spawn_app(b).await;
    let key = app.tenant("acme", true).await;
    let (blue, green) = two_stacks(&app).await;
    let mut c = raw(&blue.endpoint).await;
    let s = session(&mut c, "blue", "acme", &key).await;
    let prepare =
        |sql: &str| PrepareStatementV2Request { session_id: s.clone(), query_string: sql.into(), ..Default::default() };
    let endless = c.prepare_statement_v2(with_strategy(prepare(ENDLESS_COUNT), "blue")).await.unwrap().into_inner();
    let idle = c.prepare_statement_v2(with_strategy(prepare("SELECT 1"), "blue")).await.unwrap().into_inner();
    let exec = ExecuteStatementV2Request {
        engine_ip: endless.engine_ip.clone(),
        session_id: s.clone(),
        query_id: endless.query_id.clone(),
        ..Default::default()
    };
    let mut c2 = c.clone();
    let running = tokio::spawn(async move { c2.execute_statement_v2(with_strategy(exec, "blue")).await });
    let mut o = quick("test");
    o.drain_timeout = Duration::from_millis(1);
    deploy::switch(&app.store, Stack::Green, &o).await.unwrap();
    let mut g = raw(&green.endpoint).await;
    let gs = session(&mut g, "green", "acme", &key).await;
    let r = |q: &PrepareStatementResponse| QueryRef {
        engine_ip: String::new(),
        session_id: gs.clone(),
        query_id: q.query_id.clone(),
    };
    g.cancel_query(with_strategy(r(&endless), "green")).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the cancel never reached blue")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Code::Cancelled, "{err:?}");
    let q = r(&idle);
    g.clear_or_cancel_query(with_strategy(
        ClearOrCancelQueryRequest {
            engine_ip: String::new(),
            session_id: q.session_id.clone(),
            query_id: q.query_id.clone(),
            is_done: None,
        },
        "green",
    ))
    .await
    .unwrap();
    let err = c.status(with_strategy(QueryRef { session_id: s.clone(), ..q }, "blue")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "the clear reached blue");
    blue.stop().await;
    green.stop().await;
}

const ENDLESS_COUNT: &str =
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000000) SELECT count(*) FROM n";

crate::on_both_backends!(
    a_cancel_or_clear_that_reaches_the_other_stack_still_stops_the_query,
    a_switch_abandoned_after_its_announcement_can_be_aborted_and_redone,
    a_stale_strategy_gets_456_while_registered_queries_finish_on_the_old_stack,
    a_switch_to_a_stack_that_is_not_ready_is_refused_and_recorded,
    the_admin_api_switches_and_rolls_back_and_refuses_bad_requests,
);

// ---------------------------------------------------------------------------------------------
// Through nginx, with the Rust connector (SQLite is enough: routing is backend-independent).

struct Rig {
    app: TestApp,
    key: String,
    blue: Grpc,
    green: Grpc,
    nginx: Nginx,
}

async fn rig() -> Rig {
    let app = spawn_app(Backend::Sqlite).await;
    let key = app.tenant("acme", true).await;
    let (blue, green) = two_stacks(&app).await;
    let nginx = Nginx::start(&blue.endpoint, &green.endpoint).await;
    Rig { app, key, blue, green, nginx }
}

impl Rig {
    async fn conn(&self) -> Connection {
        connect(&self.nginx.endpoint, "acme", &self.key).await
    }
    async fn stop(self) {
        self.blue.stop().await;
        self.green.stop().await;
        drop(self.nginx);
    }
}

async fn count_to(conn: &Connection, n: i64) -> (String, Vec<Vec<Value>>) {
    let mut cur = conn.cursor();
    let sql = format!("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) SELECT i FROM n");
    cur.prepare(&sql).await.unwrap();
    let strategy = cur.query().unwrap().strategy.clone();
    cur.run().await.unwrap();
    (strategy, cur.fetch_all().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_routes_by_header_and_calls_without_one_follow_the_active_stack() {
    let r = rig().await;
    let mut c = raw(&r.nginx.endpoint).await;
    let auth = AuthenticateRequest { user: "acme".into(), password: r.key.clone(), ..Default::default() };
    let engine = |resp: AuthenticateResponse| resp.engine_ip.unwrap_or_default();
    assert_eq!(engine(c.authenticate(tonic::Request::new(auth.clone())).await.unwrap().into_inner()), "blue");
    assert_eq!(c.authenticate(with_strategy(auth.clone(), "green")).await.unwrap_err().message(), "status: 456");
    let mut o = quick("test");
    o.nginx_active_file = Some(r.nginx.active_file());
    o.nginx_reload = Some(r.nginx.reload_cmd());
    let rec = deploy::switch(&r.app.store, Stack::Green, &o).await.unwrap();
    assert!(rec.detail.contains("nginx reloaded"), "{}", rec.detail);
    wait_for("nginx to route to green", async || {
        let mut c = raw(&r.nginx.endpoint).await;
        c.authenticate(tonic::Request::new(auth.clone()))
            .await
            .map(|x| engine(x.into_inner()) == "green")
            .unwrap_or(false)
    })
    .await;
    assert_eq!(engine(c.authenticate(with_strategy(auth.clone(), "green")).await.unwrap().into_inner()), "green");
    r.stop().await;
}

/// Real-connector bug: after a 456, each retried prepare re-sends the stale strategy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_refused_with_456_is_retried_on_the_new_strategy() {
    let r = rig().await;
    let conn = r.conn().await;
    assert_eq!(count_to(&conn, 3).await.0, "blue");
    // Switch with no announcement this connection could have seen: it still holds blue.
    let mut o = quick("test");
    o.announce = Duration::ZERO;
    deploy::switch(&r.app.store, Stack::Green, &o).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(conn.strategy_state().active.as_deref(), Some("blue"));
    let (strategy, rows) = count_to(&conn, 3).await;
    assert_eq!(strategy, "green");
    assert_eq!(rows.len(), 3);
    r.stop().await;
}

/// Real-connector bug: one leaked cursor (or constant overlapping load) keeps a process on the
/// old stack forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_is_never_idle_still_moves_to_the_new_stack() {
    let r = rig().await;
    let conn = r.conn().await;
    let mut leaked = conn.cursor();
    leaked.execute(TEN_THOUSAND).await.unwrap();
    let first = leaked.fetch_many(10).await.unwrap();
    assert_eq!(leaked.query().unwrap().strategy, "blue");
    let store = r.app.store.clone();
    let switch = tokio::spawn(async move { deploy::switch(&store, Stack::Green, &quick("test")).await });
    // Keep querying: the pending strategy is applied to new queries although the leaked
    // cursor keeps this connection busy.
    let mut moved = false;
    for _ in 0..100 {
        let (s, rows) = count_to(&conn, 5).await;
        assert_eq!(rows.len(), 5);
        if s == "green" {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved, "new queries never moved to green");
    // The leaked cursor still reads the rest of its result from blue.
    let rest = leaked.fetch_all().await.unwrap();
    assert_eq!(first.len() + rest.len(), 10_000);
    switch.await.unwrap().unwrap();
    r.stop().await;
}

/// Real-connector bug: one process-wide invalidation flag; the first connection to notice a
/// switch resets it for all the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_follows_a_switch_on_its_own() {
    let r = rig().await;
    let a = r.conn().await;
    let b = r.conn().await;
    let mut held = b.cursor();
    held.execute(TEN_THOUSAND).await.unwrap();
    deploy::switch(&r.app.store, Stack::Green, &quick("test")).await.ok();
    // a learns of the switch through its own responses and moves...
    let (s, _) = count_to(&a, 2).await;
    let s2 = if s == "green" { s } else { count_to(&a, 2).await.0 };
    assert_eq!(s2, "green");
    // ...while b's state is b's: its pinned query keeps its blue session and header.
    assert_eq!(held.query().unwrap().strategy, "blue");
    assert_eq!(held.fetch_all().await.unwrap().len(), 10_000);
    let (sb, _) = count_to(&b, 2).await;
    let sb = if sb == "green" { sb } else { count_to(&b, 2).await.0 };
    assert_eq!(sb, "green");
    r.stop().await;
}

/// Real-connector bug: cancel is sent with the connection's active strategy, so after a switch
/// it reaches a stack that does not know the query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_old_stack_after_a_switch() {
    let r = rig().await;
    let conn = r.conn().await;
    let mut cur = conn.cursor();
    let q = cur
        .prepare("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000000) SELECT count(*) FROM n")
        .await
        .unwrap();
    assert_eq!(q.strategy, "blue");
    let running = tokio::spawn(async move { cur.run().await });
    let mut o = quick("test");
    o.drain_timeout = Duration::from_millis(1);
    deploy::switch(&r.app.store, Stack::Green, &o).await.unwrap();
    // The connection now works on green...
    let (s, _) = count_to(&conn, 2).await;
    let s = if s == "green" { s } else { count_to(&conn, 2).await.0 };
    assert_eq!(s, "green");
    // ...and the cancel of the blue query still reaches blue.
    conn.cancel_query(&q).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("cancel did not stop the query")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::Cancelled), "{err}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_shared_safely_across_tasks() {
    let r = rig().await;
    let conn = r.conn().await;
    let mut tasks = Vec::new();
    for i in 0..8i64 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let (_, rows) = count_to(&conn, 100 + i).await;
                assert_eq!(rows.len() as i64, 100 + i);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(conn.strategy_state().in_flight, 0);
    let _ = Config::new("x", "y", "z");
    r.stop().await;
}
