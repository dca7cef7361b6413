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
//! - A drill marks a moment ([`Watcher::mark`]: a kill, a heal); what
//!   comes after it is timed: the first output, output that must have
//!   crossed a working path ([`SETTLE`] later), and a resume on a new
//!   connection with output after it.
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
/// Output this long after a mark cannot be bytes that were already in
/// flight at the mark (on loopback they land within milliseconds).
pub const SETTLE: Duration = Duration::from_millis(200);

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
    /// The last marked moment.
    pub mark: Option<Instant>,
    /// When output first came after [`Watch::mark`] (maybe bytes that were
    /// already on their way).
    pub recovered: Option<Instant>,
    /// When output came [`SETTLE`] or more after the mark: it crossed a
    /// path that works after the fault.
    pub settled: Option<Instant>,
    /// When the stream resumed (a new connection) after the mark.
    pub resumed: Option<Instant>,
    /// When output first came after that resume.
    pub resumed_output: Option<Instant>,
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
        w.settled = None;
        w.resumed = None;
        w.resumed_output = None;
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
                if let Some(mark) = w.mark {
                    w.recovered.get_or_insert(now);
                    if now >= mark + SETTLE {
                        w.settled.get_or_insert(now);
                    }
                    if w.resumed.is_some() {
                        w.resumed_output.get_or_insert(now);
                    }
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
                if w.mark.is_some() {
                    w.resumed.get_or_insert(Instant::now());
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
