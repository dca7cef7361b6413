//! Scenario 3: keystroke round trip. The session runs
//! `stty raw -echo; cat`; the client sends one byte and waits until it
//! comes back, 10,000 times.
//!
//! - raw PTY: the bench writes to the master of a PTY running the same
//!   command and reads the echo;
//! - tmux: a tmux client attached in a PTY the bench owns; the bench
//!   types into that PTY and waits until the key is drawn (escape
//!   sequences skipped);
//! - tether attach: the real `tether attach` in a PTY the bench owns,
//!   typed into and read as tmux's client is (the path a user types
//!   through: the local fast path, straight to the session's keeper);
//! - the same over QUIC to the daemon (`TETHER_LOCAL_QUIC=1`), the local
//!   path before the fast path existed, to tell what it saves;
//! - tether: the bench's own client (the client library) over QUIC to
//!   the daemon, attached read-write: an `Input` frame out, `Output`
//!   frames in (the base of the relay row: a remote client's path);
//! - tether's keeper socket: raw frames on the keeper's unix socket,
//!   without the client library, to tell what the library costs.

use crate::fleet::Fleet;
use crate::pty::{Got, PtyProc, TextScanner};
use crate::report::{self, Row, Section};
use crate::runner::{self, Sample, Spec};
use crate::tether::Node;
use crate::tmux::{self, Tmux};
use crate::Ctx;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};
use tether_net::conn::{FrameReader, FrameWriter};
use tether_proto::{AttachSpec, Frame, Reply, Request, SessionId, StartAt, WinSize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

const SESSION: &str = "stty raw -echo; printf READY; exec cat";
const KEY_TIMEOUT: Duration = Duration::from_secs(5);
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let total: usize = if ctx.smoke { 100 } else { 10_000 };
    let per_run = total.div_ceil(ctx.runs);
    let warm = 200;
    crate::progress::set("keystroke: starting the sessions");

    let mut raw = PtyProc::spawn("/bin/sh", &["-c", SESSION], tmux::COLS, tmux::ROWS)?;
    raw.wait_for(b"READY", SETUP_TIMEOUT)?;
    raw.drain(Duration::from_millis(50));

    let mut tm = match ctx.tmux {
        Some(_) => {
            let t = Tmux::new(ctx, 2000)?;
            t.new_session("ks", SESSION).await?;
            let mut client = PtyProc::spawn(
                "tmux",
                &["-L", &t.socket, "attach", "-t", "ks"],
                tmux::COLS,
                tmux::ROWS,
            )?;
            client.wait_for(b"READY", SETUP_TIMEOUT)?;
            client.drain(Duration::from_millis(200));
            Some((t, client))
        }
        None => None,
    };

    let node = Node::start(ctx, "keystroke").await?;
    let spec = |id: SessionId| AttachSpec {
        target: id.to_string(),
        start: StartAt::Oldest,
        read_only: false,
        follow: true,
        size: Some(WinSize {
            cols: tmux::COLS,
            rows: tmux::ROWS,
        }),
        snapshot: None,
        sizing: tether_proto::Sizing::Latest,
    };
    let s = node.create(&["sh", "-c", SESSION], None).await?;
    let client = node.client_quic().await?;
    let (mut rd, mut wr) = client.open(&Request::Attach(spec(s.id))).await?;
    match rd.control::<Reply>().await? {
        Reply::Attached { .. } => {}
        other => bail!("unexpected reply to attach: {other:?}"),
    }
    wait_ready(&mut rd).await?;
    // A second session, read straight from its keeper's socket.
    let s2 = node.create(&["sh", "-c", SESSION], None).await?;
    let ((mut krd, mut kwr), _) = node.keeper_attach(spec(s2.id)).await?;
    wait_ready(&mut krd).await?;
    // A third, on a fleet node, through a relay.
    crate::progress::set("keystroke: starting a fleet of 1 relay and 1 node");
    let fleet = Fleet::start(ctx, 1, 100).await?;
    let s3 = fleet.nodes[0].create(&["sh", "-c", SESSION], None).await?;
    let rclient = fleet.client().await?;
    let (mut rrd, mut rwr) = rclient.open(&Request::Attach(spec(s3.id))).await?;
    match rrd.control::<Reply>().await? {
        Reply::Attached { .. } => {}
        other => bail!("unexpected reply to attach through the relay: {other:?}"),
    }
    wait_ready(&mut rrd).await?;

    // The real client, in a PTY, as tmux's; twice: the fast path, and
    // over QUIC to the daemon.
    let attach_in_pty = |env: &str, id: SessionId| -> anyhow::Result<PtyProc> {
        let line = format!("{env}exec {}", node.cli_line(&format!("attach {id}")));
        let mut c = PtyProc::spawn("/bin/sh", &["-c", &line], tmux::COLS, tmux::ROWS)?;
        c.wait_for(b"READY", SETUP_TIMEOUT)?;
        c.drain(Duration::from_millis(200));
        Ok(c)
    };
    let s4 = node.create(&["sh", "-c", SESSION], None).await?;
    let mut attach_fast = attach_in_pty("", s4.id)?;
    let s5 = node.create(&["sh", "-c", SESSION], None).await?;
    let mut attach_quic = attach_in_pty("TETHER_LOCAL_QUIC=1 ", s5.id)?;

    let specs = [
        Spec::new("raw PTY (write the master, read the echo)"),
        Spec::unless("tmux, client attached in a PTY", ctx.no_tmux()),
        Spec::new("tether attach in a PTY"),
        Spec::new("tether attach in a PTY, over QUIC to the daemon (before #9)"),
        Spec::new("tether, bench client (library), QUIC to the daemon"),
        Spec::new("tether through a relay, bench client (library)"),
        Spec::new("tether keeper socket, no daemon or QUIC (diagnostic)"),
    ];
    let mut key = 0u8;
    let measured = runner::alternate(ctx, "keystroke", &specs, async |i, round| {
        let n = if ctx.is_warmup(round) { warm } else { per_run };
        let lat = match i {
            0 => pty_keys(&mut raw, n, &mut key)?,
            1 => match &mut tm {
                Some((_, c)) => pty_keys(c, n, &mut key)?,
                None => bail!("tmux not found"),
            },
            2 => pty_keys(&mut attach_fast, n, &mut key)?,
            3 => pty_keys(&mut attach_quic, n, &mut key)?,
            4 => frame_keys(&mut rd, &mut wr, n, &mut key).await?,
            5 => frame_keys(&mut rrd, &mut rwr, n, &mut key).await?,
            _ => frame_keys(&mut krd, &mut kwr, n, &mut key).await?,
        };
        let mut sorted = lat.clone();
        sorted.sort_by(f64::total_cmp);
        Ok(Sample {
            value: runner::percentile(&sorted, 50.0).unwrap_or(0.0),
            latencies: lat,
            valid: true,
            ..Sample::default()
        })
    })
    .await;
    let _ = wr.get_mut().shutdown().await;
    let _ = rwr.get_mut().shutdown().await;
    drop(fleet);
    drop(tm);
    raw.kill();
    attach_fast.kill();
    attach_quic.kill();

    let sc = format!("round trip of one byte, {total} keystrokes");
    let mut rows: Vec<Row> = measured.iter().map(|m| runner::row(&sc, "µs", m)).collect();
    report::ratios(
        &mut rows,
        &sc,
        (&sc, &specs[0].name),
        Some((&sc, &specs[1].name)),
    );
    report::relay_note(&mut rows, (&sc, &specs[5].name), (&sc, &specs[4].name));
    Ok(Section {
        verb: "keystroke".into(),
        about: "µs from writing one byte to seeing it come back, lower is better. median/min/max \
                are over the runs' p50s; p50 and p99 over every keystroke; ratios are of p50s. \
                Through a relay: a session on a fleet node, the bench's client connected to a \
                `tether relay` on 127.0.0.x that splices to the node; the note gives what the \
                relay adds at p50 (target: at most 200 µs)."
            .into(),
        rows,
    })
}

