//! The keeper: one process per session, the parent of the session's
//! process. It holds the PTY master and the ring buffer and serves the
//! daemon and local clients on a unix socket.
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
//!
//! # One thread, one loop
//! A keeper per session lives as long as its session, so what each one
//! holds counts a thousand times on a busy node. It runs no async runtime:
//! one `poll` loop over the socket, the PTY, a descriptor that reports the
//! process's end, and the connections ([`conn`]). The PTY is read straight
//! into the ring's mapped pages, and attached clients are sent slices of
//! the ring ([`out`]), so output is copied by the kernel only, and one
//! wake-up of the PTY serves every client in the same round. What a
//! connection holds (buffers) comes and goes with what it does: an idle
//! session's keeper holds its metadata, its ring mapping and little else.

mod conn;
pub(crate) mod log;
mod out;
mod probe;
mod screen;
mod sizing;
mod sys;
mod terminal;
#[cfg(test)]
mod tests;

use crate::grace::Grace;
use crate::ring::Ring;
use crate::store::{self, ExitRecord, KeeperRecord, SessionMeta, SessionPaths};
use anyhow::Context;
use conn::Conn;
use log::{debug, info, warning};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};
use tether_proto::output::Ending;
use tether_proto::{ExitStatus, Offset, SessionId, SessionInfo, SessionState, WinSize};

/// How long output may still arrive after the session's process exited
/// (from background children that hold the PTY) before the end is fixed.
const DRAIN_QUIET: Duration = Duration::from_millis(200);
/// How long a keeper waits for attached clients to take the last output
/// after the process ended.
const LINGER: Duration = Duration::from_secs(5);
/// Bytes read from the PTY in one round, at most, before the clients are
/// served (a PTY read returns at most about 4 KiB): larger rounds mean
/// fewer, larger writes to the clients and fewer wake-ups of theirs. A
/// small ring gets smaller rounds ([`pty_round`]).
const PTY_ROUND: usize = 256 * 1024;

/// What the connections share: the session.
pub(crate) struct Core {
    meta: SessionMeta,
    paths: SessionPaths,
    ring: Ring,
    pty: pty_process::blocking::Pty,
    size: WinSize,
    pid: u32,
    exit: Option<ExitRecord>,
    /// Attached clients.
    clients: u32,
    /// Scratch space for output frame headers.
    heads: Vec<u8>,
    /// Input the PTY did not take yet, and counts of bytes queued and
    /// written since the start.
    input: Vec<u8>,
    queued: u64,
    written: u64,
    /// The terminal emulator's thread, unless the session has none.
    screen: Option<screen::Screen>,
    /// The windows of the attached clients that set the size.
    sizes: sizing::Sizes,
    /// Changes a watching daemon is told of (clients, size, waiting for
    /// input) so far.
    changes: u64,
    /// Daemons watching (`KeeperRequest::Watch`).
    watchers: u32,
    /// The foreground process waited for input when last probed.
    awaiting: bool,
    /// When output or input last moved, while a probe is due: input arms
    /// it (the program may now stop to wait for more), finding the
    /// foreground waiting disarms it. A session nobody types into is not
    /// probed.
    activity: Option<Instant>,
    armed: bool,
    /// The last `Probe` answered: when, at which output end, what.
    probed: Option<(Instant, Offset, Option<tether_proto::Foreground>)>,
}

impl Core {
    fn info(&self) -> SessionInfo {
        let mut info = self.meta.info(store::Figures {
            state: if self.exit.is_some() {
                SessionState::Exited
            } else {
                SessionState::Running
            },
            exit: self.exit.as_ref(),
            size: self.size,
            start: self.ring.start(),
            end: self.ring.end(),
            clients: self.clients,
            pid: Some(self.pid),
        });
        info.awaiting_input = self.awaiting;
        info
    }

    fn ending(&self) -> Option<Ending> {
        self.exit.as_ref().map(|e| Ending::Exited {
            end: e.end,
            status: e.status,
        })
    }

