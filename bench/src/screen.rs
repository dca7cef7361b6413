//! Scenario: what the keeper's screen emulator costs (issue #10). The
//! attach it speeds up is measured in [`crate::replay`]; here:
//!
//! - Snapshot: size and time of `Emulator::snapshot(h)`, in process
//!   (`tether_node::screen`), for an 80x24 and a 200x60 screen holding a
//!   coloured log, an `ls -l --color` listing, a full-screen editor over a
//!   log, and (when it is installed) vim's own output, with 0, 200
//!   (attach's default) and 500 lines (all a session keeps by default) of
//!   history.
//! - Bulk output: a session `cat`s 200 MB of 80-byte lines with no client
//!   attached, once with the emulator and once with `--no-screen`: the
//!   rate at which the keeper takes it, the keeper's CPU time
//!   (`/proc/PID/stat`, user + system, its `screen` thread apart), and the
//!   bytes the emulator skipped because it fell behind (`tether screen
//!   --json`).
//! - Memory per session with the emulator and without
//!   ([`crate::sessions::screen_memory`]).

use crate::content;
use crate::data;
use crate::procs::{self, qpath};
use crate::pty::{Got, PtyProc};
use crate::report::{self, Row, Section};
use crate::runner::{self, Measured, Sample, Spec};
use crate::tether::Node;
use crate::Ctx;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};
use tether_node::config::DEFAULT_SCREEN_HISTORY;
use tether_node::screen::Emulator;
use tether_proto::screen::DEFAULT_SNAPSHOT_HISTORY;
use tether_proto::{CreateSpec, Offset, WinSize};

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let mut rows = snapshots(ctx).await?;
    rows.extend(bulk(ctx).await?);
    rows.extend(crate::sessions::screen_memory(ctx).await?);
    Ok(Section {
        verb: "screen".into(),
        about: format!(
            "The keeper's terminal emulator (avt): what it costs. Snapshot: µs per \
             `Emulator::snapshot(history)` in process (median over {} calls a run), an emulator \
             keeping {DEFAULT_SCREEN_HISTORY} lines of history as a session does by default; \
             the note gives the snapshot's size and the output fed; × baseline = over history \
             0. Bulk output: a session `cat`s 80-byte lines with no client attached (the keeper \
             alone reads the PTY into its ring), with the emulator and with `--no-screen` \
             (baseline); keeper CPU from `/proc/PID/stat` (user + system, whole life of the \
             keeper, its `screen` thread in the note); skipped: bytes the emulator jumped over \
             because the ring overwrote them before it parsed them (`tether screen --json`). \
             Memory: keepers' PSS and Private_Dirty (smaps_rollup) less their ring mappings', \
             per session; the note gives what the emulator adds.",
            calls(ctx)
        ),
        rows,
    })
}

/// Snapshots timed per run.
fn calls(ctx: &Ctx) -> usize {
    if ctx.smoke {
        3
    } else {
        100
    }
}

/// One screen to snapshot.
struct Screen {
    scenario: String,
    /// The emulator fed with the output, or why there is none.
    emu: Result<Emulator, String>,
    fed: usize,
}

/// Lines of log or listing printed for the primary-screen contents.
const PRIMARY_LINES: u64 = 2000;
/// Lines of log printed before a full-screen program starts.
const BEFORE_FULLSCREEN: u64 = 1000;

