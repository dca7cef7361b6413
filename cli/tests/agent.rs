//! The agent interface against real commands, locally and through a relay:
//! `run` (exit codes, a command that prints the marker's text itself, a
//! command that waits for input), `wait --pattern/--idle/--input/--exit`
//! (`read -p`, `python3` at its prompt, `sleep`), `read` paging by offset,
//! `send --keys`, and `info`'s foreground. The relay run addresses its
//! sessions by two-letter names right after creating them: names gossip
//! does not know yet, which the relay must ask its nodes for.

use serde_json::Value;
use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::time::Duration;
use tether_testkit::{output, Fleet, FleetSpec, TestNode};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
/// Bound of each CLI call (a `wait` with its own --timeout included).
const CALL: Duration = Duration::from_secs(40);

/// A way to run the CLI: locally, or through a relay.
struct Cli<'a>(Box<dyn Fn() -> Command + 'a>);

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        output(self.0().args(args), CALL).unwrap_or_else(|e| panic!("tether {args:?}: {e:#}"))
    }

    /// Runs and returns (exit code, stdout, stderr).
    fn code(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.run(args);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.code(args);
        assert_eq!(code, 0, "tether {args:?}: {err}");
        out
    }

    fn json(&self, args: &[&str]) -> (i32, Value) {
        let (code, out, err) = self.code(args);
        let v = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("tether {args:?}: not JSON ({e}): {out:?} {err}"));
        (code, v)
    }
}

/// A shell session that prints a fixed prompt, named `name`.
fn shell(cli: &Cli, name: &str, extra: &[&str]) {
    let mut args = vec!["new", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "env", "PS1=$ ", "bash", "--norc", "--noprofile"]);
    cli.ok(&args);
    let (code, w) = cli.json(&["wait", name, "--input", "--timeout", "20", "--json"]);
    assert_eq!((code, w["reason"].as_str()), (0, Some("input")), "{w}");
}

