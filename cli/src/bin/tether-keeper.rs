//! `tether-keeper`: holds one session (started by the node daemon).
//!
//! The same code as the hidden `tether keeper` verb, in a binary that links
//! only what a keeper uses. A keeper per session lives as long as its
//! session, so its memory counts a thousand times on a busy node: the full
//! `tether` binary's relocated read-only data alone (vtables of QUIC, TLS,
//! gossip) costs each process about 270 KiB that this one does not carry.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut state_dir: Option<PathBuf> = None;
    let mut session = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--state-dir" => state_dir = args.next().map(PathBuf::from),
            "--session" => session = args.next(),
            other => {
                eprintln!(
                    "tether-keeper: unknown argument {other}; it is started by `tether node`"
                );
                return ExitCode::from(2);
            }
        }
    }
    let (Some(dir), Some(id)) = (state_dir, session) else {
        eprintln!(
            "tether-keeper: needs --state-dir DIR --session ID; it is started by `tether node`"
        );
        return ExitCode::from(2);
    };
    let id = match id.parse() {
        Ok(id) => id,
        Err(e) => {
            eprintln!("tether-keeper: --session {id}: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    match tether_node::keeper::run(&dir, id) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether-keeper: {e:#}");
            ExitCode::FAILURE
        }
    }
}
