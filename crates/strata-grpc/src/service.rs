//! The e6data `QueryEngineService` and `ClusterService`: parse the request, check the session
//! and the blue/green strategy, hand the work to the query engine, encode the answer. Every
//! wire detail (and every client quirk tolerated) is from ../shared/protocols/e6data-wire.md.
//!
//! Size: about 680 lines: the two services' `impl` blocks as tonic's traits shape them, one
//! method per RPC, each short; the helpers they share sit beside them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_client::proto::cluster_service_server::ClusterService;
use strata_client::proto::query_engine_service_server::QueryEngineService;
use strata_client::proto::*;
use strata_client::wire::{self, FieldInfo, VectorData, VectorOut};
use strata_domain::tenant::{looks_like_api_key, KeyHash, SessionScope, TenantId};
use strata_store::deploy::Stack;
use strata_store::query::{Batch, ColKind, ColumnDesc, ColumnValues, QueryError, QueryOptions};
use strata_store::Store;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::gate::Gate;
use crate::registry::{Entry, QState, Registry};

/// The exact error every e6data client version recognises as "wrong strategy".
pub fn strategy_mismatch() -> Status {
    Status::unknown("status: 456")
}

/// The catalog name clients pass; Strata has one.
pub const CATALOG: &str = "strata";

const SESSION_TTL_SECS: i64 = 12 * 3600;
const SESSION_CACHE: Duration = Duration::from_secs(60);

pub struct Engine {
    pub store: Store,
    pub gate: Gate,
    pub registry: Arc<Registry>,
    pub opts: QueryOptions,
    /// Queries one instance holds at once (each may buffer two batches): a client that
    /// prepares without ever clearing gets RESOURCE_EXHAUSTED instead of exhausting memory.
    pub max_queries: usize,
    /// This instance's id; query ids start with it, so any instance can tell a query's owner.
    pub instance_id: String,
    /// Registered queries one tenant may hold here.
    pub max_queries_per_tenant: usize,
    sessions: Mutex<HashMap<String, (TenantId, Instant)>>,
}

