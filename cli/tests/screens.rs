//! Real full-screen programs (less, vim, htop) through `tether attach`'s
//! snapshot, on sessions whose small ring has wrapped many times over.
//!
//! Each session runs a shell (`bash --norc --noprofile`, prompt `$ `)
//! that runs the program. A [`Witness`] follows the session's output from
//! its first byte, so it knows the screen a terminal that saw everything
//! would show. The test:
//! 1. starts the program and attaches a `tether attach` in a PTY, which
//!    drives it (pages, scrolls, redraws) until the output is several
//!    rings long, then detaches mid-screen;
//! 2. drives it further with `tether send`, past another ring;
//! 3. attaches a new client: what it draws (its PTY output fed to a
//!    terminal emulator of the same size) must be the witness's screen,
//!    cell by cell (characters, colours, attributes), with the same
//!    cursor and the same screen (alternate or primary); the node's own
//!    screen (`tether screen --json`) must be the witness's at the offset
//!    it reports;
//! 4. types more through that client and checks again (the live output
//!    goes on from the snapshot's state: scroll regions, modes, pens);
//! 5. quits the program: the client must show the shell on the primary
//!    screen. A raw replay of a wrapped ring got this wrong: the switch to
//!    the alternate screen was overwritten, so the pager drew on the
//!    primary screen and its page stayed after it quit.
//!
//! The session's size never changes (every client attaches at its size),
//! so the witness stays exact. A program may write at any moment (htop
//! refreshes), so each check waits, within a bound, for a moment where
//! the client, the witness and the node all have the same output, and on
//! failure prints the screens. The same check runs through a relay.
//!
//! A witness must get every byte: the last test checks that a follower
//! that keeps up gets a burst many rings long whole.
//!
//! Needs vim, less and htop (`.ci/run` installs them).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tether_testkit::screen::{Grid, Vt, Witness};
use tether_testkit::{output, Fleet, FleetSpec, PtyProc, TestNode, CLI_TIMEOUT};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
/// Bound of every wait.
const T: Duration = Duration::from_secs(30);
/// The sessions' ring: small, so that it wraps often.
const RING: u64 = 8192;
/// Most keys typed to write enough output; more means the program does
/// not redraw as expected.
const MAX_KEYS: usize = 400;
/// How long a key typed into a client is given to show an effect before
/// the next one is typed (a pause, not a failure: a key may draw nothing).
const KEY_EFFECT: Duration = Duration::from_secs(2);
/// Ctrl-\, the default detach key.
const DETACH: &[u8] = b"\x1c";

/// A file's name, and a function that writes its content.
type File = (&'static str, fn() -> String);

/// A program and how to drive it.
struct Program {
    /// The session's name.
    name: &'static str,
    /// A file it shows.
    file: Option<File>,
    /// The command line typed at the prompt.
    start: &'static str,
    /// Text on its screen once it is up.
    ready: &'static str,
    /// Keys that make it draw (a page, a scroll), typed in turn.
    scroll: &'static [&'static str],
    /// Keys typed by the reattached client before quitting.
    more: &'static [&'static str],
    /// Keys that quit it.
    quit: &'static str,
    /// Text on its screen, never on the shell's.
    own: &'static str,
}

const LESS: Program = Program {
    name: "pager",
    file: Some(("big.txt", big_text)),
    start: "less -R big.txt",
    ready: "line 00001",
    scroll: &[" ", " ", " ", "d", " ", "b", " ", "\x1b[6~", " ", "G", "g"],
    more: &["/line 01042\r", "n", "\x1b[A", "b", "u"],
    quit: "q",
    own: "line 0",
};

const VIM: Program = Program {
    name: "editor",
    file: Some(("code.rs", code)),
    start: "vim -u DEFAULTS -i NONE -N code.rs",
    ready: "fn item_0001",
    scroll: &[
        "\x06",
        "\x06",
        "\x05\x05\x05",
        "\x04",
        "\x19\x19",
        "\x06",
        "\x15",
        "G",
        "gg",
        "50%",
        ":set nu\r",
        "\x06",
        ":set nonu\r",
    ],
    more: &[
        "\x06",
        "/item_0300\r",
        "\x05\x05",
        ":set hlsearch\r",
        "\x19",
        "3j",
    ],
    quit: ":q\r",
    own: "fn item_",
};

const HTOP: Program = Program {
    name: "top",
    file: None,
    start: "htop -d 100",
    ready: "F10Quit",
    scroll: &[
        "\x1b[6~", "\x1b[5~", "H", "K", "\x1b[6~", "t", "\x1b[5~", "t", "M", "P",
    ],
    more: &["\x1b[6~", "H", "\x1b[B\x1b[B", "t"],
    quit: "q",
    own: "F10Quit",
};

