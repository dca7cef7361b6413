//! Scenario `fleet`: the mesh as real processes on 127.0.0.x, one
//! `tether relay` and N `tether node`s (N = 3 and 10; 3 in smoke mode)
//! gossiping every 100 ms (see [`crate::fleet`]).
//!
//! - A new session resolvable at the relay: a session is created on node
//!   k through its own state dir (the local library, not the relay), and
//!   from the create's reply the bench's client asks the relay for it
//!   (`Request::Info`) every 2 ms until it answers: by name (needs the
//!   gossip to spread) and by full ID (routed by the ID's owner tag before
//!   gossip spreads). p50 and p99 over the trials.
//! - A dead node detected: one node daemon is SIGKILLed; the relay is
//!   polled (`Request::Nodes`) every 10 ms until it marks the node not
//!   live. The node is then restarted and the time until it is live again
//!   is reported too.
//! - Relay fan-in (N = 3 only): 10 and 100 clients follow one session
//!   that prints a fixed amount and then a marker, through one relay and
//!   straight to the node over QUIC, alternating; aggregate MB/s
//!   delivered. The
//!   session stays alive until every client has seen the marker: a
//!   session that ended would be cut from its slow clients by its
//!   keeper's linger (5 s) after the exit, which capped the run that was
//!   allowed to take longer (and failed the relay's 100-client run on a
//!   loaded machine).

use crate::fleet::{self, Fleet};
use crate::report::{Row, Section};
use crate::runner::{self, Measured, Sample, Spec};
use crate::tether::{follow_spec, Received};
use crate::Ctx;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};
use tether_client::Client;
use tether_proto::{CreateSpec, Frame, Offset, Reply, Request, SessionId, WinSize};

/// Gossip round interval of the fleet.
const INTERVAL_MS: u64 = 100;
/// Longest a session may take to be resolvable, or a node to be marked
/// dead or live.
const WAIT: Duration = Duration::from_secs(30);
/// How often the relay is asked whether it resolves the new session.
const RESOLVE_POLL: Duration = Duration::from_millis(2);
/// How often the relay is asked for its members.
const NODES_POLL: Duration = Duration::from_millis(10);
/// Ring of the fan-in session: larger than what it prints, so that no
/// client ever gets a gap.
const FAN_RING: u64 = 64 << 20;
/// What the fan-in session prints after its file (which holds digits,
/// spaces and small letters only).
const FAN_END: &[u8] = b"FAN-END";

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let sizes: &[usize] = if ctx.smoke { &[3] } else { &[3, 10] };
    let mut rows = Vec::new();
    for &n in sizes {
        crate::progress::set(&format!("fleet: starting 1 relay and {n} nodes"));
        let t0 = Instant::now();
        let mut fleet = match Fleet::start(ctx, n, INTERVAL_MS).await {
            Ok(f) => f,
            Err(e) => {
                rows.push(error_row(&format!("N = {n}: fleet start"), e));
                continue;
            }
        };
        let started = t0.elapsed();
        match resolve(ctx, &fleet, started).await {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => rows.push(error_row(&resolve_sc(n), e)),
        }
        if n == 3 {
            match fan_in(ctx, &fleet).await {
                Ok(mut r) => rows.append(&mut r),
                Err(e) => rows.push(error_row("relay fan-in", e)),
            }
        }
        match dead_node(ctx, &mut fleet).await {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => rows.push(error_row(&dead_sc(n), e)),
        }
    }
    Ok(Section {
        verb: "fleet".into(),
        about: format!(
            "Real processes on 127.0.0.x: one `tether relay` and N `tether node`s with a fleet \
             CA, mutual TLS and sealed gossip every {INTERVAL_MS} ms. Resolvable: ms from the \
             reply to a create on node k (through its own state dir) until the relay answers \
             `info` for it, polled every {} ms; median/min/max over the runs' p50s, p50/p99 \
             over every trial (targets: name at N = 10 ≤ 300 ms p99). Dead node: ms from the \
             SIGKILL of a node daemon until the relay's failure detector marks it not live \
             (target ≤ 3 s), polled every {} ms. Fan-in: MB/s delivered in total to M clients following one \
             session, through one relay and straight to the node.",
            RESOLVE_POLL.as_millis(),
            NODES_POLL.as_millis()
        ),
        rows,
    })
}

fn resolve_sc(n: usize) -> String {
    format!("new session resolvable at the relay, N = {n} nodes")
}