async fn snapshots(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    crate::progress::set("screen: preparing the screens");
    let mut screens = Vec::new();
    for (cols, rows) in [(80u16, 24u16), (200, 60)] {
        let size = WinSize { cols, rows };
        let log = content::log(PRIMARY_LINES);
        let ls = content::ls_color(PRIMARY_LINES);
        let mut editor = content::log(BEFORE_FULLSCREEN);
        editor.extend(content::fullscreen(cols, rows, 64 << 10, "END"));
        let vim = vim_output(ctx, cols, rows).map(|v| {
            let mut out = content::log(BEFORE_FULLSCREEN);
            out.extend(v);
            out
        });
        let named: [(&str, Result<Vec<u8>, String>); 4] = [
            ("coloured log, 2,000 lines", Ok(log)),
            ("ls -l --color, 2,000 entries", Ok(ls)),
            (
                "full-screen editor (synthetic, alternate screen) after 1,000 log lines",
                Ok(editor),
            ),
            ("vim on a source file, after 1,000 log lines", vim),
        ];
        for (what, bytes) in named {
            let fed = bytes.as_ref().map_or(0, Vec::len);
            screens.push(Screen {
                scenario: format!("snapshot of a {cols}x{rows} screen: {what}"),
                emu: bytes.map(|b| {
                    let mut e = Emulator::new(size, DEFAULT_SCREEN_HISTORY, Offset(0));
                    e.feed(&b);
                    e
                }),
                fed,
            });
        }
    }
    let histories = [0, DEFAULT_SNAPSHOT_HISTORY, DEFAULT_SCREEN_HISTORY];
    let names = [
        "history 0".to_string(),
        format!("history {DEFAULT_SNAPSHOT_HISTORY} (attach's default)"),
        format!("history {DEFAULT_SCREEN_HISTORY} (all a session keeps by default)"),
    ];
    let mut specs = Vec::new();
    for s in &screens {
        for n in &names {
            specs.push(Spec::unless(n.clone(), s.emu.as_ref().err().cloned()));
        }
    }
    let k = calls(ctx);
    let measured = runner::alternate(ctx, "screen: snapshots", &specs, async |i, _round| {
        let s = &screens[i / histories.len()];
        let h = histories[i % histories.len()];
        let emu = s.emu.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut times = Vec::with_capacity(k);
        let mut len = 0;
        for _ in 0..k {
            let t0 = Instant::now();
            let snap = emu.snapshot(h);
            times.push(t0.elapsed().as_secs_f64() * 1e6);
            len = std::hint::black_box(snap).len();
        }
        Ok(Sample::noted(
            runner::median(&times).unwrap_or(0.0),
            format!(
                "{} snapshot; {} of output fed",
                kib(len as f64),
                kib(s.fed as f64)
            ),
        ))
    })
    .await;
    let mut rows: Vec<Row> = measured
        .iter()
        .enumerate()
        .map(|(i, m)| runner::row(&screens[i / histories.len()].scenario, "µs", m))
        .collect();
    for s in &screens {
        report::ratios(&mut rows, &s.scenario, (&s.scenario, &names[0]), None);
    }
    Ok(rows)
}

