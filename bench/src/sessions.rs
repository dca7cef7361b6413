//! Scenario 4: many idle sessions on one node (1,000 running
//! `sleep 100000`), against as many tmux sessions.
//!
//! - Create rate: the first sessions with the CLI (`tether new -d`, one
//!   process each, like `tmux new-session -d`), the rest through one
//!   library connection (the daemon's own rate).
//! - Memory that tether adds per session: PSS of the daemon and of every
//!   keeper (`/proc/PID/smaps_rollup`), session processes excluded, less
//!   the PSS of the keepers' ring mappings (`/proc/PID/smaps`), which is
//!   reported on its own; divided by the number of sessions. tmux: its
//!   server's PSS over the number of sessions.
//! - `ls` as a whole process with every session listed.
//! - Re-adopt: SIGKILL the daemon, start it again, and time until it
//!   prints its ready line, and until `tether ls` shows every session
//!   running. (A tmux server's sessions die with it: nothing to compare.)
//!
//! Every keeper and session process is killed at the end of each run.

use crate::procs;
use crate::report::{self, Row, Section};
use crate::runner::{self, Measured, Sample, Spec};
use crate::tether::Node;
use crate::tmux::Tmux;
use crate::Ctx;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};

const SLEEP: &str = "100000";

/// The figures of one tether run.
#[derive(Debug, Clone, Default)]
struct TetherRun {
    cli_rate: f64,
    lib_rate: f64,
    kib_beyond_ring: f64,
    ring_kib: f64,
    daemon_kib: f64,
    keeper_kib: f64,
    ls_ms: f64,
    ready_ms: f64,
    readopt_ms: f64,
}

