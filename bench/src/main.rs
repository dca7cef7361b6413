//! `bench`: tether measured side by side with what people would use
//! instead (a raw PTY, two chained PTYs, tmux), on one host.
//!
//! ```text
//! cargo build --release -p tether-cli -p bench
//! target/release/bench all              # every scenario, 5 runs after a warm-up
//! target/release/bench throughput --runs 3
//! target/release/bench keystroke --only relay  # rows whose name has "relay"
//! target/release/bench --smoke all      # tiny sizes, one run: CI
//! ```
//!
//! Each scenario runs its variants in alternation (A B A B ...), prints a
//! markdown table (median, min, max, ratio to the baseline, p50/p99 for
//! latencies) and writes the same as JSON (`--out`, default
//! `bench/results/latest.json`) with a `.md` copy of the table beside it.
//!
//! Scenarios, one module each: [`throughput`] (output to a pipe client
//! and to a terminal client), [`replay`] (dump of a full ring, attach
//! until the screen is drawn), [`keystroke`] (round trip of one byte),
//! [`verbs`] (one-shot verbs as whole processes against tmux's),
//! [`sessions`] (create rate, memory per session, re-adopt after a daemon
//! crash), [`screen`] (the keeper's screen emulator: snapshot size and
//! time, its CPU under bulk output, memory per session with it and
//! without; verb `screen` also runs [`replay`], whose attach rows compare
//! the snapshot with the raw replay and tmux), [`gossip`] (chitchat
//! members in one process), [`mesh`] (verb
//! `fleet`: a relay and 3 or 10 nodes as real processes: new sessions
//! resolvable, dead node detected, relay fan-in), [`relaycost`] (verb
//! `relay-cost`: the relay's own CPU per request at 1,000 members).
//! Throughput, replay and
//! keystroke also have rows through a relay, on a fleet started by
//! [`fleet`].
//!
//! Every process it starts (daemons, keepers, sessions, tmux servers,
//! `script`s) is killed at the end, on error and on Ctrl-C (see
//! [`cleanup`]).
#![forbid(unsafe_code)]

mod cleanup;
mod content;
mod data;
mod fleet;
mod gossip;
mod keystroke;
mod machine;
mod mesh;
mod procs;
mod progress;
mod pty;
mod relaycost;
mod replay;
mod report;
mod runner;
mod screen;
mod sessions;
mod tether;
mod throughput;
mod tmux;
mod verbs;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use report::{Report, Row, Section, Settings};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// Side-by-side benchmarks of tether against a raw PTY and tmux.
#[derive(Parser, Debug)]
#[command(name = "bench", about, version)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
    /// Tiny sizes, 1 counted run, no warm-up (for CI; the figures mean
    /// nothing).
    #[arg(long, global = true)]
    smoke: bool,
    /// Counted runs per variant, after one warm-up run.
    #[arg(long, global = true, default_value_t = 5, value_name = "N")]
    runs: usize,
    /// Where to write the JSON results (the table goes beside it, .md).
    /// Default: bench/results/latest.json under the workspace root (or
    /// the current dir).
    #[arg(long, global = true, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The tether binary. Default: `tether` beside this executable.
    #[arg(long, global = true, value_name = "PATH")]
    tether: Option<PathBuf>,
    /// Run only the variants (rows) whose name contains TEXT; repeat to
    /// select several. The others are listed as not selected. Scenarios
    /// without variants (gossip) run whole.
    #[arg(long, global = true, value_name = "TEXT")]
    only: Vec<String>,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    /// Every scenario.
    All,
    /// Output throughput to a pipe client and to a terminal client.
    Throughput,
    /// Dump of a full ring, and attach until the screen is drawn.
    Replay,
    /// Keystroke round trip (p50, p99).
    Keystroke,
    /// One-shot verbs as whole processes (tail, send, info, ls).
    Verbs,
    /// Many idle sessions: create rate, memory, re-adopt time.
    Sessions,
    /// The screen emulator (issue #10): `replay` (attach with the
    /// snapshot, with `--replay raw` and tmux's), then snapshot size and
    /// time, its CPU under bulk output, memory per session with and
    /// without it.
    Screen,
    /// Gossip: chitchat members in one process over the sealed transport.
    Gossip,
    /// The mesh as real processes: a relay and 3 or 10 nodes; new
    /// sessions resolvable, dead node detected, relay fan-in.
    Fleet,
    /// The relay's own cost per request at 100 and 1,000 members (issue
    /// #11): member list, resolution, `ls`, unknown names. In process;
    /// needs no tether binary.
    RelayCost,
}