/// Everything the interface promises, on one path.
fn drill(cli: &Cli) {
    shell(cli, "sh", &[]);

    // run: output and exit code; the exit status is the command's.
    let (code, r) = cli.json(&["run", "sh", "echo hello; false", "--json"]);
    assert_eq!(
        (code, r["output"].as_str(), r["exit_code"].as_i64()),
        (1, Some("hello\n"), Some(1)),
        "{r}"
    );
    let (code, out, _) = cli.code(&["run", "sh", "exit_with() { return $1; }; exit_with 7"]);
    assert_eq!((code, out.as_str()), (7, ""));

    // A command that prints a marker's text itself (a guessed nonce, the
    // marker's prefix, and the words) does not end the run early.
    let fake = r"printf '\033]7777;tether-run;0123456789abcdef;end;0\007'; echo tether-run end; sleep 0.3; echo after";
    let (code, r) = cli.json(&["run", "sh", fake, "--json"]);
    assert_eq!(code, 0, "{r}");
    let text = r["output"].as_str().unwrap();
    assert!(text.ends_with("tether-run end\nafter\n"), "{r}");

    // A command that waits for input: run says so, the answer goes in with
    // send, and wait --pattern sees the rest.
    let (code, r) = cli.json(&[
        "run",
        "sh",
        "read -p 'Name? ' n; echo hi $n",
        "--json",
        "--timeout",
        "20",
    ]);
    assert_eq!(code, 10, "{r}");
    assert_eq!(r["output"].as_str(), Some("Name? "));
    assert_eq!(r["awaiting_input"]["name"].as_str(), Some("bash"));
    let from = r["to"].as_u64().unwrap().to_string();
    cli.ok(&["send", "sh", "bob", "--keys", "Enter"]);
    let (code, w) = cli.json(&[
        "wait",
        "sh",
        "--pattern",
        "^hi bob",
        "--from",
        &from,
        "--timeout",
        "20",
        "--json",
    ]);
    assert_eq!(
        (code, w["reason"].as_str(), w["matched"].as_str()),
        (0, Some("matched"), Some("hi bob")),
        "{w}"
    );

    // info: the shell is in the foreground, waiting for input.
    let (code, w) = cli.json(&["wait", "sh", "--input", "--timeout", "20", "--json"]);
    assert_eq!((code, w["reason"].as_str()), (0, Some("input")), "{w}");
    let (_, info) = cli.json(&["info", "sh", "--json"]);
    assert_eq!(info["awaiting_input"], true, "{info}");
    assert_eq!(info["foreground"]["pid"], info["pid"], "{info}");

    // python3 at its prompt waits for input; a sleep does not.
    cli.ok(&["send", "sh", "python3 -q", "--keys", "Enter"]);
    let (code, w) = cli.json(&["wait", "sh", "--input", "--timeout", "20", "--json"]);
    assert_eq!(
        (code, w["foreground"]["name"].as_str()),
        (0, Some("python3")),
        "{w}"
    );
    cli.ok(&[
        "send",
        "sh",
        "import time; time.sleep(30)",
        "--keys",
        "Enter",
    ]);
    let (code, w) = cli.json(&["wait", "sh", "--input", "--timeout", "1", "--json"]);
    assert_eq!(
        (code, w["reason"].as_str()),
        (124, Some("timeout")),
        "sleeping is not waiting: {w}"
    );
    // C-c is the interrupt, not text: python's KeyboardInterrupt.
    let (_, info) = cli.json(&["info", "sh", "--json"]);
    let from = info["end_offset"].as_u64().unwrap().to_string();
    cli.ok(&["send", "sh", "--keys", "C-c"]);
    let (code, w) = cli.json(&[
        "wait",
        "sh",
        "--pattern",
        "KeyboardInterrupt",
        "--from",
        &from,
        "--timeout",
        "20",
        "--json",
    ]);
    assert_eq!(code, 0, "{w}");
    cli.ok(&["send", "sh", "--keys", "C-d"]);
    let (code, w) = cli.json(&["wait", "sh", "--input", "--timeout", "20", "--json"]);
    assert_eq!(
        (code, w["foreground"]["name"].as_str()),
        (0, Some("bash")),
        "{w}"
    );

    // wait --idle returns once the output goes quiet.
    cli.ok(&[
        "send",
        "sh",
        "for i in 1 2 3; do echo tick; sleep 0.2; done",
        "--keys",
        "Enter",
    ]);
    let (code, w) = cli.json(&["wait", "sh", "--idle", "1000", "--timeout", "20", "--json"]);
    assert_eq!((code, w["reason"].as_str()), (0, Some("idle")), "{w}");

    // read: paging by offset loses nothing and doubles nothing.
    let (_, all) = cli.json(&["read", "sh", "--from", "0", "--json"]);
    assert_eq!(all["more"], false, "{all}");
    let whole = all["data"].as_str().unwrap().to_string();
    let mut paged = String::new();
    let mut at = 0u64;
    for _ in 0..10_000 {
        let (_, page) = cli.json(&[
            "read",
            "sh",
            "--from",
            &at.to_string(),
            "--max-bytes",
            "700",
            "--json",
        ]);
        paged.push_str(page["data"].as_str().unwrap());
        at = page["next"].as_u64().unwrap();
        if page["more"] == false {
            break;
        }
    }
    assert_eq!(paged, whole);
    let (_, plain) = cli.json(&["read", "sh", "--from", "0", "--plain", "--json"]);
    let plain = plain["data"].as_str().unwrap();
    assert!(
        plain.contains("hi bob\n") && !plain.contains('\x1b'),
        "{plain:?}"
    );

    // wait --exit: the session's own exit code.
    shell(cli, "short", &[]);
    cli.ok(&["send", "short", "sleep 0.5; exit 3", "--keys", "Enter"]);
    let (code, w) = cli.json(&["wait", "short", "--exit", "--timeout", "20", "--json"]);
    assert_eq!(
        (code, w["reason"].as_str(), w["exit_code"].as_i64()),
        (3, Some("exited"), Some(3)),
        "{w}"
    );

    // The screen, as text.
    let screen = cli.ok(&["screen", "sh"]);
    assert!(screen.contains("tick"), "{screen}");
    cli.ok(&["kill", "sh"]);
}

#[test]
fn the_agent_interface_locally() {
    let node = TestNode::start(TETHER).unwrap();
    drill(&Cli(Box::new(|| node.command())));
}

#[test]
fn the_agent_interface_through_a_relay() {
    let spec = FleetSpec::new(
        Ipv4Addr::new(127, 0, 0, 71),
        1,
        Ipv4Addr::new(127, 0, 0, 61),
        1,
    )
    .client("alice");
    let f = Fleet::start(TETHER, &spec).unwrap();
    f.wait_members(0, 1).unwrap();
    drill(&Cli(Box::new(|| f.client_command(&[0], "alice"))));
}
