//! Background jobs, all under one [`Supervisor`] with one shutdown path: a job gets a [`Stop`]
//! signal and ends its loop when it fires; [`Supervisor::shutdown`] fires it, waits a grace
//! period for every job to finish what it is doing, and aborts whatever is still running, so
//! no job outlives the server that started it.

pub mod outbox;

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

/// The stop signal a job watches.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

impl Stop {
    /// Resolves once the supervisor is shutting down (at once if it already is).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}

pub struct Supervisor {
    stop: watch::Sender<bool>,
    jobs: JoinSet<&'static str>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Self { stop: watch::Sender::new(false), jobs: JoinSet::new() }
    }

    /// Starts `job`, named for the logs, with its stop signal.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, job: F)
    where
        F: FnOnce(Stop) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let fut = job(Stop(self.stop.subscribe()));
        self.jobs.spawn(async move {
            fut.await;
            name
        });
        tracing::debug!(job = name, "background job started");
    }

    /// How many jobs are running.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Signals every job to stop, waits up to `grace` for them, then aborts the rest.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.send_replace(true);
        let finished = tokio::time::timeout(grace, async {
            while let Some(done) = self.jobs.join_next().await {
                if let Ok(name) = done {
                    tracing::debug!(job = name, "background job stopped");
                }
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                jobs = self.jobs.len(),
                grace_ms = grace.as_millis() as u64,
                "background jobs did not stop within the grace period; aborting them"
            );
            self.jobs.abort_all();
            while self.jobs.join_next().await.is_some() {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_cooperative_jobs_and_aborts_the_rest_after_the_grace_period() {
        let mut jobs = Supervisor::new();
        let stopped = Arc::new(AtomicBool::new(false));
        let s = stopped.clone();
        jobs.spawn("cooperative", |mut stop| async move {
            stop.wait().await;
            s.store(true, Ordering::SeqCst);
        });
        let never = Arc::new(AtomicBool::new(false));
        let n = never.clone();
        jobs.spawn("stubborn", |_| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            n.store(true, Ordering::SeqCst);
        });
        assert_eq!(jobs.len(), 2);
        let started = tokio::time::Instant::now();
        jobs.shutdown(Duration::from_secs(5)).await;
        assert!(stopped.load(Ordering::SeqCst), "the cooperative job saw the signal");
        assert!(!never.load(Ordering::SeqCst), "the stubborn job was aborted, not waited for");
        assert!(started.elapsed() <= Duration::from_secs(6), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_stop_taken_after_shutdown_began_is_already_set() {
        let jobs = Supervisor::new();
        let mut stop = Stop(jobs.stop.subscribe());
        jobs.stop.send_replace(true);
        stop.wait().await;
        assert!(stop.is_set());
    }
}
