//! Where a client connects, and how it connects there again: the local
//! node of a state dir (started when none runs, with [`Autostart`]), or a
//! fleet through a list of relays (the next one tried after a failure).
//!
//! # Connection flow
//! - Local: read `<state>/node.json` if a daemon holds the state dir's
//!   lock; else start `tether node` (with [`Autostart`]) and wait for its
//!   `node.json`; then dial its QUIC address, pinning the fingerprint it
//!   published, with the client key of the state dir.
//! - Fleet: load the client certificate (and the CA's revocation list,
//!   `crl.pem`, if the TLS dir holds one) from the TLS dir; dial the relays
//!   in turn from index `first`; the first that answers serves. A relay
//!   that refuses the certificate as revoked makes it a configuration error
//!   (a new certificate is needed), not a relay to retry.

use crate::client::Transport;
use crate::error::ClientError;
use crate::local::Sockets;
use crate::{local, Client};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tether_net::tls::local::{self as identity, ClientIdentity};
use tether_net::tls::{fleet, revoke};

/// How long a local node may take to answer a connection.
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long each relay may take to answer a connection.
const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How to start a node when none runs.
#[derive(Debug, Clone)]
pub struct Autostart {
    /// The tether binary (run as `EXE node --state-dir DIR`).
    pub exe: PathBuf,
}

/// Where a client connects; kept by every [`Client`] so that a broken
/// stream can connect again the same way.
#[derive(Debug, Clone)]
pub enum Dial {
    /// The node of a state dir on this host.
    Local {
        /// The node's state dir.
        state_dir: PathBuf,
        /// Start a node when none runs; `None` fails instead.
        autostart: Option<Autostart>,
        /// Speak QUIC to the daemon, as a remote client would, instead of
        /// the unix sockets (for diagnostics and the tests of the QUIC
        /// server).
        quic: bool,
    },
    /// A fleet, through relays.
    Fleet {
        /// Relay addresses (host:port), tried in turn.
        relays: Vec<String>,
        /// Fleet client credentials: cert.pem, key.pem, ca.pem.
        tls_dir: PathBuf,
    },
}

impl Dial {
    /// The local node of `state_dir`, started with `autostart` if none runs.
    pub fn local(state_dir: impl Into<PathBuf>, autostart: Option<Autostart>) -> Dial {
        Dial::Local {
            state_dir: state_dir.into(),
            autostart,
            quic: false,
        }
    }

    /// The same, but a local node is spoken to over QUIC (with the state
    /// dir's client key), as a remote client would; a fleet dial is
    /// unchanged.
    pub fn over_quic(self) -> Dial {
        match self {
            Dial::Local {
                state_dir,
                autostart,
                ..
            } => Dial::Local {
                state_dir,
                autostart,
                quic: true,
            },
            fleet => fleet,
        }
    }

    /// A fleet through `relays`, with the client credentials in `tls_dir`.
    pub fn fleet(relays: Vec<String>, tls_dir: impl Into<PathBuf>) -> Dial {
        Dial::Fleet {
            relays,
            tls_dir: tls_dir.into(),
        }
    }

    /// Whether this goes through relays.
    pub fn is_fleet(&self) -> bool {
        matches!(self, Dial::Fleet { .. })
    }

    /// Connects. For a fleet, to the first relay that answers, trying them
    /// in turn from index `first` (a reconnect passes the index after the
    /// one that failed); the client knows which one
    /// ([`Client::relay_index`]). A local dial ignores `first`.
    pub async fn connect(&self, first: usize) -> Result<Client, ClientError> {
        let dial = Arc::new(self.clone());
        match self {
            Dial::Local {
                state_dir,
                autostart,
                quic,
            } => connect_local(dial.clone(), state_dir, autostart.as_ref(), *quic).await,
            Dial::Fleet { relays, tls_dir } => {
                connect_relay(dial.clone(), relays, tls_dir, first).await
            }
        }
    }
}

