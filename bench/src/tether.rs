//! A tether node under test: a daemon (`tether node`) on a state dir of
//! its own, the `tether` CLI pointed at it, and a library client
//! (`tether_client::Client`) for setup and for the bench's own
//! readers. The state dir, the daemon, its keepers and sessions are all
//! cleaned up when the node drops.

use crate::cleanup::{self, Guard, Item};
use crate::procs::{self, Proc};
use crate::Ctx;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tether_client::Client;
use tether_net::conn::{FrameReader, FrameWriter};
use tether_node::store::SessionPaths;
use tether_proto::{
    AttachSpec, CreateSpec, Frame, Offset, Reply, Request, SessionId, SessionInfo, StartAt, WinSize,
};
use tokio::io::{AsyncBufReadExt, AsyncRead};
use tokio::process::Command;

/// How long a daemon may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A daemon on a temporary state dir.
pub struct Node {
    /// The state dir.
    pub dir: PathBuf,
    exe: PathBuf,
    cwd: PathBuf,
    daemon: Option<Proc>,
    control: Option<Client>,
    /// Arguments given to `tether node` after the verb (`--config F`).
    node_args: Vec<String>,
    _guard: Guard,
}

impl Node {
    /// Makes a state dir under the bench's work dir and starts a daemon
    /// on it.
    pub async fn start(ctx: &Ctx, name: &str) -> anyhow::Result<Node> {
        Node::start_with(ctx, name, Vec::new()).await
    }

    /// The same, with `args` after `tether node` (for example
    /// `--config FILE` for a fleet node).
    pub async fn start_with(ctx: &Ctx, name: &str, args: Vec<String>) -> anyhow::Result<Node> {
        let dir = ctx.work.join(ctx.unique(&format!("st-{name}")));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut node = Node {
            _guard: cleanup::register(Item::StateDir(dir.clone())),
            dir,
            exe: ctx.tether.clone(),
            cwd: ctx.work.clone(),
            daemon: None,
            control: None,
            node_args: args,
        };
        node.start_daemon().await?;
        Ok(node)
    }

