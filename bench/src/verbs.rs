//! Scenario: one-shot verbs as whole processes, as a script or an agent
//! calls them a hundred times a minute. Ten small sessions, each running
//! `cat > /dev/null` after printing 40 numbered lines, on tether and on
//! tmux; each verb addresses a session by name, as people do.
//!
//! | verb | tether | tmux |
//! |---|---|---|
//! | print a small session | `tail NAME` | `capture-pane -p -t NAME` |
//! | type into it | `send NAME x` | `send-keys -t NAME x` |
//! | its metadata | `info NAME` | `display -p -t NAME '#{pane_pid} ...'` |
//! | list 10 sessions | `ls` | `ls` |
//!
//! Each run times `CALLS` calls in a row and keeps their median; tether
//! runs twice: on the local fast path (unix sockets) and over QUIC to the
//! daemon (`TETHER_LOCAL_QUIC=1`, the path before the fast path), so the
//! table shows what the fast path saves.

use crate::procs;
use crate::report::{self, Row, Section};
use crate::runner::{self, Sample, Spec};
use crate::tether::Node;
use crate::tmux::Tmux;
use crate::Ctx;
use std::time::Duration;
use tokio::process::Command;

const TIMEOUT: Duration = Duration::from_secs(20);
const SESSION: &str = "seq 1 40; exec cat > /dev/null";

/// One verb: its row title and each tool's arguments.
struct Verb {
    what: &'static str,
    tether: &'static [&'static str],
    tmux: &'static [&'static str],
}

const VERBS: &[Verb] = &[
    Verb {
        what: "print a small session (tail / capture-pane -p)",
        tether: &["tail", "v3"],
        tmux: &["capture-pane", "-p", "-t", "v3"],
    },
    Verb {
        what: "type into a session (send / send-keys)",
        tether: &["send", "v3", "x"],
        tmux: &["send-keys", "-t", "v3", "x"],
    },
    Verb {
        what: "a session's metadata (info / display -p)",
        tether: &["info", "v3"],
        tmux: &[
            "display",
            "-p",
            "-t",
            "v3",
            "#{session_name} #{pane_pid} #{pane_width}x#{pane_height} #{session_created}",
        ],
    },
    Verb {
        what: "list 10 sessions (ls)",
        tether: &["ls"],
        tmux: &["ls"],
    },
];

/// Runs the scenario.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Section> {
    let calls: usize = if ctx.smoke { 3 } else { 40 };
    crate::progress::set("verbs: starting 10 sessions on tether and tmux");
    let node = Node::start(ctx, "verbs").await?;
    for i in 0..10 {
        node.create_named(&format!("v{i}"), &["sh", "-c", SESSION])
            .await?;
    }
    let tmux = match ctx.tmux {
        Some(_) => {
            let t = Tmux::new(ctx, 2000)?;
            for i in 0..10 {
                t.new_session(&format!("v{i}"), SESSION).await?;
            }
            Some(t)
        }
        None => None,
    };

    let mut rows: Vec<Row> = Vec::new();
    for verb in VERBS {
        let specs = [
            Spec::unless("tmux", ctx.no_tmux()),
            Spec::new("tether (local fast path)"),
            Spec::new("tether over QUIC to the daemon (before #9)"),
        ];
        let sc = format!("{}, whole process, median of {calls} calls", verb.what);
        let measured = runner::alternate(ctx, &sc, &specs, async |i, _round| {
            let mut cmd = match (i, &tmux) {
                (0, Some(t)) => t.cmd(verb.tmux),
                (0, None) => anyhow::bail!("tmux not found"),
                (1, _) => node.cli(verb.tether),
                _ => {
                    let mut c = node.cli(verb.tether);
                    c.env("TETHER_LOCAL_QUIC", "1");
                    c
                }
            };
            median_call(&mut cmd, calls, verb.what).await
        })
        .await;
        let mut these: Vec<Row> = measured.iter().map(|m| runner::row(&sc, "ms", m)).collect();
        report::ratios(&mut these, &sc, (&sc, &specs[0].name), None);
        rows.extend(these);
    }
    drop(tmux);
    drop(node);
    Ok(Section {
        verb: "verbs".into(),
        about: "One-shot verbs as whole processes, ms per call, lower is better; ratio = this \
                row's median over tmux's. Ten small sessions on each, addressed by name. \
                tether runs on its local fast path (unix sockets to the keeper and the daemon) \
                and, for comparison, over QUIC to its daemon as before issue #9."
            .into(),
        rows,
    })
}

/// Runs `cmd` `calls` times in a row; the median wall time in ms.
async fn median_call(cmd: &mut Command, calls: usize, what: &str) -> anyhow::Result<Sample> {
    let mut ms = Vec::with_capacity(calls);
    for _ in 0..calls {
        ms.push(procs::timed(cmd, TIMEOUT, what).await?.as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(Sample::of(runner::percentile(&ms, 50.0).unwrap_or(0.0)))
}