async fn connect_local(
    dial: Arc<Dial>,
    state_dir: &std::path::Path,
    autostart: Option<&Autostart>,
    quic: bool,
) -> Result<Client, ClientError> {
    let config = |e: anyhow::Error| ClientError::Config(format!("{e:#}"));
    let runtime = match local::running_node(state_dir).map_err(config)? {
        Some(rt) => rt,
        None => match autostart {
            Some(a) => local::start_node(state_dir, a).await?,
            None => {
                return Err(ClientError::connect(
                    format!("no tether node runs on state dir {}", state_dir.display()),
                    "start one with `tether node`",
                ))
            }
        },
    };
    // A daemon older than the fast path has no socket: QUIC then.
    if !quic && tether_net::runtime::socket_path(state_dir).exists() {
        let sockets = Sockets {
            state_dir: state_dir.to_path_buf(),
        };
        return Ok(Client::new(
            Transport::Local(sockets),
            runtime.addr,
            dial,
            0,
            None,
        ));
    }
    let pin = runtime.fingerprint.parse().map_err(|_| {
        ClientError::connect(
            format!(
                "{} holds a bad fingerprint",
                tether_net::runtime::runtime_path(state_dir).display()
            ),
            "restart the node",
        )
    })?;
    let id = ClientIdentity::load(state_dir, pin).map_err(config)?;
    let cfg = identity::client_config(&id).map_err(config)?;
    let bind: std::net::SocketAddr = if runtime.addr.is_ipv4() {
        "127.0.0.1:0".parse().expect("valid")
    } else {
        "[::1]:0".parse().expect("valid")
    };
    let unreachable = |what: String| {
        ClientError::connect(
            what,
            format!(
                "check that the node daemon runs (its log: {})",
                tether_net::runtime::log_path(state_dir).display()
            ),
        )
    };
    let endpoint = tether_net::endpoint::make_endpoint(bind, None)
        .map_err(|e| unreachable(format!("{e:#}")))?;
    let connecting = endpoint
        .connect_with(cfg, runtime.addr, "tether-node")
        .map_err(|e| unreachable(format!("connecting to the node at {}: {e}", runtime.addr)))?;
    let conn = match tokio::time::timeout(LOCAL_CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(unreachable(format!(
                "connecting to the node at {}: {e}",
                runtime.addr
            )))
        }
        Err(_) => {
            return Err(unreachable(format!(
                "the node at {} does not answer within {LOCAL_CONNECT_TIMEOUT:?}",
                runtime.addr
            )))
        }
    };
    Ok(Client::new(
        Transport::Quic { conn, endpoint },
        runtime.addr,
        dial,
        0,
        None,
    ))
}

async fn connect_relay(
    dial: Arc<Dial>,
    relays: &[String],
    tls_dir: &std::path::Path,
    first: usize,
) -> Result<Client, ClientError> {
    if relays.is_empty() {
        return Err(ClientError::Config(
            "no relay to connect to; pass --relay HOST:PORT".into(),
        ));
    }
    let tls = fleet::FleetTls::load(tls_dir).map_err(|e| ClientError::Config(format!("{e:#}")))?;
    if !tls.me.role.is_client() {
        return Err(ClientError::Config(format!(
            "the certificate in {} is for {}, not a client; issue one with `tether ca issue CA_DIR --client NAME`",
            tls_dir.display(),
            tls.me
        )));
    }
    let cfg = fleet::relay_dial_config(&tls).map_err(|e| ClientError::Config(format!("{e:#}")))?;
    let tls = Arc::new(tls);
    let mut errors = Vec::new();
    let mut revoked_by = Vec::new();
    for k in 0..relays.len() {
        let i = (first + k) % relays.len();
        let relay = &relays[i];
        let addr = match tokio::net::lookup_host(relay).await.map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            Ok(None) => {
                errors.push(format!("{relay}: no address"));
                continue;
            }
            Err(e) => {
                errors.push(format!("{relay}: {e}"));
                continue;
            }
        };
        let bind: std::net::SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid")
        } else {
            "[::]:0".parse().expect("valid")
        };
        let endpoint = match tether_net::endpoint::make_endpoint(bind, None) {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!("{relay}: {e:#}"));
                continue;
            }
        };
        let attempt = async {
            let c = endpoint.connect_with(cfg.clone(), addr, "relay.tether")?;
            let conn = c.await?;
            // The relay's verdict on this client's certificate (a revoked
            // one is refused only after the client's side of the
            // handshake): a refusal moves on to the next relay.
            fleet::admitted(&conn).await?;
            Ok::<_, anyhow::Error>(conn)
        };
        match tokio::time::timeout(RELAY_CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => {
                let t = Transport::Quic { conn, endpoint };
                return Ok(Client::new(t, addr, dial, i, Some(tls)));
            }
            Ok(Err(e)) => {
                if e.downcast_ref::<quinn::ConnectionError>()
                    .is_some_and(revoke::refused_as_revoked)
                {
                    revoked_by.push(relay.as_str());
                }
                errors.push(format!("{relay}: {e:#}"));
            }
            Err(_) => errors.push(format!(
                "{relay}: no answer within {}",
                humanize(RELAY_CONNECT_TIMEOUT)
            )),
        }
    }
    if !revoked_by.is_empty() {
        let serial = revoke::Serial::of_cert(tls.cert.as_ref())
            .map(|s| format!(", serial {s}"))
            .unwrap_or_default();
        return Err(ClientError::Config(format!(
            "the fleet has revoked this client's certificate ({}{serial}, in {}): relay {} refused it; \
             ask the fleet's operator for a new one (`tether ca issue CA_DIR --client {}`)",
            tls.me,
            tls_dir.display(),
            revoked_by.join(", "),
            tls.me.name
        )));
    }
    Err(ClientError::connect(
        format!("no relay answered ({})", errors.join("; ")),
        "check --relay and that the client certificate is valid",
    ))
}

/// `3 s`, `500 ms`.
fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}
