//! The keeper: one process per session, the parent of the session's
//! process. It holds the PTY master and the ring buffer and serves the
//! daemon (and, through it, every client) on a unix socket.
//!
//! # Protocol flow (unix socket, same frames as QUIC)
//! 1. peer: `Hello`, `Request`; keeper: `Hello`, then the answer.
//! 2. `Status`: keeper answers `Session` and keeps the stream open; when the
//!    process ends it sends `Exited` and closes. The daemon holds one such
//!    stream per keeper to learn of exits and of a keeper's death.
//! 3. `Attach`: keeper answers `Attached`, then `Output` frames from the
//!    start offset on, `Gap` when the reader fell behind the ring, and
//!    `End` (tail without follow) or `Exited` once all output was sent.
//!    The peer sends `Input`, `Resize`, `Detach`.
//! 4. `Send`, `Kill`, `Wait`: one answer, then close.
//!
//! The keeper runs in its own session (`setsid`), detached from the
//! daemon's process group and signals, so the session survives a daemon
//! crash. The PTY is read all the time, into the ring, whether or not any
//! client is attached; a client never slows the session down.

use crate::grace::Followers;
use crate::ring::Ring;
use crate::store::{self, ExitRecord, KeeperRecord, SessionMeta, SessionPaths};
use anyhow::Context;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tether_net::conn::{error_reply, FrameReader, FrameWriter, StreamError};
use tether_proto::output::{Ending, OutputEncoder};
use tether_proto::{
    AttachSpec, ErrorKind, ExitStatus, Frame, KeeperRequest, Reply, SessionId, SessionInfo,
    SessionState, StreamControl, WinSize,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How long output may still arrive after the session's process exited
/// (from background children that hold the PTY) before the end is fixed.
const DRAIN_QUIET: Duration = Duration::from_millis(200);
/// How long a keeper waits for attached clients to take the last output
/// after the process ended.
const LINGER: Duration = Duration::from_secs(5);
/// Bytes sent per write to a client, at most.
const WRITE_BATCH: usize = 256 * 1024;

struct Shared {
    meta: SessionMeta,
    paths: SessionPaths,
    ring: Mutex<Ring>,
    end: watch::Sender<u64>,
    exit: watch::Sender<Option<ExitRecord>>,
    size: Mutex<WinSize>,
    pty_in: tokio::sync::Mutex<pty_process::OwnedWritePty>,
    pid: u32,
    clients: AtomicU32,
    conns: AtomicU32,
    /// Where each output stream is, and the session's credit for waiting
    /// on those that fell behind ([`crate::grace`]).
    followers: Mutex<Followers>,
    /// Woken when a stream has sent more.
    progress: tokio::sync::Notify,
}

impl Shared {
    fn info(&self) -> SessionInfo {
        let (start, end) = {
            let r = self.ring.lock().expect("ring lock");
            (r.start(), r.end())
        };
        let exit = self.exit.borrow().clone();
        self.meta.info(store::Figures {
            state: if exit.is_some() {
                SessionState::Exited
            } else {
                SessionState::Running
            },
            exit: exit.as_ref(),
            size: *self.size.lock().expect("size lock"),
            start,
            end,
            clients: self.clients.load(Ordering::Relaxed),
            pid: Some(self.pid),
        })
    }

    async fn resize(&self, size: WinSize) {
        // Waits for a write of input in progress, so that no resize is lost.
        let pty = self.pty_in.lock().await;
        if let Err(err) = pty.resize(pty_process::Size::new(size.rows, size.cols)) {
            warn!(%err, "resize failed");
        }
        *self.size.lock().expect("size lock") = size;
        self.publish();
    }

    /// Writes the clients attached and the window size into the ring's
    /// header, where the daemon reads them for `ls` and `info`.
    fn publish(&self) {
        let size = *self.size.lock().expect("size lock");
        let clients = self.clients.load(Ordering::Relaxed);
        self.ring
            .lock()
            .expect("ring lock")
            .set_status(clients, size);
    }
}

/// Runs the keeper of session `id` until its process has ended and its
/// clients have the last output. Prints `ready <pid>` (or `error: ...`) on
/// stdout once, for the daemon that started it.
pub fn run(state_dir: &Path, id: SessionId) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match start(state_dir, id).await {
            Ok((shared, listener, child, reader)) => {
                // Start-up (config, JSON, spawning) left freed heap behind;
                // a keeper lives long, so give it back.
                // SAFETY: malloc_trim only releases free memory of glibc's
                // own heap.
                unsafe {
                    libc::malloc_trim(0);
                }
                println!("ready {}", shared.pid);
                serve(shared, listener, child, reader).await
            }
            Err(e) => {
                println!("error: {e:#}");
                Err(e)
            }
        }
    })
}