impl Engine {
    pub fn new(
        store: Store,
        gate: Gate,
        registry: Arc<Registry>,
        opts: QueryOptions,
        max_queries: usize,
        instance_id: String,
    ) -> Self {
        Self {
            store,
            gate,
            registry,
            opts,
            max_queries,
            instance_id,
            max_queries_per_tenant: 256,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn header_strategy(md: &MetadataMap) -> Option<Stack> {
        md.get("strategy").and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok())
    }

    /// `new_strategy` for a response to a client that sent `md`.
    fn announce(&self, md: &MetadataMap) -> Option<String> {
        self.gate.state().announce_for(Self::header_strategy(md)).map(|s| s.as_str().to_string())
    }

    /// New work (sessions, queries, catalog calls) only where the strategy header names a
    /// stack that takes new work, and only on an instance of such a stack.
    fn admit_new_work(&self, md: &MetadataMap) -> Result<(), Status> {
        let state = self.gate.state();
        if !state.accepts(self.gate.stack) {
            return Err(strategy_mismatch());
        }
        match md.get("strategy").map(|v| v.to_str().ok().and_then(|s| s.parse::<Stack>().ok())) {
            None => Ok(()), // no header: judged by the session, not as a mismatch
            Some(Some(s)) if state.accepts(s) => Ok(()),
            Some(_) => Err(strategy_mismatch()),
        }
    }

    /// The tenant of a session. Unknown or expired sessions get the answer on which the real
    /// connector re-authenticates and retries.
    async fn tenant(&self, session: &str) -> Result<TenantId, Status> {
        if session.is_empty() || session.len() > 256 {
            return Err(access_denied());
        }
        if let Some((t, at)) = self.sessions.lock().unwrap().get(session) {
            if at.elapsed() < SESSION_CACHE {
                return Ok(t.clone());
            }
        }
        match self.store.sessions().tenant(session, SessionScope::Sql).await {
            Ok(Some(t)) => {
                let mut cache = self.sessions.lock().unwrap();
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(session.to_string(), (t.clone(), Instant::now()));
                Ok(t)
            }
            Ok(None) => Err(access_denied()),
            Err(e) => Err(Status::unavailable(format!("storage is unavailable: {e}"))),
        }
    }

    /// A registered query of this tenant; another tenant's id looks exactly like an unknown one.
    async fn entry(&self, session: &str, query_id: &str) -> Result<Arc<Entry>, Status> {
        let tenant = self.tenant(session).await?;
        match self.registry.get(query_id) {
            Some(e) if e.tenant == tenant => {
                e.touch();
                Ok(e)
            }
            _ => Err(Status::not_found(format!(
                "no query `{}` on this server: it was cleared, or never prepared",
                query_id.chars().take(64).collect::<String>()
            ))),
        }
    }

    async fn prepare(&self, md: &MetadataMap, session: &str, sql: &str) -> Result<PrepareStatementResponse, Status> {
        self.admit_new_work(md)?;
        let tenant = self.tenant(session).await?;
        if self.registry.len() >= self.max_queries {
            return Err(Status::resource_exhausted(format!(
                "this server holds {} open queries; clear finished cursors and retry",
                self.max_queries
            )));
        }
        if self.registry.count_of(&tenant) >= self.max_queries_per_tenant {
            return Err(Status::resource_exhausted(format!(
                "you hold {} open queries on this server, the most one tenant may; clear finished cursors and retry",
                self.max_queries_per_tenant
            )));
        }
        let t0 = Instant::now();
        self.store.check_query(&tenant, sql).await.map_err(query_status)?;
        let parse_ms = t0.elapsed().as_millis() as u64;
        let id = format!("{}.{}", self.instance_id, uuid::Uuid::now_v7().simple());
        self.registry.insert(Arc::new(Entry::new(id.clone(), tenant, sql.to_string(), parse_ms)));
        metrics::counter!("strata_grpc_queries_prepared_total").increment(1);
        Ok(PrepareStatementResponse {
            engine_ip: self.gate.stack.as_str().to_string(),
            query_id: id,
            session_id: session.to_string(),
            new_strategy: self.announce(md),
        })
    }

    async fn execute(
        &self,
        md: &MetadataMap,
        session: &str,
        query_id: &str,
    ) -> Result<ExecuteStatementResponse, Status> {
        let e = self.entry(session, query_id).await?;
        e.executed.store(true, Ordering::Relaxed);
        let mut st = e.state.lock().await;
        if let QState::Prepared = &*st {
            *e.started_at.lock().unwrap() = Some(Instant::now());
            let result = async {
                let mut q = self.store.start_query(&e.tenant, &e.sql, self.opts).await?;
                if !e.set_canceller(q.canceller()) {
                    return Err(QueryError::Cancelled);
                }
                let columns = q.columns().await?.to_vec();
                // Read ahead one batch: a small result then knows its row count at once.
                q.peek_end().await?;
                Ok((q, columns))
            }
            .await;
            match result {
                Ok((q, columns)) => {
                    if q.total_rows().is_some() {
                        e.mark_finished();
                    }
                    *st = QState::Running { q: Box::new(q), columns };
                }
                Err(err) => {
                    e.mark_finished();
                    metrics::counter!("strata_grpc_queries_failed_total").increment(1);
                    *st = QState::Failed(err.clone());
                    return Err(query_status(err));
                }
            }
        } else if let QState::Failed(err) = &*st {
            return Err(query_status(err.clone()));
        }
        Ok(ExecuteStatementResponse { session_id: session.to_string(), new_strategy: self.announce(md) })
    }

    async fn next_chunk(&self, e: &Entry) -> Result<Option<Vec<u8>>, Status> {
        let mut st = e.state.lock().await;
        match &mut *st {
            QState::Prepared => Err(Status::failed_precondition("execute the query before fetching")),
            QState::Failed(err) => Err(query_status(err.clone())),
            QState::Running { q, columns } => match q.next_batch().await {
                Ok(Some(b)) => {
                    e.rows_sent.fetch_add(b.rows as u64, Ordering::Relaxed);
                    if q.total_rows().is_some() {
                        e.mark_finished();
                    }
                    Ok(Some(encode_batch(&b, columns)))
                }
                Ok(None) => {
                    e.mark_finished();
                    Ok(None)
                }
                Err(err) => {
                    e.mark_finished();
                    *st = QState::Failed(err.clone());
                    Err(query_status(err))
                }
            },
        }
    }
}

/// Marks a cancel or clear one instance passed to another, so it is never passed on again.
const FORWARDED: &str = "x-strata-forwarded";

impl Engine {
    /// The live instance that owns `query_id`, when it is not this one.
    async fn owner_elsewhere(&self, md: &MetadataMap, query_id: &str) -> Option<strata_store::deploy::Instance> {
        if md.contains_key(FORWARDED) {
            return None;
        }
        let (owner, _) = query_id.split_once('.')?;
        if owner == self.instance_id || self.registry.get(query_id).is_some() {
            return None;
        }
        let live = self.store.instances(5_000).await.ok()?;
        live.into_iter().find(|i| i.id == owner)
    }

