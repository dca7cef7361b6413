//! The drills a simulated fleet runs, each a plan read top to bottom:
//! what it does to the fleet, what it waits for (bounded in virtual time),
//! what it checks, and the figures it adds to the [`Report`].

use super::fleet::{Fleet, Wait, RELAY};
use super::report::{Figure, Report};
use std::collections::HashSet;
use std::time::Duration;
use tether_proto::SessionId;

/// How often the drills look (virtual time).
const POLL: Duration = Duration::from_millis(20);

/// Bounds in virtual time: exceeding one fails the drill.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// From the last member's start until every member sees all live.
    pub converge: Duration,
    /// From a session's creation until the relay resolves it by name.
    pub resolvable: Duration,
    /// From a member's silence until the relay deems it dead.
    pub detect_dead: Duration,
    /// From a heal (or restart) until the relay's view is the truth again.
    pub recover: Duration,
}

impl Bounds {
    /// Bounds for `n` members at the 200 ms interval, with margin over
    /// what the simulation measured (see the results file).
    pub fn for_members(n: usize) -> Bounds {
        let big = n > 200;
        Bounds {
            converge: Duration::from_secs(if big { 240 } else { 60 }),
            resolvable: Duration::from_secs(if big { 20 } else { 10 }),
            detect_dead: Duration::from_secs(if big { 60 } else { 30 }),
            recover: Duration::from_secs(if big { 120 } else { 60 }),
        }
    }

    /// Every bound `k` times longer (for a gossip interval `k` times the
    /// default).
    pub fn scaled(self, k: f64) -> Bounds {
        Bounds {
            converge: self.converge.mul_f64(k),
            resolvable: self.resolvable.mul_f64(k),
            detect_dead: self.detect_dead.mul_f64(k),
            recover: self.recover.mul_f64(k),
        }
    }
}

/// Starts every member; waits until each sees every member live and the
/// relay's view is the truth; measures steady gossip traffic.
pub async fn converge(
    f: &mut Fleet,
    b: &Bounds,
    window: Duration,
    r: &mut Report,
) -> anyhow::Result<()> {
    f.start_all().await?;
    let n = f.members.len();
    let w = Wait::new(
        format!("all {n} members seeing {n} live"),
        b.converge,
        POLL * 5,
    );
    let mut at: Vec<Option<f64>> = vec![None; n];
    let mut polls = 0u64;
    loop {
        for (i, live) in f.live_counts().await {
            if live >= n && at[i].is_none() {
                at[i] = Some(secs(w.elapsed()));
            }
        }
        let done = at.iter().filter(|t| t.is_some()).count();
        if done == n {
            break;
        }
        polls += 1;
        if polls.is_multiple_of(50) {
            let mut live: Vec<usize> = f.live_counts().await.into_iter().map(|(_, c)| c).collect();
            live.sort();
            eprintln!(
                "sim: converging, {:.0} s virtual: {done} of {n} members have seen all live; \
                 live counts now min {} median {}",
                secs(w.elapsed()),
                live[0],
                live[live.len() / 2]
            );
        }
        w.tick(|| format!("{done} of {n} members converged"))
            .await?;
    }
    let times: Vec<f64> = at.into_iter().flatten().collect();
    r.add(Figure::of(
        "converge",
        "every member sees all live",
        "s",
        times,
    ));
    let view = Wait::new("the relay's view of every session", b.recover, POLL * 5);
    loop {
        let bad = f.mismatches(&f.relay_view().await);
        if bad.is_empty() {
            break;
        }
        view.tick(|| format!("{} wrong, e.g. {}", bad.len(), bad[0]))
            .await?;
    }
    r.add(Figure::one(
        "converge",
        "relay resolves every session (from the last start)",
        "s",
        secs(w.elapsed()),
    ));
    traffic(f, window, r).await;
    Ok(())
}