    /// Starts the daemon and waits for its ready line (which it prints
    /// once every session of the state dir has been re-adopted); then
    /// connects the control client. Returns the time to the ready line.
    pub async fn start_daemon(&mut self) -> anyhow::Result<Duration> {
        if self.daemon.is_some() {
            bail!("the daemon already runs");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("bench-node.log"))?;
        let mut cmd = procs::command(&self.exe);
        cmd.arg("--state-dir")
            .arg(&self.dir)
            .arg("node")
            .args(&self.node_args)
            .stdout(Stdio::piped())
            .stderr(log);
        let t0 = Instant::now();
        let mut p = Proc::spawn(&mut cmd, "tether node")?;
        let stdout = p.child.stdout.take().context("daemon stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(READY_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "tether node did not get ready within {READY_TIMEOUT:?}; see {}",
                    self.log_path().display()
                )
            })?
            .context("reading the daemon's ready line")?
            .unwrap_or_default();
        let t = t0.elapsed();
        if !line.contains("ready") {
            bail!(
                "tether node did not start ({line:?}); see {}",
                self.log_path().display()
            );
        }
        // Keep reading its stdout so it never writes into a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.daemon = Some(p);
        self.control = Some(self.client().await?);
        Ok(t)
    }

    /// SIGKILLs the daemon (not the keepers) and waits until it is gone.
    pub async fn kill_daemon(&mut self) {
        self.control = None;
        if let Some(mut p) = self.daemon.take() {
            p.kill().await;
        }
    }

    /// The daemon's PID.
    pub fn daemon_pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(|p| p.pid)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("bench-node.log")
    }

    /// The tether binary.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// `tether --state-dir DIR ARGS...` with the bench's defaults.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut c = procs::command(&self.exe);
        c.arg("--state-dir").arg(&self.dir).args(args);
        c
    }

    /// The same as a shell command line.
    pub fn cli_line(&self, args: &str) -> String {
        format!(
            "{} --state-dir {} {args}",
            procs::qpath(&self.exe),
            procs::qpath(&self.dir)
        )
    }

    /// A new library connection to the daemon.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Client::connect_local(&self.dir, None)
            .await
            .with_context(|| format!("connecting to the node of {}", self.dir.display()))
    }

    /// A new library connection to the daemon over QUIC, as a remote
    /// client has (the local path before the fast path).
    pub async fn client_quic(&self) -> anyhow::Result<Client> {
        tether_client::Dial::local(&self.dir, None)
            .over_quic()
            .connect(0)
            .await
            .with_context(|| format!("connecting to the node of {} over QUIC", self.dir.display()))
    }

    fn control(&self) -> anyhow::Result<&Client> {
        self.control.as_ref().context("the daemon is not running")
    }

    /// Sends a request on the control connection; an error reply is an
    /// error.
    pub async fn request(&self, req: &Request) -> anyhow::Result<Reply> {
        match self.control()?.request(req).await? {
            Reply::Error { message, .. } => bail!("{message}"),
            r => Ok(r),
        }
    }

    /// Creates a session running `command` (argv), with `ring` bytes of
    /// ring (default: the node's), in an 80x24 window.
    pub async fn create(&self, command: &[&str], ring: Option<u64>) -> anyhow::Result<SessionInfo> {
        self.create_as(None, command, ring).await
    }

    /// Starts a session named `name` (default ring).
    pub async fn create_named(&self, name: &str, command: &[&str]) -> anyhow::Result<SessionInfo> {
        self.create_as(Some(name.to_string()), command, None).await
    }

    async fn create_as(
        &self,
        name: Option<String>,
        command: &[&str],
        ring: Option<u64>,
    ) -> anyhow::Result<SessionInfo> {
        self.create_spec(CreateSpec {
            name,
            ..self.spec(command, ring)
        })
        .await
    }

    /// What [`Node::create`] asks for: `command` (argv) with `ring` bytes
    /// of ring, in an 80x24 window, `TERM` set, the node's default for the
    /// screen emulator. Change fields and pass it to
    /// [`Node::create_spec`].
    pub fn spec(&self, command: &[&str], ring: Option<u64>) -> CreateSpec {
        CreateSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            cwd: Some(self.cwd.to_string_lossy().into_owned()),
            env: vec![("TERM".into(), procs::TERM.into())],
            ring_size: ring,
            size: Some(WinSize { cols: 80, rows: 24 }),
            ..CreateSpec::default()
        }
    }

    /// Creates a session as `spec` says.
    pub async fn create_spec(&self, spec: CreateSpec) -> anyhow::Result<SessionInfo> {
        match self.request(&Request::Create(spec)).await? {
            Reply::Session { session } => Ok(session),
            other => bail!("unexpected reply to create: {other:?}"),
        }
    }

    /// The PID of a session's keeper, from `keeper.json` in its dir.
    pub fn keeper_pid(&self, id: SessionId) -> anyhow::Result<i32> {
        let path = SessionPaths::new(&self.dir, id).keeper();
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let rec: tether_node::store::KeeperRecord =
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(rec.keeper_pid as i32)
    }

    /// SIGKILLs a session's process, waits for its end and removes it
    /// (its keeper and ring go with it).
    pub async fn discard(&self, id: SessionId) -> anyhow::Result<()> {
        self.request(&Request::Kill {
            target: id.to_string(),
            signal: 9,
        })
        .await?;
        self.wait(id).await?;
        self.remove(id).await
    }

    /// A session's metadata.
    pub async fn info(&self, id: SessionId) -> anyhow::Result<SessionInfo> {
        match self
            .request(&Request::Info {
                target: id.to_string(),
            })
            .await?
        {
            Reply::Session { session } => Ok(session),
            other => bail!("unexpected reply to info: {other:?}"),
        }
    }

    /// Types `data` into a session (`tether send`).
    pub async fn send(&self, id: SessionId, data: &[u8]) -> anyhow::Result<()> {
        self.request(&Request::Send {
            target: id.to_string(),
            data: data.to_vec(),
        })
        .await?;
        Ok(())
    }

    /// Waits until the session has ended.
    pub async fn wait(&self, id: SessionId) -> anyhow::Result<()> {
        self.request(&Request::Wait {
            target: id.to_string(),
        })
        .await?;
        Ok(())
    }

    /// Removes an ended session and its files (its ring).
    pub async fn remove(&self, id: SessionId) -> anyhow::Result<()> {
        self.request(&Request::Remove {
            target: id.to_string(),
        })
        .await?;
        Ok(())
    }

    /// Waits until at least `n` clients are attached to the session.
    pub async fn wait_clients(&self, id: SessionId, n: u32) -> anyhow::Result<()> {
        procs::wait_until(
            "the client to attach",
            Duration::from_secs(30),
            Duration::from_millis(2),
            || async { Ok(self.info(id).await?.clients >= n) },
        )
        .await
    }

    /// Waits until the session's output reaches `end` bytes.
    pub async fn wait_output(&self, id: SessionId, end: u64) -> anyhow::Result<()> {
        procs::wait_until(
            "the session's output",
            Duration::from_secs(120),
            Duration::from_millis(10),
            || async { Ok(self.info(id).await?.end_offset.0 >= end) },
        )
        .await
    }
}

