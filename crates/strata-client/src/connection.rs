//! The connector: a [`Connection`] (cheap to clone, safe to share across tasks and threads)
//! and [`Cursor`]s that run queries on it.
//!
//! Size: one file of about 800 lines on purpose: discovery, the strategy retry loop and the
//! cursor's state machine act on the same connection state, and each rule below is one place
//! in it; splitting would separate a retry from the state it repairs.
//!
//! Blue/green behaviour, and the real e6data connector's bugs it does not have:
//!
//! * **Discovery**: a process-wide cache per endpoint gives the first guess, then `blue`,
//!   then `green`. The cache is only a hint: each connection keeps its own active and pending
//!   strategy (the real connector shares one invalidation flag across every connection).
//! * **Pinning**: a query keeps the strategy and `plannerip` it was prepared with for every
//!   later call, including **cancel and clear** (the real connector sends cancel with the
//!   *active* strategy, so after a switch it reaches a stack that does not know the query).
//! * **Pending strategy**: learned from `new_strategy` on any response; applied as soon as
//!   *this connection* has no query in flight, and, so that a connection that is never idle
//!   still moves, by new queries once it has been pending for `max_pending` (queries in flight
//!   stay pinned, so this is safe). The real connector waits for the whole process to be idle.
//! * **Retries**: only before anything ran. A 456 (or an expired session) on authenticate or
//!   prepare re-discovers and retries *with the new strategy* (the real connector retries its
//!   prepare with the stale one). Execute and fetch are never replayed.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::proto::query_engine_service_client::QueryEngineServiceClient;
use crate::proto::*;
use crate::wire::{self, FieldInfo, Value};

fn clone_req<T: Clone>(r: &Request<T>) -> Request<T> {
    let mut out = Request::new(r.get_ref().clone());
    *out.metadata_mut() = r.metadata().clone();
    out
}

pub const STRATEGIES: [&str; 2] = ["blue", "green"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("{0}")]
    Rpc(#[from] Status),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the server sent a malformed result: {0}")]
    Wire(#[from] wire::WireError),
    #[error("no strategy accepted the connection (tried {0})")]
    NoStrategy(String),
    #[error("{0}")]
    Usage(&'static str),
}

impl Error {
    /// The gRPC status code, when the server answered with one.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Rpc(s) => Some(s.code()),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Whether a call failed without reaching the server, so sending it again cannot run anything
/// twice. Only these are resent for every call, fetches included:
/// * hyper hands back requests still queued on a connection that closed ("connection closed");
/// * a stream refused by the peer's graceful GOAWAY (a proxy reload): HTTP/2 (RFC 9113 §6.8)
///   guarantees streams above the GOAWAY's last stream id were not processed, and those are the
///   streams h2 fails with a remote `GoAway(NO_ERROR)`; streams at or below it complete normally;
/// * a refused TCP connect.
fn never_sent(s: &Status) -> bool {
    let mut chain = String::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = src {
        chain.push_str(&format!("{e} {e:?}|"));
        src = e.source();
    }
    (s.code() == Code::Cancelled && chain.contains("connection closed"))
        || chain.contains("GoAway(b\"\", NO_ERROR, Remote)")
        || (s.code() == Code::Unavailable
            && (chain.contains("tcp connect error") || chain.contains("Connection refused")))
}

/// Evaluates a call expression (which builds a fresh request) again while it was never sent.
macro_rules! resend {
    ($call:expr) => {{
        let mut attempt = 0u64;
        loop {
            match $call.await {
                Err(s) if attempt < 5 && never_sent(&s) => {
                    attempt += 1;
                    tracing::debug!(error = %s, attempt, "request never sent; sending it again");
                    tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                }
                other => break other,
            }
        }
    }};
}

fn is_456(s: &Status) -> bool {
    s.message().contains("status: 456")
}

fn is_access_denied(s: &Status) -> bool {
    s.code() == Code::Internal && s.message().contains("Access denied")
}

/// Connection settings. `Debug` never shows the password.
#[derive(Clone)]
pub struct Config {
    /// `http://host:port` of the server or of the proxy in front of both stacks.
    pub endpoint: String,
    /// For Strata: the tenant id.
    pub user: String,
    /// For Strata: one of the tenant's API keys.
    pub password: String,
    pub catalog: String,
    /// The default database (Strata: a dataset name); may be empty.
    pub database: String,
    /// Deadline of prepare calls, as the real connector (`grpc_prepare_timeout`).
    pub prepare_timeout: Duration,
    /// How long a pending strategy waits for this connection to be idle before new queries
    /// use it anyway.
    pub max_pending: Duration,
}

impl Config {
    pub fn new(endpoint: impl Into<String>, user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            user: user.into(),
            password: password.into(),
            catalog: "strata".into(),
            database: String::new(),
            prepare_timeout: Duration::from_secs(600),
            max_pending: Duration::from_millis(500),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("catalog", &self.catalog)
            .field("database", &self.database)
            .finish()
    }
}

/// Last strategy that worked, per endpoint: only a first guess for new connections.
fn strategy_cache() -> &'static Mutex<HashMap<String, String>> {
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

#[derive(Default)]
struct State {
    active: Option<String>,
    pending: Option<(String, Instant)>,
    /// Session per strategy: a session opened on one stack stays usable for queries pinned there.
    sessions: HashMap<String, String>,
    in_flight: usize,
}

struct Inner {
    cfg: Config,
    channel: Channel,
    state: Mutex<State>,
}

/// A connection to a Strata (or e6data) query service. Clones share one HTTP/2 channel and
/// one strategy state.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("config", &self.inner.cfg).finish()
    }
}

/// Where a query lives: fixed at prepare, used for every later call about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryHandle {
    pub id: String,
    pub engine_ip: String,
    pub strategy: String,
    pub session: String,
}