    /// Passes a cancel or clear to the instance that owns the query: a client that reached the
    /// wrong stack (the real connector sends cancel with its *active* strategy) still stops it.
    async fn forward(&self, owner: &strata_store::deploy::Instance, session: &str, query_id: &str, cancel: bool) {
        use strata_client::proto::query_engine_service_client::QueryEngineServiceClient;
        let call = async {
            let mut c = QueryEngineServiceClient::connect(format!("http://{}", owner.grpc_addr)).await.ok()?;
            fn mk<T>(msg: T, stack: &str) -> Request<T> {
                let mut r = Request::new(msg);
                r.metadata_mut().insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
                if let Ok(v) = stack.parse() {
                    r.metadata_mut().insert("strategy", v);
                }
                r
            }
            let q = QueryRef {
                engine_ip: owner.stack.to_string(),
                session_id: session.to_string(),
                query_id: query_id.to_string(),
            };
            if cancel {
                c.cancel_query(mk(q, owner.stack.as_str())).await.ok()
            } else {
                let q = ClearOrCancelQueryRequest {
                    engine_ip: q.engine_ip,
                    session_id: q.session_id,
                    query_id: q.query_id,
                    is_done: None,
                };
                c.clear_or_cancel_query(mk(q, owner.stack.as_str())).await.ok()
            }
        };
        match tokio::time::timeout(Duration::from_secs(3), call).await {
            Ok(Some(_)) => {
                tracing::info!(query = %query_id, owner = %owner.id, cancel, "passed to the owning instance")
            }
            _ => {
                tracing::warn!(query = %query_id, owner = %owner.id, "could not reach the instance that owns the query")
            }
        }
    }
}

fn access_denied() -> Status {
    Status::internal("Access denied: unknown or expired session; authenticate again")
}

pub fn query_status(e: QueryError) -> Status {
    match e {
        // Never "status: 503": that string makes the connector try to resume a cluster.
        QueryError::Storage(_) => crate::error::status_with(&e, "storage is unavailable; try again"),
        _ => crate::error::status(&e),
    }
}

/// One engine batch as one Thrift `Chunk`.
pub fn encode_batch(b: &Batch, columns: &[ColumnDesc]) -> Vec<u8> {
    let vectors: Vec<VectorOut<'_>> = b
        .columns
        .iter()
        .zip(columns)
        .map(|(c, desc)| VectorOut {
            nulls: &c.nulls,
            data: match &c.values {
                ColumnValues::Long(v) => VectorData::Long(v),
                ColumnValues::Double(v) => VectorData::Double(v),
                ColumnValues::Boolean(v) => VectorData::Boolean(v),
                ColumnValues::Text(v) => VectorData::String(v),
                ColumnValues::Micros(v) if desc.kind == ColKind::Date => VectorData::Date(v),
                ColumnValues::Micros(v) => VectorData::DateTime(v),
                ColumnValues::Decimal { unscaled, scale } => VectorData::Decimal { unscaled, scale: *scale },
            },
        })
        .collect();
    wire::encode_chunk(b.rows, &vectors)
}

#[derive(Clone)]
pub struct QuerySvc(pub Arc<Engine>);

#[tonic::async_trait]
impl QueryEngineService for QuerySvc {
    async fn authenticate(&self, r: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        let e = &self.0;
        e.admit_new_work(r.metadata())?;
        let new_strategy = e.announce(r.metadata());
        let req = r.into_inner();
        // Bad credentials: OK with an empty session id, which both connector versions turn into
        // "Invalid credentials." (an error status would be swallowed by 2.3.15).
        let denied = || {
            Ok(Response::new(AuthenticateResponse { session_id: String::new(), new_strategy: None, engine_ip: None }))
        };
        let Ok(user) = req.user.parse::<TenantId>() else { return denied() };
        if !looks_like_api_key(&req.password) {
            return denied();
        }
        match e.store.tenants().authenticate(&KeyHash::of(&req.password)).await {
            Ok(Some(t)) if t == user => {}
            Ok(_) => {
                tracing::info!(tenant = %user, "gRPC login refused");
                return denied();
            }
            Err(err) => return Err(Status::unavailable(format!("storage is unavailable: {err}"))),
        }
        let token = e
            .store
            .sessions()
            .create(&user, SessionScope::Sql, SESSION_TTL_SECS)
            .await
            .map_err(|err| Status::unavailable(err.to_string()))?;
        Ok(Response::new(AuthenticateResponse {
            session_id: token.expose().to_string(),
            new_strategy,
            engine_ip: Some(e.gate.stack.as_str().to_string()),
        }))
    }

