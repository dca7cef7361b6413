//! Scenario 2: replay and attach. A session has printed four times its
//! ring (1 MiB) of numbered lines, then a unique marker, and sleeps; a
//! tmux pane holds the same output with a history limit of the same
//! number of lines. A second pair holds a full-screen program: some log
//! lines, then an editor on the alternate screen redrawn frame after
//! frame until one and a half rings were written, the last frame with a
//! marker in its status line. Sessions and panes are the size of the
//! attach clients' terminal (200x50), so an attach resizes nothing.
//!
//! - Dump: `tether tail ID` against `tmux capture-pane -p -S -`, each a
//!   whole process with its output read by the bench.
//! - Attach: `tether attach ID` (the screen redrawn from the keeper's
//!   emulator, the default; also with `--history 0`, the screen without
//!   history) and `tether attach --replay raw ID` (the ring
//!   replayed, as before the emulator) against `tmux attach`, each started
//!   in a PTY the bench owns, until the marker has been drawn.

use crate::content;
use crate::data;
use crate::fleet::Fleet;
use crate::procs::{self, qpath};
use crate::pty::PtyProc;
use crate::report::{self, Section};
use crate::runner::{self, Sample, Spec};
use crate::tether::Node;
use crate::tmux::{self, Tmux};
use crate::Ctx;
use std::time::{Duration, Instant};
use tether_proto::{CreateSpec, WinSize};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let ring: u64 = if ctx.smoke { 64 << 10 } else { 1 << 20 };
    let lines = 4 * ring / data::LINE;
    let file = ctx.fast.join("replay");
    crate::progress::set("replay: preparing the sessions");
    data::lines80(&file, lines)?;
    let marker = format!("BENCH-LAST-LINE-{}", std::process::id());
    let script = format!("cat {}; printf '%s\\n' {marker}", qpath(&file));

    // The full-screen program's output.
    let fs_file = ctx.fast.join("replay-fullscreen");
    let fs_marker = format!("BENCH-FULLSCREEN-END-{}", std::process::id());
    let mut fs_bytes = content::log(300);
    fs_bytes.extend(content::fullscreen(
        tmux::COLS,
        tmux::ROWS,
        (ring + ring / 2) as usize,
        &fs_marker,
    ));
    std::fs::write(&fs_file, &fs_bytes)?;
    let fs_newlines = fs_bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    let fs_end = data::through_pty(fs_bytes.len() as u64, fs_newlines);
    let fs_script = format!("cat {}", qpath(&fs_file));

    // tether: the session keeps its last `ring` bytes.
    let node = Node::start(ctx, "replay").await?;
    let sleep_after = |s: &str| format!("{s}; exec sleep 100000");
    let s = node
        .create_spec(client_sized(&node, &sleep_after(&script), ring))
        .await?;
    let end = data::through_pty(lines * data::LINE, lines) + marker.len() as u64 + 2;
    node.wait_output(s.id, end).await?;
    let id = s.id.to_string();
    let fs = node
        .create_spec(client_sized(&node, &sleep_after(&fs_script), ring))
        .await?;
    node.wait_output(fs.id, fs_end).await?;
    let fs_id = fs.id.to_string();

    // The same session on a fleet node, for the rows through a relay.
    crate::progress::set("replay: starting a fleet of 1 relay and 1 node");
    let fleet = Fleet::start(ctx, 1, 100).await?;
    let fnode = &fleet.nodes[0];
    let relayed = fnode
        .create_spec(client_sized(fnode, &sleep_after(&script), ring))
        .await?;
    fnode.wait_output(relayed.id, end).await?;
    let fid = relayed.id.to_string();

    // tmux: the same output, as many lines of history as the ring holds.
    let history = ring / (data::LINE + 1);
    let tmux = match ctx.tmux {
        Some(_) => {
            let t = Tmux::new(ctx, history)?;
            for (name, script, mark) in [("rp", &script, &marker), ("fs", &fs_script, &fs_marker)] {
                t.new_session(
                    name,
                    &format!("{script}; tmux wait-for -S filled-{name}; exec sleep 100000"),
                )
                .await?;
                t.wait_for(&format!("filled-{name}"), TIMEOUT).await?;
                procs::wait_until(
                    "tmux to show the last line",
                    TIMEOUT,
                    Duration::from_millis(10),
                    || async {
                        Ok(t.run(&["capture-pane", "-p", "-t", name])
                            .await?
                            .contains(mark.as_str()))
                    },
                )
                .await?;
            }
            Some(t)
        }
        None => None,
    };

    let dump_sc = format!("dump a full {} ring (whole process)", size(ring));
    let attach_sc = "attach until the last line is drawn".to_string();
    let fs_sc = format!(
        "attach to a full-screen program until its screen is drawn ({} of redraws in the ring)",
        size(ring)
    );
    use Target::{Full, Lines};
    use Variant::*;
    let variants = [
        (TmuxDump, &dump_sc),
        (TailDump, &dump_sc),
        (TailRelay, &dump_sc),
        (TmuxAttach(Lines), &attach_sc),
        (Attach(Lines, Replay::Snapshot), &attach_sc),
        (Attach(Lines, Replay::NoHistory), &attach_sc),
        (Attach(Lines, Replay::Raw), &attach_sc),
        (AttachRelay, &attach_sc),
        (TmuxAttach(Full), &fs_sc),
        (Attach(Full, Replay::Snapshot), &fs_sc),
        (Attach(Full, Replay::NoHistory), &fs_sc),
        (Attach(Full, Replay::Raw), &fs_sc),
    ];
    let specs: Vec<Spec> = variants
        .iter()
        .map(|(v, _)| {
            let tmux_only = matches!(v, TmuxDump | TmuxAttach(_));
            Spec::unless(v.name(), if tmux_only { ctx.no_tmux() } else { None })
        })
        .collect();
    let dir = node.dir.to_string_lossy().into_owned();
    let exe = node.exe().to_string_lossy().into_owned();
    let measured = runner::alternate(ctx, "replay", &specs, async |i, _round| {
        let target = |t: Target| match t {
            Lines => (&id, "rp", &marker),
            Full => (&fs_id, "fs", &fs_marker),
        };
        match (variants[i].0, &tmux) {
            (TmuxDump, Some(t)) => {
                let (d, out) = procs::timed_output(
                    &mut t.cmd(&["capture-pane", "-p", "-S", "-", "-t", "rp"]),
                    TIMEOUT,
                    "tmux capture-pane",
                )
                .await?;
                Ok(dump_sample(d, out.stdout.len()))
            }
            (TailDump, _) => {
                let (d, out) =
                    procs::timed_output(&mut node.cli(&["tail", &id]), TIMEOUT, "tether tail")
                        .await?;
                Ok(dump_sample(d, out.stdout.len()))
            }
            (TailRelay, _) => {
                let (d, out) = procs::timed_output(
                    &mut fleet.cli(&["tail", &fid]),
                    TIMEOUT,
                    "tether tail via relay",
                )
                .await?;
                Ok(dump_sample(d, out.stdout.len()))
            }
            (TmuxAttach(which), Some(t)) => {
                let (_, pane, mark) = target(which);
                let args = ["-L", &t.socket, "attach", "-t", pane];
                attach_until("tmux", &args, mark.as_bytes(), &[0x02, b'd'])
            }
            (Attach(which, replay), _) => {
                let (id, _, mark) = target(which);
                let mut args = vec!["--state-dir", &dir, "attach"];
                args.extend(replay.args());
                args.push(id);
                attach_until(&exe, &args, mark.as_bytes(), &[0x1c])
            }
            (AttachRelay, _) => {
                let mut args = fleet.relay_args();
                args.extend(["attach".to_string(), fid.clone()]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                attach_until(&exe, &args, marker.as_bytes(), &[0x1c])
            }
            _ => anyhow::bail!("tmux not found"),
        }
    })
    .await;
    drop(tmux);
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&fs_file);

    drop(fleet);
    let mut rows: Vec<_> = measured
        .iter()
        .zip(&variants)
        .map(|(m, (_, sc))| runner::row(sc, "ms", m))
        .collect();
    report::ratios(&mut rows, &dump_sc, (&dump_sc, &TmuxDump.name()), None);
    for (sc, which) in [(&attach_sc, Lines), (&fs_sc, Full)] {
        report::ratios(
            &mut rows,
            sc,
            (sc, &Attach(which, Replay::Raw).name()),
            Some((sc, &TmuxAttach(which).name())),
        );
    }
    report::relay_note(
        &mut rows,
        (&dump_sc, &TailRelay.name()),
        (&dump_sc, &TailDump.name()),
    );
    report::relay_note(
        &mut rows,
        (&attach_sc, &AttachRelay.name()),
        (&attach_sc, &Attach(Lines, Replay::Snapshot).name()),
    );
    Ok(Section {
        verb: "replay".into(),
        about: format!(
            "ms, lower is better. Dump: ratio = this row's median over tmux's. Attach: × \
             baseline = over `--replay raw` (the attach before the screen emulator), × tmux = \
             over tmux attach's, both from this run. The session printed {} of numbered 80-byte \
             lines and a marker; tmux keeps {history} lines of history (the same bytes). The \
             full-screen session printed 300 coloured log lines, then an editor on the \
             alternate screen (256-colour and true-colour highlighting, an inverse status line) \
             redrawn until {} were written, the marker in the last frame's status line. \
             Sessions, panes and attach clients are {}x{}; a snapshot carries a screenful of \
             history (attach's default: the client's rows) into the terminal's scrollback, or none with \
             `--history 0` (tmux sends the visible screen only). Rows through a relay: the \
             same session on a fleet node, reached through a `tether relay` on 127.0.0.x with \
             `--relay ADDR --tls-dir DIR` (a new QUIC + mutual TLS connection to the relay, \
             which dials the node); the note gives relay/direct.",
            size(4 * ring),
            size(ring + ring / 2),
            tmux::COLS,
            tmux::ROWS
        ),
        rows,
    })
}