/// The figures of one tmux run.
#[derive(Debug, Clone, Default)]
struct TmuxRun {
    rate: f64,
    kib: f64,
    ls_ms: f64,
}

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let n: usize = if ctx.smoke { 10 } else { 1000 };
    let by_cli: usize = if ctx.smoke { 5 } else { 50 };
    let specs = [Spec::unless("tmux", ctx.no_tmux()), Spec::new("tether")];
    let mut tm: Vec<TmuxRun> = Vec::new();
    let mut te: Vec<TetherRun> = Vec::new();
    let ran = runner::alternate(ctx, &format!("sessions ({n})"), &specs, async |i, round| {
        if i == 0 {
            let r = tmux_run(ctx, n).await?;
            if !ctx.is_warmup(round) {
                tm.push(r);
            }
        } else {
            let r = tether_run(ctx, n, by_cli).await?;
            if !ctx.is_warmup(round) {
                te.push(r);
            }
        }
        Ok(Sample::of(0.0))
    })
    .await;

    // One row per figure, built from the runs' records.
    let col = |spec: &Spec, err: &Option<String>, v: Vec<f64>, note: Option<String>| Measured {
        spec: spec.clone(),
        samples: v
            .into_iter()
            .map(|x| Sample {
                note: note.clone(),
                ..Sample::of(x)
            })
            .collect(),
        error: err.clone(),
    };
    let (tmux_spec, tmux_err) = (&ran[0].spec, &ran[0].error);
    let (te_err, te_spec) = (&ran[1].error, &ran[1].spec);
    let named = |name: &str| Spec {
        name: name.into(),
        unavailable: te_spec.unavailable.clone(),
    };
    let tmux_named = |name: &str| Spec {
        name: name.into(),
        unavailable: tmux_spec.unavailable.clone(),
    };
    let tv = |f: fn(&TetherRun) -> f64| te.iter().map(f).collect::<Vec<f64>>();
    let xv = |f: fn(&TmuxRun) -> f64| tm.iter().map(f).collect::<Vec<f64>>();

    let create = format!("create {n} sessions, CLI (one process each)");
    let create_lib = format!("create {n} sessions, library client (one connection)");
    let mem = format!("memory per session beyond the ring ({n} sessions)");
    let ring = format!("ring memory per session ({n} idle sessions)");
    let ls = format!("list {n} sessions (ls, whole process)");
    let readopt = format!("re-adopt {n} sessions after SIGKILL of the daemon");
    let keeper_note = runner::median(&tv(|r| r.keeper_kib)).map(|k| {
        format!(
            "daemon {:.1} KiB/session, each keeper {k:.0} KiB (ring excluded)",
            runner::median(&tv(|r| r.daemon_kib)).unwrap_or(0.0)
        )
    });
    let mut rows = vec![
        runner::row(
            &create,
            "sessions/s",
            &col(
                &tmux_named("tmux new-session -d"),
                tmux_err,
                xv(|r| r.rate),
                None,
            ),
        ),
        runner::row(
            &create,
            "sessions/s",
            &col(
                &named(&format!("tether new -d (first {by_cli} sessions)")),
                te_err,
                tv(|r| r.cli_rate),
                None,
            ),
        ),
        runner::row(
            &create_lib,
            "sessions/s",
            &col(
                &named(&format!("tether, sessions {}..{n}", by_cli + 1)),
                te_err,
                tv(|r| r.lib_rate),
                None,
            ),
        ),
        runner::row(
            &mem,
            "KiB",
            &col(
                &tmux_named("tmux server PSS / sessions"),
                tmux_err,
                xv(|r| r.kib),
                None,
            ),
        ),
        runner::row(
            &mem,
            "KiB",
            &col(
                &named("tether: (daemon + keepers − rings) PSS / sessions"),
                te_err,
                tv(|r| r.kib_beyond_ring),
                keeper_note,
            ),
        ),
        runner::row(
            &ring,
            "KiB",
            &col(
                &named("tether: ring mappings PSS / sessions"),
                te_err,
                tv(|r| r.ring_kib),
                Some("an idle session's ring is not touched beyond its header".into()),
            ),
        ),
        runner::row(
            &ls,
            "ms",
            &col(&tmux_named("tmux ls"), tmux_err, xv(|r| r.ls_ms), None),
        ),
        runner::row(
            &ls,
            "ms",
            &col(&named("tether ls"), te_err, tv(|r| r.ls_ms), None),
        ),
        Row::note_only(
            &readopt,
            "tmux",
            "ms",
            "n/a: a tmux server's sessions die with it",
        ),
        runner::row(
            &readopt,
            "ms",
            &col(
                &named("tether: until the daemon's ready line"),
                te_err,
                tv(|r| r.ready_ms),
                None,
            ),
        ),
        runner::row(
            &readopt,
            "ms",
            &col(
                &named("tether: until `tether ls` shows all running"),
                te_err,
                tv(|r| r.readopt_ms),
                None,
            ),
        ),
    ];
    for sc in [&create, &mem, &ls] {
        let base = rows
            .iter()
            .find(|r| &r.scenario == sc)
            .map(|r| r.variant.clone())
            .unwrap_or_default();
        report::ratios(&mut rows, sc, (sc, &base), None);
    }
    Ok(Section {
        verb: "sessions".into(),
        about: format!(
            "{n} idle sessions running `sleep {SLEEP}`, each with its screen emulator (the \
             default; the `screen` section compares memory with and without it). Rates: higher \
             is better; memory (PSS, session processes excluded) and times: lower is better. \
             Ratios against tmux."
        ),
        rows,
    })
}