    async fn prepare_statement(
        &self,
        r: Request<PrepareStatementRequest>,
    ) -> Result<Response<PrepareStatementResponse>, Status> {
        let (md, _, req) = r.into_parts();
        Ok(Response::new(self.0.prepare(&md, &req.session_id, &req.query_string).await?))
    }

    async fn prepare_statement_v2(
        &self,
        r: Request<PrepareStatementV2Request>,
    ) -> Result<Response<PrepareStatementResponse>, Status> {
        let (md, _, req) = r.into_parts();
        if !req.catalog.is_empty() && !req.catalog.eq_ignore_ascii_case(CATALOG) {
            self.0.admit_new_work(&md)?;
            return Err(Status::not_found(format!("no catalog `{}`: Strata has one, `{CATALOG}`", req.catalog)));
        }
        Ok(Response::new(self.0.prepare(&md, &req.session_id, &req.query_string).await?))
    }

    async fn execute_statement(
        &self,
        r: Request<ExecuteStatementRequest>,
    ) -> Result<Response<ExecuteStatementResponse>, Status> {
        let (md, _, req) = r.into_parts();
        Ok(Response::new(self.0.execute(&md, &req.session_id, &req.query_id).await?))
    }

    async fn execute_statement_v2(
        &self,
        r: Request<ExecuteStatementV2Request>,
    ) -> Result<Response<ExecuteStatementResponse>, Status> {
        let (md, _, req) = r.into_parts();
        if !req.params.is_empty() {
            return Err(Status::invalid_argument(
                "server-side parameters are not supported; the connector substitutes them",
            ));
        }
        Ok(Response::new(self.0.execute(&md, &req.session_id, &req.query_id).await?))
    }

