//! The life of an upgraded connection, driven by the request's own task: the server's bytes go to the
//! handler as the controller allows (pause, credit — a consumer that does not read makes the server's writes
//! block, and memory stays flat), the caller's writes go to the server, both at once (one direction never
//! waits for the other: an echo that stops reading while its writes are stuck would never finish otherwise).
//!
//! The connection lives until the caller aborts the request (closing it), an I/O error (reported with
//! `on_error`), or both directions have ended: the server's (`on_upgrade_read_end`) and the caller's (its
//! `End` write completed).

use crate::controller::RequestController;
use crate::error::CoreError;
use crate::handler::DispatchHandler;
use crate::transport::h1::io_error;
use crate::transport::Upgraded;
use crate::upgrade::{UpgradeWrite, UpgradeWrites};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWrite};

/// Room asked for before each read: what Node's sockets read at once.
const READ_SIZE: usize = 64 * 1024;
/// Below this much room left in the read buffer, the next read gets a fresh one.
const MIN_READ_ROOM: usize = 4 * 1024;

/// Where the caller's direction stands.
enum Writing {
    /// Waiting for the caller's next write.
    Idle,
    /// Writing these bytes (the front one partly written, maybe); flushing once they are all out.
    Data(VecDeque<Bytes>),
    /// The caller ended its direction: shutting it down.
    Ending,
    /// Ended (or the caller went away).
    Done,
}

/// Carries `io`'s bytes both ways until the connection ends. `Ok` once both directions ended (or the caller
/// dropped its writer); an I/O failure is the `Err`.
pub(crate) async fn carry<H: DispatchHandler>(
    mut io: Upgraded,
    mut writes: UpgradeWrites,
    controller: &RequestController,
    handler: &mut H,
) -> Result<(), CoreError> {
    let mut reading = true;
    let mut buf = BytesMut::new();
    let mut writing = Writing::Idle;
    let mut waiter = None;
    poll_fn(|cx| loop {
        let mut progressed = false;

        match &mut writing {
            Writing::Idle => match writes.rx.poll_recv(cx) {
                Poll::Ready(Some(UpgradeWrite::Data(chunks))) => {
                    writing = Writing::Data(chunks.into());
                    progressed = true;
                }
                Poll::Ready(Some(UpgradeWrite::End)) => {
                    writing = Writing::Ending;
                    progressed = true;
                }
                // The caller is gone: nothing more is written, and nobody reads either.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => {}
            },
            Writing::Data(chunks) => match poll_write_all(&mut io, cx, chunks) {
                Poll::Ready(Ok(())) => {
                    writing = Writing::Idle;
                    handler.on_upgrade_written();
                    progressed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(io_error(&e, "write"))),
                Poll::Pending => {}
            },
            Writing::Ending => match Pin::new(&mut io).poll_shutdown(cx) {
                Poll::Ready(result) => {
                    // A shutdown that fails (the peer reset already) still ends this direction; the read
                    // side reports the reset.
                    let _ = result;
                    writing = Writing::Done;
                    handler.on_upgrade_written();
                    progressed = true;
                }
                Poll::Pending => {}
            },
            Writing::Done => {}
        }

        if reading && controller.poll_ready(cx, &mut waiter).is_ready() {
            if buf.capacity() - buf.len() < MIN_READ_ROOM {
                buf.reserve(READ_SIZE);
            }
            let read = match pin!(io.read_buf(&mut buf)).poll(cx) {
                // A TLS peer that closes without its close_notify ends its direction too, as Node sees it.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(0))
                }
                other => other,
            };
            match read {
                Poll::Ready(Ok(0)) => {
                    reading = false;
                    buf = BytesMut::new();
                    handler.on_upgrade_read_end();
                    progressed = true;
                }
                Poll::Ready(Ok(n)) => {
                    controller.charge(n);
                    handler.on_response_data(buf.split().freeze());
                    progressed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(io_error(&e, "read"))),
                Poll::Pending => {}
            }
        }

        if !reading && matches!(writing, Writing::Done) {
            return Poll::Ready(Ok(()));
        }
        if !progressed {
            return Poll::Pending;
        }
    })
    .await
}

/// Writes `chunks` in order, then flushes (TLS keeps records until then). Ready once all of it is out.
fn poll_write_all(
    io: &mut Upgraded,
    cx: &mut Context<'_>,
    chunks: &mut VecDeque<Bytes>,
) -> Poll<io::Result<()>> {
    while let Some(front) = chunks.front_mut() {
        if front.is_empty() {
            chunks.pop_front();
            continue;
        }
        match Pin::new(&mut *io).poll_write(cx, front) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => front.advance(n),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    Pin::new(io).poll_flush(cx)
}
