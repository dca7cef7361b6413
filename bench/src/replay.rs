//! Scenario 2: replay and attach. A session has printed four times its
//! ring (1 MiB) of numbered lines, then a unique marker, and sleeps; a
//! tmux pane holds the same output with a history limit of the same
//! number of lines.
//!
//! - Dump: `tether tail ID` against `tmux capture-pane -p -S -`, each a
//!   whole process with its output read by the bench.
//! - Attach: `tether attach ID` against `tmux attach`, each started in a
//!   PTY the bench owns, until the marker (the last line) has been drawn.

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

    // tether: the session keeps its last `ring` bytes.
    let node = Node::start(ctx, "replay").await?;
    let s = node
        .create(
            &["sh", "-c", &format!("{script}; exec sleep 100000")],
            Some(ring),
        )
        .await?;
    let end = data::through_pty(lines * data::LINE, lines) + marker.len() as u64 + 2;
    node.wait_output(s.id, end).await?;
    let id = s.id.to_string();

    // The same session on a fleet node, for the rows through a relay.
    crate::progress::set("replay: starting a fleet of 1 relay and 1 node");
    let fleet = Fleet::start(ctx, 1, 100).await?;
    let fnode = &fleet.nodes[0];
    let fs = fnode
        .create(
            &["sh", "-c", &format!("{script}; exec sleep 100000")],
            Some(ring),
        )
        .await?;
    fnode.wait_output(fs.id, end).await?;
    let fid = fs.id.to_string();

    // tmux: the same output, as many lines of history as the ring holds.
    let history = ring / (data::LINE + 1);
    let tmux = match ctx.tmux {
        Some(_) => {
            let t = Tmux::new(ctx, history)?;
            t.new_session(
                "rp",
                &format!("{script}; tmux wait-for -S filled; exec sleep 100000"),
            )
            .await?;
            t.wait_for("filled", TIMEOUT).await?;
            procs::wait_until(
                "tmux to show the last line",
                TIMEOUT,
                Duration::from_millis(10),
                || async {
                    Ok(t.run(&["capture-pane", "-p", "-t", "rp"])
                        .await?
                        .contains(&marker))
                },
            )
            .await?;
            Some(t)
        }
        None => None,
    };

    let dump_sc = format!("dump a full {} ring (whole process)", size(ring));
    let attach_sc = "attach until the last line is drawn".to_string();
    let specs = [
        Spec::unless("tmux capture-pane -p -S -", ctx.no_tmux()),
        Spec::new("tether tail"),
        Spec::new("tether tail through a relay"),
        Spec::unless("tmux attach (in a PTY)", ctx.no_tmux()),
        Spec::new("tether attach (in a PTY)"),
        Spec::new("tether attach through a relay (in a PTY)"),
    ];
    let measured = runner::alternate(ctx, "replay", &specs, async |i, _round| match (i, &tmux) {
        (0, Some(t)) => {
            let (d, out) = procs::timed_output(
                &mut t.cmd(&["capture-pane", "-p", "-S", "-", "-t", "rp"]),
                TIMEOUT,
                "tmux capture-pane",
            )
            .await?;
            Ok(dump_sample(d, out.stdout.len()))
        }
        (1, _) => {
            let (d, out) =
                procs::timed_output(&mut node.cli(&["tail", &id]), TIMEOUT, "tether tail").await?;
            Ok(dump_sample(d, out.stdout.len()))
        }
        (2, _) => {
            let (d, out) = procs::timed_output(
                &mut fleet.cli(&["tail", &fid]),
                TIMEOUT,
                "tether tail via relay",
            )
            .await?;
            Ok(dump_sample(d, out.stdout.len()))
        }
        (3, Some(t)) => {
            let args = ["-L", &t.socket, "attach", "-t", "rp"];
            attach_until("tmux", &args, marker.as_bytes(), &[0x02, b'd'])
        }
        (4, _) => {
            let dir = node.dir.to_string_lossy().into_owned();
            let args = ["--state-dir", &dir, "attach", &id];
            let exe = node.exe().to_string_lossy().into_owned();
            attach_until(&exe, &args, marker.as_bytes(), &[0x1c])
        }
        (5, _) => {
            let mut args = fleet.relay_args();
            args.extend(["attach".to_string(), fid.clone()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let exe = node.exe().to_string_lossy().into_owned();
            attach_until(&exe, &args, marker.as_bytes(), &[0x1c])
        }
        _ => anyhow::bail!("tmux not found"),
    })
    .await;
    drop(tmux);
    let _ = std::fs::remove_file(&file);

    drop(fleet);
    let mut rows = vec![
        runner::row(&dump_sc, "ms", &measured[0]),
        runner::row(&dump_sc, "ms", &measured[1]),
        runner::row(&dump_sc, "ms", &measured[2]),
        runner::row(&attach_sc, "ms", &measured[3]),
        runner::row(&attach_sc, "ms", &measured[4]),
        runner::row(&attach_sc, "ms", &measured[5]),
    ];
    report::ratios(&mut rows, &dump_sc, (&dump_sc, &specs[0].name), None);
    report::ratios(&mut rows, &attach_sc, (&attach_sc, &specs[3].name), None);
    report::relay_note(
        &mut rows,
        (&dump_sc, &specs[2].name),
        (&dump_sc, &specs[1].name),
    );
    report::relay_note(
        &mut rows,
        (&attach_sc, &specs[5].name),
        (&attach_sc, &specs[4].name),
    );
    Ok(Section {
        verb: "replay".into(),
        about: format!(
            "ms, lower is better; ratio = this row's median over tmux's. The session printed \
             {} of numbered 80-byte lines and a marker; tmux keeps {history} lines of history \
             (the same bytes). Attach clients run in a {}x{} PTY. Rows through a relay: the \
             same session on a fleet node, reached through a `tether relay` on 127.0.0.x with \
             `--relay ADDR --tls-dir DIR` (a new QUIC + mutual TLS connection to the relay, \
             which dials the node); the note gives relay/direct.",
            size(4 * ring),
            tmux::COLS,
            tmux::ROWS
        ),
        rows,
    })
}

fn size(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{} MiB", b >> 20)
    } else {
        format!("{} KiB", b >> 10)
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
