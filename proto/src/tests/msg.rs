//! Tests of [`crate::msg`].

use super::*;
use crate::ids::NodeId;

#[test]
fn requests_roundtrip() {
    let reqs = vec![
        Request::List,
        Request::Attach(AttachSpec {
            target: "abc".into(),
            start: StartAt::Offset(Offset(42)),
            read_only: true,
            follow: false,
            size: Some(WinSize {
                cols: 100,
                rows: 30,
            }),
            snapshot: None,
            sizing: crate::msg::Sizing::Latest,
        }),
        Request::Send {
            target: "x".into(),
            data: vec![0, 1, 255],
        },
        Request::Nodes,
    ];
    for r in reqs {
        assert_eq!(decode::<Request>(&encode(&r)).unwrap(), r);
    }
}

/// `Request` as it was before `StreamControl` and `KeeperRequest` were
/// split off: what older keepers and nodes decode.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OldRequest {
    List,
    Info {
        target: String,
    },
    Create(CreateSpec),
    Attach(AttachSpec),
    Send {
        target: String,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    Kill {
        target: String,
        signal: i32,
    },
    Remove {
        target: String,
    },
    Wait {
        target: String,
    },
    Status,
    Nodes,
    Resize(WinSize),
    Detach,
}

fn spec() -> AttachSpec {
    AttachSpec {
        target: "7f3k".into(),
        start: StartAt::Offset(Offset(9)),
        read_only: false,
        follow: true,
        size: Some(WinSize { cols: 3, rows: 4 }),
        snapshot: None,
        sizing: crate::msg::Sizing::Latest,
    }
}

/// Checks that `new` encodes to the bytes of `old` and that those bytes
/// decode back into `new`.
fn same_bytes<T>(new: T, old: OldRequest)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = encode(&old);
    assert_eq!(encode(&new), bytes, "{new:?} vs {old:?}");
    assert_eq!(decode::<T>(&bytes).unwrap(), new);
    // And an old peer reads what this build sends.
    let back: OldRequest = decode(&encode(&new)).unwrap();
    assert_eq!(encode(&back), bytes);
}

#[test]
fn split_requests_keep_their_bytes() {
    let data = vec![0u8, 1, 255];
    let size = WinSize {
        cols: 120,
        rows: 40,
    };
    same_bytes(StreamControl::Resize(size), OldRequest::Resize(size));
    same_bytes(StreamControl::Detach, OldRequest::Detach);
    same_bytes(KeeperRequest::Status, OldRequest::Status);
    same_bytes(KeeperRequest::Attach(spec()), OldRequest::Attach(spec()));
    let target = String::from("abc");
    same_bytes(
        KeeperRequest::Send {
            target: target.clone(),
            data: data.clone(),
        },
        OldRequest::Send {
            target: target.clone(),
            data: data.clone(),
        },
    );
    same_bytes(
        KeeperRequest::Kill {
            target: target.clone(),
            signal: 15,
        },
        OldRequest::Kill {
            target: target.clone(),
            signal: 15,
        },
    );
    same_bytes(
        KeeperRequest::Wait {
            target: target.clone(),
        },
        OldRequest::Wait {
            target: target.clone(),
        },
    );
    // The public requests did not move.
    let t = || target.clone();
    same_bytes(Request::List, OldRequest::List);
    same_bytes(Request::Nodes, OldRequest::Nodes);
    same_bytes(
        Request::Info { target: t() },
        OldRequest::Info { target: t() },
    );
    same_bytes(
        Request::Create(CreateSpec::default()),
        OldRequest::Create(CreateSpec::default()),
    );
    same_bytes(Request::Attach(spec()), OldRequest::Attach(spec()));
    same_bytes(
        Request::Send {
            target: t(),
            data: data.clone(),
        },
        OldRequest::Send { target: t(), data },
    );
    same_bytes(
        Request::Kill {
            target: t(),
            signal: 9,
        },
        OldRequest::Kill {
            target: t(),
            signal: 9,
        },
    );
    same_bytes(
        Request::Remove { target: t() },
        OldRequest::Remove { target: t() },
    );
    same_bytes(
        Request::Wait { target: t() },
        OldRequest::Wait { target: t() },
    );
}

#[test]
fn stream_controls_are_not_requests() {
    // A client of this build that sends a mid-stream message as its
    // first request is refused at decoding, not misread.
    assert!(decode::<Request>(&encode(&StreamControl::Detach)).is_err());
    assert!(decode::<Request>(&encode(&KeeperRequest::Status)).is_err());
    assert!(decode::<StreamControl>(&encode(&Request::List)).is_err());
}