/// Which session an attach row goes to.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// 4 MiB of numbered lines, the last 1 MiB in the ring.
    Lines,
    /// A full-screen program redrawn over and over.
    Full,
}

/// What `tether attach` shows first.
#[derive(Debug, Clone, Copy)]
enum Replay {
    /// The default: the screen from the keeper's emulator, with
    /// attach's default history.
    Snapshot,
    /// The screen alone (`--history 0`).
    NoHistory,
    /// The ring replayed (`--replay raw`), as before the emulator.
    Raw,
}

impl Replay {
    fn args(self) -> &'static [&'static str] {
        match self {
            Replay::Snapshot => &[],
            Replay::NoHistory => &["--history", "0"],
            Replay::Raw => &["--replay", "raw"],
        }
    }
}

/// The rows of the scenario.
#[derive(Debug, Clone, Copy)]
enum Variant {
    TmuxDump,
    TailDump,
    TailRelay,
    TmuxAttach(Target),
    Attach(Target, Replay),
    AttachRelay,
}

impl Variant {
    fn name(self) -> String {
        match self {
            Variant::TmuxDump => "tmux capture-pane -p -S -".into(),
            Variant::TailDump => "tether tail".into(),
            Variant::TailRelay => "tether tail through a relay".into(),
            Variant::TmuxAttach(_) => "tmux attach (in a PTY)".into(),
            Variant::Attach(_, Replay::Snapshot) => {
                "tether attach (in a PTY): screen snapshot with a screenful of history, the default"
                    .into()
            }
            Variant::Attach(_, Replay::NoHistory) => {
                "tether attach --history 0 (in a PTY): the screen alone".into()
            }
            Variant::Attach(_, Replay::Raw) => {
                "tether attach --replay raw (in a PTY): the ring replayed".into()
            }
            Variant::AttachRelay => {
                "tether attach through a relay (in a PTY): screen snapshot".into()
            }
        }
    }
}