    async fn get_result_metadata(&self, r: Request<QueryRef>) -> Result<Response<GetResultMetadataResponse>, Status> {
        let (md, _, req) = r.into_parts();
        let e = self.0.entry(&req.session_id, &req.query_id).await?;
        let st = e.state.lock().await;
        let blob = match &*st {
            QState::Prepared => {
                return Err(Status::failed_precondition("execute the query before reading its metadata"))
            }
            QState::Failed(err) => return Err(query_status(err.clone())),
            QState::Running { q, columns } => {
                let rows = q.total_rows().map_or(-1, |n| n as i64);
                let fields: Vec<FieldInfo> = columns
                    .iter()
                    .map(|c| FieldInfo { name: c.name.clone(), type_name: c.kind.type_name().to_string() })
                    .collect();
                wire::encode_metadata(rows, &fields)
            }
        };
        Ok(Response::new(GetResultMetadataResponse {
            result_meta_data: blob,
            session_id: req.session_id,
            new_strategy: self.0.announce(&md),
        }))
    }

    async fn get_next_result_batch(
        &self,
        r: Request<QueryRef>,
    ) -> Result<Response<GetNextResultBatchResponse>, Status> {
        let (md, _, req) = r.into_parts();
        let e = self.0.entry(&req.session_id, &req.query_id).await?;
        let chunk = self.0.next_chunk(&e).await?;
        Ok(Response::new(GetNextResultBatchResponse {
            result_batch: chunk.unwrap_or_default(),
            session_id: req.session_id,
            new_strategy: self.0.announce(&md),
        }))
    }

    async fn get_next_result_batch_v2(
        &self,
        r: Request<QueryRef>,
    ) -> Result<Response<GetNextResultBatchV2Response>, Status> {
        let (md, _, req) = r.into_parts();
        let e = self.0.entry(&req.session_id, &req.query_id).await?;
        let chunk = self.0.next_chunk(&e).await?;
        let end = chunk.is_none();
        Ok(Response::new(GetNextResultBatchV2Response {
            result_batches: chunk.into_iter().collect(),
            session_id: req.session_id,
            new_strategy: self.0.announce(&md),
            end_of_stream: end,
        }))
    }

    async fn status(&self, r: Request<QueryRef>) -> Result<Response<StatusResponse>, Status> {
        let (md, _, req) = r.into_parts();
        let e = self.0.entry(&req.session_id, &req.query_id).await?;
        Ok(Response::new(StatusResponse {
            status: e.finished.load(Ordering::SeqCst),
            row_count: e.rows_sent.load(Ordering::Relaxed) as i64,
            session_id: req.session_id,
            new_strategy: self.0.announce(&md),
        }))
    }

    async fn clear_or_cancel_query(
        &self,
        r: Request<ClearOrCancelQueryRequest>,
    ) -> Result<Response<ClearResponse>, Status> {
        let (md, _, req) = r.into_parts();
        clear(&self.0, &md, &req.session_id, &req.query_id).await
    }

    async fn clear(&self, r: Request<QueryRef>) -> Result<Response<ClearResponse>, Status> {
        let (md, _, req) = r.into_parts();
        clear(&self.0, &md, &req.session_id, &req.query_id).await
    }

    async fn cancel_query(&self, r: Request<QueryRef>) -> Result<Response<ClearResponse>, Status> {
        let (md, _, req) = r.into_parts();
        // Idempotent, and OK for ids this server does not know: the client must not fail its
        // cleanup. A query another live instance owns gets the cancel passed on.
        if let Some(owner) = self.0.owner_elsewhere(&md, &req.query_id).await {
            if self.0.tenant(&req.session_id).await.is_ok() {
                self.0.forward(&owner, &req.session_id, &req.query_id, true).await;
            }
        } else if let Ok(t) = self.0.tenant(&req.session_id).await {
            if let Some(e) = self.0.registry.get(&req.query_id) {
                if e.tenant == t {
                    tracing::info!(query = %e.id, "query cancelled by the client");
                    e.cancel();
                }
            }
        }
        Ok(Response::new(ClearResponse { session_id: req.session_id, new_strategy: self.0.announce(&md) }))
    }

