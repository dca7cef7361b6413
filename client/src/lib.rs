//! The client library every kind of tether client uses: the CLI today, an
//! agent API, an MCP server or a browser bridge next.
//!
//! It connects to the local node of a state dir (starting one if none
//! runs) or to a fleet through relays, sends typed requests, and follows a
//! session's output from an offset.
//!
//! What it does not do: run sessions or serve anyone. It links neither the
//! daemon nor PTY code, only `tether-proto` and `tether-net`.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tether_net::conn::{FrameReader, FrameWriter};
use tether_net::files;
use tether_net::runtime::{self as store, NodeRuntime};
use tether_net::tls::fleet;
use tether_net::tls::local::{self as identity, ClientIdentity};
use tether_proto::{Reply, Request};

const AGENT: &str = concat!("tether/", env!("CARGO_PKG_VERSION"));
/// How long `tether` waits for a node it started to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A connection to a node, or to a relay of a fleet.
pub struct Client {
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    /// Where it is connected: the node's or relay's address.
    pub peer: std::net::SocketAddr,
}

/// A request's stream, after the hellos.
pub type Stream = (
    FrameReader<quinn::RecvStream>,
    FrameWriter<quinn::SendStream>,
);

/// How to start a node when none runs.
pub struct Autostart {
    /// The tether binary.
    pub exe: PathBuf,
}

impl Client {
    /// Connects to the node of `state_dir`. With `autostart`, starts one
    /// (daemonized, in its own session, logging to `<state>/node.log`)
    /// when none runs, and waits until it is ready.
    pub async fn connect_local(
        state_dir: &Path,
        autostart: Option<Autostart>,
    ) -> anyhow::Result<Client> {
        let runtime = match running_node(state_dir)? {
            Some(rt) => rt,
            None => match autostart {
                Some(a) => start_node(state_dir, &a).await?,
                None => bail!(
                    "no tether node runs on state dir {}; start one with `tether node`",
                    state_dir.display()
                ),
            },
        };
        let pin = runtime
            .fingerprint
            .parse()
            .context("node.json holds a bad fingerprint; restart the node")?;
        let id = ClientIdentity::load(state_dir, pin)?;
        let cfg = identity::client_config(&id)?;
        let bind: std::net::SocketAddr = if runtime.addr.is_ipv4() {
            "127.0.0.1:0".parse().expect("valid")
        } else {
            "[::1]:0".parse().expect("valid")
        };
        let endpoint = tether_net::endpoint::make_endpoint(bind, None)?;
        let connecting = endpoint
            .connect_with(cfg, runtime.addr, "tether-node")
            .context("connecting to the node")?;
        let conn = tokio::time::timeout(Duration::from_secs(5), connecting)
            .await
            .with_context(|| format!("the node at {} does not answer", runtime.addr))?
            .with_context(|| format!("connecting to the node at {}", runtime.addr))?;
        Ok(Client {
            conn,
            endpoint,
            peer: runtime.addr,
        })
    }

