//! What can go wrong between a client and a node or relay, as one enum a
//! caller can act on: refused (the node's kind kept), unreachable, broken
//! mid-stream (resumable), a peer that breaks the protocol, or a client
//! that cannot even try (credentials, state dir).

use tether_net::conn::StreamError;
use tether_proto::{CursorError, ErrorKind, Reply};

/// Why a request or a stream failed. Each variant says what happened and,
/// in its message, what to do next.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node or relay answered `Reply::Error`: it understood the
    /// request and said no. Retrying the same request gets the same answer.
    #[error("{message}")]
    Refused {
        /// What kind of refusal, as the node said.
        kind: ErrorKind,
        /// What happened and what to do, from the node.
        message: String,
    },
    /// No node or relay could be reached (or reached again, after a
    /// stream broke and every retry failed).
    #[error("{reason}; {hint}")]
    Connect {
        /// What failed.
        reason: String,
        /// What to do about it.
        hint: String,
    },
    /// The connection broke while a request or stream was under way (the
    /// node or relay went away, the network dropped). A stream resumes by
    /// itself after this; a one-shot request may be sent again.
    #[error("the connection broke: {}", chain(.0))]
    Transport(#[source] std::io::Error),
    /// The peer sent something no well-behaved tether peer sends: a
    /// malformed frame, output out of order, an undecodable reply.
    #[error("{0}")]
    Protocol(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The peer answered with a reply that does not fit the request.
    #[error("unexpected reply: {0:?}; are the node and this client of compatible versions?")]
    Unexpected(Box<Reply>),
    /// This client cannot even try: its credentials or state dir are
    /// missing, unreadable or invalid.
    #[error("{0}")]
    Config(String),
    /// The peer could not prove it is the node it must be, or the stream
    /// was altered on the way: a relay or an impostor tampered with it.
    #[error("{0}")]
    Untrusted(String),
}

impl ClientError {
    /// The node's kind of refusal, for [`ClientError::Refused`].
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Refused { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether trying again (on a new connection, from the same offset)
    /// may succeed: the transport broke, no peer answered for now, or a
    /// relay could not reach the session's node for now (dead, paused or
    /// partitioned: [`ErrorKind::Unavailable`]). An attached stream keeps
    /// trying through all of them, as its backoff allows.
    pub fn is_resumable(&self) -> bool {
        matches!(
            self,
            ClientError::Transport(_)
                | ClientError::Connect { .. }
                | ClientError::Refused {
                    kind: ErrorKind::Unavailable,
                    ..
                }
        )
    }

    /// A refusal of `kind`, as a node would send it.
    pub fn refused(kind: ErrorKind, message: impl Into<String>) -> ClientError {
        ClientError::Refused {
            kind,
            message: message.into(),
        }
    }

    /// A failure to reach a peer: what failed and what to do.
    pub fn connect(reason: impl Into<String>, hint: impl Into<String>) -> ClientError {
        ClientError::Connect {
            reason: reason.into(),
            hint: hint.into(),
        }
    }

    /// A broken transport, described by `what`.
    pub fn broken(what: &str) -> ClientError {
        ClientError::Transport(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            what.to_string(),
        ))
    }

    /// Turns an error reply into [`ClientError::Refused`]; any other reply
    /// passes through.
    pub fn check(reply: Reply) -> Result<Reply, ClientError> {
        match reply {
            Reply::Error { kind, message } => Err(ClientError::Refused { kind, message }),
            other => Ok(other),
        }
    }

    /// An unexpected reply, boxed.
    pub fn unexpected(reply: Reply) -> ClientError {
        ClientError::Unexpected(Box::new(reply))
    }
}

/// `err: its source: its source`, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_s = c.to_string();
        // io::Error wrapping a quinn error repeats it as its own source.
        if !s.ends_with(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        cur = c.source();
    }
    s
}

