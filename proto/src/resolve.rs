//! Target resolution: which session a user means by `target`. One rule for
//! the node (over its own sessions) and the relay (over the sessions gossip
//! tells it of), so `tether attach web` means the same session whichever
//! way the client is connected.
//!
//! # Protocol flow
//! 1. A client names a session in a [`Request`] ([`Request::target`]): a
//!    full ID, a `name@node`, a name, or a unique prefix of an ID.
//! 2. The relay resolves it over the whole fleet with [`resolve_target`],
//!    then forwards [`Request::retarget`]ed to the full ID, so the owner
//!    node never resolves a second time (and never differently).
//! 3. A node resolves what reaches it directly with the same function over
//!    its own sessions.
//!
//! A refusal is a [`ResolveError`], sent as `Reply::Error` with
//! [`ResolveError::kind`] and the error's message.
//!
//! Pure: no IO, tested by hand-written cases and property tests.

use crate::ids::{validate_prefix, SessionId};
use crate::msg::{ErrorKind, Request, Route};

/// How many IDs an ambiguous prefix lists, at most.
pub const MAX_LISTED: usize = 5;

/// A session a target may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Its ID.
    pub id: SessionId,
    /// Its name, unique on its node.
    pub name: Option<&'a str>,
    /// The name of the node that owns it.
    pub node: &'a str,
}

/// What made a target ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    /// Sessions of several nodes have that name.
    Name,
    /// That many sessions have IDs starting with it.
    Prefix {
        /// How many sessions match.
        count: usize,
    },
}

impl Ambiguity {
    fn what(&self) -> String {
        match self {
            Ambiguity::Name => "several sessions".to_string(),
            Ambiguity::Prefix { count } => format!("{count} sessions"),
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Ambiguity::Name => ", or name@node",
            Ambiguity::Prefix { .. } => "",
        }
    }
}

/// Why a target did not resolve to one session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No session matches the target.
    #[error("no session matches '{0}'; `tether ls` lists the sessions")]
    NotFound(String),
    /// No name matches, and the target is too short to be an ID prefix.
    #[error(
        "no session is named '{0}', and an ID prefix needs at least {MIN_PREFIX_LEN} characters; \
         `tether ls` lists the sessions"
    )]
    ShortPrefix(String),
    /// Several sessions match the target.
    #[error(
        "'{target}' matches {} ({candidates}); give more characters of the ID{}",
        by.what(),
        by.hint()
    )]
    Ambiguous {
        /// The target as given.
        target: String,
        /// The matches, comma-separated: `name@node` forms for a name, up
        /// to [`MAX_LISTED`] short IDs for a prefix.
        candidates: String,
        /// Whether a name or an ID prefix matched several.
        by: Ambiguity,
    },
    /// The node part of a `name@node` target names no node.
    #[error("no node named '{0}' in the fleet; `tether nodes` lists the members")]
    NoSuchNode(String),
}

impl ResolveError {
    /// The target, when nothing matched it at all (rather than too much):
    /// a name or ID prefix that one who knows more (a node, about a session
    /// created a moment ago) may still resolve.
    pub fn unmatched(&self) -> Option<&str> {
        match self {
            ResolveError::NotFound(t) | ResolveError::ShortPrefix(t) => Some(t),
            ResolveError::Ambiguous { .. } | ResolveError::NoSuchNode(_) => None,
        }
    }

    /// The kind of `Reply::Error` that carries this refusal.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ResolveError::NotFound(_)
            | ResolveError::ShortPrefix(_)
            | ResolveError::NoSuchNode(_) => ErrorKind::NotFound,
            ResolveError::Ambiguous { .. } => ErrorKind::Ambiguous,
        }
    }
}

/// Shortest ID prefix a target may be (as git's abbreviations): shorter
/// strings are names only.
pub const MIN_PREFIX_LEN: usize = 4;

