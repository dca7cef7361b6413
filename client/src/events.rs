//! Following lifecycle events ([`tether_proto::Event`]): of one session,
//! of a node, or of a whole fleet.
//!
//! A node sends its sessions' events on one `Events` stream. Through a
//! relay, one session's events come from its node; the whole fleet's are
//! merged here from a stream to every live node, with `node_up` and
//! `node_down` as the relay's view of the members changes (looked at every
//! [`MEMBERS_EVERY`]). The relay stays stateless: it only carries streams.

use crate::client::Client;
use crate::error::ClientError;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tether_proto::gossip::Role;
use tether_proto::{Event, EventKind, Reply, Request, Route};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often a fleet follower looks at the members.
pub const MEMBERS_EVERY: Duration = Duration::from_secs(1);
/// How often a node's broken stream is opened again, at most.
const RETRY: Duration = Duration::from_secs(5);
/// Events received and not yet taken, at most; a follower that does not
/// take them holds the streams back, not the nodes.
const QUEUE: usize = 256;

/// Events as they come, until dropped.
pub struct Events {
    rx: mpsc::Receiver<Result<Event, ClientError>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Events {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Events {
    /// The next event; `None` once every stream has ended. An error ends
    /// the stream it came from (through a fleet, that node's until it is
    /// back).
    pub async fn next(&mut self) -> Option<Result<Event, ClientError>> {
        self.rx.recv().await
    }
}

/// Follows the events of session `target`, or of every session the
/// client sees (through a relay: on every node) when `None`.
pub async fn follow(client: &Client, target: Option<&str>) -> Result<Events, ClientError> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let req = Request::Events {
        target: target.map(str::to_string),
    };
    let task = if client.dial().is_fleet() && target.is_none() {
        tokio::spawn(fleet(client.clone(), tx))
    } else {
        let stream = client.open(&req).await?;
        let first = subscribed(stream).await?;
        tokio::spawn(async move {
            if let Err(e) = pump(first, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        })
    };
    Ok(Events {
        rx,
        tasks: vec![task],
    })
}

/// Waits for the node's `Ok`: the stream is subscribed.
async fn subscribed(mut s: crate::Stream) -> Result<crate::Stream, ClientError> {
    match ClientError::check(s.0.control::<Reply>().await?)? {
        Reply::Ok => Ok(s),
        other => Err(ClientError::unexpected(other)),
    }
}

/// Passes a stream's events on until it ends.
async fn pump(
    mut s: crate::Stream,
    tx: &mpsc::Sender<Result<Event, ClientError>>,
) -> Result<(), ClientError> {
    loop {
        match s.0.control::<Reply>().await? {
            Reply::Event { event } => {
                if tx.send(Ok(event)).await.is_err() {
                    return Ok(());
                }
            }
            other => return Err(ClientError::unexpected(other)),
        }
    }
}

/// The stream of each live node; aborted with the follower.
#[derive(Default)]
struct PerNode(HashMap<String, JoinHandle<()>>);

impl Drop for PerNode {
    fn drop(&mut self) {
        for t in self.0.values() {
            t.abort();
        }
    }
}

/// Merges the streams of every live node of the fleet, and tells when
/// nodes come and go (as the relay's view of the members says: a node's
/// stream breaking is not news by itself).
async fn fleet(client: Client, tx: mpsc::Sender<Result<Event, ClientError>>) {
    let mut streams = PerNode::default();
    let mut up: HashSet<String> = HashSet::new();
    let mut retry_at: HashMap<String, Instant> = HashMap::new();
    let mut first = true;
    loop {
        let members = match client.nodes().await {
            Ok(m) => m,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let now_ms = tether_net::time::now_ms();
        for m in members.iter().filter(|m| m.role == Role::Node) {
            if !m.live {
                streams.0.remove(&m.name).inspect(JoinHandle::abort);
                if up.remove(&m.name) {
                    let ev = Event::new(EventKind::NodeDown, now_ms, &m.name);
                    let _ = tx.send(Ok(ev)).await;
                }
                continue;
            }
            if up.insert(m.name.clone()) && !first {
                let _ = tx
                    .send(Ok(Event::new(EventKind::NodeUp, now_ms, &m.name)))
                    .await;
            }
            let running = streams.0.get(&m.name).is_some_and(|t| !t.is_finished());
            let due = retry_at.get(&m.name).is_none_or(|t| Instant::now() >= *t);
            if running || !due {
                continue;
            }
            // A stream that broke (or that an older node refused) is opened
            // again at most every RETRY.
            retry_at.insert(m.name.clone(), Instant::now() + RETRY);
            let (c, t, name) = (client.clone(), tx.clone(), m.name.clone());
            streams.0.insert(
                m.name.clone(),
                tokio::spawn(async move {
                    let req = Request::Events { target: None };
                    let route = Route::Node {
                        name: Some(name.clone()),
                    };
                    let res = match c.open_routed(route, &req).await {
                        Ok(s) => match subscribed(s).await {
                            Ok(s) => pump(s, &t).await,
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    };
                    if let Err(e) = res {
                        tracing::debug!(node = %name, err = %e, "events stream ended");
                    }
                }),
            );
        }
        first = false;
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(MEMBERS_EVERY).await;
    }
}