type Started = (
    Arc<Shared>,
    UnixListener,
    tokio::process::Child,
    pty_process::OwnedReadPty,
);

async fn start(state_dir: &Path, id: SessionId) -> anyhow::Result<Started> {
    let paths = SessionPaths::new(state_dir, id);
    let meta: SessionMeta = store::read_json(&paths.meta())?
        .with_context(|| format!("{} is missing", paths.meta().display()))?;
    let ring = Ring::create(&paths.ring(), meta.ring_size)
        .with_context(|| format!("creating the ring file {}", paths.ring().display()))?;
    let _ = std::fs::remove_file(paths.socket());
    let listener = bind_private(&paths.socket())
        .with_context(|| format!("binding {}", paths.socket().display()))?;

    let (pty, pts) = pty_process::open().context("opening a PTY")?;
    pty.resize(pty_process::Size::new(meta.size.rows, meta.size.cols))
        .context("setting the window size")?;
    let mut argv = meta.launcher.clone();
    argv.extend(meta.command.iter().cloned());
    let mut cmd = pty_process::Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(&meta.cwd)
        .env("TETHER_SESSION", id.to_string());
    if std::env::var_os("TERM").is_none() && !meta.env.iter().any(|(k, _)| k == "TERM") {
        cmd = cmd.env("TERM", "xterm-256color");
    }
    for (k, v) in &meta.env {
        cmd = cmd.env(k, v);
    }
    let child = cmd
        .spawn(pts)
        .with_context(|| format!("starting {:?} in {}", argv, meta.cwd))?;
    let pid = child
        .id()
        .context("the session's process vanished at once")?;
    store::write_json(
        &paths.keeper(),
        &KeeperRecord {
            keeper_pid: std::process::id(),
            pid,
        },
    )?;
    let (reader, writer) = pty.into_split();
    let (end, _) = watch::channel(0);
    let (exit, _) = watch::channel(None);
    let shared = Arc::new(Shared {
        size: Mutex::new(meta.size),
        meta,
        paths,
        ring: Mutex::new(ring),
        end,
        exit,
        pty_in: tokio::sync::Mutex::new(writer),
        pid,
        clients: AtomicU32::new(0),
        conns: AtomicU32::new(0),
        followers: Mutex::new(Followers::new(Instant::now())),
        progress: tokio::sync::Notify::new(),
    });
    shared.publish();
    info!(session = %id, pid, "session started");
    Ok((shared, listener, child, reader))
}

/// Binds the keeper's socket, mode 0600 from its first moment.
///
/// `bind` creates the socket file with the process's umask applied, so it
/// runs under a umask that keeps group and others out: there is no moment
/// in which a looser socket exists, as there would be with a `chmod` after
/// the bind. The umask is restored at once, before the session's process
/// is started (it inherits the keeper's umask, and the user's files must
/// keep the user's own). The umask is process-wide, but the keeper is on
/// its single start-up thread here; a file another thread made meanwhile
/// would only come out stricter.
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    bound
}