fn dead_sc(n: usize) -> String {
    format!("dead node detected at the relay, N = {n} nodes")
}

fn error_row(scenario: &str, e: anyhow::Error) -> Row {
    crate::progress::clear();
    eprintln!("bench: fleet: {scenario}: {e:#}");
    let mut r = Row::note_only(scenario, "(scenario)", "", "");
    r.error = Some(format!("{e:#}"));
    r.note = format!("ERROR: {e:#}");
    r
}

/// Creates a named `sleep` session on `node` through its local control
/// connection.
async fn create_named(node: &crate::tether::Node, name: &str) -> anyhow::Result<SessionId> {
    let spec = CreateSpec {
        name: Some(name.into()),
        command: vec!["sleep".into(), "600".into()],
        size: Some(WinSize { cols: 80, rows: 24 }),
        ..CreateSpec::default()
    };
    match node.request(&Request::Create(spec)).await? {
        Reply::Session { session } => Ok(session.id),
        other => bail!("unexpected reply to create: {other:?}"),
    }
}

/// Asks the relay for `target` every [`RESOLVE_POLL`] until it answers
/// with the session; returns how long that took from `t0`.
async fn until_resolved(
    client: &Client,
    target: &str,
    want: SessionId,
    t0: Instant,
) -> anyhow::Result<Duration> {
    let deadline = t0 + WAIT;
    loop {
        let last = match client
            .request(&Request::Info {
                target: target.into(),
            })
            .await
            .context("asking the relay")?
        {
            Reply::Session { session } if session.id == want => return Ok(t0.elapsed()),
            Reply::Session { session } => bail!(
                "the relay resolved {target} to another session, {}",
                session.id
            ),
            Reply::Error { message, .. } => message,
            other => format!("{other:?}"),
        };
        if Instant::now() > deadline {
            bail!("the relay did not resolve {target} within {WAIT:?}; last answer: {last}");
        }
        tokio::time::sleep(RESOLVE_POLL).await;
    }
}

/// Rows: time until a new session resolves at the relay, by full ID and
/// by name.
async fn resolve(ctx: &Ctx, fleet: &Fleet, started: Duration) -> anyhow::Result<Vec<Row>> {
    let n = fleet.nodes.len();
    let per_run = if ctx.smoke { 3 } else { 10 };
    let client = fleet.client().await?;
    let specs = [
        Spec::new("by full ID (routed by its owner tag)"),
        Spec::new("by name (gossip, else the relay asks the live nodes)"),
    ];
    let mut k = 0usize;
    let sc = resolve_sc(n);
    let measured = runner::alternate(ctx, &sc, &specs, async |i, _round| {
        let mut lat = Vec::with_capacity(per_run);
        let mut made = Vec::new();
        for _ in 0..per_run {
            // Node 1 (n2) first: node 0 also holds the fan-in sessions.
            k += 1;
            let node = &fleet.nodes[k % n];
            let name = ctx.unique("fl-");
            let id = create_named(node, &name).await?;
            made.push((k % n, id));
            let t0 = Instant::now();
            let target = if i == 0 { id.to_string() } else { name };
            let t = until_resolved(&client, &target, id, t0).await?;
            lat.push(t.as_secs_f64() * 1e3);
        }
        for (j, id) in made {
            let node = &fleet.nodes[j];
            let target = id.to_string();
            node.request(&Request::Kill {
                target: target.clone(),
                signal: 9,
            })
            .await?;
            tokio::time::timeout(Duration::from_secs(10), node.wait(id))
                .await
                .context("a killed session did not end")??;
            node.request(&Request::Remove { target }).await?;
        }
        let mut sorted = lat.clone();
        sorted.sort_by(f64::total_cmp);
        Ok(Sample {
            value: runner::percentile(&sorted, 50.0).unwrap_or(0.0),
            latencies: lat,
            valid: true,
            note: Some(format!(
                "{per_run} trials a run, nodes in turn; fleet up and converged in {:.1} s",
                started.as_secs_f64()
            )),
            ..Sample::default()
        })
    })
    .await;
    client.close().await;
    Ok(measured.iter().map(|m| runner::row(&sc, "ms", m)).collect())
}

