//! One connection to a node or a relay, and the requests a client sends on
//! it: each opens a stream, sends the hello and the request, and reads the
//! single reply (an attach is an [`OutputStream`](crate::OutputStream)).

use crate::dial::{Autostart, Dial};
use crate::error::ClientError;
use crate::local::Sockets;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tether_net::conn::{FrameReader, FrameWriter};
use tether_net::tls::e2e::{self, BoxRead, BoxWrite};
use tether_net::tls::fleet::FleetTls;
use tether_net::tls::Fingerprint;
use tether_proto::cursor::EndKind;
use tether_proto::Route;
use tether_proto::{
    msg, CreateSpec, ErrorKind, Frame, Hello, MemberInfo, Reply, Request, ScreenState, SessionId,
    SessionInfo, MAX_FRAME_SIZE,
};
use tokio::io::AsyncWriteExt;

/// What this client calls itself in its hello.
const AGENT: &str = concat!("tether/", env!("CARGO_PKG_VERSION"));

/// A request's stream, after the hellos: a QUIC stream to the node, or a
/// TLS session with the node nested in a stream relays carry.
pub type Stream = (FrameReader<BoxRead>, FrameWriter<BoxWrite>);

/// How a [`Client`] reaches its node or relay.
#[derive(Clone)]
pub(crate) enum Transport {
    /// A QUIC connection: to a relay of a fleet, or to the local daemon
    /// when asked for ([`Dial::over_quic`]) or when it has no unix socket
    /// (an older daemon).
    Quic {
        conn: quinn::Connection,
        endpoint: quinn::Endpoint,
    },
    /// The unix sockets of the local state dir: a keeper's for what
    /// concerns one running session, the daemon's for the rest.
    Local(Sockets),
}