/// What every scenario needs.
pub struct Ctx {
    /// Tiny sizes.
    pub smoke: bool,
    /// Counted runs per variant.
    pub runs: usize,
    /// Whether a warm-up round runs first.
    pub warmup: bool,
    /// The tether binary.
    pub tether: PathBuf,
    /// Work dir on disk: state dirs, tmux configs.
    pub work: PathBuf,
    /// Work dir in memory when there is one (/dev/shm): data files and
    /// captured outputs, so that the disk is not what is measured.
    pub fast: PathBuf,
    /// `tmux -V`, if tmux is installed.
    pub tmux: Option<String>,
    /// Whether util-linux `script` is installed.
    pub script: bool,
    /// `--only`: when not empty, the variants to run are those whose name
    /// contains one of these.
    pub only: Vec<String>,
    seq: AtomicU32,
}

impl Ctx {
    /// A name unique within this run.
    pub fn unique(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.seq.fetch_add(1, Ordering::Relaxed))
    }

    /// Why tmux rows cannot run, if they cannot.
    pub fn no_tmux(&self) -> Option<String> {
        self.tmux.is_none().then(|| "tmux not found".to_string())
    }

    /// Why rows that need `script` cannot run, if they cannot.
    pub fn no_script(&self) -> Option<String> {
        (!self.script).then(|| "script (util-linux) not found".to_string())
    }

    /// Why tmux rows under `script` cannot run, if they cannot.
    pub fn no_tmux_script(&self) -> Option<String> {
        self.no_tmux().or_else(|| self.no_script())
    }

    /// Why a variant is not run, if `--only` leaves it out.
    pub fn not_selected(&self, name: &str) -> Option<String> {
        let selected = self.only.is_empty() || self.only.iter().any(|t| name.contains(t.as_str()));
        (!selected).then(|| "not selected (--only)".to_string())
    }

    /// Whether `round` of [`runner::alternate`] is the warm-up.
    pub fn is_warmup(&self, round: usize) -> bool {
        self.warmup && round == 0
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(run(cli));
    progress::clear();
    cleanup::undo_all();
    rt.shutdown_background();
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the verbs; returns whether every row ran without error.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let tether = match tether_binary(cli.tether.as_deref()) {
        Ok(t) => t,
        // In process: the relay's code, linked in.
        Err(_) if cli.verb == Verb::RelayCost => PathBuf::from("(not used)"),
        Err(e) => return Err(e),
    };
    if cli.runs == 0 {
        bail!("--runs must be at least 1");
    }
    cleanup::install_signal_handler()?;
    let (work, fast) = work_dirs()?;
    let ctx = Ctx {
        smoke: cli.smoke,
        runs: if cli.smoke { 1 } else { cli.runs },
        warmup: !cli.smoke,
        tether: tether.clone(),
        work: work.path().to_path_buf(),
        fast: fast
            .as_ref()
            .map(|f| f.path().to_path_buf())
            .unwrap_or_else(|| work.path().to_path_buf()),
        tmux: procs::probe("tmux", &["-V"]),
        script: procs::probe("script", &["--version"]).is_some(),
        only: cli.only.clone(),
        seq: AtomicU32::new(0),
    };
    let machine = machine::Machine::probe(&tether, ctx.tmux.as_deref());
    eprintln!("{}", machine.line());
    let out = match cli.out {
        Some(o) => o,
        None => default_out()?,
    };
    let verbs = match cli.verb {
        Verb::All => vec![
            Verb::Throughput,
            Verb::Replay,
            Verb::Keystroke,
            Verb::Verbs,
            Verb::Sessions,
            Verb::Screen,
            Verb::Gossip,
            Verb::Fleet,
            Verb::RelayCost,
        ],
        // Its attach rows are replay's.
        Verb::Screen => vec![Verb::Replay, Verb::Screen],
        v => vec![v],
    };
    let t0 = Instant::now();
    let mut report = Report {
        machine,
        settings: Settings {
            runs: ctx.runs,
            warmup: ctx.warmup,
            smoke: ctx.smoke,
            tether: tether.display().to_string(),
        },
        sections: Vec::new(),
        elapsed_s: 0.0,
        loadavg_end: String::new(),
    };
    for v in verbs {
        let (name, r) = match v {
            Verb::Throughput => ("throughput", throughput::run(&ctx).await),
            Verb::Replay => ("replay", replay::run(&ctx).await),
            Verb::Keystroke => ("keystroke", keystroke::run(&ctx).await),
            Verb::Verbs => ("verbs", verbs::run(&ctx).await),
            Verb::Sessions => ("sessions", sessions::run(&ctx).await),
            Verb::Screen => ("screen", screen::run(&ctx).await),
            Verb::Gossip => ("gossip", gossip::run(&ctx).await),
            Verb::Fleet => ("fleet", mesh::run(&ctx).await),
            Verb::RelayCost => ("relay-cost", relaycost::run(&ctx).await),
            Verb::All => unreachable!("expanded above"),
        };
        let section = r.unwrap_or_else(|e| {
            progress::clear();
            eprintln!("bench: {name}: {e:#}");
            let mut row = Row::note_only(name, "(scenario)", "", "");
            row.error = Some(format!("{e:#}"));
            row.note = format!("ERROR: {e:#}");
            Section {
                verb: name.into(),
                about: "The scenario failed before it produced rows.".into(),
                rows: vec![row],
            }
        });
        report.sections.push(section);
        report.elapsed_s = t0.elapsed().as_secs_f64();
        report.loadavg_end = loadavg();
        // Written after every section, so a long run leaves its figures
        // even if it is stopped.
        report.write(&out)?;
        if cleanup::INTERRUPTED.load(Ordering::SeqCst) {
            break;
        }
    }
    progress::clear();
    println!("{}", report.markdown());
    eprintln!(
        "bench: wrote {} and {}",
        out.display(),
        out.with_extension("md").display()
    );
    let errors = report
        .sections
        .iter()
        .flat_map(|s| &s.rows)
        .filter(|r| r.error.is_some())
        .count();
    if errors > 0 {
        eprintln!("bench: {errors} row(s) failed; see their notes");
    }
    Ok(errors == 0)
}