impl From<StreamError> for ClientError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Io(io) => ClientError::from(io),
            StreamError::Truncated | StreamError::Closed => ClientError::broken(&e.to_string()),
            StreamError::Version(_) => ClientError::refused(ErrorKind::Version, e.to_string()),
            StreamError::Refused(m) => ClientError::refused(ErrorKind::Other, m),
            StreamError::TimedOut(_) => ClientError::refused(ErrorKind::Other, e.to_string()),
            StreamError::Frame(_) | StreamError::Msg(_) | StreamError::Unexpected(_) => {
                ClientError::Protocol(Box::new(e))
            }
        }
    }
}

impl From<CursorError> for ClientError {
    fn from(e: CursorError) -> Self {
        ClientError::Protocol(Box::new(e))
    }
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        // A TLS record that does not verify: bytes were changed on the way.
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return ClientError::Untrusted(format!(
                "the end-to-end session with the node failed ({tls}): the stream was altered \
                 on the way; a relay on the path is not to be trusted"
            ));
        }
        ClientError::Transport(e)
    }
}

impl From<quinn::ConnectionError> for ClientError {
    fn from(e: quinn::ConnectionError) -> Self {
        ClientError::Transport(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::Offset;

    #[test]
    fn error_replies_keep_their_kind_and_message() {
        let e = ClientError::check(Reply::error(ErrorKind::NotFound, "no session matches 'x'"))
            .unwrap_err();
        assert_eq!(e.kind(), Some(ErrorKind::NotFound));
        assert_eq!(e.to_string(), "no session matches 'x'");
        assert!(!e.is_resumable());
        assert_eq!(ClientError::check(Reply::Ok).unwrap(), Reply::Ok);
        // A node a relay cannot reach now may be back in a moment.
        let gone = ClientError::check(Reply::error(ErrorKind::Unavailable, "node n1 unreachable"));
        assert!(gone.unwrap_err().is_resumable());
    }

    #[test]
    fn stream_errors_are_sorted_by_what_to_do() {
        let io = std::io::Error::new(std::io::ErrorKind::NotConnected, "connection lost");
        type Check = fn(&ClientError) -> bool;
        let cases: Vec<(StreamError, Check)> = vec![
            (StreamError::Io(io), |e| {
                matches!(e, ClientError::Transport(_)) && e.is_resumable()
            }),
            (StreamError::Closed, |e| e.is_resumable()),
            (StreamError::Truncated, |e| e.is_resumable()),
            (StreamError::Version(9), |e| {
                e.kind() == Some(ErrorKind::Version) && e.to_string().contains("upgrade")
            }),
            (StreamError::Unexpected("output"), |e| {
                matches!(e, ClientError::Protocol(_)) && !e.is_resumable()
            }),
            (
                StreamError::Frame(tether_proto::DecodeError::TooLarge(u32::MAX as usize)),
                |e| matches!(e, ClientError::Protocol(_)),
            ),
        ];
        for (se, ok) in cases {
            let shown = se.to_string();
            let ce = ClientError::from(se);
            assert!(ok(&ce), "{shown} became {ce:?}");
        }
    }

    #[test]
    fn cursor_errors_are_protocol_errors_with_their_advice() {
        let e = ClientError::from(CursorError::OutOfOrder {
            expected: Offset(5),
            got: Offset(7),
        });
        assert!(matches!(e, ClientError::Protocol(_)));
        assert!(e.to_string().contains("expected offset 5, got 7"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn transport_errors_show_their_cause_once() {
        let e: ClientError = quinn::ConnectionError::TimedOut.into();
        assert!(e.is_resumable());
        assert_eq!(e.to_string(), "the connection broke: timed out");
        let c = ClientError::connect("no relay answered (a: refused)", "check --relay");
        assert_eq!(
            c.to_string(),
            "no relay answered (a: refused); check --relay"
        );
        assert!(c.is_resumable());
        assert!(!ClientError::Config("no key".into()).is_resumable());
        let u = ClientError::unexpected(Reply::Ok);
        assert!(u.to_string().starts_with("unexpected reply: Ok;"), "{u}");
    }
}
