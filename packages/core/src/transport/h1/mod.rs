//! The HTTP/1.1 engine: the request's own task takes an idle connection (or opens one), writes the request,
//! reads the response and gives the connection back — no connection task, no channel between them.
//!
//! - `head`: response heads (httparse), their framing, llhttp's verdicts on malformed ones;
//! - `body`: response body framing (length, chunked, until close);
//! - `write`: request heads as undici writes them;
//! - `conn`: one connection and the steps of an exchange on it;
//! - `pool`: idle connections per origin and keep-alive;
//! - `connect`: TCP and TLS;
//! - `errors`: failures worded as undici words them.

mod body;
mod conn;
mod connect;
mod errors;
#[cfg(test)]
mod fuzz;
mod head;
mod pool;
mod write;

use crate::controller::Gate;
use crate::error::{CoreError, ErrorKind};
use crate::handler::RawHeaders;
use crate::inline;
use crate::options::AgentOptions;
use crate::transport::connections::{ConnectionEvent, ConnectionObserver};
use body::BodyDecoder;
use bytes::{Bytes, BytesMut};
use conn::Connection;
pub(crate) use conn::{BodyPiece, RequestBody, Upgraded};
use connect::Connector;
pub(crate) use connect::Target;
pub(crate) use errors::io_error;
use head::{Framing, RequestKind};
use pool::{KeepAlive, Pool};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
pub(crate) use write::{is_field_value, is_token};

/// The HTTP/1.1 side of an agent: its connector and its idle connections.
pub(crate) struct Http1 {
    connector: Connector,
    pool: Arc<Pool>,
    observer: ConnectionObserver,
    keep_alive: KeepAlive,
    max_header_size: usize,
}

/// One request as the engine sends it.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// Path and query, as sent on the request line.
    pub target: &'a str,
    /// `host[:port]` for the `host` header when the caller gave none.
    pub authority: &'a str,
    /// The caller's headers, names in the caller's case.
    pub headers: &'a [(Bytes, Bytes)],
    pub body: RequestBody,
    /// The protocol a request asks to switch to (the `upgrade` header); `CONNECT` needs none.
    pub upgrade: Option<&'a str>,
    /// A gated request's gate, passed once the connection is assigned and before anything is written.
    pub gate: Option<Gate<'a>>,
}

/// A response head and what is needed to read its body.
pub(crate) struct Response {
    /// The connection switched protocols: the body is no HTTP body but the connection itself
    /// ([`ResponseBody::into_upgraded`]).
    pub switched: bool,
    pub status: u16,
    pub reason: Bytes,
    pub version: http::Version,
    pub headers: RawHeaders,
    pub remote: SocketAddr,
    pub local: Option<SocketAddr>,
    pub body: ResponseBody,
}

impl Http1 {
    pub(crate) fn new(
        options: &AgentOptions,
        observer: ConnectionObserver,
    ) -> Result<Http1, CoreError> {
        Ok(Http1 {
            connector: Connector::new(options)?,
            pool: Arc::default(),
            observer,
            keep_alive: KeepAlive {
                timeout: options.keep_alive_timeout,
                max_timeout: options.keep_alive_max_timeout,
                threshold: options.keep_alive_timeout_threshold,
            },
            max_header_size: options.max_header_size,
        })
    }

