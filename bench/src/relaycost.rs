//! Scenario: relay-cost. The relay's own CPU per request at 100 and 1,000
//! members with 10 sessions each (issue #11): reading the member list,
//! resolving a session by ID, name, prefix and an unknown name, and the
//! resolutions one fleet `ls` makes; and how many nodes an unknown name and
//! an `ls` make it dial.
//!
//! # What is real, what is not
//! - The relay's gossip member: a real [`GossipHandle`] (chitchat over the
//!   sealed transport, on a loopback socket), alone in its cluster.
//! - Its chitchat state holds N node members, each with a real node ID
//!   (derived as a node derives it, from key bytes), a real `NodeRecord`
//!   and 10 real `SessionRecord`s under real session IDs, JSON-encoded as
//!   nodes announce them. They are put there through chitchat's public
//!   catch-up API (`Chitchat::reset_node_state_if_update`), which fills
//!   the same `NodeState`s gossip does; 1,000 gossiping members do not
//!   fit in one process on 2 cores (see the `gossip` scenario and the
//!   simulator of `chaos-tests`). Such members carry no heartbeats, so
//!   chitchat deems them dead: parsing and lookups do not depend on it,
//!   and the dial counts below take every node as live.
//! - Before: every read of the member list parsed every record
//!   (`GossipHandle::members_parsed_afresh`, the cache's own parse with an
//!   empty cache), and resolved by scanning every session
//!   (`tether_relay::resolve::scan`, kept as the index's test oracle).
//!   After: the cached list (`GossipHandle::members`) and the relay's
//!   indexed view (`FleetView`), as the relay's request path uses them.
//! - Not measured in time: the dials themselves (there are no 1,000 QUIC
//!   nodes here). They are counted from the relay's own plan
//!   (`locate::plan`) and the client's bounds.

use crate::report::{Row, Section};
use crate::runner::median;
use crate::Ctx;
use anyhow::Context;
use chitchat::{ChitchatId, DeletionStatus, VersionedValue};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tether_net::gossip::{GossipHandle, GossipSettings, MemberList};
use tether_proto::gossip::{session_key, NodeRecord, Role, SessionRecord, NODE_KEY};
use tether_proto::{msg, NodeId, Principal, Reply, SessionId, SessionInfo, SessionState};
use tether_relay::locate;
use tether_relay::resolve::{scan, NodeView};
use tether_relay::view::{node_views, FleetView};

/// Sessions per node, as the issue asks.
const SESSIONS_PER_NODE: usize = 10;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let sizes: &[usize] = if ctx.smoke { &[10, 100] } else { &[100, 1000] };
    let mut rows = Vec::new();
    for &n in sizes {
        crate::progress::set(&format!("relay-cost: {n} members"));
        rows.extend(one_size(n, ctx.smoke).await?);
    }
    Ok(Section {
        verb: "relay-cost".into(),
        about: "The relay's CPU per request (µs, median of batches), before (every record \
                parsed and every session scanned per request) and after (member list parsed \
                once per change, indexed view), on a real GossipHandle holding N members x 10 \
                sessions put in by chitchat's catch-up API; and the nodes dialed per unknown \
                name and per `ls`, counted from the relay's and client's bounds. See \
                bench/src/relaycost.rs for what is real."
            .into(),
        rows,
    })
}

/// What one size's fleet holds, to pick targets from.
struct Filled {
    ids: Vec<SessionId>,
    names: Vec<String>,
}

