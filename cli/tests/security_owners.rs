//! Sessions that belong to someone, through a real fleet: a session is
//! its creator's; another client neither sees nor touches it until the
//! owner shares it (read-only or not), and loses it when unshared; an
//! admin sees all; the node's local owner sees all; a name that could be
//! read as an ID is refused; every action is logged with who did it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tether_testkit::{output, Fleet, FleetSpec, CLI_TIMEOUT};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

fn fleet() -> Fleet {
    let spec = FleetSpec::new(
        Ipv4Addr::new(127, 0, 0, 101),
        1,
        Ipv4Addr::new(127, 0, 0, 105),
        2,
    )
    .client("alice")
    .client("bob")
    .read_only_client("eve");
    Fleet::start(TETHER, &spec).unwrap()
}

/// `tether --relay R --tls-dir DIR ARGS`.
fn as_dir(f: &Fleet, dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(TETHER);
    c.args(["--relay", &f.relay_addr(0), "--tls-dir"])
        .arg(dir)
        .args(args);
    output(&mut c, CLI_TIMEOUT).unwrap()
}

fn as_who(f: &Fleet, who: &str, args: &[&str]) -> Output {
    as_dir(f, &f.files().client_tls(who), args)
}

fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_session_is_its_owners_until_shared() {
    let f = fleet();
    let id = ok(
        as_who(
            &f,
            "alice",
            &["new", "-d", "--node", "n1", "--name", "secret", "--", "cat"],
        ),
        "alice creates",
    )
    .trim()
    .to_string();

    // Bob does not see it, by name, ID or prefix, and cannot touch it.
    let ls = ok(as_who(&f, "bob", &["ls"]), "bob lists");
    assert!(!ls.contains("secret") && !ls.contains(&id[..10]), "{ls}");
    for target in ["secret", id.as_str(), &id[..10]] {
        for verb in [
            vec!["send", target, "typed-by-bob\n"],
            vec!["tail", target],
            vec!["info", target],
            vec!["kill", target],
        ] {
            let o = as_who(&f, "bob", &verb);
            assert_eq!(code(&o), 3, "bob {verb:?}: {}", err(&o));
        }
    }
    // Alice's own listing shows it, as hers.
    let mine = ok(
        as_who(&f, "alice", &["info", "secret", "--json"]),
        "alice info",
    );
    assert!(mine.contains("\"owner\": \"alice\""), "{mine}");

    // Shared read-only: bob sees and reads, cannot type or kill.
    ok(
        as_who(
            &f,
            "alice",
            &["share", "secret", "--with", "bob", "--read-only"],
        ),
        "share read-only",
    );
    ok(
        as_who(&f, "alice", &["send", "secret", "from-alice\n"]),
        "alice types",
    );
    assert!(ok(as_who(&f, "bob", &["ls"]), "bob lists").contains("secret"));
    tether_testkit::wait_until(
        "bob reads alice's line",
        std::time::Duration::from_secs(20),
        || ok(as_who(&f, "bob", &["tail", "secret"]), "bob tails").contains("from-alice"),
    );
    for verb in [
        vec!["send", "secret", "typed-by-bob\n"],
        vec!["kill", "secret"],
    ] {
        let o = as_who(&f, "bob", &verb);
        assert_eq!(
            code(&o),
            77,
            "bob {verb:?} on a read-only share: {}",
            err(&o)
        );
        assert!(err(&o).contains("read-only"), "{}", err(&o));
    }
    // Only the owner shares.
    let o = as_who(&f, "bob", &["share", "secret", "--with", "eve"]);
    assert_eq!(code(&o), 77, "{}", err(&o));

    // Shared read-write: bob types.
    ok(
        as_who(&f, "alice", &["share", "secret", "--with", "bob"]),
        "share",
    );
    ok(
        as_who(&f, "bob", &["send", "secret", "bob-was-let-in\n"]),
        "bob types",
    );
    tether_testkit::wait_until(
        "alice reads bob's line",
        std::time::Duration::from_secs(20),
        || ok(as_who(&f, "alice", &["tail", "secret"]), "alice tails").contains("bob-was-let-in"),
    );
    // A read-only certificate stays read-only whatever the share.
    ok(
        as_who(&f, "alice", &["share", "secret", "--with", "eve"]),
        "share eve",
    );
    let o = as_who(&f, "eve", &["send", "secret", "x\n"]);
    assert_eq!(code(&o), 6, "{}", err(&o));

    // Unshared: gone again for bob.
    ok(
        as_who(&f, "alice", &["unshare", "secret", "--with", "bob"]),
        "unshare",
    );
    let o = as_who(&f, "bob", &["send", "secret", "after-unshare\n"]);
    assert_eq!(code(&o), 3, "{}", err(&o));
    assert!(!ok(as_who(&f, "alice", &["tail", "secret"]), "tail").contains("typed-by-bob"));

    // An admin sees and types into everyone's sessions.
    let admin = f.dir().join("admin-root");
    let o = Command::new(TETHER)
        .args(["ca", "issue"])
        .arg(f.ca())
        .args(["--admin", "root", "--out"])
        .arg(&admin)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(ok(as_dir(&f, &admin, &["ls"]), "admin lists").contains("secret"));
    ok(
        as_dir(&f, &admin, &["send", "secret", "from-root\n"]),
        "admin types",
    );

    // The node's local owner sees every session of its state dir.
    assert!(f.nodes[0].ok(&["ls"]).contains("secret"));

    // Each action was logged with who did it.
    let log = f.nodes[0].log();
    for who in ["client alice", "client bob", "admin root"] {
        assert!(
            log.contains(&format!("who={who}")),
            "no line for {who} in the log"
        );
    }
}

