//! Scenario 1: output throughput. A session `cat`s a file of fixed size
//! (80-byte lines, then `yes`-style 2-byte lines) to a client that reads
//! everything. The session waits in `read x` until the client is attached
//! and is then released (`tether send ID '\n'`); the clock runs from the
//! release to the client's seeing the session's exit.
//!
//! Two kinds of client:
//! - *pipe*: reads into a program. Baseline: `script -qfc 'cat F'` with
//!   its output to /dev/null, timed as a whole process: one PTY, the
//!   physical limit. tether: `tether tail --follow`, and the bench's own
//!   client (the client library, offsets checked, gaps counted), both on
//!   the local fast path (the keeper's unix socket); and, to tell what
//!   the client library costs, raw frames on the keeper's socket.
//! - *terminal*: draws into a terminal, i.e. a second PTY. Baselines:
//!   `script` inside `script` (two PTYs), and tmux with a client attached
//!   under `script`. tether: `tether attach` under `script`. Their output
//!   goes to a file in memory, whose size tells whether every byte
//!   arrived.
//!
//! A tether client that falls more than the ring behind gets a gap (the
//! session is never blocked by a slow client); such a run is reported as
//! invalid, with the share of bytes delivered. tether runs with the
//! default 1 MiB ring and with a 64 MiB one.

use crate::data;
use crate::fleet::Fleet;
use crate::procs::{self, qpath, quote, Proc};
use crate::report::{self, Row, Section};
use crate::runner::{self, Sample, Spec};
use crate::tether::{follow_spec, read_frames, read_to_exit, Node};
use crate::tmux::{self, Tmux};
use crate::Ctx;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tether_proto::{Offset, SessionId};

/// Longest a single run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// The larger ring tether runs with.
const BIG_RING: u64 = 64 << 20;

/// A file to print, and how to name it.
struct Load {
    label: String,
    file: PathBuf,
    bytes: u64,
}

/// Runs the scenario for both kinds of lines.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let (l80, yes) = if ctx.smoke {
        (2_000_000, 1_000_000)
    } else {
        (200_000_000, 20_000_000)
    };
    let mut rows = Vec::new();
    let node = Node::start(ctx, "throughput").await?;
    crate::progress::set("throughput: starting a fleet of 1 relay and 1 node");
    let fleet = Fleet::start(ctx, 1, 100).await?;

    let file = ctx.fast.join("lines80");
    crate::progress::set("throughput: writing the data file");
    data::lines80(&file, l80 / data::LINE)?;
    let load = Load {
        label: format!("80-byte lines, {} MB", l80 / 1_000_000),
        file: file.clone(),
        bytes: l80 / data::LINE * data::LINE,
    };
    rows.extend(one_load(ctx, &node, &fleet, &load).await?);
    let _ = std::fs::remove_file(&file);

    let file = ctx.fast.join("yes");
    data::yes(&file, yes)?;
    let load = Load {
        label: format!("2-byte lines (yes), {} MB", yes / 1_000_000),
        file: file.clone(),
        bytes: yes,
    };
    rows.extend(one_load(ctx, &node, &fleet, &load).await?);
    let _ = std::fs::remove_file(&file);

    Ok(Section {
        verb: "throughput".into(),
        about: format!(
            "MB/s of the file's bytes, from the release of the output to the client's seeing \
             the end; higher is better. Ratios: this row's median over the raw one-PTY row's \
             (× baseline) and over tmux's (× tmux). The 2-byte file is {} MB, not 200 MB: a \
             PTY moves 2-byte lines at about 6 MB/s here, so 200 MB would take 30 s a run. \
             Terminal rows write into a file in memory (to count the bytes), the raw row into \
             /dev/null. Rows through a relay: the session is on a fleet node (its own daemon, \
             gossiping every 100 ms) dialed by a `tether relay` on 127.0.0.x; the client \
             connects to the relay with a fleet client certificate; the note gives relay/direct \
             (against the direct row with the same client and ring).",
            yes / 1_000_000
        ),
        rows,
    })
}

#[derive(Clone, Copy)]
enum V {
    Raw,
    Pipe(u64),
    Tail(u64),
    Keeper(u64),
    Script2,
    Tmux,
    Attach(u64),
    RelayPipe(u64),
    RelayAttach(u64),
}