async fn one_size(n: usize, smoke: bool) -> anyhow::Result<Vec<Row>> {
    let sc = format!("relay-cost N={n} x {SESSIONS_PER_NODE} sessions");
    let (mut gossip, filled) = filled(n).await?;
    let list = gossip.members().await;
    let dead = HashMap::new();
    let view = FleetView::new(&list, &dead);
    let reps = if smoke { 3 } else { (20_000 / n).clamp(5, 200) };
    let mut rows = Vec::new();

    let mut row = |variant: &str, unit: &str, samples: Vec<f64>, note: String| {
        let mut r = Row::new(&sc, variant, unit);
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        r.median = median(&samples);
        r.min = sorted.first().copied();
        r.max = sorted.last().copied();
        r.samples = samples;
        r.note = note;
        rows.push(r);
    };

    // The member list (what `tether nodes` and every route read).
    let before = time_async(reps, || async {
        gossip.members_parsed_afresh().await.len()
    })
    .await;
    row(
        "member list: before (parse every record)",
        "µs",
        before,
        String::new(),
    );
    let after = time_async(reps, || async { gossip.members().await.len() }).await;
    row(
        "member list: after (cached, gossip unchanged)",
        "µs",
        after,
        String::new(),
    );
    let changed = time_changed(&gossip, reps, &dead).await;
    row(
        "view rebuilt after one member changed (after)",
        "µs",
        changed,
        "one node's session set changes, then members() reparses that node only and the \
         relay rebuilds its index"
            .into(),
    );

    gossip = still_filled(gossip, n).await?;
    // Resolving one target, as a routed request does (member list read,
    // then the lookup).
    let id = filled.ids[filled.ids.len() / 2];
    let targets = [
        ("full ID", id.to_string()),
        ("name", filled.names[filled.names.len() / 2].clone()),
        ("ID prefix", id.to_string()[..8].to_string()),
        ("unknown name", "no-such-session".to_string()),
    ];
    for (what, t) in &targets {
        let before = time_async(reps, || async {
            let list = gossip.members_parsed_afresh().await;
            scan::resolve_session(t, &node_views(&list, &dead)).is_ok()
        })
        .await;
        let after = time_async(reps, || async {
            let _ = gossip.members().await;
            view.resolve_session(t).is_ok()
        })
        .await;
        gossip = still_filled(gossip, n).await?;
        let same = scan::resolve_session(t, &view.nodes) == view.resolve_session(t);
        anyhow::ensure!(same, "the index and the scan disagree on {t}");
        row(
            &format!("resolve {what}: before (parse + scan)"),
            "µs",
            before,
            String::new(),
        );
        row(
            &format!("resolve {what}: after (indexed view)"),
            "µs",
            after,
            String::new(),
        );
    }

    // One fleet `ls` through the relay: List, Nodes, then one routed
    // stream per live node, each resolving its node.
    let names: Vec<String> = view.nodes.iter().map(|v| v.name.clone()).collect();
    let admin = Principal {
        name: "bench".into(),
        read_only: false,
        admin: true,
    };
    let ls_reps = if smoke { 2 } else { (2000 / n).clamp(2, 10) };
    let before = time_batches(2, 1, || async {
        let mut ok = 0;
        for _ in 0..2 {
            ok += gossip.members_parsed_afresh().await.len();
        }
        for name in &names {
            let list = gossip.members_parsed_afresh().await;
            ok += scan::node_for_create(Some(name), &node_views(&list, &dead)).is_ok() as usize;
        }
        ok
    })
    .await;
    gossip = still_filled(gossip, n).await?;
    row(
        "one fleet ls, relay lookups: before",
        "µs",
        before,
        format!("{} member-list reads and node lookups", n + 2),
    );
    let after = time_async(ls_reps, || async {
        let mut ok = 0;
        for _ in 0..2 {
            ok += gossip.members().await.len();
        }
        for name in &names {
            let _ = gossip.members().await;
            ok += view.node_for_create(Some(name)).is_ok() as usize;
        }
        ok
    })
    .await;
    row(
        "one fleet ls, relay lookups: after",
        "µs",
        after,
        format!("{} member-list reads and node lookups", n + 2),
    );

    gossip = still_filled(gossip, n).await?;
    // Dials: every node taken as live (see the module doc).
    let all_live = FleetView::of_nodes(
        view.nodes
            .iter()
            .cloned()
            .map(|mut v: NodeView| {
                v.live = true;
                v
            })
            .collect(),
    );
    let (asked, live) = locate::plan(&all_live, |_| false, locate::MAX_NODES_ASKED);
    row(
        "unknown name, nodes dialed: before",
        "nodes",
        vec![live as f64],
        "every live node, at once, on every request".into(),
    );
    row(
        "unknown name, nodes dialed: after",
        "nodes",
        vec![asked.len() as f64],
        format!(
            "at most {} ({} at once, within one dial timeout); 0 for the same name again \
             within {:?}",
            locate::MAX_NODES_ASKED,
            locate::CONCURRENCY,
            locate::MISS_TTL
        ),
    );
    row(
        "ls, routed streams at once: before",
        "streams",
        vec![live as f64],
        "every live node at once, no deadline".into(),
    );
    row(
        "ls, routed streams at once: after",
        "streams",
        vec![tether_client::list::LIST_CONCURRENCY.min(live) as f64],
        format!(
            "{} at a time, none after {:?}; the rest shown from gossip, marked",
            tether_client::list::LIST_CONCURRENCY,
            tether_client::list::LIST_DEADLINE
        ),
    );

    // The relay's directory for an admin: one frame.
    let dir = directory_bytes(&all_live, &admin);
    row(
        "ls directory reply for an admin (one frame)",
        "KiB",
        vec![dir as f64 / 1024.0],
        format!(
            "frame limit {} KiB{}",
            tether_proto::MAX_FRAME_SIZE / 1024,
            if dir > tether_proto::MAX_FRAME_SIZE {
                ": OVER the limit, an admin's fleet ls fails at this size"
            } else {
                ""
            }
        ),
    );
    gossip.shutdown().await;
    Ok(rows)
}

