//! `tether-keeper`: holds one session (started by the node daemon).
//!
//! The same code as the hidden `tether keeper` verb, in a binary that links
//! only what a keeper uses. A keeper per session lives as long as its
//! session, so its memory counts a thousand times on a busy node: the full
//! `tether` binary's relocated read-only data alone (vtables of QUIC, TLS,
//! gossip) costs each process about 270 KiB that this one does not carry.
//! Where the toolchain can, this binary is also linked static and not
//! position-independent (see `cli/build.rs`), so that loading it dirties
//! no page for relocations or shared libraries; the keeper logs with a
//! few lines of its own rather than a logging framework.

#![no_main]

use std::path::PathBuf;

/// The C entry point, without std's runtime set-up: a stack-overflow
/// handler that reads `/proc/self/maps` to find the main stack, and a named
/// handle of the main thread, cost every keeper heap pages that it keeps
/// for good, for nothing a keeper uses. Arguments still come from std
/// (glibc hands them to std's initializer).
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // As std's runtime does: a write to a closed pipe or socket is an
    // error, not the keeper's death. (The session's process gets the
    // default back when it is started.)
    // SAFETY: sets a signal disposition; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    keeper()
}

fn keeper() -> libc::c_int {
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
                return 2;
            }
        }
    }
    let (Some(dir), Some(id)) = (state_dir, session) else {
        eprintln!(
            "tether-keeper: needs --state-dir DIR --session ID; it is started by `tether node`"
        );
        return 2;
    };
    let id = match id.parse() {
        Ok(id) => id,
        Err(e) => {
            eprintln!("tether-keeper: --session {id}: {e}");
            return 2;
        }
    };
    match tether_node::keeper::run(&dir, id) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tether-keeper: {e:#}");
            1
        }
    }
}