/// What a switch announcement looks like from this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategyState {
    pub active: Option<String>,
    pub pending: Option<String>,
    pub in_flight: usize,
}

impl Connection {
    /// Opens the channel (lazily: the first call connects) and authenticates.
    pub async fn connect(cfg: Config) -> Result<Self> {
        let channel = Endpoint::from_shared(cfg.endpoint.clone())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let conn = Self { inner: Arc::new(Inner { cfg, channel, state: Mutex::new(State::default()) }) };
        conn.ensure_session().await?;
        Ok(conn)
    }

    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    pub fn strategy_state(&self) -> StrategyState {
        let s = self.inner.state.lock().unwrap();
        StrategyState {
            active: s.active.clone(),
            pending: s.pending.as_ref().map(|p| p.0.clone()),
            in_flight: s.in_flight,
        }
    }

    fn client(&self) -> QueryEngineServiceClient<Channel> {
        QueryEngineServiceClient::new(self.inner.channel.clone()).max_decoding_message_size(usize::MAX)
    }

    fn request<T>(&self, msg: T, strategy: Option<&str>, planner: Option<&str>) -> Request<T> {
        let mut r = Request::new(msg);
        if let Some(s) = strategy.and_then(|s| MetadataValue::try_from(s).ok()) {
            r.metadata_mut().insert("strategy", s);
        }
        if let Some(p) = planner.filter(|p| !p.is_empty()).and_then(|p| MetadataValue::try_from(p).ok()) {
            r.metadata_mut().insert("plannerip", p);
        }
        r
    }

    /// Records an announcement from any response.
    fn observe(&self, new_strategy: Option<&str>) {
        let Some(ns) = new_strategy.map(str::to_ascii_lowercase) else { return };
        if !STRATEGIES.contains(&ns.as_str()) {
            return;
        }
        let mut s = self.inner.state.lock().unwrap();
        if s.active.as_deref() != Some(ns.as_str()) && s.pending.as_ref().map(|p| p.0.as_str()) != Some(ns.as_str()) {
            tracing::debug!(pending = %ns, "strategy switch announced");
            s.pending = Some((ns, Instant::now()));
        }
    }

    /// Applies a pending strategy if this connection is idle, or if it has waited long enough.
    fn maybe_apply_pending(&self) {
        let mut s = self.inner.state.lock().unwrap();
        if let Some((p, since)) = s.pending.clone() {
            if s.in_flight == 0 || since.elapsed() >= self.inner.cfg.max_pending {
                tracing::debug!(strategy = %p, "switching strategy");
                s.active = Some(p.clone());
                s.pending = None;
                strategy_cache().lock().unwrap().insert(self.inner.cfg.endpoint.clone(), p);
            }
        }
    }