async fn serve(
    shared: Arc<Shared>,
    listener: UnixListener,
    mut child: tokio::process::Child,
    reader: pty_process::OwnedReadPty,
) -> anyhow::Result<()> {
    let mut pump = tokio::spawn(pump(shared.clone(), reader));
    let accept = tokio::spawn(accept_loop(shared.clone(), listener));

    let status = child.wait().await.context("waiting for the session")?;
    // Drain what the process (or its leftovers) still wrote.
    let mut last = *shared.end.borrow();
    loop {
        tokio::select! {
            _ = &mut pump => break,
            _ = tokio::time::sleep(DRAIN_QUIET) => {
                let now = *shared.end.borrow();
                if now == last { pump.abort(); break; }
                last = now;
            }
        }
    }
    let status = ExitStatus {
        code: status.code(),
        signal: status.signal(),
    };
    let end = {
        let r = shared.ring.lock().expect("ring lock");
        let _ = r.flush();
        r.end()
    };
    let record = ExitRecord {
        status,
        end,
        exited_at_ms: store::now_ms(),
    };
    info!(code = ?status.code, signal = ?status.signal, end = end.0, "session exited");
    if let Err(err) = store::write_json(&shared.paths.exit(), &record) {
        // Clients still learn the status; a restarted daemon will see the
        // session as lost instead of exited.
        warn!(err = format!("{err:#}"), "cannot record the exit status");
    }
    shared.exit.send_replace(Some(record));
    // Let attached clients take the last output, then go.
    let deadline = tokio::time::Instant::now() + LINGER;
    while shared.conns.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    accept.abort();
    Ok(())
}

/// Reads the PTY into the ring until the PTY closes.
async fn pump(shared: Arc<Shared>, mut reader: pty_process::OwnedReadPty) {
    // A PTY read returns at most about 4 KiB (the line discipline's
    // buffer); a larger buffer would only cost every keeper memory.
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        grace(&shared).await;
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let end = {
                    let mut r = shared.ring.lock().expect("ring lock");
                    r.append(&buf[..n]);
                    r.end().0
                };
                shared.end.send_replace(end);
            }
            // EIO on the master: every holder of the slave side is gone.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                warn!(%err, "reading the PTY failed");
                break;
            }
        }
    }
    debug!("PTY closed");
}