/// Numbered lines with colour, for the pager (`-R` shows the colour).
fn big_text() -> String {
    let mut s = String::new();
    for i in 1..=3000 {
        let _ = writeln!(
            s,
            "line {i:05} \x1b[3{}mcolour {}\x1b[0m the quick brown fox jumps over the lazy dog",
            i % 7 + 1,
            i % 13
        );
    }
    s
}

/// Rust code, for vim's syntax colours.
fn code() -> String {
    let mut s = String::from("//! A file to scroll through.\n\n");
    for i in 1..=1500 {
        let _ = writeln!(
            s,
            "/// Item {i}.\nfn item_{i:04}(x: u32) -> u32 {{\n    let s = \"text {i}\"; // comment\n    x + {i} + s.len() as u32\n}}\n"
        );
    }
    s
}

/// How the test reaches the sessions: `tether`'s arguments ahead of the
/// verb (a state dir, or a relay and a client's credentials).
struct Via(Vec<String>);

impl Via {
    fn local(node: &TestNode) -> Via {
        Via(vec![
            "--state-dir".into(),
            node.path().display().to_string(),
        ])
    }

    fn command(&self) -> Command {
        let mut c = Command::new(TETHER);
        c.args(&self.0);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = output(self.command().args(args), CLI_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            o.status.success(),
            "tether {:?} {args:?} failed ({}): {}",
            self.0,
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).expect("tether's stdout is UTF-8")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("tether {args:?}: {e}: {out}"))
    }
}

/// A `tether attach` in a PTY, and what it drew, on a terminal of its own.
struct Client {
    pty: PtyProc,
    vt: Vt,
    /// Bytes of its output fed to `vt`.
    fed: usize,
}

impl Client {
    /// What it shows now.
    fn grid(&mut self) -> Grid {
        let b = self.pty.bytes_from(self.fed);
        self.fed += b.len();
        self.vt.feed(&b);
        self.vt.grid()
    }

    /// Ctrl-\, and the client ends as detached.
    async fn detach(mut self) {
        self.pty.write(DETACH).await;
        self.pty.expect("[detached from", T).await;
        assert_eq!(self.pty.exit_code(T).await, 0, "{:?}", self.pty.output());
    }
}

/// A shell session running a program, and its witness.
struct Session<'a> {
    via: &'a Via,
    name: &'static str,
    /// Its full ID: it routes through a relay before gossip has spread
    /// the name.
    id: String,
    size: (u16, u16),
    witness: Witness,
}

