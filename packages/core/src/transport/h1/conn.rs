//! One HTTP/1.1 connection: its socket (TCP or TLS), the bytes read from it and not yet used, its counters,
//! and the three steps of an exchange on it — write a request, read a response head, read body bytes.
//!
//! A connection belongs to exactly one request at a time: the request's own task drives it, and hands it
//! back to the pool once the response has been read to its end.

use super::body::{BodyDecoder, Decoded};
use super::errors::{closed_early, io_error};
use super::head::{Head, HeadReader, Parsed, RequestKind};
use super::write::{chunk_size_line, LAST_CHUNK};
use crate::body::PullBody;
use crate::error::{CoreError, ErrorKind, SocketCounters};
use crate::handler::RawHeaders;
use crate::transport::connections::{ConnectionEvent, ConnectionObserver};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A connection's socket.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// What a read asks the socket for at least: Node reads in 64 KiB slices, but a connection here keeps its
/// buffer between reads, so it starts small and grows only for large heads and bodies.
const READ_SIZE: usize = 8 * 1024;
/// Most a single read of a large body asks for.
const MAX_READ_SIZE: usize = 64 * 1024;
/// A request body up to this size is copied behind its head and written with it in one write.
const COALESCE_BODY: usize = 16 * 1024;

impl Stream {
    /// Reads what is available into `buf`, asking for at least `want` bytes of room. A plain TCP socket
    /// gets its room only once it is readable, so a connection waiting for a slow response holds no buffer.
    async fn read_into(&mut self, buf: &mut BytesMut, want: usize) -> io::Result<usize> {
        match self {
            Stream::Tcp(tcp) => {
                tcp.readable().await?;
                buf.reserve(want);
                // The read itself goes through `poll_read`, which clears the socket's readiness when it
                // returns less than asked for: the next look (the pool's idle watch) costs no syscall.
                tcp.read_buf(buf).await
            }
            Stream::Tls(tls) => {
                buf.reserve(want);
                tls.read_buf(buf).await
            }
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(tcp) => tcp.write_all(data).await,
            Stream::Tls(tls) => {
                tls.write_all(data).await?;
                tls.flush().await
            }
        }
    }

    /// Whether an idle connection is still usable: nothing to read and no end of stream. Looks without
    /// waiting; `cx`'s waker is woken when that changes (the server closes it or writes to it).
    fn idle_and_open(&mut self, cx: &mut Context<'_>) -> bool {
        let mut byte = [0u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        let polled = match self {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_read(cx, &mut probe),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, &mut probe),
        };
        matches!(polled, Poll::Pending)
    }
}

/// Why writing a request failed: on the socket (the server may never have seen the request) or in the
/// request's own body source.
pub(crate) struct WriteFailure {
    pub error: CoreError,
    pub on_socket: bool,
}

/// An open HTTP/1.1 connection.
pub(crate) struct Connection {
    stream: Stream,
    /// Bytes read and not yet used. Released (not just cleared) while the connection is idle.
    buf: BytesMut,
    pub(crate) remote: SocketAddr,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) bytes_read: u64,
    pub(crate) bytes_written: u64,
    /// Responses read to their end on this connection.
    pub(crate) served: u32,
    origin: String,
    observer: ConnectionObserver,
    /// The connection switched protocols and left the agent: its end was announced then.
    left: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if !self.left {
            (self.observer)(ConnectionEvent::Disconnected {
                origin: std::mem::take(&mut self.origin),
                upgraded: false,
            });
        }
    }
}

impl Connection {
    pub(crate) fn new(
        stream: Stream,
        remote: SocketAddr,
        local: Option<SocketAddr>,
        origin: String,
        observer: ConnectionObserver,
    ) -> Self {
        Connection {
            stream,
            buf: BytesMut::new(),
            remote,
            local,
            bytes_read: 0,
            bytes_written: 0,
            served: 0,
            origin,
            observer,
            left: false,
        }
    }

