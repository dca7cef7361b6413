//! A drill: a list of operations on a [`ChaosFleet`], run top to bottom
//! like an operator's plan, with the invariants checked at every step and
//! at the end.
//!
//! # How it works
//! - [`Op`]s start, kill, pause and partition members, create sessions
//!   that write the known stream, and attach watchers ([`Watcher`]) that
//!   check every byte.
//! - Every op that changes the world (a kill, a heal, a restart) is a
//!   *mark*: it is timed, and the next [`Op::AssertFlowing`] measures the
//!   recovery from it.
//! - `Assert…` ops wait for a condition up to their bound; past it the
//!   drill fails with what it saw and the members' logs.
//! - [`Drill::finish`] checks what must hold at the end of every drill:
//!   no watcher saw a lost, doubled, reordered or altered byte, every
//!   session still runs its first process, and no member's memory grew
//!   more than [`MEMORY_GROWTH_KIB`]. It returns the report's row.

use crate::fleet::{ChaosFleet, Endpoint};
use crate::probe::{attach_once, end_offset, keystrokes, wait_for, wait_for_async, POLL};
use crate::proxy::Link;
use crate::report::Row;
use crate::watch::Watcher;
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tether_proto::{CreateSpec, SessionState};

/// How much a member's resident memory may grow over a drill.
pub const MEMORY_GROWTH_KIB: u64 = 64 * 1024;
/// How long a watcher may take to catch up with its session's output.
const CATCH_UP: Duration = Duration::from_secs(15);

/// `s` seconds: plans read better with them.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The seed of a drill's faults: `CHAOS_SEED`, else one from the clock;
/// printed either way, so a failure can be replayed.
pub fn seed() -> u64 {
    let s = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("chaos seed {s} (rerun with CHAOS_SEED={s})");
    s
}

