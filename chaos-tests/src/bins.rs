//! The binaries a drill runs: `tether` (with `tether-keeper` beside it)
//! and this crate's `chaos-writer`.
//!
//! `cargo test -p chaos-tests` builds only this package's binaries, so the
//! first drill of a test process runs `cargo build -p tether-cli --bins`
//! (same profile, same target dir) when `tether` is missing or older than
//! a source file of the crates it is built from. Cargo does not hold its
//! build lock while tests run, so this does not wait on the outer cargo.
//! Under `cargo test --workspace` the binaries are fresh and nothing is
//! built.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

/// The crates `tether` is built from, under the workspace root.
const SOURCES: &[&str] = &[
    "proto",
    "net",
    "client",
    "node",
    "relay",
    "cli",
    "Cargo.lock",
];

/// Paths of the binaries.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `tether`.
    pub tether: PathBuf,
    /// `chaos-writer`.
    pub writer: PathBuf,
}

/// The binaries, `tether` built first if it must be. `writer` is
/// `env!("CARGO_BIN_EXE_chaos-writer")` of the calling test.
pub fn bins(writer: &str) -> anyhow::Result<Bins> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let writer = PathBuf::from(writer);
    let tether = BUILT
        .get_or_init(|| fresh_tether(&writer).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)?;
    Ok(Bins { tether, writer })
}

fn fresh_tether(writer: &Path) -> anyhow::Result<PathBuf> {
    let dir = writer.parent().context("chaos-writer's dir")?;
    let tether = dir.join("tether");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?;
    let built = std::fs::metadata(&tether).and_then(|m| m.modified()).ok();
    if built.is_some_and(|b| newest(root, SOURCES) <= b) {
        return Ok(tether);
    }
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "-p", "tether-cli", "--bins"]);
    // The profile is the dir's name (`debug` is the dev profile's).
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
    }
    // The variables cargo sets for this test would make the build scripts
    // of the dependencies run again (and rebuild them): drop them.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let keep = k == "CARGO_HOME"
            || k == "CARGO_TARGET_DIR"
            || [
                "CARGO_BUILD_",
                "CARGO_PROFILE_",
                "CARGO_TERM_",
                "CARGO_NET_",
                "CARGO_REGISTR",
            ]
            .iter()
            .any(|p| k.starts_with(p));
        if k.starts_with("CARGO") && !keep {
            cmd.env_remove(k.as_ref());
        }
    }
    eprintln!("building tether for the drills: {cmd:?}");
    let st = cmd.status().context("running cargo build -p tether-cli")?;
    if !st.success() {
        bail!("cargo build -p tether-cli --bins failed; fix the build, then run the drills again");
    }
    if !tether.exists() {
        bail!(
            "{} is missing after cargo build; is CARGO_TARGET_DIR the same as the tests'?",
            tether.display()
        );
    }
    Ok(tether)
}

/// The newest modification time under `root/dirs`.
fn newest(root: &Path, dirs: &[&str]) -> SystemTime {
    fn walk(p: &Path, max: &mut SystemTime) {
        let Ok(m) = std::fs::metadata(p) else { return };
        if m.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), max);
            }
        } else if let Ok(t) = m.modified() {
            *max = (*max).max(t);
        }
    }
    let mut max = SystemTime::UNIX_EPOCH;
    for d in dirs {
        walk(&root.join(d), &mut max);
    }
    max
}