#[test]
fn names_that_read_as_ids_are_refused_and_ids_win() {
    let f = fleet();
    let id = ok(
        as_who(&f, "alice", &["new", "-d", "--node", "n1", "--", "cat"]),
        "alice creates",
    )
    .trim()
    .to_string();
    let short = &id[..10];
    // Bob names a session on the other node after alice's short ID.
    let o = as_who(
        &f,
        "bob",
        &["new", "-d", "--node", "n2", "--name", short, "--", "cat"],
    );
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(
        err(&o).contains("could be read as a session ID"),
        "{}",
        err(&o)
    );
    for name in ["0123456789", "deadbeefdeadbeef", "ABCDEFGHJKM"] {
        let o = as_who(
            &f,
            "bob",
            &["new", "-d", "--node", "n2", "--name", name, "--", "cat"],
        );
        assert_eq!(code(&o), 2, "{name}: {}", err(&o));
    }
    for name in ["web-1", "build", "db", "secret"] {
        ok(
            as_who(
                &f,
                "bob",
                &["new", "-d", "--node", "n2", "--name", name, "--", "cat"],
            ),
            name,
        );
    }
    // Alice's short ID still means her session.
    ok(
        as_who(&f, "alice", &["send", short, "mine\n"]),
        "send by short ID",
    );
}

#[test]
fn sessions_per_identity_are_capped() {
    let f = fleet();
    let tls: PathBuf = f.files().client_tls("bob");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let refused = rt.block_on(async {
        let (c, _) = tether_client::Client::connect_relay(&[f.relay_addr(0)], &tls, 0)
            .await
            .unwrap();
        let spec = tether_proto::CreateSpec {
            command: vec!["sleep".into(), "600".into()],
            node: Some("n1".into()),
            ring_size: Some(4096),
            ..Default::default()
        };
        for i in 0..100 {
            c.create(spec.clone())
                .await
                .unwrap_or_else(|e| panic!("session {i}: {e}"));
        }
        c.create(spec).await.unwrap_err()
    });
    assert_eq!(refused.kind(), Some(tether_proto::ErrorKind::Limit));
    assert!(
        refused.to_string().contains("max_sessions_per_identity"),
        "{refused}"
    );
    // Another identity still creates.
    ok(
        as_who(&f, "alice", &["new", "-d", "--node", "n1", "--", "cat"]),
        "alice creates",
    );
}
