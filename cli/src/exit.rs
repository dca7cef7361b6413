//! Exit codes of `tether`, by what went wrong, so scripts and agents can
//! act on a failure without reading its message.
//!
//! | code | meaning |
//! |-----:|---------|
//! | 0    | success; `attach`: detached |
//! | 1    | any other failure (a local I/O error, say); `attach`: the node closed the stream |
//! | 2    | usage: bad arguments, or a request the node calls malformed (`bad_request`) |
//! | 3    | no session matches the target (`not_found`) |
//! | 4    | the target matches several sessions (`ambiguous`) |
//! | 5    | the name is taken on that node (`name_taken`) |
//! | 6    | a read-only client tried to write (`read_only`) |
//! | 7    | this client and the node or relay speak different protocol versions (`version`) |
//! | 8    | a limit of the node's or relay's config refused the request: `max_sessions`, `max_sessions_per_identity`, `max_ring_bytes`, a `[limits]` key (`limit`) |
//! | 9    | the session's files are damaged: its output cannot be read (`damaged`) |
//! | 10   | `run`: the command stopped to wait for input before it finished |
//! | 69   | unavailable: no node or relay could be reached, or reached again after the connection broke, or a relay cannot reach the session's owner (EX_UNAVAILABLE) |
//! | 70   | the node or relay failed internally (`internal`) (EX_SOFTWARE) |
//! | 75   | the connection broke during a one-shot request; run it again (EX_TEMPFAIL) |
//! | 76   | the node or relay broke the protocol: a malformed frame, output out of order, an unexpected reply; or the node could not be verified end to end, or the stream was altered on the way (EX_PROTOCOL) |
//! | 77   | this client's identity may not do that: the session is shared with it read-only, or it is not the session's owner (`forbidden`) (EX_NOPERM) |
//! | 78   | this client's configuration is unusable: fleet credentials, the state dir (EX_CONFIG) |
//! | 124  | `wait --timeout`: the session still runs, or the output never matched; `run --timeout`: the command still runs |
//! | 129  | `attach` ended by SIGHUP or SIGTERM |
//! | 255  | `wait`, `attach`: the session was lost (its keeper vanished) |
//! | N    | `wait`, `attach`: the session's own exit code (128 + the signal if a signal ended it) |
//!
//! A session's own exit code can be any of these numbers: `wait` and
//! `attach` pass it through as it is, as a shell does.

use tether_client::ClientError;
use tether_proto::ErrorKind;

/// Success; `attach`: detached.
pub const OK: i32 = 0;
/// Any other failure.
pub const FAILURE: i32 = 1;
/// Bad arguments or a malformed request.
pub const USAGE: i32 = 2;
/// No session matches the target.
pub const NOT_FOUND: i32 = 3;
/// The target matches several sessions.
pub const AMBIGUOUS: i32 = 4;
/// The name is taken.
pub const NAME_TAKEN: i32 = 5;
/// A read-only client tried to write.
pub const READ_ONLY: i32 = 6;
/// Protocol versions differ.
pub const VERSION: i32 = 7;
/// A limit of the node's or relay's config refused the request.
pub const LIMIT: i32 = 8;
/// The session's files are damaged.
pub const DAMAGED: i32 = 9;
/// `run`: the command waits for input.
pub const AWAITING_INPUT: i32 = 10;
/// The caller may not do this (EX_NOPERM).
pub const FORBIDDEN: i32 = 77;
/// No node or relay reachable (sysexits EX_UNAVAILABLE).
pub const UNAVAILABLE: i32 = 69;
/// The node or relay failed internally (EX_SOFTWARE).
pub const INTERNAL: i32 = 70;
/// The connection broke during a request (EX_TEMPFAIL).
pub const TEMPFAIL: i32 = 75;
/// The peer broke the protocol (EX_PROTOCOL).
pub const PROTOCOL: i32 = 76;
/// This client's configuration is unusable (EX_CONFIG).
pub const CONFIG: i32 = 78;
/// `wait --timeout` expired.
pub const TIMEOUT: i32 = 124;
/// `attach` ended by a signal.
pub const SIGNALLED: i32 = 129;
/// The session was lost.
pub const LOST: i32 = 255;

/// A mistake in the command line that clap cannot see (a bad `--env`,
/// detach key or signal name): exits with [`USAGE`].
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A usage error saying `msg`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    Usage(msg.into()).into()
}

/// The exit code of a failed verb: from the first [`ClientError`] or
/// [`Usage`] in its chain, else [`FAILURE`].
pub fn of_error(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if let Some(ce) = cause.downcast_ref::<ClientError>() {
            return of_client(ce);
        }
        if cause.is::<Usage>() {
            return USAGE;
        }
    }
    FAILURE
}

/// The exit code of a client error.
pub fn of_client(e: &ClientError) -> i32 {
    match e {
        ClientError::Refused { kind, .. } => match kind {
            ErrorKind::BadRequest => USAGE,
            ErrorKind::NotFound => NOT_FOUND,
            ErrorKind::Ambiguous => AMBIGUOUS,
            ErrorKind::NameTaken => NAME_TAKEN,
            ErrorKind::ReadOnly => READ_ONLY,
            ErrorKind::Version => VERSION,
            ErrorKind::Internal => INTERNAL,
            ErrorKind::Unavailable => UNAVAILABLE,
            ErrorKind::Forbidden => FORBIDDEN,
            ErrorKind::Limit => LIMIT,
            ErrorKind::Damaged => DAMAGED,
            ErrorKind::Other => FAILURE,
        },
        ClientError::Connect { .. } => UNAVAILABLE,
        ClientError::Transport(_) => TEMPFAIL,
        ClientError::Protocol(_) | ClientError::Unexpected(_) | ClientError::Untrusted(_) => {
            PROTOCOL
        }
        ClientError::Config(_) => CONFIG,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use tether_proto::Reply;

    #[test]
    fn every_refusal_kind_has_its_code() {
        let cases = [
            (ErrorKind::BadRequest, 2),
            (ErrorKind::NotFound, 3),
            (ErrorKind::Ambiguous, 4),
            (ErrorKind::NameTaken, 5),
            (ErrorKind::ReadOnly, 6),
            (ErrorKind::Version, 7),
            (ErrorKind::Internal, 70),
            (ErrorKind::Unavailable, 69),
            (ErrorKind::Forbidden, 77),
            (ErrorKind::Limit, 8),
            (ErrorKind::Damaged, 9),
            (ErrorKind::Other, 1),
        ];
        for (kind, code) in cases {
            assert_eq!(
                of_client(&ClientError::refused(kind, "no")),
                code,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn failures_that_are_not_refusals() {
        assert_eq!(of_client(&ClientError::connect("x", "y")), 69);
        assert_eq!(of_client(&ClientError::broken("gone")), 75);
        assert_eq!(of_client(&ClientError::unexpected(Reply::Ok)), 76);
        assert_eq!(of_client(&ClientError::Config("no key".into())), 78);
    }

    #[test]
    fn the_code_is_found_under_context() {
        let e = anyhow::Error::new(ClientError::refused(ErrorKind::NotFound, "no session"))
            .context("tail stopped at offset 3");
        assert_eq!(of_error(&e), 3);
        let e: anyhow::Result<()> = Err(usage("--env takes KEY=VALUE"));
        assert_eq!(of_error(&e.context("creating").unwrap_err()), 2);
        assert_eq!(of_error(&anyhow::anyhow!("disk on fire")), 1);
    }
}
