//! Queries this instance owns, from prepare until clear. Owning them here (not in the shared
//! database) is what lets an old stack keep serving its queries while the new stack takes new
//! ones; a query's calls are routed back to its owner by the `plannerip` token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_domain::tenant::TenantId;
use strata_store::query::{Canceller, ColumnDesc, QueryError, RunningQuery};

pub enum QState {
    Prepared,
    Running { q: Box<RunningQuery>, columns: Vec<ColumnDesc> },
    Failed(QueryError),
}

pub struct Entry {
    pub id: String,
    pub tenant: TenantId,
    pub sql: String,
    pub prepared_at: Instant,
    pub parse_ms: u64,
    pub started_at: Mutex<Option<Instant>>,
    pub finished_at: Mutex<Option<Instant>>,
    last_used: Mutex<Instant>,
    canceller: Mutex<Option<Canceller>>,
    cancelled: AtomicBool,
    pub rows_sent: AtomicU64,
    /// Set at execute: a query that was only prepared is forgotten sooner when idle.
    pub executed: AtomicBool,
    pub finished: AtomicBool,
    pub state: tokio::sync::Mutex<QState>,
}

impl Entry {
    pub fn new(id: String, tenant: TenantId, sql: String, parse_ms: u64) -> Self {
        let now = Instant::now();
        Self {
            id,
            tenant,
            sql,
            prepared_at: now,
            parse_ms,
            started_at: Mutex::new(None),
            finished_at: Mutex::new(None),
            last_used: Mutex::new(now),
            canceller: Mutex::new(None),
            cancelled: AtomicBool::new(false),
            rows_sent: AtomicU64::new(0),
            executed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            state: tokio::sync::Mutex::new(QState::Prepared),
        }
    }

    pub fn touch(&self) {
        *self.last_used.lock().unwrap() = Instant::now();
    }

    /// Remembers how to stop the running query; false if it was cancelled before it started.
    pub fn set_canceller(&self, c: Canceller) -> bool {
        *self.canceller.lock().unwrap() = Some(c.clone());
        if self.cancelled.load(Ordering::SeqCst) {
            c.cancel();
            return false;
        }
        true
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Stops the query wherever it is; never waits for a reader holding the state.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(c) = self.canceller.lock().unwrap().as_ref() {
            c.cancel();
        }
    }

    pub fn mark_finished(&self) {
        if !self.finished.swap(true, Ordering::SeqCst) {
            *self.finished_at.lock().unwrap() = Some(Instant::now());
        }
    }
}

#[derive(Default)]
pub struct Registry {
    map: Mutex<HashMap<String, Arc<Entry>>>,
}

impl Registry {
    pub fn insert(&self, e: Arc<Entry>) {
        self.map.lock().unwrap().insert(e.id.clone(), e);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.map.lock().unwrap().get(id).cloned()
    }

    /// Cancels and forgets a query. Unknown ids are fine: clears repeat, and arrive empty.
    pub fn remove(&self, id: &str) -> bool {
        let e = self.map.lock().unwrap().remove(id);
        match e {
            Some(e) => {
                e.cancel();
                true
            }
            None => false,
        }
    }

    /// Queries of one tenant.
    pub fn count_of(&self, tenant: &TenantId) -> usize {
        self.map.lock().unwrap().values().filter(|e| &e.tenant == tenant).count()
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn cancel_all(&self, why: &str) -> usize {
        let all: Vec<_> = self.map.lock().unwrap().drain().map(|(_, e)| e).collect();
        for e in &all {
            tracing::info!(query = %e.id, reason = why, "query cancelled");
            e.cancel();
        }
        all.len()
    }

    /// Forgets queries nobody has touched for `idle` (a client that vanished without a clear);
    /// queries never executed (a prepare whose answer was lost) after a minute, so they do not
    /// hold up a drain.
    pub fn reap_idle(&self, idle: Duration) -> usize {
        let now = Instant::now();
        let stale: Vec<Arc<Entry>> = {
            let mut map = self.map.lock().unwrap();
            let ids: Vec<String> = map
                .iter()
                .filter(|(_, e)| {
                    let limit =
                        if e.executed.load(Ordering::Relaxed) { idle } else { idle.min(Duration::from_secs(60)) };
                    now.duration_since(*e.last_used.lock().unwrap()) > limit
                })
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter().filter_map(|k| map.remove(k)).collect()
        };
        for e in &stale {
            e.cancel();
        }
        stale.len()
    }
}