fn kib(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

/// What vim draws on a `cols` x `rows` terminal when it opens a source
/// file with syntax highlighting and line numbers; an error (the reason
/// the rows are not measured) when vim is not installed or draws nothing.
fn vim_output(ctx: &Ctx, cols: u16, rows: u16) -> Result<Vec<u8>, String> {
    if procs::probe("vim", &["--version"]).is_none() {
        return Err("n/a: vim not found".into());
    }
    let file = ctx.fast.join("screen-source.rs");
    std::fs::write(&file, content::code_file(400)).map_err(|e| e.to_string())?;
    let path = file.to_string_lossy().into_owned();
    let args = [
        "-u",
        "NONE",
        "-i",
        "NONE",
        "-N",
        "-n",
        "-c",
        "syntax on",
        "-c",
        "set number laststatus=2 ruler",
        "-c",
        "normal 120G",
        &path,
    ];
    let r = (|| -> anyhow::Result<Vec<u8>> {
        let mut p = PtyProc::spawn("vim", &args, cols, rows)?;
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        // Until it has drawn and then been quiet for 300 ms.
        while Instant::now() < deadline {
            match p.read_some(Instant::now() + Duration::from_millis(300)) {
                Ok(Got::Data(n)) => out.extend_from_slice(p.got(n)),
                Ok(Got::Closed) => bail!("vim exited"),
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(e),
            }
        }
        let _ = p.write(b"\x1b:qa!\r");
        p.finish(Duration::from_secs(2));
        Ok(out)
    })();
    let _ = std::fs::remove_file(&file);
    match r {
        Ok(out) if out.len() > 1000 => Ok(out),
        Ok(out) => Err(format!("vim drew only {} bytes", out.len())),
        Err(e) => Err(format!("vim: {e:#}")),
    }
}

/// The figures of one bulk-output run.
#[derive(Debug, Clone, Default)]
struct BulkRun {
    cpu_s: f64,
    screen_cpu_s: Option<f64>,
    skipped_mb: Option<f64>,
}

async fn bulk(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let bytes: u64 = if ctx.smoke { 2_000_000 } else { 200_000_000 };
    let lines = bytes / data::LINE;
    let file = ctx.fast.join("screen-bulk");
    crate::progress::set("screen: writing the bulk file");
    data::lines80(&file, lines)?;
    let end = data::through_pty(lines * data::LINE, lines);
    let script = format!("cat {}; exec sleep 100000", qpath(&file));
    let node = Node::start(ctx, "screen").await?;
    let specs = [
        Spec::new("--no-screen: no emulator"),
        Spec::new("emulator on (the default)"),
    ];
    let mut runs: [Vec<BulkRun>; 2] = Default::default();
    let measured = runner::alternate(ctx, "screen: bulk output", &specs, async |i, round| {
        let with_screen = i == 1;
        let spec = CreateSpec {
            screen: Some(with_screen),
            ..node.spec(&["sh", "-c", &script], None)
        };
        let t0 = Instant::now();
        let s = node.create_spec(spec).await?;
        let deadline = t0 + Duration::from_secs(300);
        while node.info(s.id).await?.end_offset.0 < end {
            if Instant::now() > deadline {
                bail!("the session's output did not reach {end} bytes in time");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let wall = t0.elapsed().as_secs_f64();
        let keeper = node.keeper_pid(s.id)?;
        let mut run = BulkRun::default();
        if with_screen {
            // Brings the emulator to the end of the output (its last
            // bytes are parsed by the keeper, counted below).
            let out = procs::output(
                &mut node.cli(&["screen", "--json", &s.id.to_string()]),
                "tether screen",
            )
            .await?;
            let v: serde_json::Value =
                serde_json::from_str(&out).context("parsing tether screen --json")?;
            let skipped = v["skipped"]
                .as_u64()
                .context("no `skipped` in screen --json")?;
            run.skipped_mb = Some(skipped as f64 / 1e6);
            let thread = procs::threads_named(keeper, "screen");
            run.screen_cpu_s = thread
                .first()
                .and_then(|&t| procs::cpu_time(keeper, Some(t)))
                .map(|d| d.as_secs_f64());
        }
        run.cpu_s = procs::cpu_time(keeper, None)
            .context("reading the keeper's CPU time")?
            .as_secs_f64();
        node.discard(s.id).await?;
        if !ctx.is_warmup(round) {
            runs[i].push(run);
        }
        Ok(Sample::of(bytes as f64 / 1e6 / wall))
    })
    .await;
    drop(node);
    let _ = std::fs::remove_file(&file);

    let mb = bytes / 1_000_000;
    let rate_sc = format!("bulk output into a session with no client: {mb} MB of 80-byte lines");
    let cpu_sc = format!("keeper CPU time for those {mb} MB (user + system)");
    let skip_sc = format!("output the emulator skipped of those {mb} MB (screen --json)");
    let med = |v: Vec<f64>| runner::median(&v);
    let screen_note = med(runs[1].iter().filter_map(|r| r.screen_cpu_s).collect())
        .map(|s| format!("of which the screen thread {s:.2} s"));
    let skip_note = med(runs[1].iter().filter_map(|r| r.skipped_mb).collect())
        .map(|s| format!("{:.0}% of the output", s * 1e6 / bytes as f64 * 100.0));
    let mut rows = vec![
        runner::row(&rate_sc, "MB/s", &measured[0]),
        runner::row(&rate_sc, "MB/s", &measured[1]),
    ];
    for (i, note) in [(0, None), (1, screen_note)] {
        let m = Measured::of(
            &measured[i].spec,
            &measured[i].error,
            runs[i].iter().map(|r| r.cpu_s).collect(),
            note,
        );
        rows.push(runner::row(&cpu_sc, "s", &m));
    }
    let m = Measured::of(
        &measured[1].spec,
        &measured[1].error,
        runs[1].iter().filter_map(|r| r.skipped_mb).collect(),
        skip_note,
    );
    rows.push(runner::row(&skip_sc, "MB", &m));
    for sc in [&rate_sc, &cpu_sc] {
        report::ratios(&mut rows, sc, (sc, &specs[0].name), None);
    }
    Ok(rows)
}