/// Gossip sent per node per second over `window` of steady state.
async fn traffic(f: &mut Fleet, window: Duration, r: &mut Report) {
    let before = f.net.traffic();
    tokio::time::sleep(window).await;
    let after = f.net.traffic();
    let mut chitchat = Vec::new();
    let mut sealed = Vec::new();
    let mut near_max = 0;
    for m in f.members.iter().skip(1) {
        let (a, b) = (
            after[&m.addr],
            before.get(&m.addr).copied().unwrap_or_default(),
        );
        chitchat.push((a.bytes - b.bytes) as f64 / window.as_secs_f64() / 1e3);
        sealed.push((a.sealed_bytes() - b.sealed_bytes()) as f64 / window.as_secs_f64() / 1e3);
        near_max += a.near_max - b.near_max;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (cm, sm) = (mean(&chitchat), mean(&sealed));
    let mut c = Figure::of(
        "traffic",
        "gossip sent per node (chitchat bytes)",
        "KB/s",
        chitchat,
    );
    c.note = format!("mean {cm:.1}");
    let mut s = Figure::of("traffic", "same + the seal's 71 B/datagram", "KB/s", sealed);
    s.note = format!("mean {sm:.1}; {near_max} datagrams near 64 KiB (seal compresses those)");
    r.add(c);
    r.add(s);
}

/// New sessions on random nodes, one every 250 ms: the virtual time until
/// the relay resolves each by its (unique) name to its owner.
pub async fn new_sessions(
    f: &mut Fleet,
    b: &Bounds,
    trials: usize,
    r: &mut Report,
) -> anyhow::Result<()> {
    let nodes: Vec<usize> = f.nodes().filter(|&i| f.members[i].running()).collect();
    let mut pending: Vec<(String, SessionId, usize, tokio::time::Instant)> = Vec::new();
    let mut lat = Vec::new();
    let w = Wait::new(
        format!("{trials} new sessions resolvable"),
        b.resolvable * 2,
        POLL,
    );
    let mut next = tokio::time::Instant::now();
    while lat.len() < trials {
        if pending.len() + lat.len() < trials && tokio::time::Instant::now() >= next {
            let node = f.pick(&nodes);
            let name = format!(
                "trial-{}-{:x}",
                lat.len() + pending.len(),
                f.rng().next_u64() as u16
            );
            let id = f.create_session(node, Some(name.clone())).await;
            pending.push((name, id, node, tokio::time::Instant::now()));
            next += Duration::from_millis(250);
        }
        let view = f.relay_view().await;
        pending.retain(|(name, id, node, t)| {
            let ok = matches!(view.resolve_session(name),
                Ok((i, got)) if got == *id && view.nodes[i].id == f.members[*node].record.id);
            if ok {
                lat.push(secs(t.elapsed()));
            }
            !ok
        });
        if let Some((name, _, _, t)) = pending.first() {
            anyhow::ensure!(
                t.elapsed() <= b.resolvable,
                "session {name} not resolvable at the relay after {:?}",
                b.resolvable
            );
        }
        w.tick(|| format!("{} pending", pending.len())).await?;
    }
    r.add(Figure::of(
        "new session",
        "resolvable by name at the relay",
        "s",
        lat,
    ));
    Ok(())
}

/// A node goes silent (alive but cut off both ways, like a `SIGSTOP`ped
/// daemon): the relay deems it dead within the bound and still routes its
/// sessions to it, marked dead, so a client fails fast; after the heal it
/// is live again and every member sees the whole fleet.
pub async fn dead_node(f: &mut Fleet, b: &Bounds, r: &mut Report) -> anyhow::Result<()> {
    let n = f.members.len();
    let nodes: Vec<usize> = f.nodes().filter(|&i| f.members[i].running()).collect();
    let v = f.pick(&nodes);
    let (vid, addr) = (f.members[v].record.id.clone(), f.members[v].addr);
    f.net.set_group(addr, 7);
    let silent = tokio::time::Instant::now();
    let w = Wait::new(
        "the relay deeming the silent node dead",
        b.detect_dead,
        POLL,
    );
    loop {
        let view = f.relay_view().await;
        if view.nodes.iter().any(|x| x.id == vid && !x.live) {
            // Its sessions still route to it, marked dead: fail fast.
            for id in f.members[v].sessions.keys() {
                let (i, _) = view.resolve_session(&id.to_string())?;
                anyhow::ensure!(
                    view.nodes[i].id == vid && !view.nodes[i].live,
                    "{id} misrouted"
                );
            }
            break;
        }
        w.tick(|| "still live".into()).await?;
    }
    r.add(Figure::one(
        "dead node",
        "relay deems it dead",
        "s",
        secs(w.elapsed()),
    ));
    let others = everyone_sees(f, n - 1, silent, b.detect_dead, |i| i != v).await?;
    r.add(Figure::of(
        "dead node",
        "each other member sees n-1 live (from the silence)",
        "s",
        others,
    ));

    f.net.set_group(addr, 0);
    let healed = tokio::time::Instant::now();
    let w = Wait::new("the healed node live at the relay", b.recover, POLL);
    while !f
        .relay_view()
        .await
        .nodes
        .iter()
        .any(|x| x.id == vid && x.live)
    {
        w.tick(|| "still dead".into()).await?;
    }
    r.add(Figure::one(
        "dead node",
        "back: relay deems it live",
        "s",
        secs(w.elapsed()),
    ));
    let back = everyone_sees(f, n, healed, b.recover, |_| true).await?;
    r.add(Figure::of(
        "dead node",
        "back: each member sees all live (from the heal)",
        "s",
        back,
    ));
    Ok(())
}

/// The time since `since` until each running member that `which`
/// selects deems exactly `live` members alive.
async fn everyone_sees(
    f: &Fleet,
    live: usize,
    since: tokio::time::Instant,
    bound: Duration,
    which: impl Fn(usize) -> bool,
) -> anyhow::Result<Vec<f64>> {
    let w = Wait::new(format!("every member seeing {live} live"), bound, POLL * 5);
    let mut at = std::collections::HashMap::new();
    loop {
        let counts = f.live_counts().await;
        let mut waiting = 0;
        for (i, c) in counts.into_iter().filter(|(i, _)| which(*i)) {
            if c == live {
                at.entry(i).or_insert_with(|| secs(since.elapsed()));
            } else if !at.contains_key(&i) {
                waiting += 1;
            }
        }
        if waiting == 0 {
            return Ok(at.into_values().collect());
        }
        w.tick(|| format!("{waiting} members still waiting"))
            .await?;
    }
}

/// Half the nodes are cut off from the relay's half. The relay deems them
/// dead; changes on its side reach it, none from the other; after the
/// heal its view is the truth again, the other half's changes included.
pub async fn partition(
    f: &mut Fleet,
    b: &Bounds,
    hold: Duration,
    r: &mut Report,
) -> anyhow::Result<()> {
    let nodes: Vec<usize> = f.nodes().filter(|&i| f.members[i].running()).collect();
    let far: Vec<usize> = nodes
        .iter()
        .copied()
        .filter(|_| f.rng().below(2) == 0)
        .collect();
    let far_set: HashSet<usize> = far.iter().copied().collect();
    let near: Vec<usize> = nodes
        .iter()
        .copied()
        .filter(|i| !far_set.contains(i))
        .collect();
    anyhow::ensure!(
        !far.is_empty() && !near.is_empty(),
        "a fleet too small to split"
    );
    for &i in &far {
        f.net.set_group(f.members[i].addr, 1);
    }
    let far_ids: HashSet<String> = far
        .iter()
        .map(|&i| f.members[i].record.id.clone())
        .collect();
    let w = Wait::new(
        "the relay deeming the far side dead",
        b.detect_dead,
        POLL * 5,
    );
    loop {
        let view = f.relay_view().await;
        let live = view
            .nodes
            .iter()
            .filter(|x| x.live && far_ids.contains(&x.id))
            .count();
        if live == 0 {
            break;
        }
        w.tick(|| format!("{live} of {} far nodes still live", far.len()))
            .await?;
    }
    r.add(Figure::one(
        "partition",
        "relay deems the far half dead",
        "s",
        secs(w.elapsed()),
    ));

    // Changes on both sides while split.
    let (a, z) = (f.pick(&near), f.pick(&far));
    let new_near = f.create_session(a, None).await;
    let new_far = f.create_session(z, None).await;
    let mut gone_near = None;
    for i in [a, z] {
        // An older session: removing the one just created would leave
        // nothing to wait for.
        let id = *f.members[i]
            .sessions
            .keys()
            .find(|k| **k != new_near && **k != new_far)
            .expect("a session besides the new one");
        f.remove_session(i, &id).await;
        gone_near.get_or_insert(id);
    }
    let gone_near = gone_near.expect("removed on the near side");
    let (a_id, z_id) = (&f.members[a].record.id, &f.members[z].record.id);
    let w = Wait::new("the near side's changes at the relay", b.resolvable, POLL);
    loop {
        let view = f.relay_view().await;
        if Fleet::routes(&view, &new_near, a_id) && !Fleet::routes(&view, &gone_near, a_id) {
            anyhow::ensure!(
                !Fleet::routes(&view, &new_far, z_id),
                "a session created behind the partition reached the relay: the partition leaks"
            );
            break;
        }
        w.tick(|| "not yet".into()).await?;
    }
    r.add(Figure::one(
        "partition",
        "near side's changes at the relay",
        "s",
        secs(w.elapsed()),
    ));
    tokio::time::sleep(hold).await;

    f.net.heal();
    let w = Wait::new("the relay's view after the heal", b.recover, POLL * 5);
    loop {
        let view = f.relay_view().await;
        let bad = f.mismatches(&view);
        let dead = view.nodes.iter().filter(|x| !x.live).count();
        if bad.is_empty() && dead == 0 {
            break;
        }
        w.tick(|| format!("{dead} dead, {} wrong, e.g. {:?}", bad.len(), bad.first()))
            .await?;
    }
    r.add(Figure::one(
        "partition",
        "healed: relay's view is the truth",
        "s",
        secs(w.elapsed()),
    ));
    Ok(())
}

/// `rounds` seconds of churn: each second a node leaves or comes back,
/// sessions are created and removed on running nodes. No removed session
/// is ever listed again once gone from the relay's view; after the last
/// round every node comes back and the view is the truth.
pub async fn churn(f: &mut Fleet, b: &Bounds, rounds: usize, r: &mut Report) -> anyhow::Result<()> {
    let n_nodes = f.members.len() - 1;
    let max_down = (n_nodes / 10).max(1);
    let mut gone: HashSet<SessionId> = HashSet::new();
    let mut ever: HashSet<SessionId> = HashSet::new();
    let (mut leaves, mut created, mut removed) = (0, 0, 0);
    for round in 0..rounds {
        let down: Vec<usize> = f.nodes().filter(|&i| !f.members[i].running()).collect();
        let up: Vec<usize> = f.nodes().filter(|&i| f.members[i].running()).collect();
        if !down.is_empty() && (down.len() >= max_down || f.rng().below(2) == 0) {
            let i = f.pick(&down);
            f.start(i).await?;
        } else {
            let i = f.pick(&up);
            f.stop(i).await;
            leaves += 1;
        }
        let up: Vec<usize> = f.nodes().filter(|&i| f.members[i].running()).collect();
        for _ in 0..2 {
            let i = f.pick(&up);
            f.create_session(i, None).await;
            created += 1;
        }
        let i = f.pick(&up);
        let k = f.rng().below(4);
        if let Some(&id) = f.members[i].sessions.keys().nth(k) {
            f.remove_session(i, &id).await;
            removed += 1;
        }
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let view = f.relay_view().await;
            let listed: HashSet<SessionId> = view
                .nodes
                .iter()
                .flat_map(|x| x.sessions.iter().map(|(s, _)| *s))
                .collect();
            if let Some(back) = gone.iter().find(|s| listed.contains(s)) {
                anyhow::bail!("round {round}: removed session {back} came back at the relay");
            }
            // Gone: listed once, removed, and no longer listed. (One
            // created and removed before the relay saw it may still
            // show briefly; that is not a return.)
            gone.extend(
                f.removed
                    .iter()
                    .filter(|s| ever.contains(*s) && !listed.contains(*s)),
            );
            ever.extend(listed);
        }
    }
    let down: Vec<usize> = f.nodes().filter(|&i| !f.members[i].running()).collect();
    for i in down {
        f.start(i).await?;
    }
    let w = Wait::new("the relay's view after churn", b.recover, POLL * 5);
    loop {
        let view = f.relay_view().await;
        let bad = f.mismatches(&view);
        let live = view.nodes.iter().filter(|x| x.live).count();
        if bad.is_empty() && live == n_nodes {
            break;
        }
        w.tick(|| {
            format!(
                "{live} of {n_nodes} live, {} wrong, e.g. {:?}",
                bad.len(),
                bad.first()
            )
        })
        .await?;
    }
    let mut fig = Figure::one(
        "churn",
        "settled: relay's view is the truth",
        "s",
        secs(w.elapsed()),
    );
    fig.note = format!(
        "{rounds} rounds: {leaves} leaves, {created} sessions created, {removed} removed, \
         none came back"
    );
    r.add(fig);
    debug_assert!(f.members[RELAY].running());
    Ok(())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