    fn resize(&mut self, size: WinSize) {
        let size = size.clamped();
        if let Err(err) = self
            .pty
            .resize(pty_process::Size::new(size.rows, size.cols))
        {
            warning!("resize failed: {err}");
        }
        self.size = size;
        if let Some(s) = &self.screen {
            s.resize(self.ring.end(), size);
        }
        self.publish();
    }

    /// Writes the clients attached and the window size into the ring's
    /// header, where the daemon reads them for `ls` and `info` (local
    /// clients attach here without the daemon).
    pub(crate) fn publish(&mut self) {
        self.ring.set_status(self.clients, self.size);
        self.changes += 1;
    }

    /// Writes input to the PTY, queueing what it does not take now (after
    /// what is queued already). Returns the count of bytes queued up to
    /// the end of this input.
    fn input(&mut self, data: &[u8]) -> io::Result<u64> {
        let mut rest = data;
        if self.input.is_empty() {
            match sys::write(self.pty.as_raw_fd(), data) {
                Ok(n) => rest = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            self.written += (data.len() - rest.len()) as u64;
        }
        self.armed = true;
        self.activity = Some(Instant::now());
        self.probed = None;
        if self.awaiting {
            // It has input to take now; whether it waits again is the
            // next probe's to say.
            self.awaiting = false;
            self.changes += 1;
        }
        self.input.extend_from_slice(rest);
        self.queued += data.len() as u64;
        Ok(self.queued)
    }

    /// No input waits for the PTY.
    fn input_idle(&self) -> bool {
        self.input.is_empty()
    }

    /// Bytes of input the PTY took since the start.
    fn input_written(&self) -> u64 {
        self.written
    }

    fn flush_input(&mut self) {
        match sys::write(self.pty.as_raw_fd(), &self.input) {
            Ok(n) => {
                self.input.drain(..n);
                self.written += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => {
                warning!("writing input to the PTY failed: {err}");
                self.input.clear();
            }
        }
        if self.input.is_empty() && self.input.capacity() > 64 * 1024 {
            self.input = Vec::new();
        }
    }

    /// Reads what the PTY has into the ring, up to [`pty_round`] bytes.
    /// Returns false once the PTY is closed.
    fn read_pty(&mut self) -> bool {
        let fd = self.pty.as_raw_fd();
        let round = pty_round(self.ring.capacity());
        let mut got = 0;
        while got < round {
            match sys::read(fd, self.ring.spare(round - got)) {
                Ok(0) => return false,
                Ok(n) => {
                    self.ring.commit(n);
                    got += n;
                    if self.armed {
                        self.activity = Some(Instant::now());
                    }
                    if let Some(s) = &self.screen {
                        s.notify();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // EIO on the master: every holder of the slave side is gone.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => return false,
                Err(err) => {
                    warning!("reading the PTY failed: {err}");
                    return false;
                }
            }
        }
        true
    }
}

/// Bytes one round reads from the PTY into a ring of `cap` bytes:
/// [`PTY_ROUND`], but no more than the ring's headroom
/// ([`crate::grace::headroom`]), so that the followers are served between
/// rounds before the ring overwrites what they have not read. (A round of
/// 256 KiB into an 8 KiB ring gave a follower that kept up a gap in one
/// burst.) The default ring (1 MiB) gets the full round.
pub(crate) fn pty_round(cap: u64) -> usize {
    PTY_ROUND.min(usize::try_from(crate::grace::headroom(cap)).unwrap_or(usize::MAX))
}

/// Where the session is in its life.
enum Phase {
    Running,
    /// The process ended; its output may still arrive. The end is fixed
    /// once the PTY closes, or it stood still at `last` until `check`.
    Draining {
        last: Offset,
        check: Instant,
    },
    /// The end is recorded; clients take the last output until `until`.
    Lingering {
        until: Instant,
    },
}

struct Keeper {
    core: Core,
    listener: UnixListener,
    child: std::process::Child,
    /// Readable once the process ended; gone when its status is known.
    watch: Option<OwnedFd>,
    status: Option<std::process::ExitStatus>,
    /// The PTY is still read.
    pty_open: bool,
    conns: Vec<Conn>,
    fds: Vec<libc::pollfd>,
    phase: Phase,
    uid: u32,
    /// Whether to leave the PTY unread for a follower that fell behind.
    grace: Grace,
    /// Until when the PTY is left unread now.
    held: Option<Instant>,
    /// Connections accepted so far: the next one's ID.
    accepted: u64,
}

/// Runs the keeper of session `id` until its process has ended and its
/// clients have the last output. Prints `ready <pid>` (or `error: ...`) on
/// stdout once, for the daemon that started it.
pub fn run(state_dir: &Path, id: SessionId) -> anyhow::Result<()> {
    match start(state_dir, id) {
        Ok(k) => {
            // Start-up (config, JSON, spawning) left freed heap behind;
            // a keeper lives long, so give it back.
            // SAFETY: malloc_trim only releases free memory of glibc's
            // own heap.
            unsafe {
                libc::malloc_trim(0);
            }
            // Straight to the descriptor: std's stdout would keep a buffer.
            let _ = sys::write(1, format!("ready {}\n", k.core.pid).as_bytes());
            k.serve()
        }
        Err(e) => {
            let _ = sys::write(1, format!("error: {e:#}\n").as_bytes());
            Err(e)
        }
    }
}

fn start(state_dir: &Path, id: SessionId) -> anyhow::Result<Keeper> {
    let paths = SessionPaths::new(state_dir, id);
    let mut meta: SessionMeta = store::read_json(&paths.meta())?
        .with_context(|| format!("{} is missing", paths.meta().display()))?;
    meta.size = meta.size.clamped();
    let mut ring = Ring::create(&paths.ring(), meta.ring_size)
        .with_context(|| format!("creating the ring file {}", paths.ring().display()))?;
    let _ = std::fs::remove_file(paths.socket());
    let listener = bind_private(&paths.socket())
        .with_context(|| format!("binding {}", paths.socket().display()))?;
    listener.set_nonblocking(true)?;

    let (pty, pts) = pty_process::blocking::open().context("opening a PTY")?;
    pty.resize(pty_process::Size::new(meta.size.rows, meta.size.cols))
        .context("setting the window size")?;
    let mut argv = std::mem::take(&mut meta.launcher);
    argv.extend(meta.command.iter().cloned());
    let program = argv.first().context("the session has no command")?;
    // The session's variables go into the keeper's own environment, which
    // the process inherits as it is: a `Command` with variables of its own
    // would copy the whole environment twice on the heap, and a keeper
    // keeps what its start-up leaves there.
    if std::env::var_os("TERM").is_none() && !meta.env.iter().any(|(k, _)| k == "TERM") {
        set_env("TERM", "xterm-256color")?;
    }
    for (k, v) in std::mem::take(&mut meta.env) {
        set_env(&k, &v)?;
    }
    set_env("TETHER_SESSION", &id.to_string())?;
    let child = pty_process::blocking::Command::new(program)
        .args(&argv[1..])
        .current_dir(&meta.cwd)
        .spawn(pts)
        .with_context(|| format!("starting {:?} in {}", argv, meta.cwd))?;
    let pid = child.id();
    store::write_json(
        &paths.keeper(),
        &KeeperRecord {
            keeper_pid: std::process::id(),
            pid,
        },
    )?;
    sys::set_nonblocking(pty.as_raw_fd()).context("making the PTY non-blocking")?;
    let watch = sys::exit_watch(pid).context("watching the session's process")?;
    info!("session started session={id} pid={pid}");
    ring.set_status(0, meta.size);
    let screen = meta.screen_history.and_then(|history| {
        screen::Screen::start(&paths.ring(), meta.size, history, ring.end())
            .map_err(|e| warning!("no screen emulator for this session: {e}"))
            .ok()
    });
    Ok(Keeper {
        core: Core {
            size: meta.size,
            meta,
            paths,
            ring,
            pty,
            pid,
            exit: None,
            clients: 0,
            heads: Vec::new(),
            input: Vec::new(),
            queued: 0,
            written: 0,
            screen,
            sizes: sizing::Sizes::default(),
            changes: 0,
            watchers: 0,
            awaiting: false,
            activity: None,
            armed: false,
            probed: None,
        },
        listener,
        child,
        watch: Some(watch),
        status: None,
        pty_open: true,
        conns: Vec::new(),
        fds: Vec::new(),
        phase: Phase::Running,
        uid: nix::unistd::getuid().as_raw(),
        grace: Grace::new(Instant::now()),
        held: None,
        accepted: 0,
    })
}

/// Sets a variable of the keeper's environment (one thread: nothing reads
/// the environment meanwhile).
fn set_env(key: &str, value: &str) -> anyhow::Result<()> {
    if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
        anyhow::bail!("the session's environment variable {key:?} cannot be set");
    }
    std::env::set_var(key, value);
    Ok(())
}

/// Binds the keeper's socket, mode 0600 from its first moment.
///
/// `bind` creates the socket file with the process's umask applied, so it
/// runs under a umask that keeps group and others out: there is no moment
/// in which a looser socket exists, as there would be with a `chmod` after
/// the bind. The umask is restored at once, before the session's process
/// is started (it inherits the keeper's umask, and the user's files must
/// keep the user's own).
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    bound
}

fn pollfd(fd: i32, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd: if events == 0 { -1 } else { fd },
        events,
        revents: 0,
    }
}

impl Keeper {
    fn serve(mut self) -> anyhow::Result<()> {
        loop {
            self.held = self.hold();
            let timeout = match self.phase {
                Phase::Running => None,
                Phase::Draining { check, .. } => Some(check),
                Phase::Lingering { until } => Some(until),
            };
            let timeout = [timeout, self.held, self.core.probe_due()]
                .into_iter()
                .flatten()
                .min();
            let busy = self.conns.iter().any(|c| c.more);
            let timeout_ms = if busy {
                0
            } else {
                timeout.map_or(-1, |t| {
                    // Rounded up, so that the loop does not wake just early.
                    let left = t.saturating_duration_since(Instant::now());
                    left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                })
            };
            self.fill_fds();
            sys::poll(&mut self.fds, timeout_ms).context("poll")?;
            let polled = self.fds.len() - 3;
            let (accept, watch, pty) = (
                self.fds[0].revents,
                self.fds[1].revents,
                self.fds[2].revents,
            );

            if pty & (libc::POLLOUT | libc::POLLHUP | libc::POLLERR) != 0 && !self.core.input_idle()
            {
                self.core.flush_input();
            }
            if pty & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
                && self.pty_open
                && !self.core.read_pty()
            {
                debug!("PTY closed");
                self.pty_open = false;
            }
            for (c, p) in self.conns.iter_mut().zip(&self.fds[3..]).take(polled) {
                if p.revents != 0 {
                    c.ready(p.revents, &self.core);
                }
            }
            if accept != 0 {
                self.accept();
            }
            if watch != 0 {
                self.reap();
            }
            if self.core.probe_due().is_some_and(|t| t <= Instant::now()) {
                self.core.probe();
            }
            self.advance();
            let core = &mut self.core;
            let changes = core.changes;
            self.conns.retain_mut(|c| c.drive(core));
            if core.changes != changes {
                // A connection changed what a watching daemon is told of
                // (an attach, a resize) after the daemon's stream was
                // driven: drive them again, so the news goes out now.
                self.conns.retain_mut(|c| c.drive(core));
            }
            if let Phase::Lingering { until } = self.phase {
                if self.conns.is_empty() || Instant::now() >= until {
                    return Ok(());
                }
            }
        }
    }