/// A relay's gossip member holding `n` nodes. chitchat deems them dead
/// (they send no heartbeats) and forgets them a minute later: each group
/// of rows is measured well within that, and checked by [`still_filled`].
async fn filled(n: usize) -> anyhow::Result<(GossipHandle, Filled)> {
    let gossip = relay_gossip().await?;
    let filled = gossip.with_chitchat(|c| fill(c, n)).await;
    let members = gossip.members().await;
    let have = members.iter().filter(|m| m.record.is_some()).count();
    anyhow::ensure!(
        have == n + 1,
        "the relay's gossip holds {have} members, not {}",
        n + 1
    );
    Ok((gossip, filled))
}

/// `gossip` if it still holds its `n` nodes (the measurement just taken
/// was on them), else an error; then a freshly filled one for the next
/// group, as the filled one nears chitchat's minute.
async fn still_filled(gossip: GossipHandle, n: usize) -> anyhow::Result<GossipHandle> {
    let have = gossip.members().await.len();
    anyhow::ensure!(
        have == n + 1,
        "chitchat forgot the filled members during a measurement ({have} of {} left); \
         the figures of this group are void",
        n + 1
    );
    gossip.shutdown().await;
    let (fresh, _) = filled(n).await?;
    Ok(fresh)
}

/// The relay's own gossip member, alone, on a loopback socket.
async fn relay_gossip() -> anyhow::Result<GossipHandle> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").context("binding a loopback socket")?;
    let addr = sock.local_addr()?;
    let settings = GossipSettings {
        member_id: "relay:bench".into(),
        cluster_id: "bench-relay-cost".into(),
        listen: addr,
        advertise: addr,
        seeds: vec![],
        interval: Duration::from_millis(200),
        secret: b"bench cluster secret, 32 bytes!!".to_vec(),
        next_secret: None,
        previous_secret: None,
        socket: Some(sock),
    };
    let record = NodeRecord {
        id: "bench".into(),
        name: "bench".into(),
        role: Role::Relay,
        quic: Some(addr.to_string()),
        fp: "0".repeat(64),
        ver: env!("CARGO_PKG_VERSION").into(),
        relays: vec![],
    };
    GossipHandle::start(settings, &record).await
}

/// A node's ID, derived as a node derives it (from its key's bytes).
fn node_id(i: usize) -> NodeId {
    NodeId::from_public_key(format!("bench node key {i}").as_bytes())
}

