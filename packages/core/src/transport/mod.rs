//! How requests reach the network: the [`Transport`] an agent sends through, and the request and response
//! bodies it carries.
//!
//! Three paths. Plain HTTP/1.1 — `http:` origins, and `https:` ones when HTTP/2 is not in play — goes through
//! the core's own engine (`h1/`): the request's task drives its connection, header names keep their case, and
//! no task or channel sits between a request and its socket (hyper-util's per-request hand-offs between tasks
//! cost more CPU than the exchange itself in profiles). HTTP/2 (`allowH2` on `https:` origins, `h2c`) takes
//! the direct path (`direct.rs`: hyper-util's pooled client over our rustls connector). Agents with a proxy
//! take the proxied path (`proxied.rs`: the same client over a connector that reaches origins through the
//! proxy — CONNECT tunnels, forwarded requests, SOCKS5 — with the proxy's TLS kept apart from the origin's).
//!
//! Beside them: TLS as Node configures it (`tls.rs`), proxies as undici configures them (`proxy.rs`), the
//! connection events undici reports (`connections.rs`), the per-origin request slots that stand in for
//! undici's `connections` cap (`slots.rs`), and the classification of transport failures into undici's errors
//! (`classify.rs`).

pub(crate) mod classify;
pub(crate) mod connections;
mod direct;
pub(crate) mod h1;
mod proxied;
pub(crate) mod proxy;
pub(crate) mod slots;
pub(crate) mod tls;
mod upgraded;

use crate::body::PullBody;
use crate::controller::Gate;
use crate::error::CoreError;
use crate::handler::RawHeaders;
use crate::options::AgentOptions;
use crate::upgrade::Switch;
use bytes::Bytes;
use connections::ConnectionObserver;
pub(crate) use h1::BodyPiece;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
pub(crate) use upgraded::Upgraded;

/// The agent's way to the network.
#[derive(Clone)]
pub(crate) struct Transport {
    /// The HTTP/1.1 engine, for the origins it serves (see [`Transport::engine_for`]).
    h1: Option<Arc<h1::Http1>>,
    /// Whether `https:` origins go through the engine too (HTTP/2 is not offered to them).
    h1_https: bool,
    other: Other,
}

/// Every path but the engine's.
#[derive(Clone)]
enum Other {
    /// hyper-util's pooled client over our connector (HTTP/2). Behind an `Arc` so that the per-request
    /// clone is one reference count, not the client's own several.
    Direct(Arc<direct::DirectClient>),
    /// hyper-util's pooled client over the proxy connector, and the routes that say which requests are
    /// forwarded to the proxy (they carry its headers).
    Proxied(Arc<proxied::ProxiedClient>, Arc<proxy::Routes>),
}

/// One attempt of a request.
pub(crate) struct Outgoing<'a> {
    pub method: &'a Method,
    pub uri: &'a http::Uri,
    /// `scheme://authority`.
    pub origin: &'a str,
    /// Names in the caller's case.
    pub headers: &'a [(Bytes, Bytes)],
    pub body: OutgoingBody,
    /// How the request asks to leave HTTP, if it does.
    pub switch: Option<&'a Switch>,
    /// A gated request's gate: passed once a connection is assigned, before anything is written.
    pub gate: Option<Gate<'a>>,
}

/// A response head from any path, and its body.
pub(crate) struct Response {
    pub status: u16,
    /// The reason phrase as sent (HTTP/1.1); `None` when the path does not tell.
    pub reason: Option<Bytes>,
    pub version: http::Version,
    pub headers: RawHeaders,
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub body: IncomingBody,
}

impl Transport {
    /// `observer` hears of every connection the engine and the direct path open and close (the proxied path
    /// does not report its connections).
    pub(crate) fn build(
        options: &AgentOptions,
        observer: ConnectionObserver,
    ) -> Result<Transport, CoreError> {
        if let Some(proxy) = &options.proxy {
            let routes = Arc::new(proxy::Routes::new(proxy)?);
            let client = proxied::client(options, Arc::clone(&routes))?;
            return Ok(Transport {
                h1: None,
                h1_https: false,
                other: Other::Proxied(Arc::new(client), routes),
            });
        }
        let h1 = if options.h2c {
            None
        } else {
            Some(Arc::new(h1::Http1::new(options, Arc::clone(&observer))?))
        };
        Ok(Transport {
            h1,
            h1_https: !options.allow_h2,
            other: Other::Direct(Arc::new(direct::client(options, observer)?)),
        })
    }