/// Whether `name` has the form of a session ID as `ls` shows it: at least
/// [`SHORT_ID_LEN`](crate::ids::SHORT_ID_LEN) characters, all of the ID
/// alphabet. Such a name is refused, so that no one can name a session
/// after another's ID. Shorter names of that alphabet stay allowed (`web`,
/// `secret`): an ID prefix still wins over them in [`resolve_target`], and
/// a caller resolves only among the sessions it may see.
pub fn looks_like_id(name: &str) -> bool {
    name.len() >= crate::ids::SHORT_ID_LEN && validate_prefix(&name.to_ascii_lowercase()).is_ok()
}

/// Resolves `target` among `candidates`, trying in this order:
/// 1. a full session ID (any case) of a candidate;
/// 2. `name@node`: the session of that name on that node
///    ([`ResolveError::NoSuchNode`] when no candidate is on that node: a
///    caller that also knows nodes without sessions checks the node part
///    itself first);
/// 3. a prefix of an ID of at least [`MIN_PREFIX_LEN`] characters (any
///    case), when it matches: unique, or ambiguous;
/// 4. a name; several nodes having a session of that name is ambiguous.
///
/// An ID always wins over a name: a node refuses names that
/// [`looks_like_id`], and one named so before that rule cannot take the
/// place of the session whose ID it spells.
pub fn resolve_target<'a, I>(target: &str, candidates: I) -> Result<SessionId, ResolveError>
where
    I: IntoIterator<Item = Candidate<'a>> + Clone,
{
    let all = || candidates.clone().into_iter();
    let not_found = || ResolveError::NotFound(target.to_string());

    if let Ok(id) = target.parse::<SessionId>() {
        if all().any(|c| c.id == id) {
            return Ok(id);
        }
    }

    if let Some((name, node)) = target.split_once('@') {
        if !all().any(|c| c.node == node) {
            return Err(ResolveError::NoSuchNode(node.to_string()));
        }
        return all()
            .find(|c| c.node == node && c.name == Some(name))
            .map(|c| c.id)
            .ok_or_else(not_found);
    }

    // An ID prefix wins over a name, so that no session can be named into
    // another's place ([`looks_like_id`] names are refused at creation).
    let lower = target.to_ascii_lowercase();
    if lower.len() >= MIN_PREFIX_LEN && validate_prefix(&lower).is_ok() {
        let matches: Vec<SessionId> = all()
            .map(|c| c.id)
            .filter(|id| id.to_string().starts_with(&lower))
            .collect();
        match matches.as_slice() {
            [] => {}
            [one] => return Ok(*one),
            many => {
                return Err(ResolveError::Ambiguous {
                    target: target.to_string(),
                    candidates: many
                        .iter()
                        .take(MAX_LISTED)
                        .map(SessionId::short)
                        .collect::<Vec<_>>()
                        .join(", "),
                    by: Ambiguity::Prefix { count: many.len() },
                })
            }
        }
    }

    let mut named = all().filter(|c| c.name == Some(target));
    if let Some(first) = named.next() {
        let rest: Vec<Candidate<'a>> = named.collect();
        if rest.is_empty() {
            return Ok(first.id);
        }
        let candidates = std::iter::once(first)
            .chain(rest)
            .map(|c| format!("{target}@{}", c.node))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ResolveError::Ambiguous {
            target: target.to_string(),
            candidates,
            by: Ambiguity::Name,
        });
    }

    if validate_prefix(&lower).is_err() || lower.is_empty() {
        return Err(not_found());
    }
    if lower.len() < MIN_PREFIX_LEN {
        return Err(ResolveError::ShortPrefix(target.to_string()));
    }
    let matches: Vec<SessionId> = all()
        .map(|c| c.id)
        .filter(|id| id.to_string().starts_with(&lower))
        .collect();
    match matches.as_slice() {
        [] => Err(not_found()),
        [one] => Ok(*one),
        many => Err(ResolveError::Ambiguous {
            target: target.to_string(),
            candidates: many
                .iter()
                .take(MAX_LISTED)
                .map(SessionId::short)
                .collect::<Vec<_>>()
                .join(", "),
            by: Ambiguity::Prefix { count: many.len() },
        }),
    }
}