    async fn explain(&self, r: Request<QueryRef>) -> Result<Response<ExplainResponse>, Status> {
        let (md, _, req) = r.into_parts();
        let e = self.0.entry(&req.session_id, &req.query_id).await?;
        let plan = self.0.store.explain_query(&e.tenant, &e.sql).await.map_err(query_status)?;
        Ok(Response::new(ExplainResponse {
            explain: plan,
            session_id: req.session_id,
            new_strategy: self.0.announce(&md),
        }))
    }

    async fn explain_analyze(&self, r: Request<QueryRef>) -> Result<Response<ExplainAnalyzeResponse>, Status> {
        let (md, _, req) = r.into_parts();
        let e = self.0.entry(&req.session_id, &req.query_id).await?;
        let plan = self.0.store.explain_query(&e.tenant, &e.sql).await.map_err(query_status)?;
        let started = *e.started_at.lock().unwrap();
        let finished = *e.finished_at.lock().unwrap();
        let queue_ms = started.map_or(0, |s| s.duration_since(e.prepared_at).as_millis() as i64);
        let total_ms = match (started, finished) {
            (Some(s), Some(f)) => f.duration_since(s).as_millis() as i64,
            (Some(s), None) => s.elapsed().as_millis() as i64,
            _ => 0,
        };
        let doc = serde_json::json!({
            "total_query_time": total_ms,
            "executionQueueingTime": queue_ms,
            "parsingTime": e.parse_ms,
            "rows": e.rows_sent.load(Ordering::Relaxed),
            "finished": e.finished.load(Ordering::SeqCst),
            "plan": plan,
        });
        Ok(Response::new(ExplainAnalyzeResponse {
            explain_analyze: doc.to_string(),
            is_cached: false,
            parsing_time: e.parse_ms as i64,
            queueing_time: queue_ms,
            session_id: req.session_id,
            new_strategy: self.0.announce(&md),
        }))
    }

    async fn get_schema_names_v2(
        &self,
        r: Request<GetSchemaNamesV2Request>,
    ) -> Result<Response<GetSchemaNamesResponse>, Status> {
        let (md, _, req) = r.into_parts();
        self.0.admit_new_work(&md)?;
        let tenant = self.0.tenant(&req.session_id).await?;
        let mut schemas: Vec<String> = if catalog_ok(&req.catalog) {
            self.0.store.query_catalog(&tenant).await.map_err(query_status)?.into_iter().map(|t| t.schema).collect()
        } else {
            Vec::new()
        };
        schemas.sort();
        schemas.dedup();
        Ok(Response::new(GetSchemaNamesResponse {
            schemas,
            session_id: req.session_id,
            new_strategy: self.0.announce(&md),
        }))
    }

    async fn get_tables_v2(&self, r: Request<GetTablesV2Request>) -> Result<Response<GetTablesResponse>, Status> {
        let (md, _, req) = r.into_parts();
        self.0.admit_new_work(&md)?;
        let tenant = self.0.tenant(&req.session_id).await?;
        let tables = if catalog_ok(&req.catalog) {
            self.0
                .store
                .query_catalog(&tenant)
                .await
                .map_err(query_status)?
                .into_iter()
                .filter(|t| req.schema.is_empty() || t.schema.eq_ignore_ascii_case(&req.schema))
                .map(|t| t.name)
                .collect()
        } else {
            Vec::new()
        };
        Ok(Response::new(GetTablesResponse { tables, session_id: req.session_id, new_strategy: self.0.announce(&md) }))
    }