    /// Connects to the first relay of `relays` (host:port) that answers,
    /// with the fleet client credentials in `tls_dir`, starting at
    /// `first` (for a reconnect that should try the next relay first).
    pub async fn connect_relay(
        relays: &[String],
        tls_dir: &Path,
        first: usize,
    ) -> anyhow::Result<(Client, usize)> {
        let tls = fleet::FleetTls::load(tls_dir)?;
        if !matches!(tls.me.role, fleet::FleetRole::Client { .. }) {
            bail!(
                "the certificate in {} is for {}, not a client; issue one with `tether ca issue CA_DIR --client NAME`",
                tls_dir.display(),
                tls.me
            );
        }
        let cfg = fleet::relay_dial_config(&tls)?;
        let mut errors = Vec::new();
        for k in 0..relays.len() {
            let i = (first + k) % relays.len();
            let addr = match tokio::net::lookup_host(&relays[i]).await {
                Ok(mut a) => match a.next() {
                    Some(a) => a,
                    None => {
                        errors.push(format!("{}: no address", relays[i]));
                        continue;
                    }
                },
                Err(e) => {
                    errors.push(format!("{}: {e}", relays[i]));
                    continue;
                }
            };
            let bind: std::net::SocketAddr = if addr.is_ipv4() {
                "0.0.0.0:0".parse().expect("valid")
            } else {
                "[::]:0".parse().expect("valid")
            };
            let endpoint = tether_net::endpoint::make_endpoint(bind, None)?;
            let attempt = async {
                let c = endpoint.connect_with(cfg.clone(), addr, "relay.tether")?;
                Ok::<_, anyhow::Error>(c.await?)
            };
            match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(conn)) => {
                    return Ok((
                        Client {
                            conn,
                            endpoint,
                            peer: addr,
                        },
                        i,
                    ))
                }
                Ok(Err(e)) => errors.push(format!("{}: {e:#}", relays[i])),
                Err(_) => errors.push(format!("{}: no answer within 3 s", relays[i])),
            }
        }
        bail!(
            "no relay answered ({}); check --relay and that the client certificate is valid",
            errors.join("; ")
        )
    }

    /// Opens a stream and sends `req`.
    pub async fn open(&self, req: &Request) -> anyhow::Result<Stream> {
        let (send, recv) = self.conn.open_bi().await.context("opening a stream")?;
        let mut wr = FrameWriter::new(send);
        let mut rd = FrameReader::new(recv);
        wr.hello(AGENT).await?;
        wr.control(req).await?;
        rd.hello().await?;
        Ok((rd, wr))
    }

    /// Moves the connection to a new local socket (QUIC connection
    /// migration): the streams go on, as when a device changes network.
    pub fn rebind(&self, socket: std::net::UdpSocket) -> std::io::Result<()> {
        self.endpoint.rebind(socket)
    }

    /// The local address the connection uses now.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Opens a bare stream, with no hello sent: for clients that write
    /// frames themselves (and for tests that send malformed ones).
    pub async fn open_raw(&self) -> anyhow::Result<(quinn::SendStream, quinn::RecvStream)> {
        Ok(self.conn.open_bi().await?)
    }

    /// Sends `req` and returns the single reply.
    pub async fn request(&self, req: &Request) -> anyhow::Result<Reply> {
        let (mut rd, mut wr) = self.open(req).await?;
        let reply = rd.control::<Reply>().await?;
        let _ = wr.get_mut().finish();
        Ok(reply)
    }

    /// Closes the connection cleanly.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"bye");
        // The close frame goes out at once; waiting for the whole draining
        // period (3 PTOs, ~80 ms) would only delay the exit of every verb.
        let _ = tokio::time::timeout(Duration::from_millis(5), self.endpoint.wait_idle()).await;
    }
}

/// The running node of `state_dir`, if any.
fn running_node(state_dir: &Path) -> anyhow::Result<Option<NodeRuntime>> {
    if !state_dir.exists() {
        return Ok(None);
    }
    match store::try_lock(state_dir)? {
        // Nobody holds the lock: no daemon (the lock drops here).
        store::LockAttempt::Locked(_) => Ok(None),
        store::LockAttempt::Busy => {
            let rt: Option<NodeRuntime> = files::read_json(&store::runtime_path(state_dir))?;
            Ok(rt.filter(|r| pid_alive(r.pid)))
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

async fn start_node(state_dir: &Path, a: &Autostart) -> anyhow::Result<NodeRuntime> {
    files::create_private_dir(state_dir)?;
    let log_path = store::log_path(state_dir);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(&a.exe);
    cmd.arg("node")
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the tether node")?;
    let pid = child.id();
    // Reap it in the background if it exits while we wait (a lost race
    // with another starter); otherwise it lives on, re-parented to init.
    let deadline = Instant::now() + START_TIMEOUT;
    let mut exited = false;
    loop {
        if let Some(rt) = files::read_json::<NodeRuntime>(&store::runtime_path(state_dir))
            .ok()
            .flatten()
        {
            if rt.pid == pid || (exited && pid_alive(rt.pid)) {
                return Ok(rt);
            }
        }
        if !exited {
            if let Some(status) = child.try_wait()? {
                exited = true;
                if running_node(state_dir)?.is_none()
                    && !matches!(store::try_lock(state_dir)?, store::LockAttempt::Busy)
                {
                    bail!(
                        "the tether node exited at start ({status}): {}",
                        last_line(&log_path)
                    );
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the tether node did not become ready within {START_TIMEOUT:?}; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("see {}", path.display()))
}