impl<'a> Session<'a> {
    /// Creates the session (its files in `dir`) and its witness, through
    /// `witness` (the owning node's state dir: the fast, local path).
    fn create(via: &'a Via, witness: &Via, dir: &Path, name: &'static str) -> Session<'a> {
        let home = dir.join(format!("home-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        let env = |k: &str, v: &str| format!("{k}={v}");
        let id = via.ok(&[
            "new",
            "-d",
            "--name",
            name,
            "--ring-size",
            &RING.to_string(),
            "--cwd",
            dir.to_str().unwrap(),
            "--env",
            &env("TERM", "xterm-256color"),
            "--env",
            &env("PS1", "$ "),
            "--env",
            &env("HOME", home.to_str().unwrap()),
            "--env",
            &env("LESSHISTFILE", "-"),
            "--",
            "bash",
            "--norc",
            "--noprofile",
        ]);
        let id = id.trim().to_string();
        let info = via.json(&["info", &id, "--json"]);
        let size = (
            info["cols"].as_u64().unwrap() as u16,
            info["rows"].as_u64().unwrap() as u16,
        );
        let mut tail = witness.command();
        tail.args(["tail", &id]);
        let witness = Witness::start(tail, size).unwrap();
        let s = Session {
            via,
            name,
            id,
            size,
            witness,
        };
        s.wait_screen("the prompt", |g| g.lines().iter().any(|l| l == "$"));
        s
    }

    /// Types `keys` into `client` and paces ([`Session::pace`]) once they
    /// had an effect: the witness saw output, or [`KEY_EFFECT`] passed.
    /// Keys typed into a client reach the session a moment later; the
    /// next keys must not join them in one burst longer than the ring
    /// (the screen thread would skip what the ring lost).
    async fn type_keys(&self, client: &mut Client, keys: &str) -> u64 {
        let before = self.witness.offset();
        client.pty.write(keys.as_bytes()).await;
        let deadline = Instant::now() + KEY_EFFECT;
        while self.witness.offset() == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.pace()
    }

    /// Waits until the program waits for input again (it has taken the
    /// keys sent so far, as the kernel sees it), then until the witness
    /// has the output there is by then; returns that end. Keeps the keys
    /// from running ahead of the witness.
    fn pace(&self) -> u64 {
        let deadline = Instant::now() + T;
        loop {
            let info = self.via.json(&["info", &self.id, "--json"]);
            if info["awaiting_input"] == true {
                let end = info["end_offset"].as_u64().unwrap();
                self.witness.wait_for(end, T).unwrap();
                return end;
            }
            assert!(
                Instant::now() < deadline,
                "{}: it did not wait for input again: {info}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the witness's screen is `what`.
    fn wait_screen(&self, what: &str, f: impl Fn(&Grid) -> bool) {
        let deadline = Instant::now() + T;
        loop {
            let (_, g) = self.witness.grid().unwrap();
            if f(&g) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what}; the screen:\n{}",
                self.name,
                g.render()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `keys` with `tether send`.
    fn send(&self, keys: &str) {
        self.via.ok(&["send", &self.id, keys]);
    }

    /// A new `tether attach` at the session's size.
    fn attach(&self) -> Client {
        let mut args: Vec<&str> = self.via.0.iter().map(String::as_str).collect();
        args.extend(["attach", &self.id]);
        Client {
            pty: PtyProc::spawn(TETHER, &args, self.size).unwrap(),
            vt: Vt::new(self.size.0, self.size.1),
            fed: 0,
        }
    }

    /// Types `keys` in turn (through `client`, else `tether send`, which
    /// returns once the keeper wrote them to the PTY), pacing each, until
    /// the output has grown by `bytes`.
    async fn drive(&self, mut client: Option<&mut Client>, keys: &[&str], bytes: u64) {
        let from = self.pace();
        for (n, k) in keys.iter().cycle().enumerate() {
            assert!(n < MAX_KEYS, "{}: {n} keys wrote too little", self.name);
            let end = match client.as_deref_mut() {
                Some(c) => self.type_keys(c, k).await,
                None => {
                    self.send(k);
                    self.pace()
                }
            };
            if end - from >= bytes {
                return;
            }
        }
    }

    /// Checks that `client` shows the witness's screen cell by cell, and
    /// that the node's screen is the witness's at its offset; waits (at
    /// most [`T`]) for a moment where all three have the same output.
    /// Returns the screen.
    fn check(&self, what: &str, client: &mut Client) -> Grid {
        let deadline = Instant::now() + T;
        loop {
            let node = self.via.json(&["screen", &self.id, "--json"]);
            let (offset, want) = self.witness.grid().unwrap();
            let drawn = client.grid();
            let node_same = node["offset"] == offset
                && node["skipped"] == 0
                && node_lines(&node) == want.lines()
                && node["alternate"] == want.alternate
                && node_cursor(&node) == want.visible_cursor();
            if node_same && drawn == want {
                return drawn;
            }
            if Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let mut msg = format!(
                "{} {what}: the client's screen is not the witness's (at offset {offset})\n",
                self.name
            );
            for d in drawn.diff(&want) {
                let _ = writeln!(msg, "  {d} (client vs witness)");
            }
            let _ = write!(
                msg,
                "client:\n{}witness:\n{}node (tether screen --json):\n{node:#}\n",
                drawn.render(),
                want.render()
            );
            if let Some(at) = node["offset"]
                .as_u64()
                .and_then(|o| self.witness.grid_at(o))
            {
                let _ = write!(msg, "witness at the node's offset:\n{}", at.render());
            }
            panic!("{msg}");
        }
    }
}

/// The last row with text is the shell's prompt.
fn prompt_last(g: &Grid) -> bool {
    g.lines()
        .iter()
        .rev()
        .find(|l| !l.is_empty())
        .map(String::as_str)
        == Some("$")
}

fn node_lines(screen: &serde_json::Value) -> Vec<String> {
    screen["lines"]
        .as_array()
        .map(|a| a.iter().map(|l| l.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn node_cursor(screen: &serde_json::Value) -> Option<(usize, usize)> {
    let c = screen["cursor"].as_array()?;
    Some((c[0].as_u64()? as usize, c[1].as_u64()? as usize))
}

/// Runs `p` in a new session reached through `via` (see the module's doc
/// for the steps). `witness` reaches the owning node's state dir; `dir`
/// holds the files.
async fn exercise(via: &Via, witness: &Via, dir: &Path, p: &Program) {
    let program = p.start.split(' ').next().unwrap();
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{program} is not installed; this test drives it: run .ci/run, which installs it, or \
         apt-get install vim less htop"
    );
    if let Some((name, content)) = p.file {
        std::fs::write(dir.join(name), content()).unwrap();
    }
    let s = Session::create(via, witness, dir, p.name);
    s.send(&format!("{}\r", p.start));
    s.wait_screen(p.ready, |g| {
        g.alternate && g.lines().iter().any(|l| l.contains(p.ready))
    });

    // 1. A client drives it through several rings, then detaches.
    let mut a = s.attach();
    s.check("at the first attach", &mut a);
    s.drive(Some(&mut a), p.scroll, 3 * RING).await;
    s.check("after the first client drove it", &mut a);
    a.detach().await;

    // 2. More, past another ring: nothing the first client saw is left.
    s.drive(None, p.scroll, 2 * RING).await;
    let info = s.via.json(&["info", &s.id, "--json"]);
    let start = info["start_offset"].as_u64().unwrap();
    assert!(start > 4 * RING, "the ring wrapped several times: {info}");
    eprintln!(
        "{}: {} bytes of output, the ring holds them from {start} on",
        p.name, info["end_offset"]
    );

    // 3. A new client redraws the screen from the snapshot.
    let mut b = s.attach();
    let g = s.check("at the reattach", &mut b);
    assert!(g.alternate, "{} runs on the alternate screen", p.name);

    // 4. The live output goes on from there.
    for k in p.more {
        s.type_keys(&mut b, k).await;
    }
    s.check("after typing into the reattached client", &mut b);

    // 5. It quits: back to the shell, on the primary screen.
    b.pty.write(p.quit.as_bytes()).await;
    s.wait_screen("the shell's prompt", |g| !g.alternate && prompt_last(g));
    let g = s.check("after quitting", &mut b);
    assert!(
        !g.alternate && prompt_last(&g) && !g.lines().iter().any(|l| l.contains(p.own)),
        "{}: after it quit the client must show the shell, not its page:\n{}",
        p.name,
        g.render()
    );
    b.detach().await;

    // And a client attached to the shell gets the same screen.
    let mut c = s.attach();
    s.check("attached after quitting", &mut c);
    c.pty.write(b"echo done\r").await;
    s.wait_screen("the echo", |g| g.lines().iter().any(|l| l == "done"));
    s.check("after a command", &mut c);
    c.detach().await;
}

async fn local(p: &Program) {
    let node = TestNode::start(TETHER).unwrap();
    let via = Via::local(&node);
    let dir = tempfile::tempdir().unwrap();
    exercise(&via, &via, dir.path(), p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn less_reattached_after_the_ring_wrapped() {
    local(&LESS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vim_reattached_after_the_ring_wrapped() {
    local(&VIM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htop_reattached_after_the_ring_wrapped() {
    local(&HTOP).await;
}

/// The pager through a relay: the snapshot crosses the relay to a fleet
/// client as it does to a local one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn less_through_a_relay() {
    let spec = FleetSpec::new(
        std::net::Ipv4Addr::new(127, 0, 0, 61),
        1,
        std::net::Ipv4Addr::new(127, 0, 0, 62),
        1,
    )
    .client("alice");
    let f = Fleet::start(TETHER, &spec).unwrap();
    let via = Via(f.files().client_args(&[0], "alice"));
    let witness = Via::local(&f.nodes[0]);
    let dir = tempfile::tempdir().unwrap();
    exercise(&via, &witness, dir.path(), &LESS).await;
}

/// What keeps a witness exact: a follower that keeps up gets every byte
/// of a burst many rings long (the keeper reads at most a quarter of the
/// ring per round, then serves its followers; a round used to read up to
/// 256 KiB, and a follower of a small ring got a gap in a single burst).
#[test]
fn a_burst_of_many_rings_reaches_a_follower_whole() {
    let node = TestNode::start(TETHER).unwrap();
    let burst = 64 * 1024;
    let script = format!("echo ready; read go; head -c {burst} /dev/zero | tr '\\0' x; read end");
    let id = node.new_session(&["--ring-size", &RING.to_string()], &["sh", "-c", &script]);
    let mut tail = node.command();
    tail.args(["tail", &id]);
    let w = Witness::start(tail, (80, 24)).unwrap();
    // It follows before the burst: it has the first line.
    w.wait_for("ready\r\n".len() as u64, T).unwrap();
    node.ok(&["send", &id, "\n"]);
    tether_testkit::wait_until("the burst", T, || {
        node.info(&id)["end_offset"].as_u64().unwrap() > burst
    });
    let end = node.info(&id)["end_offset"].as_u64().unwrap();
    w.wait_for(end, T).unwrap();
}