    /// The engine serves `http:` origins, and `https:` ones when HTTP/2 is not offered to them. With `allowH2`,
    /// a request that switches protocols takes the engine too (its TLS offers only `http/1.1`): undici's
    /// upgrade over a connection that negotiated HTTP/1.1, the one every WebSocket server speaks.
    fn engine_for(&self, uri: &http::Uri, switches: bool) -> Option<&h1::Http1> {
        let h1 = self.h1.as_deref()?;
        match uri.scheme_str() {
            Some("http") => Some(h1),
            Some("https") if self.h1_https || switches => Some(h1),
            _ => None,
        }
    }

    /// Sends a request and waits for the response head.
    pub(crate) async fn send(&self, request: Outgoing<'_>) -> Result<Response, CoreError> {
        match self.engine_for(request.uri, request.switch.is_some()) {
            Some(h1) => send_h1(h1, request).await,
            // Boxed: the other paths' futures are large, and would otherwise make every request's future
            // (moved several times per request) as large.
            None => {
                // HTTP/2 and proxies run on the runtime only.
                crate::inline::leave().await;
                Box::pin(self.send_other(request)).await
            }
        }
    }

    /// Sends a request through hyper-util (HTTP/2, proxies).
    async fn send_other(&self, request: Outgoing<'_>) -> Result<Response, CoreError> {
        // hyper-util's pool takes its connection inside `request()`, where no step can be put between getting it
        // and writing on it: a gated request passes its gate before it is handed over (the TypeScript layer
        // gates only requests that take the engine).
        if let Some(gate) = request.gate {
            gate.pass().await?;
        }
        // Through a proxy, an upgrade is hyper's: it asks for it with the headers undici writes and hands over
        // the connection after a 101. CONNECT (whose every answer switches, as undici has it) and h2c are not.
        let upgrading = match (request.switch, &self.other) {
            (None, _) => None,
            (Some(Switch::Protocol(protocol)), Other::Proxied(..)) => Some(protocol.as_str()),
            (Some(_), _) => {
                return Err(CoreError::new(
                    crate::error::ErrorKind::NotSupported,
                    "CONNECT through a proxy, and upgrades over h2c, are not supported",
                ))
            }
        };
        let mut headers = HeaderMap::with_capacity(request.headers.len() + 2);
        if let Some(protocol) = upgrading {
            let protocol = HeaderValue::from_str(protocol)
                .map_err(|e| CoreError::invalid_argument(format!("invalid upgrade: {e}")))?;
            headers.append(
                http::header::CONNECTION,
                HeaderValue::from_static("upgrade"),
            );
            headers.append(http::header::UPGRADE, protocol);
        }
        for (name, value) in request.headers {
            let name = HeaderName::from_bytes(name)
                .map_err(|e| CoreError::invalid_argument(format!("invalid header name: {e}")))?;
            let value = HeaderValue::from_maybe_shared(value.clone())
                .map_err(|e| CoreError::invalid_argument(format!("invalid header value: {e}")))?;
            headers.append(name, value);
        }
        let mut built = http::Request::new(request.body);
        *built.method_mut() = request.method.clone();
        *built.uri_mut() = request.uri.clone();
        *built.headers_mut() = headers;
        let (parts, body) = match &self.other {
            Other::Direct(client) => {
                let response = client
                    .request(built)
                    .await
                    .map_err(|e| classify::direct_send(&e))?;
                let (parts, body) = response.into_parts();
                (parts, IncomingBody::Direct(body))
            }
            Other::Proxied(client, routes) => {
                if built.uri().scheme() == Some(&http::uri::Scheme::HTTP) {
                    let forwarded = routes
                        .proxy_for(built.uri())
                        .filter(|proxy| proxy.kind == proxy::Kind::Http);
                    if let Some(proxy) = forwarded {
                        // A forwarded request is the proxy's to read: its credentials and headers go with it.
                        for (name, value) in &proxy.headers {
                            built.headers_mut().append(name, value.clone());
                        }
                    }
                }
                let mut response = client
                    .request(built)
                    .await
                    .map_err(|e| classify::direct_send(&e))?;
                if upgrading.is_some() && response.status() == http::StatusCode::SWITCHING_PROTOCOLS
                {
                    let io = hyper::upgrade::on(&mut response)
                        .await
                        .map_err(|e| classify::body(&e))?;
                    let (parts, _) = response.into_parts();
                    (parts, IncomingBody::Upgraded(Box::new(TokioIo::new(io))))
                } else {
                    let (parts, body) = response.into_parts();
                    (parts, IncomingBody::Direct(body))
                }
            }
        };
        let reason = parts
            .extensions
            .get::<hyper::ext::ReasonPhrase>()
            .map(|reason| Bytes::copy_from_slice(reason.as_bytes()));
        let connection = parts
            .extensions
            .get::<hyper_util::client::legacy::connect::HttpInfo>();
        Ok(Response {
            status: parts.status.as_u16(),
            reason,
            version: parts.version,
            headers: RawHeaders::from_map(&parts.headers),
            remote: connection.map(|info| info.remote_addr()),
            local: connection.map(|info| info.local_addr()),
            body,
        })
    }
}

