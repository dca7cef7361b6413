//! Tasks with an owner: every task a node or a relay spawns runs under one
//! cancellation token and is tracked, so the handle that owns them can stop
//! them all, and wait for them, to a deadline.
//!
//! - [`Tasks::spawn`] runs a piece of work (a connection, a stream, a
//!   keeper watcher) until it ends or the owner cancels: a cancelled task
//!   is aborted, so it is dropped at its next await point. A panic in one
//!   of them stops only that task: one bad stream must not take a daemon
//!   down. Such a task is polled on every byte a stream moves, so it does
//!   not watch the token itself (each poll of a token's `cancelled()`
//!   takes the token's lock, which a hundred streams would contend on):
//!   the set keeps its abort handle instead.
//! - [`Tasks::supervise`] runs one of the owner's long-lived loops (the
//!   accept loop, gossip sync, a tunnel, the metrics server). Such a loop
//!   is not supposed to end: if it panics or returns, the owner is
//!   cancelled as a whole and [`Tasks::failed`] tells why, so a daemon
//!   never runs on with half of itself gone.
//!
//! The set is a `TaskTracker` rather than a `JoinSet`: per-stream tasks
//! come and go by the thousand, and a tracker forgets a finished task at
//! once where a `JoinSet` keeps its result until someone joins it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::{AbortHandle, Id};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::error;

/// The tasks of one owner (a node or a relay handle).
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    token: CancellationToken,
    tracker: TaskTracker,
    failure: Arc<Mutex<Option<String>>>,
    /// Abort handles of the tasks of [`Tasks::spawn`] still running.
    running: Arc<Mutex<HashMap<Id, AbortHandle>>>,
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// The token every task of this set stops on.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Whether the owner is stopping.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Runs `work` until it ends or the set is cancelled.
    pub fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.token.is_cancelled() {
            return;
        }
        let running = self.running.clone();
        let h = self.tracker.spawn(async move {
            work.await;
            running
                .lock()
                .expect("tasks lock")
                .remove(&tokio::task::id());
        });
        let mut map = self.running.lock().expect("tasks lock");
        // A task that ended before it was registered is not registered.
        if !h.is_finished() {
            map.insert(h.id(), h.abort_handle());
        }
        drop(map);
        // Cancelled meanwhile: the sweep in `cancel` may have missed it.
        if self.token.is_cancelled() {
            h.abort();
        }
    }

    /// Runs one of the owner's long-lived loops: should it end or panic
    /// while the owner runs, the whole set is cancelled.
    pub fn supervise<F>(&self, name: &'static str, work: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let token = self.token.clone();
        let failure = self.failure.clone();
        let inner = self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => Ok(()),
                r = work => r.and_then(|()| {
                    anyhow::bail!("it ended while the owner was running")
                }),
            }
        });
        let token = self.token.clone();
        let running = self.running.clone();
        self.tracker.spawn(async move {
            let why = match inner.await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => format!("{name} failed: {e:#}"),
                Err(e) if e.is_panic() => format!("{name} panicked: {e}"),
                Err(e) => format!("{name} stopped: {e}"),
            };
            if !token.is_cancelled() {
                error!(task = name, %why, "stopping");
                failure.lock().expect("failure lock").get_or_insert(why);
                cancel_all(&token, &running);
            }
        });
    }

    /// Resolves once the set is cancelled, with why: the failed loop's
    /// reason, or "the {owner} was stopped".
    pub async fn stopped(&self, owner: &str) -> String {
        self.cancelled().await;
        self.failed()
            .unwrap_or_else(|| format!("the {owner} was stopped"))
    }

    /// [`Tasks::shutdown`], logging the tasks still alive at the deadline.
    pub async fn drain(&self, deadline: Duration) {
        if !self.shutdown(deadline).await {
            tracing::warn!(
                left = self.len(),
                "tasks still running after the shutdown deadline"
            );
        }
    }

    /// Why a supervised loop stopped the set, if one did.
    pub fn failed(&self) -> Option<String> {
        self.failure.lock().expect("failure lock").clone()
    }

    /// Resolves once the set is cancelled (by its owner or by a failed
    /// supervised loop).
    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// Stops every task without waiting.
    pub fn cancel(&self) {
        cancel_all(&self.token, &self.running);
    }

    /// Tasks alive now.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task is alive.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Cancels every task and waits until they are gone, at most `deadline`.
    /// Returns whether they all stopped in time.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.cancel();
        self.tracker.close();
        tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Cancels the token (the supervised loops watch it) and aborts every
/// spawned task.
fn cancel_all(token: &CancellationToken, running: &Mutex<HashMap<Id, AbortHandle>>) {
    token.cancel();
    for (_, h) in running.lock().expect("tasks lock").drain() {
        h.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_stops_every_task() {
        let t = Tasks::new();
        for _ in 0..10 {
            t.spawn(std::future::pending());
        }
        t.supervise("loop", async {
            std::future::pending::<()>().await;
            Ok(())
        });
        assert_eq!(t.len(), 12);
        assert!(t.shutdown(Duration::from_secs(1)).await);
        assert!(t.is_empty());
        assert!(t.failed().is_none());
    }

    #[tokio::test]
    async fn a_failed_loop_cancels_the_owner() {
        let t = Tasks::new();
        t.spawn(std::future::pending());
        t.supervise("accept loop", async { anyhow::bail!("socket closed") });
        tokio::time::timeout(Duration::from_secs(1), t.cancelled())
            .await
            .unwrap();
        assert!(t
            .failed()
            .unwrap()
            .contains("accept loop failed: socket closed"));
        // The pending task was aborted with the owner, without a shutdown.
        tokio::time::timeout(Duration::from_secs(1), async {
            while !t.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_panicking_loop_cancels_the_owner() {
        let t = Tasks::new();
        t.supervise("sync", async { panic!("bug") });
        tokio::time::timeout(Duration::from_secs(1), t.cancelled())
            .await
            .unwrap();
        assert!(t.failed().unwrap().contains("sync panicked"));
    }

    #[tokio::test]
    async fn a_panicking_stream_task_stops_only_itself() {
        let t = Tasks::new();
        t.spawn(async { panic!("bad stream") });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!t.is_cancelled());
        assert!(t.shutdown(Duration::from_secs(1)).await);
    }
}
