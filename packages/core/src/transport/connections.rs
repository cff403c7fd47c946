//! Connections as undici reports them: `connect` once a connection is established (TCP and TLS), `disconnect`
//! once it is gone, `connectionError` when establishing one fails. The agent's connector is wrapped so that
//! each connection announces its opening and, when the pool drops it, its end.

use crate::error::CoreError;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What happened to a connection of `origin` (`scheme://host[:port]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// A connection is being made (undici's `beforeConnect`).
    Connecting {
        origin: String,
    },
    /// The connection is up: its peer address (when the connector tells) and whether ALPN chose HTTP/2.
    Connected {
        origin: String,
        remote: Option<std::net::SocketAddr>,
        h2: bool,
    },
    /// The connection is gone; `upgraded`: it left the agent because it switched protocols (it lives on
    /// as the upgraded request's connection), which undici reports as `InformationalError('upgrade')`.
    Disconnected {
        origin: String,
        upgraded: bool,
    },
    Failed {
        origin: String,
        error: CoreError,
    },
}

/// Receives the connection events of one agent. Called from tokio worker threads.
pub(crate) type ConnectionObserver = Arc<dyn Fn(ConnectionEvent) + Send + Sync>;

/// A connector that reports what becomes of the connections it makes.
#[derive(Clone)]
pub(crate) struct Observed<C> {
    inner: C,
    observer: ConnectionObserver,
}

impl<C> Observed<C> {
    pub(crate) fn new(inner: C, observer: ConnectionObserver) -> Self {
        Observed { inner, observer }
    }
}

/// The origin key of the connection's destination (the pool hands the connector `scheme://authority/`).
fn origin_of(uri: &http::Uri) -> String {
    crate::request::origin_of(&uri.to_string()).to_string()
}

impl<C> tower_service::Service<http::Uri> for Observed<C>
where
    C: tower_service::Service<http::Uri> + Send,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
    C::Response: Connection + Send,
{
    type Response = ObservedConnection<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let origin = origin_of(&uri);
        let observer = Arc::clone(&self.observer);
        observer(ConnectionEvent::Connecting {
            origin: origin.clone(),
        });
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            match connecting.await {
                Ok(io) => {
                    let connected = io.connected();
                    let mut extras = http::Extensions::new();
                    connected.get_extras(&mut extras);
                    observer(ConnectionEvent::Connected {
                        origin: origin.clone(),
                        remote: extras
                            .get::<hyper_util::client::legacy::connect::HttpInfo>()
                            .map(|info| info.remote_addr()),
                        h2: connected.is_negotiated_h2(),
                    });
                    Ok(ObservedConnection {
                        io,
                        origin,
                        observer,
                    })
                }
                Err(error) => {
                    let error: BoxError = error.into();
                    observer(ConnectionEvent::Failed {
                        origin,
                        error: super::classify::connect(error.as_ref()),
                    });
                    Err(error)
                }
            }
        })
    }
}

/// A connection that reports its end when the pool lets go of it.
pub(crate) struct ObservedConnection<T> {
    io: T,
    origin: String,
    observer: ConnectionObserver,
}

impl<T> Drop for ObservedConnection<T> {
    fn drop(&mut self) {
        (self.observer)(ConnectionEvent::Disconnected {
            upgraded: false,
            origin: std::mem::take(&mut self.origin),
        });
    }
}

impl<T: Connection> Connection for ObservedConnection<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: Read + Unpin> Read for ObservedConnection<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for ObservedConnection<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn origin_keeps_scheme_host_and_port() {
        assert_eq!(
            origin_of(&"https://example.com:8443/x".parse().unwrap()),
            "https://example.com:8443"
        );
        assert_eq!(
            origin_of(&"http://127.0.0.1/".parse().unwrap()),
            "http://127.0.0.1"
        );
    }
}
