//! The daemon's side of the keepers: starting one for a new session,
//! re-adopting the live ones at start, watching each for its exit, and
//! asking one a question over its unix socket.
//!
//! # Protocol flow (unix socket, same frames as QUIC)
//! 1. daemon: `Hello`; keeper: `Hello`; daemon: a [`KeeperRequest`].
//! 2. `Status` is held open: the keeper answers `Session`, and `Exited`
//!    when the process ends. Its end without `Exited` means the keeper
//!    died: the session is lost.

use super::entry::{Entry, Life};
use super::sessions::Refusal;
use super::{Node, AGENT};
use crate::store::{self, ExitRecord, SessionMeta, SessionPaths};
use anyhow::{bail, Context};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use tether_net::conn::{FrameReader, FrameWriter, StreamError};
use tether_proto::{ErrorKind, EventKind, KeeperRequest, Reply, SessionId, SessionInfo};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tracing::{debug, error, info, warn};

/// How the daemon starts a keeper: a program and the arguments before
/// `--state-dir DIR --session ID`.
#[derive(Debug, Clone)]
pub struct KeeperCommand {
    /// The program.
    pub program: PathBuf,
    /// Arguments before the session's.
    pub args: Vec<OsString>,
}

impl KeeperCommand {
    /// The small `tether-keeper` beside this binary when there is one (it
    /// carries a fraction of the memory), else this binary's hidden
    /// `keeper` verb. After an upgrade replaced the binary on disk, the
    /// path names the new one; if it was removed, `/proc/self/exe` still
    /// runs this daemon's own.
    pub fn beside_current_exe() -> KeeperCommand {
        let exe = std::env::current_exe().ok();
        if let Some(small) = exe
            .as_ref()
            .and_then(|p| p.parent().map(|d| d.join("tether-keeper")))
            .filter(|p| p.exists())
        {
            return KeeperCommand {
                program: small,
                args: Vec::new(),
            };
        }
        KeeperCommand {
            program: exe
                .filter(|p| p.exists())
                .unwrap_or_else(|| PathBuf::from("/proc/self/exe")),
            args: vec!["keeper".into()],
        }
    }
}

/// An open stream to a keeper, after the hellos.
pub(crate) type KeeperConn = (
    FrameReader<tokio::net::unix::OwnedReadHalf>,
    FrameWriter<tokio::net::unix::OwnedWriteHalf>,
);