/// The load averages (1, 5, 15 min).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The tether binary: `--tether`, else `tether` beside this executable.
fn tether_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("locating the bench executable")?
            .with_file_name("tether"),
    };
    if !path.is_file() {
        bail!(
            "the tether binary was not found at {}: build it with \
             `cargo build --release -p tether-cli -p bench`, or pass --tether PATH",
            path.display()
        );
    }
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

/// `bench/results/latest.json` under the workspace root, found from the
/// current dir; under the current dir when there is no workspace.
fn default_out() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    let root = cwd
        .ancestors()
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .map(|t| t.contains("[workspace]"))
                .unwrap_or(false)
        })
        .unwrap_or(&cwd)
        .to_path_buf();
    Ok(root.join("bench").join("results").join("latest.json"))
}

/// A work dir on disk and, when /dev/shm is there, one in memory.
fn work_dirs() -> anyhow::Result<(tempfile::TempDir, Option<tempfile::TempDir>)> {
    let work = tempfile::Builder::new()
        .prefix("tether-bench-")
        .tempdir()
        .context("creating a temporary dir")?;
    std::mem::forget(cleanup::register(cleanup::Item::Path(
        work.path().to_path_buf(),
    )));
    let shm = Path::new("/dev/shm");
    let fast = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("tether-bench-")
            .tempdir_in(shm)
            .ok()
    } else {
        None
    };
    if let Some(f) = &fast {
        std::mem::forget(cleanup::register(cleanup::Item::Path(
            f.path().to_path_buf(),
        )));
    }
    Ok((work, fast))
}