/// Holds off reading the PTY while a follower more than 3/4 of the ring
/// behind catches up, as long as the session's credit lasts.
async fn grace(shared: &Shared) {
    let (end, cap) = {
        let r = shared.ring.lock().expect("ring lock");
        (r.end().0, r.capacity())
    };
    let mut hold = shared
        .followers
        .lock()
        .expect("followers lock")
        .hold(end, cap, Instant::now());
    while let Some(h) = hold {
        let t0 = Instant::now();
        let _ = tokio::time::timeout(h, shared.progress.notified()).await;
        hold = shared
            .followers
            .lock()
            .expect("followers lock")
            .charge(end, cap, t0.elapsed());
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: UnixListener) {
    let me = nix::unistd::getuid().as_raw();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(err) => {
                warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(c) if c.uid() == me => {}
            other => {
                warn!(?other, "refused a connection from another user");
                continue;
            }
        }
        let shared = shared.clone();
        shared.conns.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(err) = handle(shared.clone(), stream).await {
                debug!(%err, "connection ended");
            }
            shared.conns.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn handle(shared: Arc<Shared>, stream: UnixStream) -> Result<(), StreamError> {
    let (r, w) = stream.into_split();
    let mut rd = FrameReader::new(r);
    let mut wr = FrameWriter::new(w);
    let hello = rd.hello().await;
    wr.hello(concat!("tether-keeper/", env!("CARGO_PKG_VERSION")))
        .await?;
    if let Err(e) = hello {
        let _ = wr.control(&error_reply(&e)).await;
        return Err(e);
    }
    let req: KeeperRequest = match rd.control().await {
        Ok(r) => r,
        Err(e) => {
            let _ = wr.control(&error_reply(&e)).await;
            return Err(e);
        }
    };
    match req {
        KeeperRequest::Status => {
            wr.control(&Reply::Session {
                session: shared.info(),
            })
            .await?;
            // Stay until the process ends (or the peer leaves).
            let mut exit = shared.exit.subscribe();
            let e = tokio::select! {
                r = exit.wait_for(|e| e.is_some()) => r.ok().and_then(|r| r.clone()),
                _ = rd.next() => None,
            };
            if let Some(e) = e {
                wr.control(&Reply::Exited {
                    end: e.end,
                    status: e.status,
                })
                .await?;
            }
            Ok(())
        }
        KeeperRequest::Attach(spec) => attach(shared, spec, rd, wr).await,
        KeeperRequest::Send { data, .. } => {
            write_input(&shared, &data).await?;
            wr.control(&Reply::Ok).await?;
            Ok(())
        }
        KeeperRequest::Kill { signal, .. } => {
            let reply = match kill(shared.pid, signal) {
                Ok(()) => Reply::Ok,
                Err(e) => Reply::error(ErrorKind::BadRequest, e),
            };
            wr.control(&reply).await?;
            Ok(())
        }
        KeeperRequest::Wait { .. } => {
            let mut exit = shared.exit.subscribe();
            let e = exit
                .wait_for(|e| e.is_some())
                .await
                .ok()
                .and_then(|r| r.clone());
            if let Some(e) = e {
                wr.control(&Reply::Exited {
                    end: e.end,
                    status: e.status,
                })
                .await?;
            }
            Ok(())
        }
    }
}

fn kill(pid: u32, signal: i32) -> Result<(), String> {
    let sig = nix::sys::signal::Signal::try_from(signal)
        .map_err(|_| format!("{signal} is not a signal number"))?;
    // The process is a session leader, so its PID is also its process
    // group: the whole job gets the signal.
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), sig)
        .or_else(|_| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig))
        .map_err(|e| format!("sending {sig} to {pid}: {e}"))
}

async fn write_input(shared: &Shared, data: &[u8]) -> std::io::Result<()> {
    let mut pty = shared.pty_in.lock().await;
    pty.write_all(data).await
}

/// An output stream among the session's followers while it lives.
struct Follower<'a> {
    shared: &'a Shared,
    id: u64,
}

impl<'a> Follower<'a> {
    fn join(shared: &'a Shared, pos: u64) -> Self {
        let id = shared.followers.lock().expect("followers lock").join(pos);
        Follower { shared, id }
    }

    /// It sent everything before `pos`.
    fn at(&self, pos: u64) {
        let f = &self.shared.followers;
        f.lock().expect("followers lock").advance(self.id, pos);
        self.shared.progress.notify_one();
    }
}

impl Drop for Follower<'_> {
    fn drop(&mut self) {
        let f = &self.shared.followers;
        f.lock().expect("followers lock").leave(self.id);
        self.shared.progress.notify_one();
    }
}

/// What the reading half of an attach tells the writing half.
enum FromClient {
    /// Close with this reply.
    Close(Box<Reply>),
    /// Clean detach or end of stream.
    Done,
}

/// Counts an attached client while it lives, and publishes the count.
struct ClientGuard<'a>(&'a Shared);

impl<'a> ClientGuard<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.clients.fetch_add(1, Ordering::Relaxed);
        shared.publish();
        ClientGuard(shared)
    }
}

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
        self.0.publish();
    }
}