async fn send_h1(h1: &h1::Http1, request: Outgoing<'_>) -> Result<Response, CoreError> {
    let target = h1::Target::of(request.uri)
        .ok_or_else(|| CoreError::invalid_argument("invalid url: an http(s) URL is required"))?;
    let body = match request.body {
        OutgoingBody::Empty | OutgoingBody::Full(None) => h1::RequestBody::None,
        OutgoingBody::Full(Some(bytes)) => h1::RequestBody::Bytes(bytes),
        OutgoingBody::Pull(pull) => h1::RequestBody::Pull(pull),
    };
    let (upgrade, request_target) = match request.switch {
        Some(Switch::Protocol(protocol)) => (Some(protocol.as_str()), None),
        Some(Switch::Connect(target)) => (None, Some(target.as_str())),
        None => (None, None),
    };
    let response = h1
        .send(
            request.origin,
            &target,
            h1::Request {
                method: request.method.as_str(),
                target: request_target
                    .unwrap_or_else(|| request.uri.path_and_query().map_or("/", |p| p.as_str())),
                authority: request.uri.authority().map_or("", |a| a.as_str()),
                headers: request.headers,
                body,
                upgrade,
                gate: request.gate,
            },
        )
        .await?;
    let body = if response.switched {
        match response.body.into_upgraded() {
            Some(io) => IncomingBody::Upgraded(Box::new(io)),
            None => {
                return Err(CoreError::new(
                    crate::error::ErrorKind::Internal,
                    "a switched response without its connection",
                ))
            }
        }
    } else {
        IncomingBody::H1(response.body)
    };
    Ok(Response {
        status: response.status,
        reason: Some(response.reason),
        version: response.version,
        headers: response.headers,
        remote: Some(response.remote),
        local: response.local,
        body,
    })
}

/// The ALPN protocols an agent's client offers to origins, most preferred first.
fn alpn(options: &AgentOptions) -> &'static [&'static [u8]] {
    if options.h2c {
        &[b"h2"]
    } else if options.allow_h2 {
        &[b"h2", b"http/1.1"]
    } else {
        &[b"http/1.1"]
    }
}

/// TCP connections as undici makes them: no Nagle, the agent's connect timeout, local address and happy
/// eyeballs; any scheme (TLS is layered on top).
fn tcp_connector(options: &AgentOptions) -> HttpConnector {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(options.connect_timeout);
    tcp.set_happy_eyeballs_timeout(options.auto_select_family);
    if let Some(address) = options.local_address {
        tcp.set_local_address(Some(address));
    }
    tcp
}

