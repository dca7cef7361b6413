//! `tether run`: type a command into a session's shell, wait for it to
//! finish, print its output; the exit status is the command's.

use crate::exit;
use std::time::Duration;
use tether_client::{agent, Client};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// ID, unique ID prefix, or name of a session whose shell waits at its
    /// prompt.
    pub target: String,
    /// The command line, run by the session's shell (bash, dash, zsh, ksh,
    /// busybox sh or fish).
    pub command: String,
    /// Give up waiting after this many seconds (exit status 124; the
    /// command goes on running).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub timeout: f64,
    /// Print at most this many bytes of output; `tether read --from` pages
    /// through the rest.
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    pub max_bytes: usize,
    /// Print JSON: {"output", "exit_code", "from", "to", "truncated",
    /// "awaiting_input", "timed_out"}.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, a: Args) -> anyhow::Result<i32> {
    let timeout = Duration::try_from_secs_f64(a.timeout).map_err(|_| {
        exit::usage(format!(
            "--timeout {}: give a number of seconds, 0 or more",
            a.timeout
        ))
    })?;
    let r = agent::run(client, &a.target, &a.command, timeout, a.max_bytes).await?;
    if a.json {
        let out = serde_json::json!({
            "output": r.output,
            "exit_code": r.exit_code,
            "from": r.from.0,
            "to": r.to.0,
            "truncated": r.truncated,
            "awaiting_input": r.awaiting_input.as_ref().map(|f| serde_json::json!({"pid": f.pid, "name": f.name})),
            "timed_out": r.timed_out,
        });
        println!("{out}");
    } else {
        print!("{}", r.output);
        if r.truncated {
            eprintln!(
                "tether: output cut at {} bytes; read the rest with `tether read {} --from {}`",
                a.max_bytes,
                a.target,
                r.from.0 + a.max_bytes as u64
            );
        }
    }
    if let Some(f) = &r.awaiting_input {
        if !a.json {
            eprintln!(
                "tether: the command waits for input ({} is reading the terminal); answer \
                 with `tether send {t} ...`, then `tether wait {t} --pattern ...` or `--input`",
                f.name,
                t = a.target
            );
        }
        return Ok(exit::AWAITING_INPUT);
    }
    if r.timed_out {
        if !a.json {
            eprintln!(
                "tether: the command still runs after {} s; follow it with `tether tail -f {} --from {}`",
                a.timeout, a.target, r.to.0
            );
        }
        return Ok(exit::TIMEOUT);
    }
    Ok(r.exit_code.unwrap_or(exit::FAILURE))
}