impl Request {
    /// The session this request names, as the client wrote it; `None` for
    /// the requests that name none (`List`, `Create`, `Nodes`).
    pub fn target(&self) -> Option<&str> {
        match self {
            Request::Info { target }
            | Request::Send { target, .. }
            | Request::Kill { target, .. }
            | Request::Remove { target }
            | Request::Wait { target }
            | Request::Screen { target } => Some(target),
            Request::Attach(spec) => Some(&spec.target),
            Request::Locate { target }
            | Request::Share { target, .. }
            | Request::Unshare { target, .. } => Some(target),
            Request::Route(Route::Session { target }) => Some(target),
            Request::Events { target } => target.as_deref(),
            Request::List | Request::Create(_) | Request::Nodes | Request::Route(_) => None,
        }
    }

    /// The request's name, for logs: `list`, `attach`, `send`...
    pub fn verb(&self) -> &'static str {
        match self {
            Request::List => "list",
            Request::Info { .. } => "info",
            Request::Create(_) => "create",
            Request::Attach(_) => "attach",
            Request::Send { .. } => "send",
            Request::Kill { .. } => "kill",
            Request::Remove { .. } => "remove",
            Request::Wait { .. } => "wait",
            Request::Screen { .. } => "screen",
            Request::Events { .. } => "events",
            Request::Nodes => "nodes",
            Request::Route(_) => "route",
            Request::Locate { .. } => "locate",
            Request::Share { .. } => "share",
            Request::Unshare { .. } => "unshare",
        }
    }

    /// The same request as a session's keeper takes it, aimed at the
    /// keeper's session `id`: what a local client sends straight to the
    /// keeper's socket. `None` for the requests only a node answers
    /// (create, list, info, wait, remove, shares, routing).
    pub fn for_keeper(&self, id: SessionId) -> Option<crate::msg::KeeperRequest> {
        self.keeper_serves().then(|| self.keeper_form(id))
    }

    /// Whether a local client sends this request straight to a running
    /// session's keeper: attach, send, kill, screen. Not wait: its answer must
    /// come from the daemon, once the daemon knows of the exit, so that
    /// `tether wait S && tether rm S` holds.
    pub fn keeper_serves(&self) -> bool {
        matches!(
            self,
            Request::Attach(_)
                | Request::Send { .. }
                | Request::Kill { .. }
                | Request::Screen { .. }
        )
    }

    fn keeper_form(&self, id: SessionId) -> crate::msg::KeeperRequest {
        use crate::msg::KeeperRequest as K;
        let target = id.to_string();
        match self {
            Request::Attach(spec) => K::Attach(crate::msg::AttachSpec {
                target,
                ..spec.clone()
            }),
            Request::Send { data, .. } => K::Send {
                target,
                data: data.clone(),
            },
            Request::Kill { signal, .. } => K::Kill {
                target,
                signal: *signal,
            },
            Request::Screen { .. } => K::Screen { target },
            other => unreachable!("{} is not a keeper's request", other.verb()),
        }
    }

    /// The same request aimed at session `id` (its full ID), as a relay
    /// forwards it once resolved. Requests without a target are returned
    /// unchanged.
    pub fn retarget(self, id: SessionId) -> Request {
        let target = id.to_string();
        match self {
            Request::Info { .. } => Request::Info { target },
            Request::Send { data, .. } => Request::Send { target, data },
            Request::Kill { signal, .. } => Request::Kill { target, signal },
            Request::Remove { .. } => Request::Remove { target },
            Request::Wait { .. } => Request::Wait { target },
            Request::Screen { .. } => Request::Screen { target },
            Request::Events { target: t } => Request::Events {
                target: t.map(|_| target),
            },
            Request::Attach(spec) => Request::Attach(crate::msg::AttachSpec { target, ..spec }),
            Request::Locate { .. } => Request::Locate { target },
            Request::Share { share, .. } => Request::Share { target, share },
            Request::Unshare { with, .. } => Request::Unshare { target, with },
            Request::Route(Route::Session { .. }) => Request::Route(Route::Session { target }),
            other @ (Request::List | Request::Create(_) | Request::Nodes | Request::Route(_)) => {
                other
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use crate::msg::{AttachSpec, CreateSpec, StartAt};
    use proptest::prelude::*;

    fn c<'a>(id: SessionId, name: Option<&'a str>, node: &'a str) -> Candidate<'a> {
        Candidate { id, name, node }
    }

    /// The cases of the relay's former `resolve_session`, over a fleet.
    #[test]
    fn resolution_rules() {
        let a1 = SessionId::generate(NodeId([1; 8]));
        let b1 = SessionId::generate(NodeId([2; 8]));
        let b2 = SessionId::generate(NodeId([2; 8]));
        let fleet = [
            c(a1, Some("build"), "n1"),
            c(b1, Some("build"), "n2"),
            c(b2, Some("web"), "n2"),
        ];
        let r = |t: &str| resolve_target(t, fleet.iter().copied());
        assert_eq!(r(&a1.to_string()), Ok(a1));
        assert_eq!(r(&a1.to_string().to_uppercase()), Ok(a1));
        assert_eq!(r("web"), Ok(b2));
        let e = r("build").unwrap_err();
        assert_eq!(
            e,
            ResolveError::Ambiguous {
                target: "build".into(),
                candidates: "build@n1, build@n2".into(),
                by: Ambiguity::Name,
            }
        );
        assert_eq!(
            e.to_string(),
            "'build' matches several sessions (build@n1, build@n2); \
             give more characters of the ID, or name@node"
        );
        assert_eq!(e.kind(), ErrorKind::Ambiguous);
        assert_eq!(r("build@n2"), Ok(b1));
        assert_eq!(r("build@n1"), Ok(a1));
        assert_eq!(r(&b2.to_string()[..20]), Ok(b2));
        assert_eq!(r("nope"), Err(ResolveError::NotFound("nope".into())));
        assert_eq!(r("web@n1"), Err(ResolveError::NotFound("web@n1".into())));
        assert_eq!(r("x@n9"), Err(ResolveError::NoSuchNode("n9".into())));
        assert_eq!(r("x@n9").unwrap_err().kind(), ErrorKind::NotFound);
    }

    /// The cases of the node's former `resolve`, over one node's sessions.
    #[test]
    fn node_rules() {
        let ids: Vec<SessionId> = (0u8..7)
            .map(|i| {
                let mut b = [0u8; 16];
                b[0] = 0x10;
                b[3] = i;
                SessionId(b)
            })
            .collect();
        let mut node: Vec<Candidate<'_>> = ids.iter().map(|&id| c(id, None, "n1")).collect();
        // A name (from before names of ID form were refused) that is also
        // a prefix of every ID: the IDs win; three characters are a name.
        let common = ids[0].to_string()[..4].to_string();
        let short = ids[0].to_string()[..3].to_string();
        let own = ids[6].to_string()[..12].to_string();
        node[3].name = Some(&common);
        node[4].name = Some(&short);
        node[5].name = Some(&own);
        let r = |t: &str| resolve_target(t, node.iter().copied());
        assert_eq!(r(&short), Ok(ids[4]));
        assert_eq!(r(&own), Ok(ids[6]), "a name spelling another's ID loses");
        assert!(looks_like_id(&own) && !looks_like_id(&common) && !looks_like_id(&short));
        assert!(!looks_like_id("web-1") && !looks_like_id("secret"));
        assert!(looks_like_id("0123456789") && looks_like_id("ABCDEFGHJK"));
        let prefix = &common;
        let e = r(prefix).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Ambiguous);
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("'{prefix}' matches 7 sessions (")),
            "{msg}"
        );
        assert!(msg.ends_with("); give more characters of the ID"), "{msg}");
        let listed = ids[..5]
            .iter()
            .map(SessionId::short)
            .collect::<Vec<_>>()
            .join(", ");
        assert!(msg.contains(&listed), "lists the first five: {msg}");
        assert!(!msg.contains(&ids[5].short()), "and no more: {msg}");

        // Typos are not taken for prefixes; an empty target matches nothing.
        for t in ["", "10-", "ü", "uuu", "@"] {
            let e = r(t).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{t}: {e}");
        }
        let e = r("X").unwrap_err();
        assert!(e.to_string().contains("no session is named 'X'"), "{e}");
        assert!(e.to_string().contains("at least 4 characters"), "{e}");
        assert!(e.to_string().contains("tether ls"), "{e}");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(r("n1").unwrap_err(), ResolveError::ShortPrefix("n1".into()));
        let e = r("nope-1").unwrap_err();
        assert!(e.to_string().contains("no session matches 'nope-1'"), "{e}");
        assert_eq!(
            resolve_target("x", std::iter::empty()),
            Err(ResolveError::ShortPrefix("x".into()))
        );
        assert_eq!(
            resolve_target("x-1", std::iter::empty()),
            Err(ResolveError::NotFound("x-1".into()))
        );
    }

    fn arb_fleet() -> impl Strategy<Value = Vec<(SessionId, Option<String>, String)>> {
        // Few nodes, names and ID bytes, so that collisions happen.
        proptest::collection::vec(
            (
                proptest::collection::vec(0u8..3, 16),
                proptest::option::of("[ab]{1,2}"),
                "n[12]",
            ),
            0..8,
        )
        .prop_map(|v| {
            let mut out: Vec<(SessionId, Option<String>, String)> = Vec::new();
            for (bytes, name, node) in v {
                let mut id = [0u8; 16];
                id.copy_from_slice(&bytes);
                let id = SessionId(id);
                // IDs are unique in a fleet, names unique on a node.
                let clash = out
                    .iter()
                    .any(|(i, n, o)| *i == id || (name.is_some() && *n == name && *o == node));
                if !clash {
                    out.push((id, name, node));
                }
            }
            out
        })
    }

    proptest! {
        #[test]
        fn resolved_sessions_are_candidates(fleet in arb_fleet(), target in "[0-9a-z@]{0,6}") {
            let cands = fleet.iter().map(|(id, n, o)| c(*id, n.as_deref(), o));
            if let Ok(id) = resolve_target(&target, cands) {
                prop_assert!(fleet.iter().any(|(i, _, _)| *i == id));
            }
        }

        #[test]
        fn every_session_is_reachable(fleet in arb_fleet()) {
            let cands = || fleet.iter().map(|(id, n, o)| c(*id, n.as_deref(), o));
            for (id, name, node) in &fleet {
                // By full ID and by its short form, unless another shares it.
                prop_assert_eq!(resolve_target(&id.to_string(), cands()), Ok(*id));
                if let Some(n) = name {
                    prop_assert_eq!(resolve_target(&format!("{n}@{node}"), cands()), Ok(*id));
                    let same = fleet.iter().filter(|(_, m, _)| m == name).count();
                    let got = resolve_target(n, cands());
                    if same == 1 {
                        prop_assert_eq!(got, Ok(*id));
                    } else {
                        let is_ambiguous_by_name = matches!(
                            got,
                            Err(ResolveError::Ambiguous { by: Ambiguity::Name, .. })
                        );
                        prop_assert!(is_ambiguous_by_name);
                    }
                }
            }
        }
    }

    #[test]
    fn targets_and_retargeting() {
        let id = SessionId([9; 16]);
        let full = id.to_string();
        let spec = |target: &str| AttachSpec {
            target: target.into(),
            start: StartAt::Oldest,
            read_only: true,
            follow: false,
            size: None,
            snapshot: None,
            sizing: crate::msg::Sizing::Latest,
        };
        let named = |t: &str| {
            vec![
                Request::Info { target: t.into() },
                Request::Attach(spec(t)),
                Request::Send {
                    target: t.into(),
                    data: vec![1, 2],
                },
                Request::Kill {
                    target: t.into(),
                    signal: 2,
                },
                Request::Remove { target: t.into() },
                Request::Wait { target: t.into() },
            ]
        };
        for (req, moved) in named("web").into_iter().zip(named(&full)) {
            assert_eq!(req.target(), Some("web"));
            assert_eq!(req.retarget(id), moved);
        }
        for req in [
            Request::List,
            Request::Nodes,
            Request::Create(CreateSpec::default()),
        ] {
            assert_eq!(req.target(), None);
            assert_eq!(req.clone().retarget(id), req);
        }
    }
}