impl Node {
    /// Opens a stream to the keeper of `paths`.
    pub(crate) async fn connect_keeper(
        &self,
        paths: &SessionPaths,
    ) -> Result<KeeperConn, StreamError> {
        let timeout = self.timeouts.keeper_connect;
        let s = tokio::time::timeout(timeout, UnixStream::connect(paths.socket()))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "keeper does not answer")
            })??;
        let (r, w) = s.into_split();
        let mut rd = FrameReader::new(r);
        let mut wr = FrameWriter::new(w);
        wr.hello(AGENT).await?;
        rd.hello().await?;
        Ok((rd, wr))
    }

    /// Opens a `Status` stream: the keeper's first answer, and the stream
    /// on which it will report the exit; with `watch`, a `Watch` stream,
    /// which also reports changes (a keeper of an older build refuses
    /// `Watch`: it is asked `Status` then).
    async fn status(
        &self,
        paths: &SessionPaths,
        watch: bool,
    ) -> Result<(SessionInfo, KeeperConn), StreamError> {
        let (mut rd, mut wr) = self.connect_keeper(paths).await?;
        let req = if watch {
            KeeperRequest::Watch
        } else {
            KeeperRequest::Status
        };
        wr.control(&req).await?;
        match rd.control::<Reply>().await? {
            Reply::Session { session } => Ok((session, (rd, wr))),
            Reply::Error { .. } if watch => Box::pin(self.status(paths, false)).await,
            _ => Err(StreamError::Unexpected("reply")),
        }
    }

    /// A session's info with its foreground process, for `info`: what
    /// [`Node::info`] knows, and the keeper's probe of its terminal.
    pub(crate) async fn info_probed(&self, e: &Entry) -> SessionInfo {
        let mut info = self.info(e).await;
        if e.is_running() {
            let probe = tokio::time::timeout(
                self.timeouts.keeper_connect,
                self.keeper_call(e, KeeperRequest::Probe),
            );
            if let Ok(Ok(Reply::Probe { foreground })) = probe.await {
                info.awaiting_input = foreground.as_ref().is_some_and(|f| f.awaiting_input);
                info.foreground = foreground;
            }
        }
        info
    }

    /// A session's info: from its files, where its keeper publishes its
    /// live figures; from an older keeper, which does not, by asking it.
    pub(crate) async fn info(&self, e: &Entry) -> SessionInfo {
        let published = crate::ring::peek(&e.paths.ring()).is_ok_and(|h| h.status.size.is_some());
        if e.is_running() && !published {
            if let Ok(Ok((mut s, _))) =
                tokio::time::timeout(self.timeouts.keeper_connect, self.status(&e.paths, false))
                    .await
            {
                // The keeper knows its session as it was created; what the
                // state dir holds of it may be damaged since.
                e.mark_damage(&mut s);
                s.owner = e.meta.owner.clone();
                s.shared = e.shares();
                return s;
            }
        }
        e.static_info()
    }

    /// Asks the keeper of a running session one question.
    pub(crate) async fn keeper_call(
        &self,
        e: &Entry,
        req: KeeperRequest,
    ) -> Result<Reply, Refusal> {
        let (mut rd, mut wr) = self.connect_keeper(&e.paths).await.map_err(|err| {
            Refusal(
                ErrorKind::Internal,
                format!("keeper of {} unreachable: {err}", e.label()),
            )
        })?;
        wr.control(&req).await.map_err(anyhow::Error::from)?;
        Ok(rd.control::<Reply>().await.map_err(anyhow::Error::from)?)
    }

    /// Re-adopts every session found in the state dir.
    pub(crate) async fn adopt_all(self: &Arc<Self>) -> anyhow::Result<usize> {
        let dir = store::sessions_dir(&self.state_dir);
        store::create_private_dir(&dir)?;
        let mut set = tokio::task::JoinSet::new();
        for ent in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let Some(id) = ent?
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<SessionId>().ok())
            else {
                continue;
            };
            let node = self.clone();
            set.spawn(async move { node.adopt(id).await });
        }
        let mut n = 0;
        while let Some(r) = set.join_next().await {
            if r? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Re-adopts one session found in the state dir. A session whose
    /// `meta.json` is missing or unreadable is adopted as damaged, with
    /// what is still known of it, so that it stays visible and removable
    /// (its process may still run).
    async fn adopt(self: Arc<Self>, id: SessionId) -> bool {
        let paths = SessionPaths::new(&self.state_dir, id);
        let (meta, damage) = match store::read_json::<SessionMeta>(&paths.meta()) {
            Ok(Some(m)) => (m, None),
            Ok(None) => {
                let why = format!("{} is missing", paths.meta().display());
                warn!(session = %id, %why, "listing the session as damaged");
                (SessionMeta::unknown(id, self.node_id, &paths), Some(why))
            }
            Err(err) => {
                let why = format!("{err:#}");
                error!(session = %id, err = %why, "listing the session as damaged");
                (SessionMeta::unknown(id, self.node_id, &paths), Some(why))
            }
        };
        if let Ok(Some(rec)) = store::read_json::<ExitRecord>(&paths.exit()) {
            self.insert(Entry::with_damage(meta, paths, Life::Exited(rec), damage));
            return true;
        }
        self.watch(meta, paths, damage).await;
        true
    }

    /// Starts watching the keeper of a session just started, and adds the
    /// session to the table in whatever state it turns out in.
    pub(crate) async fn watch_new(
        self: &Arc<Self>,
        meta: SessionMeta,
        paths: SessionPaths,
    ) -> Arc<Entry> {
        self.watch(meta, paths, None).await
    }

    /// [`Node::watch_new`] for a session started or found, its metadata
    /// damaged (`damage` says how) or not. The keeper of a damaged session
    /// still knows the metadata it started with: its account replaces what
    /// little the state dir still told.
    async fn watch(
        self: &Arc<Self>,
        mut meta: SessionMeta,
        paths: SessionPaths,
        damage: Option<String>,
    ) -> Arc<Entry> {
        let id = meta.id;
        match self.status(&paths, true).await {
            Ok((info, conn)) => {
                let first = info.clone();
                if damage.is_some() && info.id == id {
                    meta = SessionMeta {
                        name: info.name,
                        command: info.command,
                        cwd: info.cwd,
                        created_at_ms: info.created_at_ms,
                        ring_size: info.ring_size,
                        size: info.size,
                        ..meta
                    };
                }
                let e = Entry::with_damage(meta, paths, Life::Running, damage);
                self.insert(e.clone());
                let (node, watched) = (self.clone(), e.clone());
                self.tasks
                    .spawn(async move { node.keep_watching(watched, conn, first).await });
                e
            }
            // A process that ends at once may take its keeper with it
            // before we connect; its exit record tells.
            Err(err) => match store::read_json::<ExitRecord>(&paths.exit()) {
                Ok(Some(rec)) => {
                    let e = Entry::with_damage(meta, paths, Life::Exited(rec), damage);
                    self.insert(e.clone());
                    e
                }
                _ => {
                    debug!(session = %id, %err, "keeper not reachable; session lost");
                    let e = Entry::with_damage(meta, paths, Life::Lost, damage);
                    self.insert(e.clone());
                    e
                }
            },
        }
    }

    /// Waits on a keeper's status stream for the exit, or its death.
    async fn keep_watching(self: Arc<Self>, e: Arc<Entry>, conn: KeeperConn, first: SessionInfo) {
        let (mut rd, _wr) = conn;
        let mut last = first;
        let r = loop {
            match rd.control::<Reply>().await {
                // A `Watch` stream's news: clients, size, waiting for input.
                Ok(Reply::Session { session }) => {
                    for kind in super::events::changes(&last, &session) {
                        self.publish(kind, &e, Some(&session));
                    }
                    last = session;
                }
                other => break other,
            }
        };
        let life = match store::read_json::<ExitRecord>(&e.paths.exit()) {
            Ok(Some(rec)) => Life::Exited(rec),
            _ => match r {
                Ok(Reply::Exited { end, status }) => Life::Exited(ExitRecord {
                    status,
                    end,
                    exited_at_ms: store::now_ms(),
                }),
                _ => Life::Lost,
            },
        };
        match &life {
            Life::Exited(r) => {
                info!(session = %e.meta.id, code = ?r.status.code, signal = ?r.status.signal, "session exited")
            }
            _ => warn!(session = %e.meta.id, "keeper vanished; session lost"),
        }
        let kind = match &life {
            Life::Exited(_) => EventKind::Exited,
            _ => EventKind::Lost,
        };
        e.life.send_replace(life);
        self.publish(kind, &e, None);
        self.changed.notify_one();
        self.prune();
    }

    /// Starts the keeper of a new session and waits for its ready line.
    pub(crate) async fn spawn_keeper(
        &self,
        paths: &SessionPaths,
        id: SessionId,
    ) -> anyhow::Result<()> {
        let log = store::open_keeper_log(paths)?;
        let mut cmd = tokio::process::Command::new(&self.keeper.program);
        cmd.args(&self.keeper.args)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--session")
            .arg(id.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(false);
        // The keeper leaves the daemon's session, so the session outlives
        // a signal to the daemon's group.
        tether_net::runtime::detach_on_spawn(cmd.as_std_mut());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the keeper {}", self.keeper.program.display()))?;
        let stdout = child.stdout.take().context("keeper stdout")?;
        let mut line = String::new();
        let timeout = self.timeouts.keeper_start;
        let read = tokio::time::timeout(timeout, BufReader::new(stdout).read_line(&mut line)).await;
        // Reap the keeper when it ends, as long as this daemon runs.
        self.tasks.spawn(async move {
            let _ = child.wait().await;
        });
        match read {
            Err(_) => bail!(
                "the keeper did not start within {timeout:?}; see {}",
                paths.log().display()
            ),
            Ok(Err(e)) => Err(e).context("reading the keeper's first line"),
            Ok(Ok(_)) if line.starts_with("ready") => Ok(()),
            Ok(Ok(_)) => {
                let msg = line.trim().strip_prefix("error: ").unwrap_or(line.trim());
                if msg.is_empty() {
                    bail!("the keeper exited at start; see {}", paths.log().display());
                }
                bail!("{msg}")
            }
        }
    }
}
