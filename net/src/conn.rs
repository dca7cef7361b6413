//! Frames over any byte stream: a QUIC stream, a unix socket.

use bytes::{Buf, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tether_proto::{msg, DecodeError, Frame, Hello, PROTOCOL_VERSION};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::limits::Budget;

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The transport failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a frame.
    #[error("malformed frame: {0}")]
    Frame(#[from] DecodeError),
    /// A control frame did not hold the expected message.
    #[error("malformed control message: {0}")]
    Msg(#[from] rmp_serde::decode::Error),
    /// The stream ended in the middle of a frame.
    #[error("the peer closed the stream in the middle of a frame")]
    Truncated,
    /// The stream ended where a frame was required.
    #[error("the peer closed the stream")]
    Closed,
    /// A frame of another kind arrived where a control message was due.
    #[error("expected a control message, got {0}")]
    Unexpected(&'static str),
    /// The peer may not do this.
    #[error("{0}")]
    Refused(String),
    /// The peer did not open the stream in time.
    #[error("no hello and request within {0:?} (limit [limits] hello_timeout_ms)")]
    TimedOut(std::time::Duration),
    /// The peer speaks another protocol version.
    #[error("the peer speaks protocol version {0}, this build speaks {PROTOCOL_VERSION}; upgrade the older side")]
    Version(u32),
}

/// Reads frames from a byte stream.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_frame: usize,
    charge: Option<Charge>,
}

/// What a reader holds against its connection's [`Budget`]; released when
/// the reader goes.
struct Charge {
    budget: Budget,
    held: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        let _ = self.budget.recharge(self.held, 0);
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a stream.
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(4 * 1024),
            max_frame: tether_proto::MAX_FRAME_SIZE,
            charge: None,
        }
    }

    /// Charges the bytes this reader holds of unfinished frames to a
    /// connection's budget, shared with the connection's other readers.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.charge = Some(Charge { budget, held: 0 });
        self
    }

    /// Refuses frames larger than `max` bytes (below the protocol's
    /// largest), as soon as their header arrives.
    pub fn with_max_frame(mut self, max: usize) -> Self {
        self.max_frame = max.min(tether_proto::MAX_FRAME_SIZE);
        self
    }

    fn recharge(&mut self) -> Result<(), StreamError> {
        let Some(c) = &mut self.charge else {
            return Ok(());
        };
        let to = self.buf.len();
        match c.budget.recharge(c.held, to) {
            Ok(()) => {
                c.held = to;
                Ok(())
            }
            Err(max) => Err(StreamError::Refused(format!(
                "this connection holds more than {max} bytes of unfinished frames \
                 (limit [limits] partial_bytes_per_connection); closing this stream"
            ))),
        }
    }

    /// The next frame; `Ok(None)` at a clean end of stream.
    pub async fn next(&mut self) -> Result<Option<Frame>, StreamError> {
        loop {
            let decoded = Frame::decode(&self.buf)?;
            // The header passed the protocol's checks; this reader's limit
            // is checked on it too, whether the rest of the frame came in
            // the same read or not.
            if let Some(h) = self.buf.get(..tether_proto::frame::HEADER_LEN) {
                let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
                if len > self.max_frame {
                    return Err(StreamError::Refused(format!(
                        "a frame of {len} bytes where at most {} are accepted",
                        self.max_frame
                    )));
                }
            }
            if let Some((frame, used)) = decoded {
                self.buf.advance(used);
                self.recharge()?;
                return Ok(Some(frame));
            }
            // Control streams stay small; a stream that fills its buffer
            // doubles it, up to 256 KiB per read, for bulk output.
            if self.buf.capacity() - self.buf.len() < 1024 {
                let grow = self.buf.capacity().clamp(4 * 1024, 256 * 1024);
                self.buf.reserve(grow);
            }
            let n = self.inner.read_buf(&mut self.buf).await?;
            self.recharge()?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(StreamError::Truncated)
                };
            }
        }
    }

    /// The next frame, which must be a control message of type `T`.
    pub async fn control<T: DeserializeOwned>(&mut self) -> Result<T, StreamError> {
        match self.next().await? {
            Some(Frame::Control(b)) => Ok(msg::decode(&b)?),
            Some(Frame::Output { .. }) => Err(StreamError::Unexpected("output")),
            Some(Frame::Input(_)) => Err(StreamError::Unexpected("input")),
            None => Err(StreamError::Closed),
        }
    }

    /// Reads the peer's hello and checks its version.
    pub async fn hello(&mut self) -> Result<Hello, StreamError> {
        let h: Hello = self.control().await?;
        if h.version != PROTOCOL_VERSION {
            return Err(StreamError::Version(h.version));
        }
        Ok(h)
    }

    /// Bytes read from the stream but not yet decoded.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// The stream back, with the bytes read ahead.
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.inner, self.buf)
    }
}