    /// `error` with this connection's counters, when it is a failure of the connection itself (undici's
    /// `SocketError` carries them).
    pub(crate) fn annotate(&self, mut error: CoreError) -> CoreError {
        if matches!(error.kind, ErrorKind::Socket | ErrorKind::Unprocessed) {
            error.socket = Some(SocketCounters {
                bytes_written: self.bytes_written,
                bytes_read: self.bytes_read,
            });
        }
        error
    }

    /// The connection switched protocols: it leaves the agent for good (undici reports it disconnected at
    /// that moment) and becomes a byte stream, the bytes already read after the head first.
    pub(crate) fn into_upgraded(mut self: Box<Self>) -> Upgraded {
        self.left = true;
        (self.observer)(ConnectionEvent::Disconnected {
            origin: std::mem::take(&mut self.origin),
            upgraded: true,
        });
        Upgraded { connection: self }
    }

    /// `scheme://authority` of the origin this connection goes to.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether this idle connection can take a request: open, and nothing unasked-for arrived on it.
    pub(crate) fn reusable(&mut self) -> bool {
        self.watch(&mut Context::from_waker(Waker::noop()))
    }

    /// Like [`Self::reusable`], and `cx` is woken when the server closes the connection or writes to it.
    pub(crate) fn watch(&mut self, cx: &mut Context<'_>) -> bool {
        self.buf.is_empty() && self.stream.idle_and_open(cx)
    }

    /// Ready to sit in the pool: the read buffer's memory goes back (idle connections cost no buffer).
    pub(crate) fn park(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.buf = BytesMut::new();
        true
    }

    /// Whether writing `body` with its head on this connection is one small write on a plain TCP socket:
    /// what may be done on the thread that dispatched the request (`inline.rs`).
    pub(crate) fn light(&self, body: &RequestBody) -> bool {
        let small = match body {
            RequestBody::None => true,
            RequestBody::Bytes(bytes) => bytes.len() <= COALESCE_BODY,
            RequestBody::Pull(_) => false,
        };
        small && matches!(self.stream, Stream::Tcp(_))
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), WriteFailure> {
        match self.stream.write_all(data).await {
            Ok(()) => {
                self.bytes_written += data.len() as u64;
                Ok(())
            }
            Err(e) => Err(WriteFailure {
                error: io_error(&e, "write"),
                on_socket: true,
            }),
        }
    }

    /// Writes a request: its encoded `head`, then its body.
    pub(crate) async fn write_request(
        &mut self,
        mut head: BytesMut,
        body: RequestBody,
    ) -> Result<(), WriteFailure> {
        match body {
            RequestBody::None => self.write(&head).await,
            RequestBody::Bytes(bytes) if bytes.len() <= COALESCE_BODY => {
                head.extend_from_slice(&bytes);
                self.write(&head).await
            }
            RequestBody::Bytes(bytes) => {
                self.write(&head).await?;
                self.write(&bytes).await
            }
            RequestBody::Pull(body) => {
                let chunked = http_body::Body::size_hint(&body).exact().is_none();
                // Boxed: a streamed body's writer is most of this future's size, which every request
                // in flight would otherwise carry.
                Box::pin(self.write_pulled(head, body, chunked)).await
            }
        }
    }