/// `connect.servername`: the SNI sent to origins and the name their certificates are checked against.
fn servername(options: &AgentOptions) -> Result<Option<ServerName<'static>>, CoreError> {
    options
        .tls
        .servername
        .as_ref()
        .map(|name| {
            ServerName::try_from(name.clone())
                .map_err(|e| CoreError::invalid_argument(format!("invalid servername: {e}")))
        })
        .transpose()
}

/// The connector to origins over `tcp`: TLS with `config` for `https:` (offering the protocols the agent
/// speaks through ALPN, which hyper-rustls sets), cleartext for `http:`.
fn origin_connector(
    options: &AgentOptions,
    config: rustls::ClientConfig,
    servername: Option<ServerName<'static>>,
    tcp: HttpConnector,
) -> HttpsConnector<HttpConnector> {
    let mut schemes = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http();
    if let Some(name) = servername {
        schemes =
            schemes.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    if options.h2c {
        schemes.enable_http2().wrap_connector(tcp)
    } else if options.allow_h2 {
        schemes.enable_all_versions().wrap_connector(tcp)
    } else {
        schemes.enable_http1().wrap_connector(tcp)
    }
}

/// hyper-util's pooled client builder with undici's defaults and the agent's pool and HTTP/2 settings.
fn client_builder(options: &AgentOptions) -> hyper_util::client::legacy::Builder {
    let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(options.keep_alive_timeout)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new());
    if let Some(limit) = options.connections {
        builder.pool_max_idle_per_host(limit);
    }
    if options.h2c {
        builder.http2_only(true);
    }
    if options.h2c || options.allow_h2 {
        builder
            .http2_max_header_list_size(u32::try_from(options.max_header_size).unwrap_or(u32::MAX));
    }
    builder
}

/// A request body as hyper sends it: nothing, bytes known up front, or chunks pulled from the caller.
pub(crate) enum OutgoingBody {
    Empty,
    Full(Option<Bytes>),
    Pull(PullBody),
}

impl Body for OutgoingBody {
    type Data = Bytes;
    type Error = CoreError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CoreError>>> {
        match self.get_mut() {
            OutgoingBody::Empty => Poll::Ready(None),
            OutgoingBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            OutgoingBody::Pull(pull) => Pin::new(pull).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OutgoingBody::Empty | OutgoingBody::Full(None) => true,
            OutgoingBody::Full(Some(_)) => false,
            OutgoingBody::Pull(pull) => pull.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutgoingBody::Empty | OutgoingBody::Full(None) => SizeHint::with_exact(0),
            OutgoingBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            OutgoingBody::Pull(pull) => pull.size_hint(),
        }
    }
}

/// A response body from any path, with its errors already classified; or, when the response switched
/// protocols, the connection itself.
pub(crate) enum IncomingBody {
    H1(h1::ResponseBody),
    /// hyper's, on the direct and proxied paths.
    Direct(hyper::body::Incoming),
    Upgraded(Upgraded),
}

impl IncomingBody {
    /// The next piece of the body: data, or its end with the trailers. Nothing is to be asked after the
    /// end or an error.
    pub(crate) async fn next(&mut self) -> Result<BodyPiece, CoreError> {
        let mut trailers = RawHeaders::new();
        loop {
            let frame = match self {
                IncomingBody::H1(body) => {
                    return body
                        .next()
                        .await
                        .unwrap_or(Ok(BodyPiece::End(RawHeaders::new())))
                }
                IncomingBody::Direct(body) => body
                    .frame()
                    .await
                    .map(|frame| frame.map_err(|e| classify::body(&e))),
                // No HTTP body: the connection is read as a byte stream (`tunnel.rs`).
                IncomingBody::Upgraded(_) => None,
            };
            let frame: Frame<Bytes> = match frame {
                None => return Ok(BodyPiece::End(trailers)),
                Some(frame) => frame?,
            };
            match frame.into_data() {
                Ok(data) if data.is_empty() => {}
                Ok(data) => return Ok(BodyPiece::Data(data)),
                Err(frame) => {
                    if let Ok(map) = frame.into_trailers() {
                        trailers = RawHeaders::from_map(&map);
                    }
                }
            }
        }
    }
}