/// A session running `sh -c SCRIPT` with a ring of `ring` bytes, in a
/// window of the attach clients' size.
fn client_sized(node: &Node, script: &str, ring: u64) -> CreateSpec {
    CreateSpec {
        size: Some(WinSize {
            cols: tmux::COLS,
            rows: tmux::ROWS,
        }),
        ..node.spec(&["sh", "-c", script], Some(ring))
    }
}

fn size(b: u64) -> String {
    let (v, unit) = if b >= 1 << 20 {
        (b as f64 / f64::from(1 << 20), "MiB")
    } else {
        (b as f64 / 1024.0, "KiB")
    };
    if v.fract() == 0.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

fn dump_sample(d: Duration, bytes: usize) -> Sample {
    Sample::noted(
        d.as_secs_f64() * 1e3,
        format!("{:.0} KiB out", bytes as f64 / 1024.0),
    )
}

/// Starts `program args` in a PTY and times it until `marker` has been
/// drawn; then types `detach` and lets it go.
fn attach_until(
    program: &str,
    args: &[&str],
    marker: &[u8],
    detach: &[u8],
) -> anyhow::Result<Sample> {
    let t0 = Instant::now();
    let mut p = PtyProc::spawn(program, args, tmux::COLS, tmux::ROWS)?;
    let bytes = p.wait_for(marker, TIMEOUT)?;
    let t = t0.elapsed();
    let _ = p.write(detach);
    p.finish(Duration::from_secs(5));
    Ok(Sample::noted(
        t.as_secs_f64() * 1e3,
        format!("{:.0} KiB drawn", bytes as f64 / 1024.0),
    ))
}