/// What a reader got from a session.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Output bytes received.
    pub bytes: u64,
    /// Gap notices.
    pub gaps: u32,
    /// Bytes the gaps skipped.
    pub missed: u64,
    /// End of the session's output, from its `Exited` notice.
    pub end: u64,
    /// When the `Exited` notice arrived.
    pub at: Option<Instant>,
}

/// A stream of a keeper's unix socket, after the hellos.
pub type KeeperStream = (
    FrameReader<tokio::net::unix::OwnedReadHalf>,
    FrameWriter<tokio::net::unix::OwnedWriteHalf>,
);

impl Node {
    /// Attaches straight to a session's keeper over its unix socket,
    /// bypassing the daemon and QUIC (the protocol is the same), to tell
    /// what those hops cost. Returns the stream and the start offset.
    pub async fn keeper_attach(&self, spec: AttachSpec) -> anyhow::Result<(KeeperStream, Offset)> {
        let id: SessionId = spec
            .target
            .parse()
            .context("a keeper needs a full session ID")?;
        let path = SessionPaths::new(&self.dir, id).socket();
        let s = tokio::net::UnixStream::connect(&path)
            .await
            .with_context(|| format!("connecting to {}", path.display()))?;
        let (r, w) = s.into_split();
        let (mut rd, mut wr) = (FrameReader::new(r), FrameWriter::new(w));
        wr.hello("tether-bench").await?;
        wr.control(&Request::Attach(spec)).await?;
        rd.hello().await?;
        match rd.control::<Reply>().await? {
            Reply::Attached { start, .. } => Ok(((rd, wr), start)),
            other => bail!("unexpected reply to attach: {other:?}"),
        }
    }
}

/// A read-only attach from `from`, following.
pub fn follow_spec(id: SessionId, from: Offset) -> AttachSpec {
    AttachSpec {
        target: id.to_string(),
        start: StartAt::Offset(from),
        read_only: true,
        follow: true,
        size: None,
        snapshot: None,
        sizing: tether_proto::Sizing::Latest,
    }
}

/// Reads a session's output to its end through the library client, as
/// `tether tail --follow` does. Calls `attached` once the node has
/// answered.
pub async fn read_to_exit(
    client: &Client,
    id: SessionId,
    from: Offset,
    attached: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<Received> {
    let (mut rd, _wr) = client.open(&Request::Attach(follow_spec(id, from))).await?;
    let start = match rd.control::<Reply>().await? {
        Reply::Attached { start, .. } => start,
        other => bail!("unexpected reply to attach: {other:?}"),
    };
    let _ = attached.send(());
    read_frames(&mut rd, start).await
}

/// Reads output frames to the session's `Exited` notice, checking that
/// every offset follows the last and counting gaps.
pub async fn read_frames<R: AsyncRead + Unpin>(
    rd: &mut FrameReader<R>,
    start: Offset,
) -> anyhow::Result<Received> {
    let mut expected = start;
    let mut got = Received::default();
    loop {
        match rd.next().await? {
            Some(Frame::Output { offset, data }) => {
                if offset != expected {
                    bail!("output out of order: expected offset {expected}, got {offset}");
                }
                expected = Offset(offset.0 + data.len() as u64);
                got.bytes += data.len() as u64;
            }
            Some(Frame::Control(b)) => match tether_proto::msg::decode::<Reply>(&b)? {
                Reply::Gap { missed, resume } => {
                    got.gaps += 1;
                    got.missed += resume.0 - missed.0;
                    expected = resume;
                }
                Reply::Exited { end, .. } => {
                    got.at = Some(Instant::now());
                    got.end = end.0;
                    return Ok(got);
                }
                Reply::Lost { .. } => bail!("the session was lost"),
                Reply::Error { message, .. } => bail!("{message}"),
                _ => {}
            },
            Some(Frame::Input(_)) => bail!("the node sent an input frame"),
            None => bail!("the stream closed before the session's end"),
        }
    }
}
