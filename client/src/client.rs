//! One connection to a node or a relay, and the requests a client sends on
//! it: each opens a stream, sends the hello and the request, and reads the
//! single reply (an attach is an [`OutputStream`](crate::OutputStream)).

use crate::dial::{Autostart, Dial};
use crate::error::ClientError;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tether_net::conn::{FrameReader, FrameWriter};
use tether_proto::cursor::EndKind;
use tether_proto::{CreateSpec, MemberInfo, Reply, Request, SessionInfo, MAX_FRAME_SIZE};

/// What this client calls itself in its hello.
const AGENT: &str = concat!("tether/", env!("CARGO_PKG_VERSION"));

/// A request's stream, after the hellos.
pub type Stream = (
    FrameReader<quinn::RecvStream>,
    FrameWriter<quinn::SendStream>,
);

/// A connection to a node, or to a relay of a fleet.
pub struct Client {
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    /// Where it is connected: the node's or relay's address.
    pub peer: SocketAddr,
    dial: Arc<Dial>,
    relay: usize,
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
        conn: quinn::Connection,
        endpoint: quinn::Endpoint,
        peer: SocketAddr,
        dial: Arc<Dial>,
        relay: usize,
    ) -> Client {
        Client {
            conn,
            endpoint,
            peer,
            dial,
            relay,
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
    pub async fn open(&self, req: &Request) -> Result<Stream, ClientError> {
        let (send, recv) = self.conn.open_bi().await?;
        let mut wr = FrameWriter::new(send);
        let mut rd = FrameReader::new(recv);
        wr.hello(AGENT).await?;
        wr.control(req).await?;
        rd.hello().await?;
        Ok((rd, wr))
    }

    /// Opens a bare stream, with no hello sent: for clients that write
    /// frames themselves (and for tests that send malformed ones).
    pub async fn open_raw(&self) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        Ok(self.conn.open_bi().await?)
    }

    /// Sends `req` and returns the single reply; an error reply is
    /// [`ClientError::Refused`].
    pub async fn request(&self, req: &Request) -> Result<Reply, ClientError> {
        let (mut rd, mut wr) = self.open(req).await?;
        let reply = rd.control::<Reply>().await?;
        let _ = wr.get_mut().finish();
        ClientError::check(reply)
    }

    /// Every session the node (or the fleet, through a relay) has.
    pub async fn list(&self) -> Result<Vec<SessionInfo>, ClientError> {
        match self.request(&Request::List).await? {
            Reply::Sessions { sessions } => Ok(sessions),
            other => Err(ClientError::unexpected(other)),
        }
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
        match self
            .request(&Request::Wait {
                target: target.into(),
            })
            .await?
        {
            Reply::Exited { end, status } => Ok(EndKind::Exited { end, status }),
            Reply::Lost { end } => Ok(EndKind::Lost { end }),
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
        self.endpoint.rebind(socket)
    }

    /// The local address the connection uses now.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Closes the connection cleanly.
    pub async fn close(self) {
        self.conn.close(0u32.into(), b"bye");
        // The close frame goes out at once; waiting for the whole draining
        // period (3 PTOs, ~80 ms) would only delay the exit of every verb.
        let _ = tokio::time::timeout(Duration::from_millis(5), self.endpoint.wait_idle()).await;
    }
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