#[test]
fn unknown_fields_are_skipped_and_missing_ones_defaulted() {
    #[derive(Serialize)]
    struct NewerHello {
        version: u32,
        agent: String,
        flavour: String,
    }
    let b = encode(&NewerHello {
        version: 7,
        agent: "x".into(),
        flavour: "y".into(),
    });
    assert_eq!(
        decode::<Hello>(&b).unwrap(),
        Hello {
            version: 7,
            agent: "x".into(),
        }
    );

    #[derive(Serialize)]
    struct OlderHello {
        version: u32,
    }
    let b = encode(&OlderHello { version: 1 });
    assert_eq!(decode::<Hello>(&b).unwrap().agent, "");
}

#[test]
fn session_info_new_is_the_empty_default() {
    let id = SessionId([3; 16]);
    let node = NodeId([4; 8]);
    let s = SessionInfo::new(id, node, SessionState::Lost);
    assert_eq!((s.id, s.node, s.state), (id, node, SessionState::Lost));
    assert_eq!(s.label(), id.short());
    // Every other field decodes from its absence to the same value, so
    // `new` is exactly "nothing known but the identity".
    #[derive(Serialize)]
    struct Minimal {
        id: SessionId,
        node: NodeId,
        command: Vec<String>,
        created_at_ms: u64,
        state: SessionState,
    }
    let b = encode(&Minimal {
        id,
        node,
        command: vec![],
        created_at_ms: 0,
        state: SessionState::Lost,
    });
    assert_eq!(decode::<SessionInfo>(&b).unwrap(), s);
}

#[test]
fn member_role_is_the_same_word_on_the_wire() {
    /// `MemberInfo` as it was when its role was a free string.
    #[derive(Serialize, Deserialize)]
    struct OldMember {
        name: String,
        id: String,
        role: String,
        live: bool,
        #[serde(default)]
        quic: Option<String>,
        #[serde(default)]
        sessions: u32,
        #[serde(default)]
        dead_since_ms: Option<u64>,
    }
    for (role, word) in [(Role::Node, "node"), (Role::Relay, "relay")] {
        let new = MemberInfo {
            name: "n1".into(),
            id: "abc".into(),
            role,
            live: true,
            quic: Some("127.0.0.1:1".into()),
            sessions: 3,
            dead_since_ms: None,
        };
        let old = OldMember {
            name: "n1".into(),
            id: "abc".into(),
            role: word.into(),
            live: true,
            quic: Some("127.0.0.1:1".into()),
            sessions: 3,
            dead_since_ms: None,
        };
        assert_eq!(encode(&new), encode(&old));
        assert_eq!(decode::<MemberInfo>(&encode(&old)).unwrap(), new);
        let oj = serde_json::to_string(&old).unwrap();
        assert_eq!(serde_json::to_string(&new).unwrap(), oj);
        assert_eq!(serde_json::from_str::<MemberInfo>(&oj).unwrap(), new);
    }
    let future = OldMember {
        name: "b".into(),
        id: "b".into(),
        role: "bridge".into(),
        live: false,
        quic: None,
        sessions: 0,
        dead_since_ms: None,
    };
    let m = decode::<MemberInfo>(&encode(&future)).unwrap();
    assert_eq!((m.role, m.name.as_str()), (Role::Unknown, "b"));
}

#[test]
fn unknown_session_state_keeps_the_session() {
    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Future {
        Paused,
    }
    let b = encode(&Future::Paused);
    assert_eq!(decode::<SessionState>(&b).unwrap(), SessionState::Unknown);
    for st in [
        SessionState::Running,
        SessionState::Exited,
        SessionState::Lost,
        SessionState::Damaged,
    ] {
        assert_eq!(decode::<SessionState>(&encode(&st)).unwrap(), st);
        assert_eq!(encode(&st), encode(&st.as_str()));
        assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{st}\""));
    }
    assert_eq!(SessionState::Damaged.as_str(), "damaged");
}

/// An error kind added after the first release: a lower-case word on the
/// wire, which a peer that does not know it reads as `Other`.
fn check_added_error_kind(kind: ErrorKind, word: &str) {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Before {
        NotFound,
        Unavailable,
        #[serde(other)]
        Other,
    }
    assert_eq!(encode(&kind), encode(&word));
    assert_eq!(decode::<ErrorKind>(&encode(&word)).unwrap(), kind);
    assert_eq!(decode::<Before>(&encode(&kind)).unwrap(), Before::Other);
}

#[test]
fn added_error_kinds_are_lower_case_words_older_peers_read_as_other() {
    check_added_error_kind(ErrorKind::Damaged, "damaged");
    check_added_error_kind(ErrorKind::Limit, "limit");
}

#[test]
fn unknown_error_kind_decodes_as_other() {
    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Future {
        QuotaExceeded,
    }
    let b = encode(&Future::QuotaExceeded);
    assert_eq!(decode::<ErrorKind>(&b).unwrap(), ErrorKind::Other);
}