fn next_key(k: &mut u8) -> u8 {
    *k = k.wrapping_add(1);
    b'a' + *k % 26
}

/// Types `n` keys into a PTY; each waits until the key is drawn.
fn pty_keys(p: &mut PtyProc, n: usize, k: &mut u8) -> anyhow::Result<Vec<f64>> {
    let mut scan = TextScanner::default();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let key = next_key(k);
        let t0 = Instant::now();
        p.write(&[key])?;
        let deadline = t0 + KEY_TIMEOUT;
        let mut found = false;
        while !found {
            match p.read_some(deadline).context("waiting for the echo")? {
                Got::Data(m) => scan.feed(p.got(m), |b| found |= b == key),
                Got::Closed => bail!("the program closed its terminal"),
            }
        }
        lat.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    Ok(lat)
}

/// Reads output until the session's `READY`.
async fn wait_ready<R: AsyncRead + Unpin>(rd: &mut FrameReader<R>) -> anyhow::Result<()> {
    let mut seen = Vec::new();
    tokio::time::timeout(SETUP_TIMEOUT, async {
        while !String::from_utf8_lossy(&seen).contains("READY") {
            match rd.next().await? {
                Some(Frame::Output { data, .. }) => seen.extend_from_slice(&data),
                Some(_) => {}
                None => bail!("the session ended before it was ready"),
            }
        }
        Ok(())
    })
    .await
    .context("the tether session did not get ready")?
}

/// Sends `n` keys as `Input` frames; each waits for its `Output`.
async fn frame_keys<R, W>(
    rd: &mut FrameReader<R>,
    wr: &mut FrameWriter<W>,
    n: usize,
    k: &mut u8,
) -> anyhow::Result<Vec<f64>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let key = next_key(k);
        let t0 = Instant::now();
        wr.send(&Frame::Input(vec![key])).await?;
        tokio::time::timeout(KEY_TIMEOUT, async {
            loop {
                match rd.next().await? {
                    Some(Frame::Output { data, .. }) if data.contains(&key) => return Ok(()),
                    Some(Frame::Output { .. }) => {}
                    Some(Frame::Control(b)) => {
                        let r: Reply = tether_proto::msg::decode(&b)?;
                        if !matches!(r, Reply::Gap { .. }) {
                            bail!("unexpected notice during keystrokes: {r:?}");
                        }
                    }
                    Some(Frame::Input(_)) => {}
                    None => bail!("the node closed the stream"),
                }
            }
        })
        .await
        .context("no echo within 5 s")??;
        lat.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    Ok(lat)
}
