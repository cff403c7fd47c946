//! A connection that left HTTP, from whichever path it came: the engine's own connection, or hyper's upgraded
//! one (proxied connections). Either way a plain byte stream.

use super::h1;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(crate) enum Upgraded {
    H1(h1::Upgraded),
    /// hyper's, after a 101 on the proxied path.
    Hyper(TokioIo<hyper::upgrade::Upgraded>),
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upgraded::H1(io) => Pin::new(io).poll_read(cx, buf),
            Upgraded::Hyper(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Upgraded::H1(io) => Pin::new(io).poll_write(cx, data),
            Upgraded::Hyper(io) => Pin::new(io).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upgraded::H1(io) => Pin::new(io).poll_flush(cx),
            Upgraded::Hyper(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upgraded::H1(io) => Pin::new(io).poll_shutdown(cx),
            Upgraded::Hyper(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}