async fn one_load(ctx: &Ctx, node: &Node, fleet: &Fleet, load: &Load) -> anyhow::Result<Vec<Row>> {
    let pipe_sc = format!("pipe client, {}", load.label);
    let term_sc = format!("terminal client, {}", load.label);
    let variants = [
        (
            V::Raw,
            "raw PTY: script -qfc 'cat F' > /dev/null",
            ctx.no_script(),
        ),
        (
            V::Tail(1 << 20),
            "tether tail --follow > /dev/null, 1 MiB ring (the default)",
            None,
        ),
        (
            V::Pipe(1 << 20),
            "tether, bench client (library), 1 MiB ring",
            None,
        ),
        (
            V::Pipe(BIG_RING),
            "tether, bench client (library), 64 MiB ring",
            None,
        ),
        (
            V::Tail(BIG_RING),
            "tether tail --follow > /dev/null, 64 MiB ring",
            None,
        ),
        (
            V::Keeper(BIG_RING),
            "tether keeper socket, no daemon or QUIC, 64 MiB ring (diagnostic)",
            None,
        ),
        (
            V::RelayPipe(BIG_RING),
            "tether through a relay, bench client (library), 64 MiB ring",
            None,
        ),
        (
            V::Script2,
            "2 PTYs: script -qfc \"script -qfc 'cat F'\"",
            ctx.no_script(),
        ),
        (
            V::Tmux,
            "tmux, client attached under script",
            ctx.no_tmux_script(),
        ),
        (
            V::Attach(1 << 20),
            "tether attach under script, 1 MiB ring",
            ctx.no_script(),
        ),
        (
            V::Attach(BIG_RING),
            "tether attach under script, 64 MiB ring",
            ctx.no_script(),
        ),
        (
            V::RelayAttach(BIG_RING),
            "tether attach through a relay under script, 64 MiB ring",
            ctx.no_script(),
        ),
    ];
    let specs: Vec<Spec> = variants
        .iter()
        .map(|(_, name, why)| Spec::unless(*name, why.clone()))
        .collect();
    let scenario = format!("throughput, {}", load.label);
    let measured = runner::alternate(ctx, &scenario, &specs, async |i, _round| {
        match variants[i].0 {
            V::Raw => raw(load).await,
            V::Pipe(r) => tether_pipe(node, None, load, r).await,
            V::RelayPipe(r) => tether_pipe(&fleet.nodes[0], Some(fleet), load, r).await,
            V::Tail(r) => tether_tail(node, load, r).await,
            V::Keeper(r) => tether_keeper(node, load, r).await,
            V::Script2 => script2(ctx, load).await,
            V::Tmux => tmux_terminal(ctx, load).await,
            V::Attach(r) => tether_attach(ctx, node, None, load, r).await,
            V::RelayAttach(r) => tether_attach(ctx, &fleet.nodes[0], Some(fleet), load, r).await,
        }
    })
    .await;
    let mut rows = Vec::new();
    for (m, (v, _, _)) in measured.iter().zip(&variants) {
        let sc = match v {
            V::Raw | V::Pipe(_) | V::Tail(_) | V::Keeper(_) | V::RelayPipe(_) => &pipe_sc,
            _ => &term_sc,
        };
        rows.push(runner::row(sc, "MB/s", m));
    }
    let name_of = |want: fn(&V) -> bool| {
        variants
            .iter()
            .find(|(v, _, _)| want(v))
            .map(|(_, n, _)| *n)
            .unwrap_or_default()
    };
    let raw = (pipe_sc.as_str(), name_of(|v| matches!(v, V::Raw)));
    let tmux = (term_sc.as_str(), name_of(|v| matches!(v, V::Tmux)));
    report::ratios(&mut rows, &pipe_sc, raw, None);
    report::ratios(&mut rows, &term_sc, raw, Some(tmux));
    let pipe = name_of(|v| matches!(v, V::Pipe(BIG_RING)));
    let relay_pipe = name_of(|v| matches!(v, V::RelayPipe(_)));
    let attach = name_of(|v| matches!(v, V::Attach(BIG_RING)));
    let relay_attach = name_of(|v| matches!(v, V::RelayAttach(_)));
    report::relay_note(&mut rows, (&pipe_sc, relay_pipe), (&pipe_sc, pipe));
    report::relay_note(&mut rows, (&term_sc, relay_attach), (&term_sc, attach));
    Ok(rows)
}

fn mbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / 1e6 / t.as_secs_f64()
}

/// One PTY: `script -qfc 'cat F' /dev/null > /dev/null`, a whole process.
async fn raw(load: &Load) -> anyhow::Result<Sample> {
    let mut cmd = procs::command("script");
    cmd.args(["-qfc", &format!("cat {}", qpath(&load.file)), "/dev/null"]);
    let t = procs::timed(&mut cmd, RUN_TIMEOUT, "script cat").await?;
    Ok(Sample::of(mbps(load.bytes, t)))
}

/// The session every tether variant runs: waits for a line, then cats.
fn session_cmd(load: &Load) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("read x; exec cat {}", qpath(&load.file)),
    ]
}