/// The keys of node `i` at `version` (its sessions named `job-i-k`; every
/// node has a `build`, as fleets do).
fn node_keys(
    i: usize,
    version: u64,
) -> (ChitchatId, Vec<(String, VersionedValue)>, Vec<SessionId>) {
    let id = node_id(i);
    let addr = std::net::SocketAddr::from(([10, (i / 250) as u8, (i % 250) as u8, 1], 7101));
    let cid = ChitchatId::new(id.to_string(), 1, addr);
    let record = NodeRecord {
        id: id.to_string(),
        name: format!("node-{i:04}"),
        role: Role::Node,
        quic: Some(format!("{}:7100", addr.ip())),
        fp: blake3_like(i),
        ver: env!("CARGO_PKG_VERSION").into(),
        relays: vec![],
    };
    let value = |v: String, version: u64| VersionedValue {
        value: v,
        version,
        status: DeletionStatus::Set,
    };
    let mut kvs = vec![(
        NODE_KEY.to_string(),
        value(
            serde_json::to_string(&record).expect("records serialize"),
            1,
        ),
    )];
    let mut ids = Vec::new();
    for k in 0..SESSIONS_PER_NODE {
        let sid = SessionId::generate(id);
        let rec = SessionRecord {
            n: Some(if k == 0 {
                "build".to_string()
            } else {
                format!("job-{i}-{k}")
            }),
            st: SessionState::Running,
            c: "bash -lc make test".into(),
            t: 1_700_000_000 + k as u64,
            o: Some("alice".into()),
        };
        let json = serde_json::to_string(&rec).expect("records serialize");
        kvs.push((session_key(&sid), value(json, version.min(2 + k as u64))));
        ids.push(sid);
    }
    (cid, kvs, ids)
}

/// A certificate fingerprint's shape: 64 hex digits.
fn blake3_like(i: usize) -> String {
    format!(
        "{:064x}",
        (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
    )
}

/// Puts `n` nodes with their sessions into `c`.
fn fill(c: &mut chitchat::Chitchat, n: usize) -> Filled {
    let mut filled = Filled {
        ids: Vec::new(),
        names: Vec::new(),
    };
    for i in 0..n {
        let (cid, kvs, ids) = node_keys(i, SESSIONS_PER_NODE as u64 + 1);
        let max = kvs.iter().map(|(_, v)| v.version).max().unwrap_or(0);
        c.reset_node_state_if_update(&cid, kvs.into_iter(), max, 0);
        filled.ids.extend(ids);
        filled.names.push(format!("job-{i}-3"));
    }
    filled
}

/// Per member-list read after one node's sessions changed each time: the
/// node's state reset with a higher version (new session IDs), then the
/// list read and the relay's view rebuilt.
async fn time_changed(
    gossip: &GossipHandle,
    reps: usize,
    dead: &HashMap<String, SystemTime>,
) -> Vec<f64> {
    let mut out = Vec::new();
    for r in 0..reps {
        let version = 100 + r as u64;
        gossip
            .with_chitchat(|c| {
                let (cid, mut kvs, _) = node_keys(0, version);
                for (_, v) in kvs.iter_mut() {
                    v.version = version;
                }
                c.reset_node_state_if_update(&cid, kvs.into_iter(), version, 0);
            })
            .await;
        let t = Instant::now();
        let list: Arc<MemberList> = gossip.members().await;
        let view = FleetView::new(&list, dead);
        std::hint::black_box(view.nodes.len());
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out
}

/// Microseconds per call of `f`, in batches: the batch means.
async fn time_async<F, Fut, T>(reps: usize, mut f: F) -> Vec<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    const BATCHES: usize = 5;
    let _ = std::hint::black_box(f().await);
    time_batches(BATCHES, reps.div_ceil(BATCHES).max(1), f).await
}

/// Microseconds per call of `f` over `batches` batches of `per` calls,
/// without a warm-up.
async fn time_batches<F, Fut, T>(batches: usize, per: usize, mut f: F) -> Vec<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut out = Vec::new();
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..per {
            std::hint::black_box(f().await);
        }
        out.push(t.elapsed().as_secs_f64() * 1e6 / per as f64);
    }
    out
}

/// Bytes of the relay's `List` reply for `who`, as sent.
fn directory_bytes(view: &FleetView, who: &Principal) -> usize {
    let sessions: Vec<SessionInfo> = view.directory(who, |n| format!("node {} is dead", n.name));
    msg::encode(&Reply::Sessions { sessions }).len()
}