/// Writes frames to a byte stream.
pub struct FrameWriter<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps a stream.
    pub fn new(inner: W) -> Self {
        FrameWriter {
            inner,
            buf: Vec::new(),
        }
    }

    /// Sends a control message.
    pub async fn control<T: Serialize>(&mut self, m: &T) -> std::io::Result<()> {
        self.send(&Frame::Control(msg::encode(m))).await
    }

    /// Sends this build's hello.
    pub async fn hello(&mut self, agent: &str) -> std::io::Result<()> {
        self.control(&Hello::current(agent)).await
    }

    /// Sends one frame.
    pub async fn send(&mut self, f: &Frame) -> std::io::Result<()> {
        self.buf.clear();
        f.encode_into(&mut self.buf);
        self.inner.write_all(&self.buf).await?;
        // A no-op on QUIC streams and sockets; a TLS session may hold the
        // last record until flushed.
        self.inner.flush().await
    }

    /// Sends raw, already encoded bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(bytes).await?;
        self.inner.flush().await
    }

    /// The inner stream.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Turns a stream error into the reply the peer gets before the close.
pub fn error_reply(e: &StreamError) -> tether_proto::Reply {
    let kind = match e {
        StreamError::Version(_) => tether_proto::ErrorKind::Version,
        _ => tether_proto::ErrorKind::BadRequest,
    };
    tether_proto::Reply::error(kind, format!("{e}; closing this stream"))
}

/// The opening of a stream a node or relay serves: reads the peer's hello
/// and answers with ours, lets `admit` decide from the hello who acts, then
/// reads the request, all within `timeout`. On any failure the peer gets
/// an error reply and the stream is closed.
pub async fn accept_request<R, W, T>(
    rd: &mut FrameReader<R>,
    wr: &mut FrameWriter<W>,
    agent: &str,
    timeout: std::time::Duration,
    admit: impl FnOnce(Hello) -> Result<T, StreamError>,
) -> Result<(T, tether_proto::Request), StreamError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let late = || StreamError::TimedOut(timeout);
    let hello = tokio::time::timeout_at(deadline, rd.hello())
        .await
        .unwrap_or_else(|_| Err(late()));
    wr.hello(agent).await?;
    let res = match hello.and_then(admit) {
        Ok(who) => tokio::time::timeout_at(deadline, rd.control())
            .await
            .unwrap_or_else(|_| Err(late()))
            .map(|req| (who, req)),
        Err(e) => Err(e),
    };
    if let Err(e) = &res {
        wr.control(&error_reply(e)).await?;
        let _ = wr.get_mut().shutdown().await;
    }
    res
}

/// Splices two framed streams both ways, raw, after their hellos: what
/// each side had read ahead goes first. Ends when the peer side ends (or
/// the client side ends and the peer winds down, within 5 s).
pub async fn splice<CR, CW, PR, PW>(
    client_rd: FrameReader<CR>,
    mut client_w: CW,
    peer_rd: FrameReader<PR>,
    mut peer_w: PW,
) -> std::io::Result<()>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    PR: AsyncRead + Unpin,
    PW: AsyncWrite + Unpin,
{
    let (mut crecv, cbuf) = client_rd.into_parts();
    let (precv, pbuf) = peer_rd.into_parts();
    let up = async move {
        peer_w.write_all(&cbuf).await?;
        let mut r = tokio::io::BufReader::with_capacity(64 * 1024, &mut crecv);
        tokio::io::copy_buf(&mut r, &mut peer_w).await?;
        peer_w.shutdown().await?;
        Ok::<_, std::io::Error>(())
    };
    let down = async {
        client_w.write_all(&pbuf).await?;
        let mut r = tokio::io::BufReader::with_capacity(256 * 1024, precv);
        tokio::io::copy_buf(&mut r, &mut client_w).await?;
        client_w.shutdown().await?;
        Ok::<_, std::io::Error>(())
    };
    tokio::pin!(up, down);
    tokio::select! {
        r = &mut down => r?,
        r = &mut up => {
            if r.is_ok() {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), &mut down).await;
            }
        }
    }
    Ok(())
}

/// How long a served stream waits for the peer to read a final reply and
/// close its side, before it is dropped (a peer may not hold it forever).
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Answers with one final message and closes the stream: sends `reply`,
/// finishes this side, and waits (at most [`DRAIN_TIMEOUT`]) for the peer
/// to close its side, so that the reply is read before the stream goes.
pub async fn reply_and_close<R, W, T>(
    rd: &mut FrameReader<R>,
    wr: &mut FrameWriter<W>,
    reply: &T,
) -> Result<(), StreamError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    wr.control(reply).await?;
    let _ = wr.get_mut().shutdown().await;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, rd.next()).await;
    Ok(())
}