async fn create(node: &Node, load: &Load, ring: u64) -> anyhow::Result<SessionId> {
    let cmd = session_cmd(load);
    let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
    Ok(node.create(&argv, Some(ring)).await?.id)
}

/// Waits for the session's end and removes it (and its ring file).
async fn finish(node: &Node, id: SessionId) -> anyhow::Result<u64> {
    tokio::time::timeout(Duration::from_secs(30), node.wait(id))
        .await
        .context("the session did not end")??;
    let end = node.info(id).await?.end_offset.0;
    node.remove(id).await?;
    Ok(end)
}

/// A sample from what a tether client received of `end` bytes, with the
/// number of gaps when the client can tell.
fn judged(load: &Load, t: Duration, end: u64, delivered: u64, gaps: Option<u32>) -> Sample {
    let mut s = Sample::of(mbps(load.bytes, t));
    if gaps.unwrap_or(0) > 0 || delivered < end {
        s.valid = false;
        s.delivered = Some(delivered as f64 / end.max(1) as f64);
        let counted = gaps.map(|g| format!("{g} gaps, ")).unwrap_or_default();
        s.note = Some(format!(
            "{counted}{:.1} of {:.1} MB delivered",
            delivered as f64 / 1e6,
            end as f64 / 1e6
        ));
    }
    s
}

/// The bench's own client: attach read-only from offset 0 through the
/// node library (to the node, or through the fleet's relay), release,
/// read to the `Exited` notice.
async fn tether_pipe(
    node: &Node,
    via: Option<&Fleet>,
    load: &Load,
    ring: u64,
) -> anyhow::Result<Sample> {
    let id = create(node, load, ring).await?;
    let client = match via {
        Some(f) => f.client().await?,
        None => node.client().await?,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let r = read_to_exit(&client, id, Offset(0), tx).await;
        drop(client);
        r
    });
    if rx.await.is_err() {
        // The reader failed before it attached: its error says why.
        reader.await??;
        anyhow::bail!("the reader ended before it attached");
    }
    let t0 = Instant::now();
    node.send(id, b"\n").await?;
    let got = tokio::time::timeout(RUN_TIMEOUT, reader)
        .await
        .context("the reader did not see the end in time")???;
    let t = got.at.context("no end seen")? - t0;
    finish(node, id).await?;
    Ok(judged(load, t, got.end, got.bytes, Some(got.gaps)))
}

/// The same reader on the keeper's unix socket: no daemon, no QUIC.
async fn tether_keeper(node: &Node, load: &Load, ring: u64) -> anyhow::Result<Sample> {
    let id = create(node, load, ring).await?;
    let ((mut rd, wr), start) = node.keeper_attach(follow_spec(id, Offset(0))).await?;
    let reader = tokio::spawn(async move {
        let r = read_frames(&mut rd, start).await;
        drop(wr);
        r
    });
    let t0 = Instant::now();
    node.send(id, b"\n").await?;
    let got = tokio::time::timeout(RUN_TIMEOUT, reader)
        .await
        .context("the reader did not see the end in time")???;
    let t = got.at.context("no end seen")? - t0;
    finish(node, id).await?;
    Ok(judged(load, t, got.end, got.bytes, Some(got.gaps)))
}

/// `tether tail ID --follow > /dev/null`; gaps are counted from its
/// notices on stderr ("bytes A..B are no longer in the ring").
async fn tether_tail(node: &Node, load: &Load, ring: u64) -> anyhow::Result<Sample> {
    let id = create(node, load, ring).await?;
    let ids = id.to_string();
    let mut cmd = node.cli(&["tail", &ids, "--follow"]);
    cmd.stderr(Stdio::piped());
    let mut p = Proc::spawn(&mut cmd, "tether tail --follow")?;
    let mut err = p.child.stderr.take().context("tail stderr")?;
    let errs = tokio::spawn(async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut err, &mut s).await;
        s
    });
    node.wait_clients(id, 1).await?;
    let t0 = Instant::now();
    node.send(id, b"\n").await?;
    p.wait_ok(RUN_TIMEOUT).await?;
    let t = t0.elapsed();
    let stderr = errs.await?;
    let (gaps, missed) = parse_gaps(&stderr);
    let end = finish(node, id).await?;
    Ok(judged(load, t, end, end.saturating_sub(missed), Some(gaps)))
}

/// Counts `tether tail`'s gap notices and the bytes they skipped.
fn parse_gaps(stderr: &str) -> (u32, u64) {
    let mut gaps = 0;
    let mut missed = 0;
    for line in stderr.lines() {
        let Some(rest) = line.split("bytes ").nth(1) else {
            continue;
        };
        let range = rest.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = range.split_once("..") {
            if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                gaps += 1;
                missed += b.saturating_sub(a);
            }
        }
    }
    (gaps, missed)
}

