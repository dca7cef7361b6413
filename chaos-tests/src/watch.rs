//! A drilled client: the library's [`OutputStream`] (what `tether attach`
//! runs), following one session in a task of its own, every event checked
//! by a [`Verifier`].
//!
//! # How it works
//! - [`Watcher::start`] connects the way its [`Dial`] says (relays in
//!   turn, or a node's state dir), attaches read-only from the oldest byte
//!   in the ring, and feeds every output and gap notice to the verifier.
//! - The stream resumes by itself when its connection breaks, exactly as
//!   for a user; the watcher only counts the outages.
//! - A drill marks a moment ([`Watcher::mark`]: a kill, a heal); the first
//!   output after it is the recovery ([`Watch::recovered`]).
//! - A broken invariant, an error the stream gave up on, or the end of the
//!   session stops the task; the drill reads why in [`Watch`].

use crate::stream::{Verifier, Violation};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether_client::{Dial, OutputStream, StreamEvent};
use tether_proto::{AttachSpec, Offset, StartAt};
use tokio::task::JoinHandle;

/// How long the first attach may take (the relay may not know the
/// session yet).
const FIRST_ATTACH: Duration = Duration::from_secs(15);

/// What a watcher saw.
#[derive(Default)]
pub struct Watch {
    /// Its checks.
    pub verifier: Verifier,
    /// The first broken invariant.
    pub violation: Option<Violation>,
    /// Why the stream stopped, if it did.
    pub stopped: Option<String>,
    /// Outages (connections lost) so far.
    pub outages: u32,
    /// The last marked moment, and when output first came after it.
    pub mark: Option<Instant>,
    /// When output first came after [`Watch::mark`].
    pub recovered: Option<Instant>,
    /// When output last came.
    pub last_output: Option<Instant>,
}

/// A running watcher; dropping it stops it.
pub struct Watcher {
    /// The session followed.
    pub session: String,
    state: Arc<Mutex<Watch>>,
    task: JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    /// Follows `session` from the oldest byte in its ring; see the module
    /// doc.
    pub fn start(dial: Dial, session: &str) -> Watcher {
        let state = Arc::new(Mutex::new(Watch::default()));
        let task = tokio::spawn(follow(dial, session.to_string(), state.clone()));
        Watcher {
            session: session.to_string(),
            state,
            task,
        }
    }

    /// Marks now: the next output is a recovery.
    pub fn mark(&self) {
        let mut w = self.state.lock().expect("watch");
        w.mark = Some(Instant::now());
        w.recovered = None;
    }

    /// Reads what it saw.
    pub fn with<T>(&self, f: impl FnOnce(&Watch) -> T) -> T {
        f(&self.state.lock().expect("watch"))
    }

    /// Whether the task still follows.
    pub fn running(&self) -> bool {
        !self.task.is_finished()
    }
}

async fn follow(dial: Dial, session: String, state: Arc<Mutex<Watch>>) {
    let stop = |why: String| state.lock().expect("watch").stopped = Some(why);
    let spec = AttachSpec {
        read_only: true,
        ..AttachSpec::new(session.clone(), StartAt::Oldest)
    };
    let deadline = Instant::now() + FIRST_ATTACH;
    let mut stream = loop {
        let attempt = async {
            let c = dial.connect(0).await?;
            OutputStream::open(c, spec.clone()).await
        };
        match attempt.await {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(%e, "first attach");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return stop(format!("could not attach to {session}: {e}")),
        }
    };
    loop {
        let ev = stream.next().await;
        let mut w = state.lock().expect("watch");
        let checked = match ev {
            Ok(StreamEvent::Output { offset, data }) => {
                let now = Instant::now();
                w.last_output = Some(now);
                if w.mark.is_some() && w.recovered.is_none() {
                    w.recovered = Some(now);
                }
                w.verifier.output(offset.0, &data)
            }
            Ok(StreamEvent::Gap { missed, resume }) => w.verifier.gap(missed.0, resume.0),
            Ok(StreamEvent::Reconnecting { new_outage, .. }) => {
                if new_outage {
                    w.outages += 1;
                }
                Ok(())
            }
            Ok(StreamEvent::Resumed { at, .. }) => {
                let due = w.verifier.next().map(Offset);
                if due.is_some_and(|d| d != at) {
                    w.stopped = Some(format!("resumed at {at}, but {due:?} was due"));
                    return;
                }
                Ok(())
            }
            Ok(StreamEvent::Snapshot { .. }) => Ok(()),
            Ok(StreamEvent::Ended(end)) => {
                w.stopped = Some(format!("the stream ended: {end:?}"));
                return;
            }
            Err(e) => {
                w.stopped = Some(format!("the stream gave up: {e}"));
                return;
            }
        };
        if let Err(v) = checked {
            w.violation = Some(v);
            w.stopped = Some("an invariant broke".into());
            return;
        }
    }
}