    /// Authenticates with one strategy. `Ok(None)`: that strategy refused (456).
    async fn authenticate(&self, strategy: &str) -> Result<Option<(String, Option<String>)>> {
        let req = AuthenticateRequest {
            user: self.inner.cfg.user.clone(),
            password: self.inner.cfg.password.clone(),
            ..Default::default()
        };
        match resend!(self.client().authenticate(self.request(req.clone(), Some(strategy), None))) {
            Ok(r) => {
                let r = r.into_inner();
                if r.session_id.is_empty() {
                    return Err(Error::InvalidCredentials);
                }
                Ok(Some((r.session_id, r.new_strategy.filter(|s| !s.is_empty()).map(|s| s.to_ascii_lowercase()))))
            }
            Err(s) if is_456(&s) => Ok(None),
            Err(s) => Err(s.into()),
        }
    }

    /// The strategy and session new work should use, discovering and authenticating as needed.
    async fn ensure_session(&self) -> Result<(String, String)> {
        self.maybe_apply_pending();
        let active = self.inner.state.lock().unwrap().active.clone();
        if let Some(a) = &active {
            if let Some(sess) = self.inner.state.lock().unwrap().sessions.get(a).cloned() {
                return Ok((a.clone(), sess));
            }
        }
        // Candidates: this connection's strategy, the process-wide hint, then blue, then green.
        let mut order: Vec<String> = Vec::new();
        let hint = strategy_cache().lock().unwrap().get(&self.inner.cfg.endpoint).cloned();
        for s in active.into_iter().chain(hint).chain(STRATEGIES.iter().map(|s| s.to_string())) {
            if !order.contains(&s) {
                order.push(s);
            }
        }
        let mut i = 0;
        let mut hops = 0;
        while i < order.len() {
            let s = order[i].clone();
            match self.authenticate(&s).await? {
                None => i += 1,
                Some((session, new_strategy)) => {
                    // An announcement on authenticate means: move now, and authenticate there.
                    if let Some(ns) = new_strategy.filter(|ns| *ns != s && STRATEGIES.contains(&ns.as_str())) {
                        hops += 1;
                        if hops <= 2 {
                            if let Ok(Some((sess2, _))) = self.authenticate(&ns).await {
                                self.adopt(&ns, sess2.clone());
                                return Ok((ns, sess2));
                            }
                        }
                    }
                    self.adopt(&s, session.clone());
                    return Ok((s, session));
                }
            }
        }
        Err(Error::NoStrategy(order.join(", ")))
    }

    fn adopt(&self, strategy: &str, session: String) {
        let mut st = self.inner.state.lock().unwrap();
        st.active = Some(strategy.to_string());
        if st.pending.as_ref().is_some_and(|p| p.0 == strategy) {
            st.pending = None;
        }
        st.sessions.insert(strategy.to_string(), session);
        strategy_cache().lock().unwrap().insert(self.inner.cfg.endpoint.clone(), strategy.to_string());
    }

    /// Forgets the session and strategy that just failed, so the next attempt re-discovers.
    fn invalidate(&self, strategy: &str) {
        let mut st = self.inner.state.lock().unwrap();
        st.sessions.remove(strategy);
        if st.active.as_deref() == Some(strategy) {
            st.active = None;
        }
        let mut cache = strategy_cache().lock().unwrap();
        if cache.get(&self.inner.cfg.endpoint).map(String::as_str) == Some(strategy) {
            cache.remove(&self.inner.cfg.endpoint);
        }
    }

