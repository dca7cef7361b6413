//! A name or ID prefix gossip does not know: asking nodes, within bounds.
//!
//! Gossip carries a new session to the relay within a round or two; in
//! between, a client that names it (created a moment ago, by name) would
//! be told it does not exist. So the relay asks nodes (`Locate`) whether
//! they have it. Asking every live node cost a stream, and for a node not
//! yet connected a QUIC handshake, per live node per request: 1,000 dials
//! for one typo in a 1,000-node fleet, and as many again for each retry.
//!
//! # Protocol flow
//! 1. The view did not resolve the target and nothing matched it at all
//!    ([`ResolveError::unmatched`]).
//! 2. A miss for the same target less than [`MISS_TTL`] ago answers at
//!    once (the [`Misses`] cache, at most [`MISSES_MAX`] targets).
//! 3. Otherwise at most [`MAX_NODES_ASKED`] live nodes are asked, those
//!    this relay holds a connection or tunnel to first (a client that
//!    created the session through this relay made it dial that node),
//!    [`CONCURRENCY`] at a time, all within one dial timeout. Every relay
//!    request shares [`IN_FLIGHT`] locate streams.
//! 4. One node has it: routed there. Several: ambiguous, as gossip would
//!    say. None: a miss, cached; the error says how many of the live nodes
//!    were asked when not all were.

use crate::resolve::RouteError;
use crate::server::Relay;
use crate::view::FleetView;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tether_proto::{Reply, Request, ResolveError, SessionId};
use tokio::time::Instant;

/// Live nodes one lookup asks at most. A name gossip does not know is a
/// session created within the last round or two, almost always through
/// this relay, whose node is then among those asked first; past a few
/// dozen, each further node is one more dial for one request (a typo
/// would cost a 1,000-node fleet 1,000 dials), and gossip answers within
/// a second anyway.
pub const MAX_NODES_ASKED: usize = 32;

/// Nodes one lookup asks at once: a lookup that must dial takes at most
/// `MAX_NODES_ASKED / CONCURRENCY` dial round trips, and all of it stays
/// within one dial timeout.
pub const CONCURRENCY: usize = 8;

/// Locate streams the relay has open at once, over every request: what
/// many clients asking unknown names together can make it hold.
pub const IN_FLIGHT: usize = 64;

/// How long a miss answers for its target: about the time gossip takes to
/// carry a new session (a few 200 ms rounds), so that a client retrying a
/// typo in a loop costs no dial, and a session created meanwhile is found
/// through gossip (asked first) soon after.
pub const MISS_TTL: Duration = Duration::from_secs(1);

/// Targets the miss cache remembers at most; past that, the one that
/// expires first is forgotten.
pub const MISSES_MAX: usize = 4096;

/// Recent misses: targets no node had, until when that answer holds.
#[derive(Debug, Default)]
pub(crate) struct Misses {
    until: HashMap<String, Instant>,
}

impl Misses {
    /// Whether `target` missed less than [`MISS_TTL`] ago.
    pub(crate) fn holds(&mut self, target: &str, now: Instant) -> bool {
        match self.until.get(target) {
            Some(t) if *t > now => true,
            Some(_) => {
                self.until.remove(target);
                false
            }
            None => false,
        }
    }

    /// Notes that no node had `target`.
    pub(crate) fn note(&mut self, target: &str, now: Instant) {
        if self.until.len() >= MISSES_MAX && !self.until.contains_key(target) {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= MISSES_MAX {
                let first = self.until.iter().min_by_key(|(_, t)| **t);
                if let Some(k) = first.map(|(k, _)| k.clone()) {
                    self.until.remove(&k);
                }
            }
        }
        self.until.insert(target.to_string(), now + MISS_TTL);
    }

    /// Targets remembered.
    pub(crate) fn len(&self) -> usize {
        self.until.len()
    }
}

/// Which live nodes of `view` to ask, in order: those `connected` says
/// this relay holds a connection to first, then the rest in gossip's
/// order, at most `max`. Also returns how many are live.
pub fn plan(
    view: &FleetView,
    connected: impl Fn(usize) -> bool,
    max: usize,
) -> (Vec<usize>, usize) {
    let live: Vec<usize> = (0..view.nodes.len())
        .filter(|&i| view.nodes[i].live)
        .collect();
    let (mut first, rest): (Vec<usize>, Vec<usize>) = live.iter().partition(|&&i| connected(i));
    first.extend(rest);
    first.truncate(max);
    (first, live.len())
}