/// How a watcher reaches its session.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    /// Through the relays, in turn.
    Relays,
    /// On the node's host, through its state dir (keeper sockets).
    Local(&'static str),
    /// On the node's host, over QUIC to its daemon.
    LocalQuic(&'static str),
}

/// One step of a drill.
#[derive(Debug, Clone)]
pub enum Op {
    /// Starts (or restarts) a member and waits for its ready line.
    Start(&'static str),
    /// `SIGKILL`s a member's process.
    Kill(&'static str),
    /// `SIGSTOP`s a member's process: alive, silent.
    Pause(&'static str),
    /// `SIGCONT`s it.
    Resume(&'static str),
    /// Waits until every relay sees the given nodes live.
    Converge(&'static [&'static str]),
    /// Creates a session `name` on `node` writing the known stream at
    /// `rate` bytes a second (0: as fast as it can).
    NewSession {
        /// Its name.
        name: &'static str,
        /// Its node.
        node: &'static str,
        /// Bytes per second.
        rate: u64,
    },
    /// Starts watcher `client` on `session`.
    Attach {
        /// The watcher's name.
        client: &'static str,
        /// The session.
        session: &'static str,
        /// How it connects.
        via: Via,
    },
    /// Cuts a member off from every other and from clients.
    Partition(&'static str),
    /// Cuts what `from` sends to `to`'s endpoint (and the answers).
    Cut {
        /// Whose datagrams.
        from: &'static str,
        /// Whose endpoint.
        to: &'static str,
        /// Which endpoint.
        endpoint: Endpoint,
    },
    /// Sets the faults of a member's endpoint for every peer.
    SetLink {
        /// The member.
        member: &'static str,
        /// Which endpoint.
        endpoint: Endpoint,
        /// The faults.
        link: Link,
    },
    /// Removes every fault.
    Heal,
    /// Lets time pass.
    Wait(Duration),
    /// Output keeps coming to the watcher after the last mark: some
    /// arrives [`SETTLE`](crate::watch::SETTLE) or more after it, within
    /// the bound. The first output after the mark is the recovery time.
    AssertFlowing {
        /// The watcher.
        client: &'static str,
        /// The bound.
        within: Duration,
    },
    /// The watcher lost its connection after the last mark, resumed on a
    /// new one, and got output there, within the bound: the recovery time.
    AssertResumed {
        /// The watcher.
        client: &'static str,
        /// The bound.
        within: Duration,
    },
    /// The relays list the session as reachable (or not) within the bound.
    AssertListed {
        /// The session.
        session: &'static str,
        /// Whether it must be listed as reachable.
        reachable: bool,
        /// The bound.
        within: Duration,
    },
    /// A new attach through the relays fails, and takes at most the bound.
    AssertAttachFails {
        /// The session.
        session: &'static str,
        /// The bound.
        within: Duration,
    },
    /// A new attach through `relay` alone fails, and takes at most the
    /// bound (the other relays are not asked).
    AssertRefusedBy {
        /// The relay.
        relay: &'static str,
        /// The session.
        session: &'static str,
        /// The bound.
        within: Duration,
    },
    /// A new attach through the relays works within the bound, and
    /// replays output written since the last mark.
    AssertAttachWorks {
        /// The session.
        session: &'static str,
        /// The bound.
        within: Duration,
    },
    /// The watcher's rate over the given time, reported.
    MeasureThroughput {
        /// The watcher.
        client: &'static str,
        /// How long.
        over: Duration,
    },
    /// Keystroke round trips (a byte typed into `session`, until its echo
    /// comes back), through the relays; p50 and p99 reported.
    MeasureKeystrokes {
        /// An echoing session (created with [`Op::NewEcho`]).
        session: &'static str,
        /// How many.
        count: usize,
    },
    /// Kills and removes a session (through the relays); it must never be
    /// listed again.
    Remove(&'static str),
    /// No relay lists the removed session, checked again and again over
    /// the given time.
    AssertGone {
        /// The session.
        session: &'static str,
        /// How long.
        over: Duration,
    },
    /// The watcher has every byte from offset 0, with no gap, up to where
    /// the session's output was when asked: nothing was lost, also while
    /// it could not be reached, and it is not stuck.
    AssertComplete(&'static str),
    /// Creates a session running `cat` on `node`: its terminal echoes what
    /// is typed.
    NewEcho {
        /// Its name.
        name: &'static str,
        /// Its node.
        node: &'static str,
    },
}

/// A session of the drill.
struct Session {
    id: String,
    pid: Option<u32>,
}

/// A drill under way; see the module doc.
pub struct Drill {
    name: String,
    faults: String,
    fleet: ChaosFleet,
    writer: PathBuf,
    sessions: BTreeMap<&'static str, Session>,
    watchers: BTreeMap<&'static str, Watcher>,
    removed: Vec<(&'static str, String)>,
    mark: (String, Instant),
    recoveries: Vec<(String, Duration)>,
    notes: Vec<String>,
    memory_at_start: Option<Vec<(String, u64)>>,
}

impl Drill {
    /// A drill called `name` (its faults described by `faults`) on
    /// `fleet`; sessions run `writer` (`chaos-writer`).
    pub fn new(name: &str, faults: &str, fleet: ChaosFleet, writer: PathBuf) -> Drill {
        Drill {
            name: name.into(),
            faults: faults.into(),
            fleet,
            writer,
            sessions: BTreeMap::new(),
            watchers: BTreeMap::new(),
            removed: Vec::new(),
            mark: ("start".into(), Instant::now()),
            recoveries: Vec::new(),
            notes: Vec::new(),
            memory_at_start: None,
        }
    }

    /// The fleet.
    pub fn fleet(&self) -> &ChaosFleet {
        &self.fleet
    }

    /// Runs `ops` in order; the first failure stops the drill with the
    /// op, what it saw and the logs.
    pub async fn run(&mut self, ops: &[Op]) -> anyhow::Result<()> {
        for (i, op) in ops.iter().enumerate() {
            let t = Instant::now();
            self.step(op).await.with_context(|| {
                format!(
                    "drill {:?}, step {} ({op:?}) failed after {:?}{}",
                    self.name,
                    i + 1,
                    t.elapsed(),
                    self.logs()
                )
            })?;
            tracing::info!(drill = %self.name, step = i + 1, ?op, took = ?t.elapsed(), "done");
        }
        Ok(())
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for n in self.fleet.names() {
            let log = self.fleet.log(&n);
            let tail = &log[log.len().saturating_sub(1500)..];
            s.push_str(&format!("\n--- log of {n} (tail) ---\n{tail}"));
        }
        s
    }

    fn marked(&mut self, what: String) {
        self.mark = (what, Instant::now());
        for w in self.watchers.values() {
            w.mark();
        }
    }

    async fn step(&mut self, op: &Op) -> anyhow::Result<()> {
        use nix::sys::signal::Signal;
        match op.clone() {
            Op::Start(m) => {
                tokio::task::block_in_place(|| self.fleet.start(m))?;
                self.marked(format!("{m} started"));
            }
            Op::Kill(m) => {
                tokio::task::block_in_place(|| self.fleet.kill(m))?;
                self.marked(format!("{m} killed"));
            }
            Op::Pause(m) => {
                self.fleet.signal(m, Signal::SIGSTOP)?;
                self.marked(format!("{m} stopped"));
            }
            Op::Resume(m) => {
                self.fleet.signal(m, Signal::SIGCONT)?;
                self.marked(format!("{m} continued"));
            }
            Op::Converge(nodes) => {
                self.converge(nodes).await?;
                if self.memory_at_start.is_none() {
                    self.memory_at_start = Some(self.fleet.memory());
                }
            }
            Op::NewSession { name, node, rate } => {
                let cmd = vec![self.writer.display().to_string(), rate.to_string()];
                self.create(name, node, cmd).await?;
            }
            Op::NewEcho { name, node } => {
                self.create(name, node, vec!["cat".into()]).await?;
            }
            Op::Attach {
                client,
                session,
                via,
            } => {
                let dial = match via {
                    Via::Relays => self.fleet.dial(),
                    Via::Local(n) => self.fleet.dial_local(n)?,
                    Via::LocalQuic(n) => self.fleet.dial_local(n)?.over_quic(),
                };
                let id = self.session(session)?.id.clone();
                let w = Watcher::start(dial, &id);
                let t = Instant::now();
                wait_for(
                    &format!("{client} to get output"),
                    Duration::from_secs(20),
                    || {
                        w.with(|s| match &s.stopped {
                            Some(why) => Err(anyhow::anyhow!("{client} stopped: {why}")),
                            None => Ok(s.verifier.verified() > 0),
                        })
                    },
                )
                .await?;
                tracing::info!(client, took = ?t.elapsed(), "attached");
                self.watchers.insert(client, w);
            }
            Op::Partition(m) => {
                self.fleet.partition(m)?;
                self.marked(format!("{m} partitioned"));
            }
            Op::Cut { from, to, endpoint } => {
                self.fleet.cut(from, to, endpoint)?;
                self.marked(format!("{from} cut from {to}'s {endpoint:?}"));
            }
            Op::SetLink {
                member,
                endpoint,
                link,
            } => {
                self.fleet.set_link(member, endpoint, link)?;
                self.marked(format!("faults on {member}'s {endpoint:?}"));
            }
            Op::Heal => {
                self.fleet.heal();
                self.marked("healed".into());
            }
            Op::Wait(d) => tokio::time::sleep(d).await,
            Op::AssertFlowing { client, within } | Op::AssertResumed { client, within } => {
                let resumed = matches!(op, Op::AssertResumed { .. });
                let w = self.watcher(client)?;
                wait_for(&format!("output at {client}"), within, || {
                    w.with(|s| match (&s.violation, &s.stopped) {
                        (Some(v), _) => Err(anyhow::anyhow!("{client}: {v}")),
                        (None, Some(why)) => Err(anyhow::anyhow!("{client} stopped: {why}")),
                        _ if resumed => Ok(s.resumed_output.is_some()),
                        _ => Ok(s.settled.is_some()),
                    })
                })
                .await?;
                let (what, took) = w.with(|s| {
                    let mark = s.mark.unwrap_or(self.mark.1);
                    match resumed {
                        true => ("resumed", s.resumed_output.expect("waited for") - mark),
                        false => ("flowing", s.recovered.expect("set before settled") - mark),
                    }
                });
                self.recoveries
                    .push((format!("{client} {what} after {}", self.mark.0), took));
            }
            Op::AssertListed {
                session,
                reachable,
                within,
            } => {
                let id = self.session(session)?.id.clone();
                let dial = self.fleet.dial();
                let what = if reachable {
                    "reachable"
                } else {
                    "unreachable"
                };
                let t0 = self.mark.1;
                wait_for_async(&format!("{session} listed {what}"), within, || async {
                    let c = dial.connect(0).await?;
                    let list = c.list().await?;
                    match list.iter().find(|s| s.id.to_string() == id) {
                        Some(s) if s.unreachable.is_none() == reachable => Ok(true),
                        Some(s) => bail!("listed {:?}, unreachable: {:?}", s.state, s.unreachable),
                        None => bail!("not listed"),
                    }
                })
                .await?;
                self.recoveries.push((
                    format!("{session} listed {what} after {}", self.mark.0),
                    t0.elapsed(),
                ));
            }
            Op::AssertAttachFails { session, within }
            | Op::AssertRefusedBy {
                session, within, ..
            } => {
                let id = self.session(session)?.id.clone();
                let dial = match op {
                    Op::AssertRefusedBy { relay, .. } => self.fleet.dial_relay(relay)?,
                    _ => self.fleet.dial(),
                };
                let t = Instant::now();
                let r = tokio::time::timeout(within, attach_once(&dial, &id)).await;
                match r {
                    Err(_) => bail!("an attach to {session} hung for {within:?}"),
                    Ok(Ok(())) => bail!("an attach to {session} worked; it should fail"),
                    Ok(Err(e)) => {
                        self.notes
                            .push(format!("attach refused in {:?}: {e}", t.elapsed()));
                        let by = match op {
                            Op::AssertRefusedBy { relay, .. } => format!(" by {relay} alone"),
                            _ => String::new(),
                        };
                        self.recoveries
                            .push((format!("{session} attach refused{by}"), t.elapsed()));
                    }
                }
            }
            Op::AssertAttachWorks { session, within } => {
                let id = self.session(session)?.id.clone();
                let dial = self.fleet.dial();
                let t0 = Instant::now();
                wait_for_async(&format!("an attach to {session}"), within, || async {
                    Ok(attach_once(&dial, &id).await.is_ok())
                })
                .await?;
                self.recoveries.push((
                    format!("an attach to {session} ({} before)", self.mark.0),
                    t0.elapsed(),
                ));
            }
            Op::Remove(session) => {
                let id = self.session(session)?.id.clone();
                let c = self.fleet.dial().connect(0).await?;
                c.kill(&id, nix::libc::SIGKILL).await?;
                wait_for_async(
                    &format!("{session} to exit"),
                    Duration::from_secs(10),
                    || async { Ok(c.info(&id).await?.state != SessionState::Running) },
                )
                .await?;
                c.remove(&id).await?;
                let s = self.sessions.remove(session).expect("looked up above");
                self.removed.push((session, s.id));
            }
            Op::AssertGone { session, over } => {
                let id = self
                    .removed
                    .iter()
                    .find(|(n, _)| *n == session)
                    .map(|(_, id)| id.clone())
                    .with_context(|| format!("{session} was not removed"))?;
                let dial = self.fleet.dial();
                let t = Instant::now();
                while t.elapsed() < over {
                    if let Ok(c) = dial.connect(0).await {
                        if let Ok(list) = c.list().await {
                            if list.iter().any(|s| s.id.to_string() == id) {
                                bail!("removed session {session} ({id}) is listed again");
                            }
                        }
                    }
                    tokio::time::sleep(POLL * 4).await;
                }
            }
            Op::AssertComplete(client) => {
                self.caught_up(client).await?;
                let w = self.watcher(client)?;
                let (first, lost) = w.with(|s| (s.verifier.first(), s.verifier.lost()));
                if first != Some(0) || lost != 0 {
                    bail!("{client} has output from {first:?} with {lost} bytes lost; want all of it from 0");
                }
            }
            Op::MeasureThroughput { client, over } => {
                let w = self.watcher(client)?;
                let b0 = w.with(|s| s.verifier.verified());
                let t = Instant::now();
                tokio::time::sleep(over).await;
                let b = w.with(|s| s.verifier.verified()) - b0;
                let rate = b as f64 / t.elapsed().as_secs_f64();
                self.notes.push(format!(
                    "{client}: {:.1} KB/s over {over:?} ({} faults)",
                    rate / 1000.0,
                    self.mark.0
                ));
            }
            Op::MeasureKeystrokes { session, count } => {
                let id = self.session(session)?.id.clone();
                let ms = keystrokes(&self.fleet.dial(), &id, count).await?;
                let p = |q: f64| ms[((ms.len() - 1) as f64 * q) as usize];
                self.notes.push(format!(
                    "keystroke round trip through a relay, {count} keys: p50 {:.1} ms, p99 {:.1} ms",
                    p(0.5),
                    p(0.99)
                ));
            }
        }
        Ok(())
    }

    /// Waits until watcher `client` has its session's output up to where
    /// it was when asked.
    async fn caught_up(&self, client: &str) -> anyhow::Result<()> {
        let w = self.watcher(client)?;
        let end = end_offset(&self.fleet.dial(), &w.session).await?;
        wait_for(&format!("{client} to reach offset {end}"), CATCH_UP, || {
            w.with(|s| match (&s.violation, &s.stopped) {
                (Some(v), _) => Err(anyhow::anyhow!("{client}: {v}")),
                (None, Some(why)) => Err(anyhow::anyhow!("{client} stopped: {why}")),
                _ => Ok(s.verifier.next().is_some_and(|n| n >= end)),
            })
        })
        .await
    }

    fn session(&self, name: &str) -> anyhow::Result<&Session> {
        self.sessions
            .get(name)
            .with_context(|| format!("the drill has no session {name}; create it first"))
    }

    fn watcher(&self, name: &str) -> anyhow::Result<&Watcher> {
        self.watchers
            .get(name)
            .with_context(|| format!("the drill has no watcher {name}; attach it first"))
    }

    async fn create(
        &mut self,
        name: &'static str,
        node: &str,
        command: Vec<String>,
    ) -> anyhow::Result<()> {
        let c = self.fleet.dial().connect(0).await?;
        let info = c
            .create(CreateSpec {
                name: Some(name.into()),
                command,
                node: Some(node.into()),
                screen: Some(false),
                ..CreateSpec::default()
            })
            .await
            .with_context(|| format!("creating session {name} on {node}"))?;
        self.sessions.insert(
            name,
            Session {
                id: info.id.to_string(),
                pid: info.pid,
            },
        );
        Ok(())
    }

    async fn converge(&self, nodes: &[&str]) -> anyhow::Result<()> {
        for r in self.fleet.relay_names() {
            let dial = self.fleet.dial_relay(&r)?;
            wait_for_async(
                &format!("{} live at {r}", nodes.join(", ")),
                Duration::from_secs(30),
                || async {
                    let c = dial.connect(0).await?;
                    let members = c.nodes().await?;
                    Ok(nodes
                        .iter()
                        .all(|n| members.iter().any(|m| m.name == *n && m.live)))
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Checks the end-of-drill invariants (see the module doc) and returns
    /// the report's row.
    pub async fn finish(self) -> anyhow::Result<Row> {
        let mut verified = 0;
        let mut lost = 0;
        let mut digests = Vec::new();
        for name in self.watchers.keys() {
            self.caught_up(name)
                .await
                .with_context(|| format!("watcher {name} at the end"))?;
        }
        for (name, w) in &self.watchers {
            w.with(|s| {
                if let Some(v) = &s.violation {
                    bail!("watcher {name}: {v}");
                }
                if let Some(why) = &s.stopped {
                    bail!("watcher {name} stopped: {why}");
                }
                if s.verifier.verified() == 0 {
                    bail!("watcher {name} received nothing");
                }
                verified += s.verifier.verified();
                lost += s.verifier.lost();
                let d = s
                    .verifier
                    .digest()
                    .map_err(|v| anyhow::anyhow!("{name}: {v}"))?;
                digests.push(format!("{name} {}", &d.to_hex()[..12]));
                Ok(())
            })?;
        }
        let c = self.fleet.dial().connect(0).await?;
        for (name, s) in &self.sessions {
            let info = c
                .info(&s.id)
                .await
                .with_context(|| format!("session {name} after the drill"))?;
            if info.state != SessionState::Running || info.pid != s.pid {
                bail!(
                    "session {name} is {:?} with pid {:?}; it ran pid {:?}",
                    info.state,
                    info.pid,
                    s.pid
                );
            }
        }
        let mut memory = Vec::new();
        if let Some(start) = &self.memory_at_start {
            for (name, now) in self.fleet.memory() {
                if let Some((_, was)) = start.iter().find(|(n, _)| *n == name) {
                    if now > was + MEMORY_GROWTH_KIB {
                        bail!("{name}'s memory grew from {was} KiB to {now} KiB");
                    }
                    memory.push(format!("{name} {was}→{now} KiB"));
                }
            }
        }
        let mut notes = self.notes.clone();
        notes.push(format!("digests: {}", digests.join(", ")));
        notes.push(format!("RSS: {}", memory.join(", ")));
        Ok(Row {
            scenario: self.name.clone(),
            faults: self.faults.clone(),
            sessions: self.sessions.len(),
            verified,
            recoveries: self.recoveries.clone(),
            lost,
            notes,
        })
    }
}