    /// Prepares a query, retrying only while nothing has run: on 456 (stale strategy), an
    /// expired session, or a connection that failed before the call reached a server.
    async fn prepare(&self, sql: &str, catalog: &str, database: &str) -> Result<QueryHandle> {
        let mut last = None;
        for attempt in 0..5 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            let (strategy, session) = self.ensure_session().await?;
            let req = || {
                let mut req = self.request(
                    PrepareStatementV2Request {
                        session_id: session.clone(),
                        schema: database.to_string(),
                        catalog: catalog.to_string(),
                        query_string: sql.to_string(),
                        ..Default::default()
                    },
                    Some(&strategy),
                    None,
                );
                req.set_timeout(self.inner.cfg.prepare_timeout);
                req
            };
            match resend!(self.client().prepare_statement_v2(req())) {
                Ok(r) => {
                    let r = r.into_inner();
                    self.observe(r.new_strategy.as_deref());
                    return Ok(QueryHandle { id: r.query_id, engine_ip: r.engine_ip, strategy, session });
                }
                Err(s) if is_456(&s) || is_access_denied(&s) => {
                    tracing::debug!(%strategy, error = %s.message(), "prepare refused; re-discovering");
                    self.invalidate(&strategy);
                    last = Some(s);
                }
                Err(s) if s.code() == Code::Unavailable && s.message().contains("connect") => last = Some(s),
                Err(s) => return Err(s.into()),
            }
        }
        Err(last.map_or(Error::Usage("prepare failed"), Error::from))
    }

    pub fn cursor(&self) -> Cursor {
        Cursor {
            conn: self.clone(),
            catalog: self.inner.cfg.catalog.clone(),
            database: self.inner.cfg.database.clone(),
            query: None,
            description: Vec::new(),
            buffer: std::collections::VecDeque::new(),
            done: false,
            rowcount: -1,
        }
    }

    async fn with_session<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(String, String) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Status>>,
    {
        for _ in 0..3 {
            let (strategy, session) = self.ensure_session().await?;
            match f(strategy.clone(), session).await {
                Ok(v) => return Ok(v),
                Err(s) if is_456(&s) || is_access_denied(&s) => self.invalidate(&strategy),
                Err(s) => return Err(s.into()),
            }
        }
        Err(Error::Usage("the server kept refusing the session"))
    }

    /// Schema (Strata: dataset) names.
    pub async fn get_schema_names(&self) -> Result<Vec<String>> {
        let catalog = self.inner.cfg.catalog.clone();
        self.with_session(|strategy, session| {
            let req = self.request(
                GetSchemaNamesV2Request { session_id: session, catalog: catalog.clone() },
                Some(&strategy),
                None,
            );
            let mut c = self.client();
            async move {
                let r = resend!(c.get_schema_names_v2(clone_req(&req)))?.into_inner();
                self.observe(r.new_strategy.as_deref());
                Ok(r.schemas)
            }
        })
        .await
    }

    pub async fn get_tables(&self, schema: &str) -> Result<Vec<String>> {
        let catalog = self.inner.cfg.catalog.clone();
        self.with_session(|strategy, session| {
            let req = self.request(
                GetTablesV2Request { session_id: session, schema: schema.to_string(), catalog: catalog.clone() },
                Some(&strategy),
                None,
            );
            let mut c = self.client();
            async move {
                let r = resend!(c.get_tables_v2(clone_req(&req)))?.into_inner();
                self.observe(r.new_strategy.as_deref());
                Ok(r.tables)
            }
        })
        .await
    }

    /// Columns of a table: (name, type name).
    pub async fn get_columns(&self, schema: &str, table: &str) -> Result<Vec<(String, String)>> {
        let catalog = self.inner.cfg.catalog.clone();
        self.with_session(|strategy, session| {
            let req = self.request(
                GetColumnsV2Request {
                    session_id: session,
                    schema: schema.to_string(),
                    table: table.to_string(),
                    catalog: catalog.clone(),
                },
                Some(&strategy),
                None,
            );
            let mut c = self.client();
            async move {
                let r = resend!(c.get_columns_v2(clone_req(&req)))?.into_inner();
                self.observe(r.new_strategy.as_deref());
                Ok(r.field_info.into_iter().map(|f| (f.field_name, f.field_type)).collect())
            }
        })
        .await
    }

    /// Drops this connection's sessions; cursors still open keep working until cleared.
    pub fn close(&self) {
        self.inner.state.lock().unwrap().sessions.clear();
    }

    fn query_started(&self) {
        self.inner.state.lock().unwrap().in_flight += 1;
    }

    fn query_ended(&self) {
        {
            let mut s = self.inner.state.lock().unwrap();
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        self.maybe_apply_pending();
    }

    /// Cancels a query from any task, on the stack that runs it (its pinned strategy and
    /// `plannerip`, never this connection's current strategy).
    pub async fn cancel_query(&self, q: &QueryHandle) -> Result<()> {
        let r = resend!(self.client().cancel_query(self.query_ref(q)))?.into_inner();
        self.observe(r.new_strategy.as_deref());
        Ok(())
    }

    fn clear_ref(&self, q: &QueryHandle) -> Request<ClearOrCancelQueryRequest> {
        let (md, ext, msg) = self.query_ref(q).into_parts();
        Request::from_parts(
            md,
            ext,
            ClearOrCancelQueryRequest {
                engine_ip: msg.engine_ip,
                session_id: msg.session_id,
                query_id: msg.query_id,
                is_done: None,
            },
        )
    }

    fn query_ref(&self, q: &QueryHandle) -> Request<QueryRef> {
        let session =
            self.inner.state.lock().unwrap().sessions.get(&q.strategy).cloned().unwrap_or_else(|| q.session.clone());
        self.request(
            QueryRef { engine_ip: q.engine_ip.clone(), session_id: session, query_id: q.id.clone() },
            Some(&q.strategy),
            Some(&q.engine_ip),
        )
    }
}