    /// Writes a pulled body as its chunks come; the head goes with the first chunk.
    async fn write_pulled(
        &mut self,
        head: BytesMut,
        mut body: PullBody,
        chunked: bool,
    ) -> Result<(), WriteFailure> {
        let mut pending = head;
        loop {
            // The head goes out before waiting for the body source: the server may answer without it.
            if !pending.is_empty() {
                self.write(&pending).await?;
                pending.clear();
            }
            let frame = match body.frame().await {
                None => break,
                Some(Err(error)) => {
                    return Err(WriteFailure {
                        error,
                        on_socket: false,
                    })
                }
                Some(Ok(frame)) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if chunked {
                chunk_size_line(data.len(), &mut pending);
                if data.len() <= COALESCE_BODY {
                    pending.extend_from_slice(&data);
                    pending.extend_from_slice(b"\r\n");
                } else {
                    self.write(&pending).await?;
                    pending.clear();
                    self.write(&data).await?;
                    pending.extend_from_slice(b"\r\n");
                }
            } else {
                self.write(&data).await?;
            }
        }
        if chunked {
            pending.extend_from_slice(LAST_CHUNK);
        }
        if !pending.is_empty() {
            self.write(&pending).await?;
        }
        Ok(())
    }

    /// Reads into the buffer; `Ok(0)` is the end of the stream.
    async fn fill(&mut self, want: usize) -> Result<usize, CoreError> {
        let n = self
            .stream
            .read_into(&mut self.buf, want)
            .await
            .map_err(|e| io_error(&e, "read"))?;
        self.bytes_read += n as u64;
        Ok(n)
    }

    /// Reads the final response head, skipping informational ones. `Err` carries whether anything at all
    /// was received for this request (a reused connection closed before any byte came back did not
    /// process the request).
    ///
    /// Informational heads are not counted (undici takes any number): a flood of them is bounded by
    /// `headersTimeout`, which they do not extend here (undici's parser refreshes it on each), and each
    /// by `maxHeaderSize`; they are consumed as they come, so memory stays flat.
    pub(crate) async fn read_head(
        &mut self,
        kind: RequestKind,
        max_header_size: usize,
    ) -> Result<Head, (CoreError, bool)> {
        let mut reader = HeadReader::default();
        let start = self.bytes_read;
        loop {
            if !self.buf.is_empty() {
                match reader.read(&mut self.buf, kind, max_header_size) {
                    Ok(Parsed::Head(head)) => return Ok(head),
                    Ok(Parsed::Informational) => continue,
                    Ok(Parsed::Partial) => {}
                    Err(error) => return Err((error, true)),
                }
            }
            match self.fill(READ_SIZE).await {
                Ok(0) => return Err((closed_early(), self.bytes_read > start)),
                Ok(_) => {}
                Err(error) => return Err((error, self.bytes_read > start)),
            }
        }
    }

    /// The next piece of a response body. `Ok(Decoded::End)` once it ended; `keep_alive` says whether the
    /// server meant to keep the connection (it decides what an early end of stream means).
    pub(crate) async fn read_body(
        &mut self,
        decoder: &mut BodyDecoder,
        keep_alive: bool,
    ) -> Result<BodyPiece, CoreError> {
        loop {
            match decoder.decode(&mut self.buf)? {
                Decoded::Data(data) => return Ok(BodyPiece::Data(data)),
                Decoded::End(trailers) => return Ok(BodyPiece::End(trailers)),
                Decoded::NeedMore => {}
            }
            let want = decoder.wants().map_or(READ_SIZE, |n| {
                n.clamp(READ_SIZE as u64, MAX_READ_SIZE as u64) as usize
            });
            if self.fill(want).await? == 0 {
                return decoder.finish(keep_alive).map(BodyPiece::End);
            }
        }
    }
}

/// A piece of a response body as the connection reads it.
pub(crate) enum BodyPiece {
    Data(Bytes),
    End(RawHeaders),
}

/// A request body as the connection writes it.
pub(crate) enum RequestBody {
    None,
    Bytes(Bytes),
    /// Pulled from the caller; sent chunked when its length is unknown.
    Pull(PullBody),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_write(cx, data),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection that switched protocols (`101`, or the answer to `CONNECT`): a plain byte stream, which
/// hands out first what was read past the response head.
pub(crate) struct Upgraded {
    connection: Box<Connection>,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let connection = &mut *self.get_mut().connection;
        if !connection.buf.is_empty() {
            let n = connection.buf.len().min(buf.remaining());
            buf.put_slice(&connection.buf.split_to(n));
            if connection.buf.is_empty() {
                // Its memory goes back: the stream reads on without it.
                connection.buf = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut connection.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().connection.stream).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().connection.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().connection.stream).poll_shutdown(cx)
    }
}