    /// Until when to leave the PTY unread, while a follower more than 3/4
    /// of the ring behind catches up ([`crate::grace`]).
    fn hold(&mut self) -> Option<Instant> {
        let end = self.core.ring.end().0;
        let lag = self
            .conns
            .iter()
            .filter_map(|c| c.position())
            .map(|p| end.saturating_sub(p.0))
            .max()
            .unwrap_or(0);
        let cap = self.core.ring.capacity();
        self.grace.hold(lag, cap, Instant::now())
    }

    fn fill_fds(&mut self) {
        self.fds.clear();
        self.fds
            .push(pollfd(self.listener.as_raw_fd(), libc::POLLIN));
        let watch = self.watch.as_ref().map_or(-1, |w| w.as_raw_fd());
        self.fds
            .push(pollfd(watch, if watch < 0 { 0 } else { libc::POLLIN }));
        let mut ev = 0;
        if self.pty_open && self.held.is_none() {
            ev |= libc::POLLIN;
        }
        if !self.core.input_idle() {
            ev |= libc::POLLOUT;
        }
        self.fds.push(pollfd(self.core.pty.as_raw_fd(), ev));
        for c in &self.conns {
            self.fds.push(pollfd(c.fd(), c.events(&self.core)));
        }
    }

    fn accept(&mut self) {
        loop {
            let sock = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    // Out of descriptors, say: the next round tries again.
                    warning!("accept failed: {err}");
                    return;
                }
            };
            match sys::peer_uid(sock.as_raw_fd()) {
                Ok(uid) if uid == self.uid => {}
                other => {
                    warning!("refused a connection from another user ({other:?})");
                    continue;
                }
            }
            if let Err(err) = sock.set_nonblocking(true) {
                warning!("accept failed: {err}");
                continue;
            }
            self.accepted += 1;
            let mut c = Conn::new(sock, self.accepted);
            // A client sends its hello and request at once: take them now.
            c.ready(libc::POLLIN, &self.core);
            self.conns.push(c);
        }
    }

    /// The process may have ended: learn its status.
    fn reap(&mut self) {
        if let Some(w) = &self.watch {
            // A SIGCHLD pipe is drained; a pidfd cannot be read (EINVAL).
            let mut b = [0u8; 64];
            while let Ok(1..) = sys::read(w.as_raw_fd(), &mut b) {}
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.status = Some(st);
                self.watch = None;
            }
            Ok(None) => {}
            Err(err) => warning!("waiting for the session failed: {err}"),
        }
    }

    fn advance(&mut self) {
        let now = Instant::now();
        match self.phase {
            Phase::Running => {
                if self.status.is_some() {
                    self.phase = Phase::Draining {
                        last: self.core.ring.end(),
                        check: now + DRAIN_QUIET,
                    };
                    if !self.pty_open {
                        self.finish();
                    }
                }
            }
            Phase::Draining { last, check } => {
                if !self.pty_open || (now >= check && self.core.ring.end() == last) {
                    self.finish();
                } else if now >= check {
                    self.phase = Phase::Draining {
                        last: self.core.ring.end(),
                        check: now + DRAIN_QUIET,
                    };
                }
            }
            Phase::Lingering { .. } => {}
        }
    }

    /// Records the exit and tells the clients.
    fn finish(&mut self) {
        let st = self.status.expect("finish after the exit");
        let status = ExitStatus {
            code: st.code(),
            signal: st.signal(),
        };
        let _ = self.core.ring.flush();
        let end = self.core.ring.end();
        let record = ExitRecord {
            status,
            end,
            exited_at_ms: store::now_ms(),
        };
        info!(
            "session exited code={:?} signal={:?} end={}",
            status.code, status.signal, end.0
        );
        if let Err(err) = store::write_json(&self.core.paths.exit(), &record) {
            // Clients still learn the status; a restarted daemon will see
            // the session as lost instead of exited.
            warning!("cannot record the exit status: {err:#}");
        }
        self.core.exit = Some(record);
        self.pty_open = false;
        self.phase = Phase::Lingering {
            until: Instant::now() + LINGER,
        };
        for c in &mut self.conns {
            c.exited(&mut self.core);
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