/// A result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_name: String,
}

impl From<FieldInfo> for Column {
    fn from(f: FieldInfo) -> Self {
        Self { name: f.name, type_name: f.type_name }
    }
}

pub type Row = Vec<Value>;

/// Runs one query at a time. Not `Clone`: share the [`Connection`] instead.
pub struct Cursor {
    conn: Connection,
    catalog: String,
    database: String,
    query: Option<QueryHandle>,
    description: Vec<Column>,
    buffer: std::collections::VecDeque<Row>,
    done: bool,
    rowcount: i64,
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor").field("query", &self.query).field("description", &self.description).finish()
    }
}

impl Cursor {
    pub fn with_database(mut self, db: &str) -> Self {
        self.database = db.to_string();
        self
    }

    /// The query this cursor runs, with the strategy it is pinned to.
    pub fn query(&self) -> Option<&QueryHandle> {
        self.query.as_ref()
    }

    /// Columns of the last executed query (reset by every `execute`).
    pub fn description(&self) -> &[Column] {
        &self.description
    }

    /// Row count from the metadata: the total once known, else -1.
    pub fn rowcount(&self) -> i64 {
        self.rowcount
    }

    /// Prepares and executes `sql`; returns the query id. A previous query is cleared first.
    pub async fn execute(&mut self, sql: &str) -> Result<String> {
        let q = self.prepare(sql).await?;
        self.run().await?;
        Ok(q.id)
    }

    /// The first half of [`execute`](Self::execute): registers the query on a stack (retrying
    /// safely on a stale strategy) and returns its handle, which [`Connection::cancel_query`]
    /// accepts from any task while [`run`](Self::run) is waiting.
    pub async fn prepare(&mut self, sql: &str) -> Result<QueryHandle> {
        self.clear().await?;
        let sql = sql.trim();
        let sql = sql.strip_suffix(';').unwrap_or(sql).trim_end();
        let q = self.conn.prepare(sql, &self.catalog, &self.database).await?;
        self.conn.query_started();
        self.query = Some(q.clone());
        self.done = false;
        self.description.clear();
        self.rowcount = -1;
        Ok(q)
    }

    /// The second half of [`execute`](Self::execute). Never retried: the query may have run.
    pub async fn run(&mut self) -> Result<()> {
        let q = self.query.clone().ok_or(Error::Usage("prepare a query first"))?;
        let result = async {
            let r = resend!(self.conn.client().execute_statement_v2(self.conn.request(
                ExecuteStatementV2Request {
                    engine_ip: q.engine_ip.clone(),
                    session_id: q.session.clone(),
                    query_id: q.id.clone(),
                    ..Default::default()
                },
                Some(&q.strategy),
                Some(&q.engine_ip),
            )))?
            .into_inner();
            self.conn.observe(r.new_strategy.as_deref());
            self.refresh_metadata().await
        }
        .await;
        if let Err(e) = result {
            let _ = self.clear().await;
            return Err(e);
        }
        Ok(())
    }

    async fn refresh_metadata(&mut self) -> Result<()> {
        let q = self.query.clone().ok_or(Error::Usage("no query"))?;
        let r = resend!(self.conn.client().get_result_metadata(self.conn.query_ref(&q)))?.into_inner();
        self.conn.observe(r.new_strategy.as_deref());
        let (rows, fields) = wire::decode_metadata(&r.result_meta_data)?;
        self.rowcount = rows;
        self.description = fields.into_iter().map(Column::from).collect();
        Ok(())
    }

    /// Asks the server for the current row count (one metadata call).
    pub async fn fetch_rowcount(&mut self) -> Result<i64> {
        self.refresh_metadata().await?;
        Ok(self.rowcount)
    }