/// A file in memory for a terminal client's output.
fn out_file(ctx: &Ctx) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let p = ctx.fast.join(ctx.unique("out"));
    let f = std::fs::File::create(&p).with_context(|| format!("creating {}", p.display()))?;
    Ok((p, f))
}

fn size_and_remove(p: &Path) -> u64 {
    let n = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(p);
    n
}

/// `script -qfc LINE /dev/null` with its stdin a pipe held open (so that
/// it never sees EOF) and its stdout to `out`.
fn script(line: &str, out: std::fs::File) -> tokio::process::Command {
    let mut c = procs::command("script");
    c.args(["-qfc", line, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(out);
    c
}

fn stty() -> String {
    format!("stty rows {} cols {}", tmux::ROWS, tmux::COLS)
}

/// Two PTYs: `script` inside `script`, a whole process.
async fn script2(ctx: &Ctx, load: &Load) -> anyhow::Result<Sample> {
    let (path, out) = out_file(ctx)?;
    let inner = format!(
        "script -qfc {} /dev/null",
        quote(&format!("cat {}", qpath(&load.file)))
    );
    let line = format!("{}; {inner}", stty());
    let t0 = Instant::now();
    let mut p = Proc::spawn(&mut script(&line, out), "script in script")?;
    let _stdin = p.child.stdin.take();
    p.wait_ok(RUN_TIMEOUT).await?;
    let t = t0.elapsed();
    let n = size_and_remove(&path);
    Ok(Sample::noted(
        mbps(load.bytes, t),
        format!("{:.0} MB written", n as f64 / 1e6),
    ))
}

/// tmux with a client attached under `script`; the pane waits in
/// `read x`, is released with `send-keys Enter`, and signals a channel
/// when `cat` is done. The clock stops at `wait-for`.
async fn tmux_terminal(ctx: &Ctx, load: &Load) -> anyhow::Result<Sample> {
    let tmux = Tmux::new(ctx, 2000)?;
    tmux.new_session(
        "tp",
        &format!("read x; cat {}; tmux wait-for -S done", qpath(&load.file)),
    )
    .await?;
    let (path, out) = out_file(ctx)?;
    let line = format!("{}; exec {}", stty(), tmux.line("attach -t tp"));
    let mut p = Proc::spawn(&mut script(&line, out), "script tmux attach")?;
    let _stdin = p.child.stdin.take();
    procs::wait_until(
        "the tmux client to attach",
        Duration::from_secs(30),
        Duration::from_millis(5),
        || async { Ok(tmux.clients().await? >= 1) },
    )
    .await?;
    let t0 = Instant::now();
    tmux.run(&["send-keys", "-t", "tp", "Enter"]).await?;
    tmux.wait_for("done", RUN_TIMEOUT).await?;
    let t = t0.elapsed();
    drop(tmux);
    let _ = p.wait(Duration::from_secs(10)).await;
    let n = size_and_remove(&path);
    Ok(Sample::noted(
        mbps(load.bytes, t),
        format!("client drew {:.1} MB (redraws)", n as f64 / 1e6),
    ))
}

/// `tether attach` under `script` (to the node, or through the fleet's
/// relay), released once attached; the clock stops when `script` exits
/// (the attach exits at the session's end).
async fn tether_attach(
    ctx: &Ctx,
    node: &Node,
    via: Option<&Fleet>,
    load: &Load,
    ring: u64,
) -> anyhow::Result<Sample> {
    let id = create(node, load, ring).await?;
    let (path, out) = out_file(ctx)?;
    let attach = format!("attach {id}");
    let cli = match via {
        Some(f) => f.cli_line(&attach),
        None => node.cli_line(&attach),
    };
    let line = format!("{}; exec {cli}", stty());
    let mut p = Proc::spawn(&mut script(&line, out), "script tether attach")?;
    let _stdin = p.child.stdin.take();
    node.wait_clients(id, 1).await?;
    let t0 = Instant::now();
    node.send(id, b"\n").await?;
    p.wait_ok(RUN_TIMEOUT).await?;
    let t = t0.elapsed();
    let n = size_and_remove(&path);
    let end = finish(node, id).await?;
    // The attach adds a few bytes of its own (mode resets, "[exited]"),
    // so fewer bytes than the session wrote means gaps (it does not say
    // how many).
    Ok(judged(load, t, end, n.min(end), None))
}

#[cfg(test)]
mod tests {
    use super::parse_gaps;

    #[test]
    fn gap_notices_are_counted() {
        let e = "tether: bytes 1048576..1224536 are no longer in the ring; going on from 1224536\n\
                 tether: bytes 1486680..1748696 are no longer in the ring; going on from 1748696\n\
                 something else\n";
        assert_eq!(parse_gaps(e), (2, 175_960 + 262_016));
    }
}