    async fn get_columns_v2(&self, r: Request<GetColumnsV2Request>) -> Result<Response<GetColumnsResponse>, Status> {
        let (md, _, req) = r.into_parts();
        self.0.admit_new_work(&md)?;
        let tenant = self.0.tenant(&req.session_id).await?;
        let table = self
            .0
            .store
            .query_catalog(&tenant)
            .await
            .map_err(query_status)?
            .into_iter()
            .find(|t| {
                catalog_ok(&req.catalog)
                    && t.name.eq_ignore_ascii_case(&req.table)
                    && (req.schema.is_empty() || t.schema.eq_ignore_ascii_case(&req.schema))
            })
            .ok_or_else(|| Status::not_found(format!("no table `{}.{}`", req.schema, req.table)))?;
        let field_info = table
            .columns
            .iter()
            .map(|c| GFieldInfo { field_name: c.name.clone(), field_type: c.kind.sql_type_name().to_string() })
            .collect();
        Ok(Response::new(GetColumnsResponse {
            field_info,
            session_id: req.session_id,
            new_strategy: self.0.announce(&md),
        }))
    }

    async fn get_cataloges(&self, r: Request<GetCatalogesRequest>) -> Result<Response<GetCatalogesResponse>, Status> {
        self.0.admit_new_work(r.metadata())?;
        Ok(Response::new(GetCatalogesResponse {
            catalog_responses: vec![CatalogResponse { name: CATALOG.to_string(), is_default: true }],
        }))
    }

    async fn dry_run(&self, r: Request<DryRunRequest>) -> Result<Response<DryRunResponse>, Status> {
        let (md, _, req) = r.into_parts();
        dry_run(&self.0, &md, &req.session_id, &req.query_string).await
    }

    async fn dry_run_v2(&self, r: Request<DryRunRequestV2>) -> Result<Response<DryRunResponse>, Status> {
        let (md, _, req) = r.into_parts();
        dry_run(&self.0, &md, &req.session_id, &req.query_string).await
    }
}

fn catalog_ok(c: &str) -> bool {
    c.is_empty() || c.eq_ignore_ascii_case(CATALOG)
}

async fn clear(e: &Engine, md: &MetadataMap, session: &str, query_id: &str) -> Result<Response<ClearResponse>, Status> {
    if let Some(owner) = e.owner_elsewhere(md, query_id).await {
        if e.tenant(session).await.is_ok() {
            e.forward(&owner, session, query_id, false).await;
        }
    } else if !query_id.is_empty() {
        if let Ok(t) = e.tenant(session).await {
            if e.registry.get(query_id).is_some_and(|q| q.tenant == t) {
                e.registry.remove(query_id);
            }
        }
    }
    Ok(Response::new(ClearResponse { session_id: session.to_string(), new_strategy: e.announce(md) }))
}

async fn dry_run(e: &Engine, md: &MetadataMap, session: &str, sql: &str) -> Result<Response<DryRunResponse>, Status> {
    e.admit_new_work(md)?;
    let tenant = e.tenant(session).await?;
    let doc = match e.store.check_query(&tenant, sql).await {
        Ok(checked) => serde_json::json!({"valid": true, "query": checked}),
        Err(QueryError::Storage(m)) => return Err(Status::unavailable(m)),
        Err(err) => serde_json::json!({"valid": false, "error": err.to_string()}),
    };
    Ok(Response::new(DryRunResponse { dryrun_value: doc.to_string() }))
}

/// Strata never suspends: the cluster is always `active`.
pub struct ClusterSvc;

#[tonic::async_trait]
impl ClusterService for ClusterSvc {
    async fn status(&self, _r: Request<ClusterRequest>) -> Result<Response<ClusterStatusResponse>, Status> {
        Ok(Response::new(ClusterStatusResponse { status: "active".into() }))
    }
    async fn resume(&self, _r: Request<ClusterRequest>) -> Result<Response<ClusterStatusResponse>, Status> {
        Ok(Response::new(ClusterStatusResponse { status: "active".into() }))
    }
    async fn suspend(&self, _r: Request<ClusterRequest>) -> Result<Response<ClusterStatusResponse>, Status> {
        Err(Status::failed_precondition("Strata does not suspend; stop the stack's instances instead"))
    }
}
