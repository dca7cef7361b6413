//! A tmux server of the bench's own (`tmux -L NAME -f CONF`), so it never
//! touches the user's tmux, with a config that turns the status line off
//! (it would redraw a clock into the measured output) and sets the
//! history size. Killed (`kill-server`, then its PID) when dropped.

use crate::cleanup::{self, Guard, Item};
use crate::procs::{self, Proc};
use crate::Ctx;
use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::Command;

/// Window size used for every tmux session and client.
pub const COLS: u16 = 200;
/// Window size used for every tmux session and client.
pub const ROWS: u16 = 50;

/// A private tmux server (started by the first `new-session`).
pub struct Tmux {
    /// The `-L` socket name.
    pub socket: String,
    conf: PathBuf,
    guard: Guard,
}

impl Tmux {
    /// A server whose panes keep `history` lines of scrollback.
    pub fn new(ctx: &Ctx, history: u64) -> anyhow::Result<Tmux> {
        let socket = format!("tether-bench-{}-{}", std::process::id(), ctx.unique("t"));
        let conf = ctx.work.join(format!("{socket}.conf"));
        std::fs::write(
            &conf,
            format!(
                "set -g status off\nset -g history-limit {history}\nset -g default-shell /bin/sh\n\
                 set -g escape-time 0\nset -g remain-on-exit off\n"
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let guard = cleanup::register(Item::Tmux {
            socket: socket.clone(),
            pid: None,
        });
        Ok(Tmux {
            socket,
            conf,
            guard,
        })
    }

    /// `tmux -L NAME -f CONF ARGS...` with the bench's defaults.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = procs::command("tmux");
        c.args(["-L", &self.socket, "-f"])
            .arg(&self.conf)
            .args(args);
        c
    }

    /// The same as a shell command line.
    pub fn line(&self, args: &str) -> String {
        format!(
            "tmux -L {} -f {} {args}",
            procs::quote(&self.socket),
            procs::qpath(&self.conf)
        )
    }

    /// Runs a tmux command; returns its stdout.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        procs::output(&mut self.cmd(args), &format!("tmux {}", args.join(" "))).await
    }

    /// Starts a detached session `name` running `script` (with `sh -c`),
    /// in a COLS x ROWS window; records the server's PID for cleanup.
    pub async fn new_session(&self, name: &str, script: &str) -> anyhow::Result<()> {
        let (c, r) = (COLS.to_string(), ROWS.to_string());
        self.run(&["new-session", "-d", "-s", name, "-x", &c, "-y", &r, script])
            .await?;
        let pid = self
            .run(&["display-message", "-p", "#{pid}"])
            .await?
            .trim()
            .parse::<i32>()
            .ok();
        self.guard.update(Item::Tmux {
            socket: self.socket.clone(),
            pid,
        });
        Ok(())
    }

    /// Waits on `tmux wait-for CHANNEL` (a channel signalled before the
    /// wait counts too).
    pub async fn wait_for(&self, channel: &str, timeout: Duration) -> anyhow::Result<()> {
        let mut p = Proc::spawn(&mut self.cmd(&["wait-for", channel]), "tmux wait-for")?;
        p.wait_ok(timeout).await
    }

    /// Number of clients attached to the server.
    pub async fn clients(&self) -> anyhow::Result<usize> {
        Ok(self.run(&["list-clients"]).await?.lines().count())
    }

    /// The server's PID.
    pub async fn server_pid(&self) -> anyhow::Result<i32> {
        self.run(&["display-message", "-p", "#{pid}"])
            .await?
            .trim()
            .parse()
            .context("parsing the tmux server's PID")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.conf);
    }
}