impl Relay {
    /// Asks live nodes, within the bounds above, which one has `target`
    /// (a name or prefix the view did not resolve, `not_known` being the
    /// view's answer); the node's index in `view` and the session's ID.
    pub(crate) async fn locate(
        self: &Arc<Self>,
        target: &str,
        view: &Arc<FleetView>,
        not_known: ResolveError,
    ) -> Result<(usize, SessionId), RouteError> {
        if self
            .misses
            .lock()
            .expect("misses lock")
            .holds(target, Instant::now())
        {
            return Err(not_known.into());
        }
        let connected = {
            let conns = self.conns.lock().await;
            let tunnels = self.tunnels.lock().expect("tunnels lock");
            view.nodes
                .iter()
                .map(|n| tunnels.contains_key(&n.name) || conns.contains_key(&n.id))
                .collect::<Vec<bool>>()
        };
        let (asked, live) = plan(view, |i| connected[i], MAX_NODES_ASKED);
        let found = self.ask(target, view, &asked).await;
        match found.as_slice() {
            [one] => Ok(*one),
            [] => {
                self.misses
                    .lock()
                    .expect("misses lock")
                    .note(target, Instant::now());
                if asked.len() < live {
                    return Err(RouteError::NotLocated {
                        target: target.to_string(),
                        asked: asked.len(),
                        live,
                    });
                }
                Err(not_known.into())
            }
            many => Err(ResolveError::Ambiguous {
                target: target.to_string(),
                candidates: many
                    .iter()
                    .map(|(i, _)| format!("{target}@{}", view.nodes[*i].name))
                    .collect::<Vec<_>>()
                    .join(", "),
                by: tether_proto::resolve::Ambiguity::Name,
            }
            .into()),
        }
    }

    /// Sends `Locate` to the nodes `asked`, [`CONCURRENCY`] at a time,
    /// until one dial timeout has passed; the nodes that have it.
    async fn ask(
        self: &Arc<Self>,
        target: &str,
        view: &Arc<FleetView>,
        asked: &[usize],
    ) -> Vec<(usize, SessionId)> {
        let req = Request::Locate {
            target: target.to_string(),
        };
        let deadline = Instant::now() + Duration::from_millis(self.cfg.dial_timeout_ms);
        let mut pending = asked.iter().copied();
        let mut set = tokio::task::JoinSet::new();
        let mut found = Vec::new();
        loop {
            while set.len() < CONCURRENCY {
                let Some(i) = pending.next() else { break };
                let (relay, view, req) = (self.clone(), view.clone(), req.clone());
                set.spawn(async move {
                    let _permit = relay.locating.clone().acquire_owned().await.ok()?;
                    let n = &view.nodes[i];
                    let (mut rd, _wr, _lease) = relay.open_to(n, &req, true).await.ok()?;
                    match rd.control::<Reply>().await.ok()? {
                        Reply::Located { id } => Some((i, id)),
                        _ => None,
                    }
                });
            }
            match tokio::time::timeout_at(deadline, set.join_next()).await {
                Ok(Some(Ok(Some(hit)))) => found.push(hit),
                Ok(Some(_)) => {}
                // All asked and answered, or out of time (the set aborts
                // the rest when dropped).
                Ok(None) | Err(_) => break,
            }
        }
        found.sort();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::NodeView;

    #[test]
    fn the_plan_asks_connected_nodes_first_and_at_most_max() {
        let node = |k: usize, live: bool| NodeView {
            id: format!("id{k}"),
            name: format!("n{k}"),
            quic: None,
            fp: String::new(),
            live,
            dead_since: None,
            sessions: Vec::new().into(),
            relays: vec![],
        };
        let view = FleetView::of_nodes((0..100).map(|k| node(k, k % 10 != 3)).collect());
        let connected = |i: usize| i % 25 == 7 || i == 13;
        let (asked, live) = plan(&view, connected, MAX_NODES_ASKED);
        assert_eq!(live, 90);
        assert_eq!(asked.len(), MAX_NODES_ASKED);
        // 13 is connected but dead: never asked.
        assert_eq!(&asked[..4], &[7, 32, 57, 82]);
        assert_eq!(&asked[4..8], &[0, 1, 2, 4]);
        let (all, _) = plan(&view, connected, 1000);
        assert_eq!(all.len(), 90);
        assert!(all.iter().all(|&i| view.nodes[i].live));
    }

    #[test]
    fn misses_expire_and_stay_bounded() {
        let mut m = Misses::default();
        let t0 = Instant::now();
        m.note("typo", t0);
        assert!(m.holds("typo", t0 + MISS_TTL / 2));
        assert!(!m.holds("other", t0));
        assert!(!m.holds("typo", t0 + MISS_TTL));
        for k in 0..MISSES_MAX + 10 {
            m.note(&format!("t{k}"), t0 + Duration::from_micros(k as u64));
        }
        assert_eq!(m.len(), MISSES_MAX);
        // The first to expire went first; the newest stays.
        assert!(!m.holds("t0", t0));
        assert!(m.holds(&format!("t{}", MISSES_MAX + 9), t0));
    }
}