/// One tether run: a fresh node, `n` sessions, memory, `ls`, re-adopt,
/// then everything killed.
async fn tether_run(ctx: &Ctx, n: usize, by_cli: usize) -> anyhow::Result<TetherRun> {
    let mut node = Node::start(ctx, "sessions").await?;
    let mut r = TetherRun::default();

    let t0 = Instant::now();
    for i in 0..by_cli {
        crate::progress::set(&format!("sessions: tether new -d {}/{n}", i + 1));
        procs::timed(
            &mut node.cli(&["new", "-d", "--", "sleep", SLEEP]),
            Duration::from_secs(30),
            "tether new -d",
        )
        .await?;
    }
    r.cli_rate = by_cli as f64 / t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    for i in by_cli..n {
        if i % 50 == 0 {
            crate::progress::set(&format!("sessions: tether create {}/{n}", i + 1));
        }
        node.create(&["sleep", SLEEP], None).await?;
    }
    r.lib_rate = (n - by_cli) as f64 / t0.elapsed().as_secs_f64();

    // Memory, in KiB.
    crate::progress::set("sessions: reading memory");
    let daemon = node.daemon_pid().context("no daemon")?;
    let keepers: Vec<i32> = tether_testkit::cleanup::state_dir_pids(&node.dir)
        .sessions
        .iter()
        .filter_map(|s| s.keeper)
        .collect();
    if keepers.len() != n {
        bail!("{} keepers found for {n} sessions", keepers.len());
    }
    let daemon_kib = procs::pss_kib(daemon).context("reading the daemon's PSS")? as f64;
    let mut keeper_kib = 0.0;
    let mut ring_kib = 0.0;
    for &k in &keepers {
        keeper_kib += procs::pss_kib(k).context("reading a keeper's PSS")? as f64;
        ring_kib += procs::mapping_pss_kib(k, "/ring").unwrap_or(0) as f64;
    }
    let nf = n as f64;
    r.kib_beyond_ring = (daemon_kib + keeper_kib - ring_kib) / nf;
    r.ring_kib = ring_kib / nf;
    r.daemon_kib = daemon_kib / nf;
    r.keeper_kib = (keeper_kib - ring_kib) / nf;

    let (t, _) =
        procs::timed_output(&mut node.cli(&["ls"]), Duration::from_secs(60), "tether ls").await?;
    r.ls_ms = t.as_secs_f64() * 1e3;

    // Re-adopt.
    crate::progress::set("sessions: re-adopt after SIGKILL of the daemon");
    node.kill_daemon().await;
    let t0 = Instant::now();
    let ready = node.start_daemon().await?;
    r.ready_ms = ready.as_secs_f64() * 1e3;
    procs::wait_until(
        "`tether ls` to show every session running",
        Duration::from_secs(120),
        Duration::from_millis(1),
        || async {
            let out = procs::output(&mut node.cli(&["ls", "--json"]), "tether ls --json").await?;
            let v: serde_json::Value = serde_json::from_str(&out).context("parsing ls --json")?;
            let running = v
                .as_array()
                .map(|a| a.iter().filter(|s| s["state"] == "running").count())
                .unwrap_or(0);
            Ok(running == n)
        },
    )
    .await?;
    r.readopt_ms = t0.elapsed().as_secs_f64() * 1e3;

    crate::progress::set(&format!("sessions: stopping {n} sessions"));
    drop(node);
    Ok(r)
}

