//! Request bodies of unknown size, pulled from the caller one chunk at a time.
//!
//! hyper polls the body when it can write; only then is the caller asked (through `demand`) for the next chunk.
//! So at most one chunk is ever in flight, neither side blocks a thread, and a slow upload never buffers.

use crate::error::{CoreError, ErrorKind};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// What the caller answers a demand with.
pub enum BodyChunk {
    Data(Bytes),
    End,
    Error(CoreError),
}

/// The caller's side: answers each demand with one [`BodyChunk`].
#[derive(Clone)]
pub struct BodySender {
    tx: mpsc::UnboundedSender<BodyChunk>,
}

impl BodySender {
    /// Hands over the next chunk; ignored when the request is already gone.
    pub fn send(&self, chunk: BodyChunk) {
        let _ = self.tx.send(chunk);
    }
}

/// The core's side of a pulled body.
pub struct BodyPull {
    rx: mpsc::UnboundedReceiver<BodyChunk>,
    demand: Box<dyn FnMut() + Send + Sync>,
    length: Option<u64>,
}

impl BodyPull {
    /// A pulled body of `length` bytes (or unknown), and the sender that feeds it. `demand` is called each time
    /// the core wants the next chunk; the caller answers through the sender.
    pub fn channel(
        length: Option<u64>,
        demand: impl FnMut() + Send + Sync + 'static,
    ) -> (BodySender, BodyPull) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            BodySender { tx },
            BodyPull {
                rx,
                demand: Box::new(demand),
                length,
            },
        )
    }

    /// The body hyper polls; `counter` (the origin's sent-bytes metric) counts each chunk as it is taken.
    pub(crate) fn into_body(self, counter: Option<Arc<AtomicU64>>) -> PullBody {
        PullBody {
            pull: self,
            asked: false,
            sent: 0,
            done: false,
            counter,
        }
    }
}

pub(crate) struct PullBody {
    pull: BodyPull,
    asked: bool,
    sent: u64,
    done: bool,
    counter: Option<Arc<AtomicU64>>,
}

impl PullBody {
    fn mismatch() -> CoreError {
        CoreError::new(
            ErrorKind::RequestContentLengthMismatch,
            "Request body length does not match content-length header",
        )
    }
}

impl Body for PullBody {
    type Data = Bytes;
    type Error = CoreError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CoreError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if !this.asked {
                this.asked = true;
                (this.pull.demand)();
            }
            match this.pull.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(BodyChunk::Data(data))) => {
                    this.asked = false;
                    if data.is_empty() {
                        continue;
                    }
                    this.sent += data.len() as u64;
                    if let Some(counter) = &this.counter {
                        counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    if this.pull.length.is_some_and(|len| this.sent > len) {
                        this.done = true;
                        return Poll::Ready(Some(Err(Self::mismatch())));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(BodyChunk::End)) => {
                    this.done = true;
                    if this.pull.length.is_some_and(|len| this.sent != len) {
                        return Poll::Ready(Some(Err(Self::mismatch())));
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(BodyChunk::Error(err))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(CoreError::new(
                        ErrorKind::Aborted,
                        "request body source went away",
                    ))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.pull.length {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}