    /// Sends `request` to `origin` (`scheme://authority`, the pool's key) and reads the response head.
    pub(crate) async fn send(
        &self,
        origin: &str,
        target: &Target,
        request: Request<'_>,
    ) -> Result<Response, CoreError> {
        let mut connection = match self.pool.checkout(origin) {
            Some(connection) => connection,
            None => {
                // Opening a connection is the runtime's work, not the dispatching thread's.
                inline::leave().await;
                // Boxed: opening a connection (resolution, TCP, TLS) is most of this future's size, and is
                // rare; inline, every request's future would carry (and move) its 1.5 KiB.
                Box::pin(self.open(origin, target)).await?
            }
        };
        if let Some(gate) = request.gate {
            // Aborted here, the connection closes unwritten (as undici destroys the socket of a request
            // aborted in `onConnect`).
            gate.pass().await?;
        }
        if !connection.light(&request.body) || request.upgrade.is_some() {
            // Only a small request on a plain TCP connection is written from the dispatching thread.
            inline::leave().await;
        }
        let reused = connection.served > 0;
        let body_framing = match &request.body {
            RequestBody::None => write::BodyFraming::None,
            RequestBody::Bytes(bytes) => write::BodyFraming::Length(bytes.len() as u64),
            RequestBody::Pull(body) => match http_body::Body::size_hint(body).exact() {
                Some(n) => write::BodyFraming::Length(n),
                None => write::BodyFraming::Chunked,
            },
        };
        let mut head = BytesMut::new();
        let written = write::encode_head(
            &mut head,
            request.method,
            request.target,
            request.authority,
            request.headers,
            body_framing,
            request.upgrade,
        );
        let kind = match request.method {
            "CONNECT" => RequestKind::Connect,
            _ if request.upgrade.is_some() => RequestKind::Upgrade,
            "HEAD" => RequestKind::Head,
            _ => RequestKind::Plain,
        };
        let mut close_after = written.close_after;
        let read = match connection.write_request(head, request.body).await {
            Ok(()) => connection.read_head(kind, self.max_header_size).await,
            Err(failure) if failure.on_socket => {
                // The server may have answered (413, 401...) and closed before taking the whole body.
                close_after = true;
                match connection.read_head(kind, self.max_header_size).await {
                    Ok(head) => Ok(head),
                    Err((_, received)) => {
                        return Err(
                            connection.annotate(unprocessed_if(reused && !received, failure.error))
                        )
                    }
                }
            }
            Err(failure) => return Err(failure.error),
        };
        let head = read.map_err(|(error, received)| {
            connection.annotate(unprocessed_if(
                reused && !received && idempotent(request.method),
                error,
            ))
        })?;
        let idle_for = if head.keep_alive && !close_after {
            self.keep_alive.idle_for(head.keep_alive_hint)
        } else {
            None
        };
        let trailer_budget = self.max_header_size.saturating_sub(head.size);
        let switched = head.framing == Framing::Switched;
        Ok(Response {
            switched,
            status: head.status,
            reason: head.reason,
            version: head.version,
            headers: head.headers,
            remote: connection.remote,
            local: connection.local,
            body: ResponseBody {
                decoder: BodyDecoder::new(head.framing, trailer_budget),
                keep_alive: head.keep_alive,
                idle_for,
                connection: Some(connection),
                pool: Arc::clone(&self.pool),
            },
        })
    }

    async fn open(&self, origin: &str, target: &Target) -> Result<Box<Connection>, CoreError> {
        (self.observer)(ConnectionEvent::Connecting {
            origin: origin.to_string(),
        });
        match self.connector.connect(target).await {
            Ok(opened) => {
                (self.observer)(ConnectionEvent::Connected {
                    origin: origin.to_string(),
                    remote: Some(opened.remote),
                    h2: false,
                });
                Ok(Box::new(Connection::new(
                    opened.stream,
                    opened.remote,
                    opened.local,
                    origin.to_string(),
                    Arc::clone(&self.observer),
                )))
            }
            Err(error) => {
                (self.observer)(ConnectionEvent::Failed {
                    origin: origin.to_string(),
                    error: error.clone(),
                });
                Err(error)
            }
        }
    }
}

/// Methods the server may be assumed not to have acted on when a reused connection closed before any
/// byte of the response came back (RFC 9110's idempotent methods).
fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

/// A failure on a connection the server had closed while it was idle: the request never reached it and
/// is sent again on a new connection.
fn unprocessed_if(unprocessed: bool, error: CoreError) -> CoreError {
    if unprocessed {
        CoreError {
            kind: ErrorKind::Unprocessed,
            ..error
        }
    } else {
        error
    }
}

/// The body of a response, read from its connection by the request's task; the connection goes back to
/// the pool once the body has ended (when the server keeps it), and is closed if the body is dropped early.
pub(crate) struct ResponseBody {
    /// Boxed: it moves between the pool and requests, and the box is made once per connection.
    connection: Option<Box<Connection>>,
    decoder: BodyDecoder,
    keep_alive: bool,
    /// How long the connection may idle in the pool afterwards; `None`: close it.
    idle_for: Option<Duration>,
    pool: Arc<Pool>,
}

impl ResponseBody {
    /// The connection of a response that switched protocols, taken out of the agent for good.
    pub(crate) fn into_upgraded(mut self) -> Option<Upgraded> {
        self.connection.take().map(Connection::into_upgraded)
    }

    /// The next piece of the body; `None` after its end or an error.
    pub(crate) async fn next(&mut self) -> Option<Result<BodyPiece, CoreError>> {
        let connection = self.connection.as_mut()?;
        match connection
            .read_body(&mut self.decoder, self.keep_alive)
            .await
        {
            Ok(BodyPiece::End(trailers)) => {
                let mut connection = self.connection.take()?;
                connection.served += 1;
                if let Some(idle) = self.idle_for {
                    self.pool.checkin(connection, idle);
                }
                Some(Ok(BodyPiece::End(trailers)))
            }
            Ok(data) => Some(Ok(data)),
            Err(error) => {
                let error = connection.annotate(error);
                self.connection = None;
                Some(Err(error))
            }
        }
    }
}