/// Rows: SIGKILL of a node daemon until the relay marks it not live; and
/// from its restart until it is live again.
async fn dead_node(ctx: &Ctx, fleet: &mut Fleet) -> anyhow::Result<Vec<Row>> {
    let n = fleet.nodes.len();
    let sc = dead_sc(n);
    let client = fleet.client().await?;
    let specs = [Spec::new("SIGKILL of a node daemon until not live")];
    let mut back: Vec<Sample> = Vec::new();
    let mut k = 0usize;
    let measured = runner::alternate(ctx, &sc, &specs, async |_i, round| {
        if ctx.is_warmup(round) {
            // Nothing to warm up; the round is not counted.
            return Ok(Sample::of(0.0));
        }
        // Every node but n1 in turn.
        k = k % (n - 1) + 1;
        let name = format!("n{}", k + 1);
        let t0 = Instant::now();
        fleet.nodes[k].kill_daemon().await;
        let found = poll_live(&client, &name, false, t0).await?;
        let t_dead = t0.elapsed();
        let t1 = Instant::now();
        fleet.nodes[k]
            .start_daemon()
            .await
            .with_context(|| format!("restarting {name}"))?;
        poll_live(&client, &name, true, t1).await?;
        back.push(Sample::of(t1.elapsed().as_secs_f64() * 1e3));
        let mut s = Sample::of(t_dead.as_secs_f64() * 1e3);
        if !found {
            s.note = Some(format!("{name} was not listed at all"));
        }
        Ok(s)
    })
    .await;
    client.close().await;
    let mut rows: Vec<Row> = measured.iter().map(|m| runner::row(&sc, "ms", m)).collect();
    let restarted = Measured {
        spec: Spec::new("restart of that daemon until live again (ready line included)"),
        samples: back,
        error: None,
    };
    rows.push(runner::row(&sc, "ms", &restarted));
    Ok(rows)
}

/// Polls the relay's members until a member named `name` is live
/// (`want`), or none is (`!want`); returns whether it is listed at all.
async fn poll_live(client: &Client, name: &str, want: bool, t0: Instant) -> anyhow::Result<bool> {
    let deadline = t0 + WAIT;
    loop {
        let members = fleet::members(client).await?;
        // A restarted node is a new member (a new generation); the old one
        // stays listed as dead for a while, under the same name.
        let mut same = members
            .iter()
            .filter(|m| m.role == tether_proto::gossip::Role::Node && m.name == name)
            .peekable();
        let listed = same.peek().is_some();
        let live = same.any(|m| m.live);
        if live == want {
            return Ok(listed);
        }
        if Instant::now() > deadline {
            bail!(
                "the relay did not mark {name} {} within {WAIT:?}",
                if want { "live" } else { "not live" }
            );
        }
        tokio::time::sleep(NODES_POLL).await;
    }
}

/// Rows: aggregate MB/s to M clients following one session, direct and
/// through the relay.
async fn fan_in(ctx: &Ctx, fleet: &Fleet) -> anyhow::Result<Vec<Row>> {
    // (clients, bytes the session prints)
    let loads: [(usize, u64); 2] = if ctx.smoke {
        [(10, 200_000), (100, 20_000)]
    } else {
        [(10, 40_000_000), (100, 4_000_000)]
    };
    let mut files = Vec::new();
    for (m, bytes) in loads {
        let f = ctx.fast.join(ctx.unique("fan"));
        crate::data::lines80(&f, bytes / crate::data::LINE)?;
        files.push((m, bytes / crate::data::LINE * crate::data::LINE, f));
    }
    let mut specs = Vec::new();
    for (m, bytes, _) in &files {
        let mb = *bytes as f64 / 1e6;
        specs.push(Spec::new(format!(
            "{m} clients × {mb} MB, straight to the node"
        )));
        specs.push(Spec::new(format!(
            "{m} clients × {mb} MB, through the relay"
        )));
    }
    let measured = runner::alternate(ctx, "relay fan-in", &specs, async |i, _round| {
        let (m, bytes, file) = &files[i / 2];
        fan_once(fleet, *m, *bytes, file, i % 2 == 1).await
    })
    .await;
    for (_, _, f) in &files {
        let _ = std::fs::remove_file(f);
    }
    let sc = "relay fan-in: clients following one session (80-byte lines)";
    let mut rows: Vec<Row> = measured
        .iter()
        .map(|m| runner::row(sc, "MB/s", m))
        .collect();
    for j in 0..files.len() {
        let direct = specs[2 * j].name.clone();
        let relay = specs[2 * j + 1].name.clone();
        crate::report::relay_note(&mut rows, (sc, &relay), (sc, &direct));
    }
    Ok(rows)
}