/// One tmux run: a fresh server, `n` sessions, memory, `ls`, killed.
async fn tmux_run(ctx: &Ctx, n: usize) -> anyhow::Result<TmuxRun> {
    let t = Tmux::new(ctx, 2000)?;
    let cmd = format!("sleep {SLEEP}");
    let t0 = Instant::now();
    for i in 0..n {
        if i % 50 == 0 {
            crate::progress::set(&format!("sessions: tmux new-session {}/{n}", i + 1));
        }
        procs::timed(
            &mut t.cmd(&["new-session", "-d", "-s", &format!("s{i}"), &cmd]),
            Duration::from_secs(30),
            "tmux new-session",
        )
        .await?;
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let pid = t.server_pid().await?;
    let kib = procs::pss_kib(pid).context("reading the tmux server's PSS")? as f64 / n as f64;
    let (d, out) =
        procs::timed_output(&mut t.cmd(&["ls"]), Duration::from_secs(60), "tmux ls").await?;
    let listed = String::from_utf8_lossy(&out.stdout).lines().count();
    if listed != n {
        bail!("tmux ls listed {listed} sessions, not {n}");
    }
    crate::progress::set(&format!("sessions: stopping {n} tmux sessions"));
    drop(t);
    Ok(TmuxRun {
        rate,
        kib,
        ls_ms: d.as_secs_f64() * 1e3,
    })
}

/// The figures of one run of [`screen_memory`], KiB per session.
#[derive(Debug, Clone, Default)]
struct ScreenMemRun {
    pss: f64,
    dirty: f64,
}

/// Memory per session with the screen emulator and without: `n`
/// sessions (100) that each printed 1,000 coloured log lines in an 80x24
/// window (so that the emulator's history, 500 lines by default, is full)
/// and sleep, on a fresh node per run; the keepers' PSS and Private_Dirty
/// (`smaps_rollup`) less those of their ring mappings, per session. Rows
/// for the `screen` section.
pub async fn screen_memory(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let n: usize = if ctx.smoke { 3 } else { 100 };
    let lines = 1000;
    let log = crate::content::log(lines);
    let file = ctx.fast.join("screen-memory-log");
    std::fs::write(&file, &log)?;
    let end = crate::data::through_pty(log.len() as u64, lines);
    let script = format!("cat {}; exec sleep {SLEEP}", procs::qpath(&file));
    let specs = [
        Spec::new("--no-screen: no emulator"),
        Spec::new("emulator on (the default)"),
    ];
    let mut runs: [Vec<ScreenMemRun>; 2] = Default::default();
    let ran = runner::alternate(
        ctx,
        &format!("screen: memory ({n} sessions)"),
        &specs,
        async |i, round| {
            let node = Node::start(ctx, "screen-mem").await?;
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                let spec = tether_proto::CreateSpec {
                    screen: Some(i == 1),
                    ..node.spec(&["sh", "-c", &script], None)
                };
                ids.push(node.create_spec(spec).await?.id);
            }
            for &id in &ids {
                node.wait_output(id, end).await?;
            }
            // The emulator threads parse 100 KB in a few ms: let them.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut r = ScreenMemRun::default();
            for &id in &ids {
                let k = node.keeper_pid(id)?;
                let ring = |field| procs::mapping_kib(k, "/ring", field).unwrap_or(0) as f64;
                let all = |field| {
                    procs::rollup_kib(k, field)
                        .map(|v| v as f64)
                        .context("reading a keeper's smaps_rollup")
                };
                r.pss += all("Pss:")? - ring("Pss:");
                r.dirty += all("Private_Dirty:")? - ring("Private_Dirty:");
            }
            r.pss /= n as f64;
            r.dirty /= n as f64;
            if i == 1 {
                // The emulator had caught up: its screen is at the end.
                let s = node.client().await?.screen(&ids[0].to_string()).await?;
                if s.offset.0 < end {
                    bail!("the emulator was at {} of {end} bytes", s.offset.0);
                }
            }
            drop(node);
            if !ctx.is_warmup(round) {
                runs[i].push(r);
            }
            Ok(Sample::of(0.0))
        },
    )
    .await;
    let _ = std::fs::remove_file(&file);

    let pss_sc = format!(
        "keeper PSS per session beyond the ring ({n} sessions that printed {lines} coloured log \
         lines, 80x24)"
    );
    let dirty_sc = format!("keeper Private_Dirty per session beyond the ring (the same {n})");
    let med = |i: usize, f: fn(&ScreenMemRun) -> f64| {
        runner::median(&runs[i].iter().map(f).collect::<Vec<f64>>())
    };
    let added = |f: fn(&ScreenMemRun) -> f64| {
        med(1, f)
            .zip(med(0, f))
            .map(|(on, off)| format!("the emulator adds {:.0} KiB", on - off))
    };
    let mut rows = Vec::new();
    for (sc, f) in [
        (&pss_sc, (|r| r.pss) as fn(&ScreenMemRun) -> f64),
        (&dirty_sc, |r| r.dirty),
    ] {
        for i in 0..2 {
            let note = if i == 1 { added(f) } else { None };
            let m = runner::Measured::of(
                &ran[i].spec,
                &ran[i].error,
                runs[i].iter().map(f).collect(),
                note,
            );
            rows.push(runner::row(sc, "KiB", &m));
        }
        report::ratios(&mut rows, sc, (sc, &specs[0].name), None);
    }
    Ok(rows)
}