async fn attach(
    shared: Arc<Shared>,
    spec: AttachSpec,
    mut rd: FrameReader<tokio::net::unix::OwnedReadHalf>,
    mut wr: FrameWriter<tokio::net::unix::OwnedWriteHalf>,
) -> Result<(), StreamError> {
    let _guard = ClientGuard::new(&shared);
    if let (false, Some(size)) = (spec.read_only, spec.size) {
        shared.resize(size).await;
    }
    let enc = {
        let r = shared.ring.lock().expect("ring lock");
        OutputEncoder::new(spec.start, spec.follow, &*r)
    };
    wr.control(&enc.attached(shared.info())).await?;

    // Input side: its own task, so a client that types while output is
    // being written never waits, and output writes are never cancelled.
    let (tx, mut from_client) = tokio::sync::mpsc::channel::<FromClient>(1);
    let reader_shared = shared.clone();
    let read_only = spec.read_only;
    let input = tokio::spawn(async move {
        let msg = loop {
            match rd.next().await {
                Ok(Some(Frame::Input(data))) => {
                    if read_only {
                        break FromClient::Close(Box::new(Reply::error(
                            ErrorKind::ReadOnly,
                            "this client attached read-only and cannot send input",
                        )));
                    }
                    if let Err(err) = write_input(&reader_shared, &data).await {
                        warn!(%err, "writing input to the PTY failed");
                    }
                }
                Ok(Some(Frame::Control(b))) => {
                    match tether_proto::msg::decode::<StreamControl>(&b) {
                        Ok(StreamControl::Resize(size)) => {
                            if !read_only {
                                reader_shared.resize(size).await;
                            }
                        }
                        Ok(StreamControl::Detach) => break FromClient::Done,
                        Err(e) => {
                            let why = format!(
                                "only resize and detach may be sent during an attach ({e})"
                            );
                            break FromClient::Close(Box::new(Reply::error(
                                ErrorKind::BadRequest,
                                why,
                            )));
                        }
                    }
                }
                Ok(Some(Frame::Output { .. })) => {
                    break FromClient::Close(Box::new(Reply::error(
                        ErrorKind::BadRequest,
                        "clients do not send output frames",
                    )))
                }
                Ok(None) => break FromClient::Done,
                Err(e) => break FromClient::Close(Box::new(error_reply(&e))),
            }
        };
        let _ = tx.send(msg).await;
    });
    let res = stream_output(&shared, enc, &mut wr, &mut from_client).await;
    input.abort();
    let _ = wr.get_mut().shutdown().await;
    res
}

async fn stream_output(
    shared: &Shared,
    mut enc: OutputEncoder,
    wr: &mut FrameWriter<tokio::net::unix::OwnedWriteHalf>,
    from_client: &mut tokio::sync::mpsc::Receiver<FromClient>,
) -> Result<(), StreamError> {
    let mut end_rx = shared.end.subscribe();
    let mut exit_rx = shared.exit.subscribe();
    let mut batch = Vec::new();
    let me = Follower::join(shared, enc.position().0);
    loop {
        // Send everything available now, in batches. A write can take long
        // (slow client); new output meanwhile goes to the ring and is read
        // on the next round.
        loop {
            batch.clear();
            {
                let r = shared.ring.lock().expect("ring lock");
                enc.encode(&*r, WRITE_BATCH, &mut batch);
            }
            if batch.is_empty() {
                break;
            }
            wr.send_raw(&batch).await?;
            me.at(enc.position().0);
        }
        let ending = exit_rx
            .borrow_and_update()
            .as_ref()
            .map(|e| Ending::Exited {
                end: e.end,
                status: e.status,
            });
        if let Some(last) = enc.closing(ending.as_ref()) {
            wr.control(&last).await?;
            return Ok(());
        }
        if ending.is_some() {
            // Output up to the end is in the ring: send it first.
            continue;
        }
        tokio::select! {
            _ = end_rx.changed() => {}
            _ = exit_rx.changed() => {}
            m = from_client.recv() => {
                match m {
                    Some(FromClient::Close(reply)) => {
                        wr.control(&*reply).await?;
                        return Ok(());
                    }
                    Some(FromClient::Done) | None => return Ok(()),
                }
            }
        }
    }
}