    /// The next batch of rows as the server chunked them; `None` at the end.
    pub async fn fetch_batch(&mut self) -> Result<Option<Vec<Row>>> {
        if !self.buffer.is_empty() {
            return Ok(Some(self.buffer.drain(..).collect()));
        }
        if self.done {
            return Ok(None);
        }
        let q = self.query.clone().ok_or(Error::Usage("execute a query first"))?;
        loop {
            let r = resend!(self.conn.client().get_next_result_batch(self.conn.query_ref(&q)))?.into_inner();
            self.conn.observe(r.new_strategy.as_deref());
            match wire::decode_chunk(&r.result_batch, self.description.len())? {
                Some(rows) if rows.is_empty() => continue,
                Some(rows) => return Ok(Some(rows)),
                None => {
                    self.done = true;
                    // Now the total is known: refresh `rowcount`.
                    let _ = self.refresh_metadata().await;
                    // The result is complete: release the query so this connection can follow
                    // a pending switch at once.
                    let _ = self.clear().await;
                    return Ok(None);
                }
            }
        }
    }

    pub async fn fetch_one(&mut self) -> Result<Option<Row>> {
        if self.buffer.is_empty() {
            match self.fetch_batch().await? {
                Some(rows) => self.buffer.extend(rows),
                None => return Ok(None),
            }
        }
        Ok(self.buffer.pop_front())
    }

    pub async fn fetch_many(&mut self, n: usize) -> Result<Vec<Row>> {
        let mut out = Vec::with_capacity(n.min(65_536));
        while out.len() < n {
            if self.buffer.is_empty() {
                match self.fetch_batch().await? {
                    Some(rows) => self.buffer.extend(rows),
                    None => break,
                }
            }
            while out.len() < n {
                match self.buffer.pop_front() {
                    Some(r) => out.push(r),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// Every remaining row, including any a previous `fetch_one`/`fetch_many` buffered (the
    /// real connector drops those).
    pub async fn fetch_all(&mut self) -> Result<Vec<Row>> {
        let mut out: Vec<Row> = self.buffer.drain(..).collect();
        while let Some(rows) = self.fetch_batch().await? {
            out.extend(rows);
        }
        Ok(out)
    }

    /// Stops the running query on the stack that runs it (pinned strategy and `plannerip`).
    pub async fn cancel(&mut self) -> Result<()> {
        let Some(q) = self.query.clone() else { return Ok(()) };
        let r = resend!(self.conn.client().cancel_query(self.conn.query_ref(&q)))?.into_inner();
        self.conn.observe(r.new_strategy.as_deref());
        self.forget();
        Ok(())
    }

    /// Releases the query on the server. Idempotent.
    pub async fn clear(&mut self) -> Result<()> {
        let Some(q) = self.query.clone() else { return Ok(()) };
        self.forget();
        let r = resend!(self.conn.client().clear_or_cancel_query(self.conn.clear_ref(&q)))?.into_inner();
        self.conn.observe(r.new_strategy.as_deref());
        Ok(())
    }

    fn forget(&mut self) {
        if self.query.take().is_some() {
            self.buffer.clear();
            self.conn.query_ended();
        }
    }

    /// Server-side status: (finished, rows so far).
    pub async fn status(&self) -> Result<(bool, i64)> {
        let q = self.query.clone().ok_or(Error::Usage("no query"))?;
        let r = resend!(self.conn.client().status(self.conn.query_ref(&q)))?.into_inner();
        self.conn.observe(r.new_strategy.as_deref());
        Ok((r.status, r.row_count))
    }

    pub async fn explain(&self) -> Result<String> {
        let q = self.query.clone().ok_or(Error::Usage("no query"))?;
        Ok(resend!(self.conn.client().explain(self.conn.query_ref(&q)))?.into_inner().explain)
    }

    pub async fn close(mut self) -> Result<()> {
        self.clear().await
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        // A cursor dropped with a query still registered: release it in the background, so
        // neither the server's registry nor this connection's in-flight count leaks.
        if let Some(q) = self.query.take() {
            let conn = self.conn.clone();
            conn.query_ended();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let req = conn.query_ref(&q);
                let (md, ext, msg) = req.into_parts();
                let req = Request::from_parts(
                    md,
                    ext,
                    ClearOrCancelQueryRequest {
                        engine_ip: msg.engine_ip,
                        session_id: msg.session_id,
                        query_id: msg.query_id,
                        is_done: None,
                    },
                );
                rt.spawn(async move {
                    let _ = conn.client().clear_or_cancel_query(req).await;
                });
            }
        }
    }
}
