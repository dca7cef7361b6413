//! Runs the bench at smoke sizes against the debug `tether` binary (built
//! by `cargo test --workspace`) and checks that every scenario produced
//! its rows without error. Asserts no timing: the figures of a smoke run
//! mean nothing.

use std::path::PathBuf;
use std::process::Command;

/// The workspace's target dir: `CARGO_TARGET_DIR` if set, else
/// `<workspace>/target`.
fn target_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace.join(d)
            }
        }
        None => workspace.join("target"),
    }
}

/// The debug tether binary beside the bench binary under test, else in
/// the workspace's target dir.
fn tether() -> PathBuf {
    let beside = PathBuf::from(env!("CARGO_BIN_EXE_bench")).with_file_name("tether");
    if beside.is_file() {
        return beside;
    }
    let t = target_dir().join("debug").join("tether");
    assert!(
        t.is_file(),
        "{} not found: build it with `cargo build -p tether-cli` (cargo test --workspace does)",
        t.display()
    );
    t
}

#[test]
fn smoke_run_produces_every_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smoke.json");
    let o = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--smoke")
        .arg("--out")
        .arg(&out)
        .arg("all")
        .arg("--tether")
        .arg(tether())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "bench failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        o.status
    );

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(v["settings"]["smoke"].as_bool().unwrap());
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
    let sections = v["sections"].as_array().unwrap();
    let verbs: Vec<&str> = sections
        .iter()
        .map(|s| s["verb"].as_str().unwrap())
        .collect();
    assert_eq!(
        verbs,
        [
            "throughput",
            "replay",
            "keystroke",
            "verbs",
            "sessions",
            "screen",
            "gossip",
            "fleet",
            "relay-cost"
        ]
    );
    let tmux = v["machine"]["tmux"].as_str().unwrap() != "tmux not found";
    for s in sections {
        let rows = s["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{} has no rows", s["verb"]);
        for r in rows {
            let what = format!("{} / {}", r["scenario"], r["variant"]);
            assert!(r["error"].is_null(), "{what} failed: {}", r["error"]);
            let note = r["note"].as_str().unwrap();
            let variant = r["variant"].as_str().unwrap();
            let unmeasured = note.contains("not yet")
                || note.starts_with("n/a")
                || (!tmux && note == "tmux not found");
            if variant.starts_with("tmux") && !tmux && !note.starts_with("n/a") {
                assert_eq!(note, "tmux not found", "{what}");
            }
            // Every row that can be measured here was measured (a figure,
            // whatever its value).
            assert_eq!(
                r["median"].is_number(),
                !unmeasured,
                "{what}: median {} with note {note:?}",
                r["median"]
            );
        }
    }
    // Each scenario has its tether row.
    for verb in ["throughput", "replay", "keystroke", "verbs", "sessions"] {
        let s = sections.iter().find(|s| s["verb"] == verb).unwrap();
        assert!(
            s["rows"].as_array().unwrap().iter().any(|r| r["variant"]
                .as_str()
                .unwrap()
                .starts_with("tether")
                && r["median"].is_number()),
            "{verb} has no measured tether row"
        );
    }
    // The table went to stdout and beside the JSON.
    assert!(stdout.contains("| scenario | variant | median |"));
    assert!(out.with_extension("md").is_file());
}