/// A connection to a node, or to a relay of a fleet. A clone shares the
/// connection (a stream per request); closing one closes it for all.
#[derive(Clone)]
pub struct Client {
    transport: Transport,
    /// Where it is connected: the node's or relay's address (for a local
    /// node reached by its unix sockets, the QUIC address it publishes).
    pub peer: SocketAddr,
    dial: Arc<Dial>,
    relay: usize,
    /// Fleet credentials, with which every request is sent end to end to
    /// its node through the relay.
    pub(crate) fleet: Option<Arc<FleetTls>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.peer)
            .field("dial", &self.dial)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn new(
        transport: Transport,
        peer: SocketAddr,
        dial: Arc<Dial>,
        relay: usize,
        fleet: Option<Arc<FleetTls>>,
    ) -> Client {
        Client {
            transport,
            peer,
            dial,
            relay,
            fleet,
        }
    }

    /// Connects to the node of `state_dir`; see [`Dial::Local`].
    pub async fn connect_local(
        state_dir: &Path,
        autostart: Option<Autostart>,
    ) -> Result<Client, ClientError> {
        Dial::local(state_dir, autostart).connect(0).await
    }

    /// Connects to the first relay of `relays` (host:port) that answers,
    /// with the fleet client credentials in `tls_dir`, starting at
    /// `first`. Returns the index of the relay used (also [`Client::relay_index`]).
    pub async fn connect_relay(
        relays: &[String],
        tls_dir: &Path,
        first: usize,
    ) -> Result<(Client, usize), ClientError> {
        let c = Dial::fleet(relays.to_vec(), tls_dir).connect(first).await?;
        let i = c.relay;
        Ok((c, i))
    }

    /// How this client connected, and will connect again.
    pub fn dial(&self) -> &Dial {
        &self.dial
    }

    /// For a fleet, the index in the relay list of the relay in use.
    pub fn relay_index(&self) -> usize {
        self.relay
    }

    /// Opens a stream and sends `req`; the reply is the caller's to read.
    /// Through a relay, a request that concerns a node goes inside a TLS
    /// session with that node ([`Client::open_routed`]); the relay answers
    /// only `nodes` and the gossip directory of `list` itself.
    pub async fn open(&self, req: &Request) -> Result<Stream, ClientError> {
        let route = match (&self.fleet, req) {
            (None, _) | (Some(_), Request::Nodes | Request::List) => None,
            (Some(_), Request::Create(spec)) => Some(Route::Node {
                name: spec.node.clone(),
            }),
            (Some(_), req) => Some(Route::Session {
                target: req.target().unwrap_or_default().to_string(),
            }),
        };
        if let Some(route) = route {
            return self.open_routed(route, req).await;
        }
        let (r, w): (BoxRead, BoxWrite) = match &self.transport {
            Transport::Quic { conn, .. } => {
                let (send, recv) = conn.open_bi().await?;
                (Box::new(recv), Box::new(send))
            }
            Transport::Local(sockets) => return self.open_local(sockets, req).await,
        };
        start(r, w, msg::encode(req)).await
    }

    /// The local fast path: what concerns one running session goes to its
    /// keeper, the rest (and what a keeper no longer serves: an ended
    /// session) to the daemon.
    async fn open_local(&self, sockets: &Sockets, req: &Request) -> Result<Stream, ClientError> {
        let mut req = std::borrow::Cow::Borrowed(req);
        if let Some(target) = req.target().filter(|_| req.keeper_serves()) {
            let id = match sockets.id_of(target) {
                Some(id) => id,
                None => self.locate(sockets, target).await?,
            };
            if let (Ok(s), Some(kreq)) = (sockets.keeper(id).await, req.for_keeper(id)) {
                let (r, w) = s.into_split();
                match start(Box::new(r), Box::new(w), msg::encode(&kreq)).await {
                    Ok(stream) => return Ok(stream),
                    // A keeper that is closing (its session ended) resets
                    // the connections it will never accept.
                    Err(ClientError::Transport(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            req = std::borrow::Cow::Owned(req.into_owned().retarget(id));
        }
        let (r, w) = sockets.daemon().await?.into_split();
        start(Box::new(r), Box::new(w), msg::encode(&*req)).await
    }

    /// Asks the local daemon which session `target` names.
    async fn locate(&self, sockets: &Sockets, target: &str) -> Result<SessionId, ClientError> {
        let (r, w) = sockets.daemon().await?.into_split();
        let req = Request::Locate {
            target: target.into(),
        };
        let (mut rd, _wr) = start(Box::new(r), Box::new(w), msg::encode(&req)).await?;
        match ClientError::check(rd.control::<Reply>().await?)? {
            Reply::Located { id } => Ok(id),
            other => Err(ClientError::unexpected(other)),
        }
    }

    /// Asks the relay to carry a stream to a node, runs TLS with that node
    /// over it (this client's certificate against the node's, which must
    /// carry the node's name and the fingerprint gossip announced), and
    /// sends `req` inside.
    ///
    /// A relay that cannot reach the node ([`ErrorKind::Unavailable`]:
    /// gossip says it is dead, or it does not answer the relay) may be the
    /// only one cut off from it: a partition can take one relay's gossip or
    /// path and not another's. So the other relays of the fleet are asked
    /// too, each once, before the client is told.
    pub async fn open_routed(&self, route: Route, req: &Request) -> Result<Stream, ClientError> {
        let first = match self.open_routed_here(route.clone(), req).await {
            Err(e) if e.kind() == Some(ErrorKind::Unavailable) => e,
            other => return other,
        };
        let Dial::Fleet { relays, tls_dir } = self.dial.as_ref() else {
            return Err(first);
        };
        for k in 1..relays.len() {
            // That relay alone: one that is down is skipped, not replaced
            // by the next (which the loop asks in its turn).
            let i = (self.relay + k) % relays.len();
            let one = Dial::fleet(vec![relays[i].clone()], tls_dir.clone());
            let Ok(other) = one.connect(0).await else {
                continue;
            };
            match other.open_routed_here(route.clone(), req).await {
                Err(e) if e.kind() == Some(ErrorKind::Unavailable) => continue,
                done => return done,
            }
        }
        Err(first)
    }

    /// [`Client::open_routed`] through this client's relay only.
    async fn open_routed_here(&self, route: Route, req: &Request) -> Result<Stream, ClientError> {
        let Some(tls) = &self.fleet else {
            return Err(ClientError::Config(
                "routing needs fleet credentials; connect through a relay".into(),
            ));
        };
        let Transport::Quic { conn, .. } = &self.transport else {
            return Err(ClientError::Config(
                "routing goes through a relay; this client is local".into(),
            ));
        };
        let (send, recv) = conn.open_bi().await?;
        let mut wr = FrameWriter::new(send);
        let mut rd = FrameReader::new(recv);
        wr.hello(AGENT).await?;
        wr.control(&Request::Route(route)).await?;
        rd.hello().await?;
        let (node, fp) = match ClientError::check(rd.control::<Reply>().await?)? {
            Reply::Routed { node, fp } => (node, fp),
            other => return Err(ClientError::unexpected(other)),
        };
        let pin: Fingerprint = fp.parse().map_err(|_| {
            ClientError::Untrusted(format!(
                "the relay at {} named node {node} with a malformed fingerprint",
                self.peer
            ))
        })?;
        let (r, ahead) = rd.into_parts();
        let (ir, iw) = e2e::connect(
            e2e::prefixed(ahead, r),
            wr.into_inner(),
            tls,
            &node,
            Some(pin),
        )
        .await
        .map_err(|e| match e {
            e2e::E2eError::Handshake { err, .. } => ClientError::Untrusted(format!(
                "node {node} could not be verified end to end through the relay at {}: \
                     {err}; the relay, or whoever answered for {node}, is not trusted with \
                     this stream",
                self.peer
            )),
            other => ClientError::Config(other.to_string()),
        })?;
        let mut rd = FrameReader::new(ir);
        let mut wr = FrameWriter::new(iw);
        wr.hello(AGENT).await?;
        wr.control(req).await?;
        rd.hello().await?;
        Ok((rd, wr))
    }

    /// Opens a bare stream to the node or relay (locally, a connection to
    /// the daemon's socket), with no hello sent: for clients that write
    /// frames themselves (and for tests that send malformed ones).
    pub async fn open_raw(&self) -> Result<(BoxWrite, BoxRead), ClientError> {
        match &self.transport {
            Transport::Quic { conn, .. } => {
                let (send, recv) = conn.open_bi().await?;
                Ok((Box::new(send), Box::new(recv)))
            }
            Transport::Local(sockets) => {
                let (r, w) = sockets.daemon().await?.into_split();
                Ok((Box::new(w), Box::new(r)))
            }
        }
    }

    /// Sends `req` and returns the single reply; an error reply is
    /// [`ClientError::Refused`].
    pub async fn request(&self, req: &Request) -> Result<Reply, ClientError> {
        let (mut rd, mut wr) = self.open(req).await?;
        let reply = rd.control::<Reply>().await?;
        let _ = wr.get_mut().shutdown().await;
        ClientError::check(reply)
    }

    /// One session's metadata; `target` is an ID, a unique ID prefix or a
    /// name.
    pub async fn info(&self, target: &str) -> Result<SessionInfo, ClientError> {
        session(
            self.request(&Request::Info {
                target: target.into(),
            })
            .await?,
        )
    }

    /// Starts a session.
    pub async fn create(&self, spec: CreateSpec) -> Result<SessionInfo, ClientError> {
        session(self.request(&Request::Create(spec)).await?)
    }

    /// Types `data` into a session, in as many requests as frames need.
    pub async fn send(&self, target: &str, data: &[u8]) -> Result<(), ClientError> {
        for chunk in data.chunks(MAX_FRAME_SIZE / 2) {
            ok(self
                .request(&Request::Send {
                    target: target.into(),
                    data: chunk.to_vec(),
                })
                .await?)?;
        }
        Ok(())
    }

    /// Sends signal number `signal` to a session's process group.
    pub async fn kill(&self, target: &str, signal: i32) -> Result<(), ClientError> {
        ok(self
            .request(&Request::Kill {
                target: target.into(),
                signal,
            })
            .await?)
    }

    /// Lets client `with` into a session this client owns (watching only
    /// with `read_only`).
    pub async fn share(
        &self,
        target: &str,
        with: &str,
        read_only: bool,
    ) -> Result<(), ClientError> {
        ok(self
            .request(&Request::Share {
                target: target.into(),
                share: tether_proto::Share {
                    with: with.into(),
                    read_only,
                },
            })
            .await?)
    }

    /// Takes client `with`'s share of a session away.
    pub async fn unshare(&self, target: &str, with: &str) -> Result<(), ClientError> {
        ok(self
            .request(&Request::Unshare {
                target: target.into(),
                with: with.into(),
            })
            .await?)
    }

    /// Forgets an ended session and deletes its files.
    pub async fn remove(&self, target: &str) -> Result<(), ClientError> {
        ok(self
            .request(&Request::Remove {
                target: target.into(),
            })
            .await?)
    }

    /// Waits until a session has ended: [`EndKind::Exited`] with its
    /// status, or [`EndKind::Lost`] when its keeper vanished.
    pub async fn wait(&self, target: &str) -> Result<EndKind, ClientError> {
        let req = Request::Wait {
            target: target.into(),
        };
        match self.request(&req).await? {
            Reply::Exited { end, status } => Ok(EndKind::Exited { end, status }),
            Reply::Lost { end } => Ok(EndKind::Lost { end }),
            other => Err(ClientError::unexpected(other)),
        }
    }

    /// The visible screen of a session, from the node's emulator.
    pub async fn screen(&self, target: &str) -> Result<ScreenState, ClientError> {
        match self
            .request(&Request::Screen {
                target: target.into(),
            })
            .await?
        {
            Reply::Screen { screen } => Ok(screen),
            other => Err(ClientError::unexpected(other)),
        }
    }

    /// The members of the fleet (through a relay), or the node itself.
    pub async fn nodes(&self) -> Result<Vec<MemberInfo>, ClientError> {
        match self.request(&Request::Nodes).await? {
            Reply::Nodes { nodes } => Ok(nodes),
            other => Err(ClientError::unexpected(other)),
        }
    }

    /// Moves the connection to a new local socket (QUIC connection
    /// migration): the streams go on, as when a device changes network.
    pub fn rebind(&self, socket: std::net::UdpSocket) -> std::io::Result<()> {
        self.endpoint()?.rebind(socket)
    }

    /// The local address the connection uses now.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint()?.local_addr()
    }

    fn endpoint(&self) -> std::io::Result<&quinn::Endpoint> {
        match &self.transport {
            Transport::Quic { endpoint, .. } => Ok(endpoint),
            Transport::Local(_) => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this client uses the local unix sockets, not QUIC",
            )),
        }
    }

    /// Whether requests go over the local unix sockets (the fast path).
    pub fn is_local_fast_path(&self) -> bool {
        matches!(self.transport, Transport::Local(_))
    }

    /// Closes the connection cleanly.
    pub async fn close(self) {
        if let Transport::Quic { conn, endpoint } = self.transport {
            conn.close(0u32.into(), b"bye");
            // The close frame goes out at once; waiting for the whole
            // draining period (3 PTOs, ~80 ms) would only delay the exit
            // of every verb.
            let _ = tokio::time::timeout(Duration::from_millis(5), endpoint.wait_idle()).await;
        }
    }
}

/// Sends the hello and `req` on a new stream, in one write, and reads the
/// peer's hello.
async fn start(r: BoxRead, w: BoxWrite, req: Vec<u8>) -> Result<Stream, ClientError> {
    let mut rd = FrameReader::new(r);
    let mut wr = FrameWriter::new(w);
    let mut first = Vec::new();
    Frame::Control(msg::encode(&Hello::current(AGENT))).encode_into(&mut first);
    Frame::Control(req).encode_into(&mut first);
    wr.send_raw(&first).await?;
    rd.hello().await?;
    Ok((rd, wr))
}

fn session(reply: Reply) -> Result<SessionInfo, ClientError> {
    match reply {
        Reply::Session { session } => Ok(session),
        other => Err(ClientError::unexpected(other)),
    }
}

fn ok(reply: Reply) -> Result<(), ClientError> {
    match reply {
        Reply::Ok => Ok(()),
        other => Err(ClientError::unexpected(other)),
    }
}
