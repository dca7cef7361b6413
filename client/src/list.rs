//! `ls` across a fleet: each live node asked end to end, a bounded number
//! at a time and within a deadline; what a node did not answer comes from
//! the relay's gossip directory, marked with why.
//!
//! # Protocol flow
//! 1. The relay's `List` answer: the gossip directory (every session
//!    gossip announces, those of dead nodes marked unreachable).
//! 2. The relay's `Nodes` answer: the members, with liveness.
//! 3. Each live node is sent `List` in a routed stream (TLS with the node
//!    inside), [`LIST_CONCURRENCY`] at a time, until [`LIST_DEADLINE`]:
//!    a node's answer replaces gossip's view of its sessions.
//! 4. The sessions of a node that failed, or that was not asked or did
//!    not answer by the deadline, are gossip's, marked unreachable with the
//!    reason.

use crate::client::Client;
use crate::error::ClientError;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tether_proto::gossip::Role;
use tether_proto::{Reply, Request, Route, SessionInfo};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// Nodes `ls` asks at once through a relay. Each is a routed stream and a
/// TLS handshake with the node (the client's CPU, and a dial at the relay
/// for a node it has no connection to): 16 keeps a 1,000-node `ls` to
/// about 60 rounds of one node's answer time, without 1,000 handshakes at
/// once on either the client or the relay.
pub const LIST_CONCURRENCY: usize = 16;

/// How long `ls` waits for the nodes' own answers. A node that has not
/// answered by then (one the relay cannot reach takes its dial timeout,
/// 2 s by default) is shown from gossip, marked as not having answered:
/// one dead-slow corner of the fleet does not hold up the whole list.
pub const LIST_DEADLINE: Duration = Duration::from_secs(10);

impl Client {
    /// Every session the node (or the fleet, through a relay) has. Through
    /// a relay, each live node is asked end to end, [`LIST_CONCURRENCY`]
    /// at a time, for at most [`LIST_DEADLINE`]; the sessions of the nodes
    /// that cannot be reached, or did not answer in time, come from the
    /// relay's gossip directory, marked unreachable.
    pub async fn list(&self) -> Result<Vec<SessionInfo>, ClientError> {
        self.list_within(LIST_CONCURRENCY, LIST_DEADLINE).await
    }

    /// [`Client::list`] with other bounds: at most `concurrency` nodes
    /// asked at once, none after `deadline`.
    pub async fn list_within(
        &self,
        concurrency: usize,
        deadline: Duration,
    ) -> Result<Vec<SessionInfo>, ClientError> {
        let until = Instant::now() + deadline;
        let directory = match self.request(&Request::List).await? {
            Reply::Sessions { sessions } => sessions,
            other => return Err(ClientError::unexpected(other)),
        };
        if self.fleet.is_none() {
            return Ok(directory);
        }
        let members = self.nodes().await?;
        let live: Vec<_> = members
            .iter()
            .filter(|m| m.role == Role::Node && m.live)
            .collect();
        let asked = live.iter().map(|m| self.list_of(&m.name));
        let answers = join_bounded(asked, concurrency.max(1), until).await;
        let mut out = Vec::new();
        let mut answered = HashSet::new();
        let mut failed = HashMap::new();
        for (m, res) in live.iter().zip(answers) {
            match res {
                Some(Ok(sessions)) => {
                    answered.insert(m.name.clone());
                    out.extend(sessions.into_iter().map(|mut s| {
                        s.node_name = Some(m.name.clone());
                        s
                    }));
                }
                Some(Err(e)) => {
                    failed.insert(m.name.clone(), format!("node {} unreachable: {e}", m.name));
                }
                None => {
                    let why = format!(
                        "node {} did not answer within {deadline:?} (shown as gossip last \
                         announced it); `tether ls` again asks it anew",
                        m.name
                    );
                    failed.insert(m.name.clone(), why);
                }
            }
        }
        for mut s in directory {
            let node = s.node_name.clone().unwrap_or_default();
            if answered.contains(&node) {
                continue;
            }
            if let Some(why) = failed.get(&node) {
                s.unreachable = Some(why.clone());
            }
            out.push(s);
        }
        out.sort_by_key(|s| (s.created_at_ms, s.id));
        Ok(out)
    }

    /// The sessions node `name` lists, asked end to end.
    async fn list_of(&self, name: &str) -> Result<Vec<SessionInfo>, ClientError> {
        let route = Route::Node {
            name: Some(name.to_string()),
        };
        let (mut rd, mut wr) = self.open_routed(route, &Request::List).await?;
        let reply = rd.control::<Reply>().await?;
        let _ = wr.get_mut().shutdown().await;
        match ClientError::check(reply)? {
            Reply::Sessions { sessions } => Ok(sessions),
            other => Err(ClientError::unexpected(other)),
        }
    }
}

/// Runs the futures on this task, at most `k` at once, in order, until
/// `until`; their outputs in order, `None` for those not finished (or not
/// started) by then.
async fn join_bounded<F: Future>(
    futs: impl Iterator<Item = F>,
    k: usize,
    until: Instant,
) -> Vec<Option<F::Output>> {
    let mut pending = futs.enumerate();
    let mut out: Vec<Option<F::Output>> = Vec::new();
    let mut running: Vec<(usize, Pin<Box<F>>)> = Vec::new();
    let mut exhausted = false;
    let timer = tokio::time::sleep_until(until);
    tokio::pin!(timer);
    std::future::poll_fn(|cx| loop {
        while !exhausted && running.len() < k {
            match pending.next() {
                Some((i, f)) => {
                    out.push(None);
                    running.push((i, Box::pin(f)));
                }
                None => exhausted = true,
            }
        }
        let before = running.len();
        running.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            Poll::Ready(v) => {
                out[*i] = Some(v);
                false
            }
            Poll::Pending => true,
        });
        if running.is_empty() && exhausted {
            return Poll::Ready(());
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        // Room freed: start the next ones now.
        if running.len() == before {
            return Poll::Pending;
        }
    })
    .await;
    // Those never started count as not answered.
    out.extend(pending.map(|_| None));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// At most `k` run at once; those past the deadline are `None`,
    /// whether started or not; outputs keep their order.
    #[tokio::test]
    async fn join_is_bounded_in_concurrency_and_time() {
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let futs = (0..10u64).map(|i| {
            let (now, peak) = (now.clone(), peak.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100 * (1 + i % 2))).await;
                now.fetch_sub(1, Ordering::SeqCst);
                i
            }
        });
        let until = Instant::now() + Duration::from_millis(350);
        let out = join_bounded(futs, 3, until).await;
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(out.len(), 10);
        let done: Vec<u64> = out.iter().flatten().copied().collect();
        assert!(!done.is_empty() && done.len() < 10, "{out:?}");
        for (i, v) in out.iter().enumerate() {
            assert!(v.is_none() || *v == Some(i as u64));
        }
        assert!(Instant::now() >= until, "stopped by the deadline");
        let later = Instant::now() + Duration::from_secs(5);
        let all = join_bounded((0..5u64).map(|i| async move { i }), 2, later).await;
        assert_eq!(all, (0..5).map(Some).collect::<Vec<_>>());
    }
}