/// One fan-in run: `m` clients attach from offset 0 (each its own
/// connection), the session is released, the clock stops when the last
/// client has seen the marker after the file; then the session is let
/// end.
async fn fan_once(
    fleet: &Fleet,
    m: usize,
    bytes: u64,
    file: &std::path::Path,
    relay: bool,
) -> anyhow::Result<Sample> {
    let node = &fleet.nodes[0];
    let marker = std::str::from_utf8(FAN_END).expect("ASCII");
    let cmd = format!(
        "read x; cat {}; echo {marker}; read x",
        crate::procs::qpath(file)
    );
    let id = node.create(&["sh", "-c", &cmd], Some(FAN_RING)).await?.id;
    let mut readers = Vec::with_capacity(m);
    let mut attached = Vec::with_capacity(m);
    for _ in 0..m {
        // Straight to the node over QUIC, each client its own connection,
        // as a remote client reaches a node it can dial (the local fast
        // path would not be a network baseline).
        let client = if relay {
            fleet.client().await?
        } else {
            node.client_quic().await?
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        attached.push(rx);
        readers.push(tokio::spawn(async move {
            let r = read_to_marker(&client, id, tx).await;
            client.close().await;
            r
        }));
    }
    for rx in attached {
        if tokio::time::timeout(WAIT, rx).await.is_err() {
            bail!("a client did not attach within {WAIT:?}");
        }
    }
    let t0 = Instant::now();
    node.send(id, b"\n").await?;
    let mut last = t0;
    let mut got_bytes = 0u64;
    let mut gaps = 0u32;
    let mut end = 0u64;
    for r in readers {
        let got = tokio::time::timeout(Duration::from_secs(300), r)
            .await
            .context("a client did not see the end in time")?
            .context("a reader panicked")?
            .context("a reader failed")?;
        last = last.max(got.at.context("no end seen")?);
        got_bytes += got.bytes;
        gaps += got.gaps;
        end = got.end;
    }
    let t = last - t0;
    node.send(id, b"\n").await?;
    tokio::time::timeout(Duration::from_secs(30), node.wait(id))
        .await
        .context("the session did not end")??;
    node.remove(id).await?;
    let mut s = Sample::of(m as f64 * bytes as f64 / 1e6 / t.as_secs_f64());
    let want = end * m as u64;
    if gaps > 0 || got_bytes < want {
        s.valid = false;
        s.delivered = Some(got_bytes as f64 / want.max(1) as f64);
        s.note = Some(format!("{gaps} gaps"));
    }
    Ok(s)
}

/// Follows session `id` from offset 0 until its output holds
/// [`FAN_END`], checking that every offset follows the last; `end` is
/// the offset after the frame that completed the marker. Calls
/// `attached` once the node has answered.
async fn read_to_marker(
    client: &Client,
    id: SessionId,
    attached: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<Received> {
    let (mut rd, _wr) = client
        .open(&Request::Attach(follow_spec(id, Offset(0))))
        .await?;
    let mut expected = match rd.control::<Reply>().await? {
        Reply::Attached { start, .. } => start,
        other => bail!("unexpected reply to attach: {other:?}"),
    };
    let _ = attached.send(());
    let mut got = Received::default();
    // The last bytes of output: the marker may straddle two frames.
    let mut tail: Vec<u8> = Vec::with_capacity(64);
    loop {
        match rd.next().await? {
            Some(Frame::Output { offset, data }) => {
                if offset != expected {
                    bail!("output out of order: expected offset {expected}, got {offset}");
                }
                expected = Offset(offset.0 + data.len() as u64);
                got.bytes += data.len() as u64;
                tail.extend_from_slice(&data[data.len().saturating_sub(32)..]);
                tail.drain(..tail.len().saturating_sub(32));
                if tail.windows(FAN_END.len()).any(|w| w == FAN_END) {
                    got.at = Some(Instant::now());
                    got.end = expected.0;
                    return Ok(got);
                }
            }
            Some(Frame::Control(b)) => match tether_proto::msg::decode::<Reply>(&b)? {
                Reply::Gap { missed, resume } => {
                    got.gaps += 1;
                    got.missed += resume.0 - missed.0;
                    expected = resume;
                }
                Reply::Exited { .. } => bail!("the session ended before it printed its marker"),
                Reply::Lost { .. } => bail!("the session was lost"),
                Reply::Error { message, .. } => bail!("{message}"),
                _ => {}
            },
            Some(Frame::Input(_)) => bail!("the node sent an input frame"),
            None => bail!("the stream closed before the marker"),
        }
    }
}
