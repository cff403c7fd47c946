//! How requests reach the network.
//!
//! Agents without a proxy drive hyper-util's pooled client directly, over an HTTP connector wrapped in rustls
//! (hyper-rustls) with the agent's own TLS configuration. reqwest is used only when a proxy is configured, for
//! its proxy support (forward proxying, CONNECT tunnels, socks5). The direct path exists because reqwest's
//! per-request work (its redirect layer and `Url` handling re-parse every URL, header merging, boxed futures)
//! cost about as much CPU as hyper itself in profiles, for features an undici-style dispatcher never uses.

pub(crate) mod classify;
pub(crate) mod connections;
pub(crate) mod proxied;
pub(crate) mod proxy;
pub(crate) mod slots;
pub(crate) mod tls;

use crate::body::PullBody;
use crate::error::CoreError;
use crate::options::AgentOptions;
use bytes::Bytes;
use connections::{ConnectionObserver, Observed};
use http_body::{Body, Frame, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

type DirectClient = Client<Observed<HttpsConnector<HttpConnector>>, OutgoingBody>;

/// The agent's way to the network.
#[derive(Clone)]
pub(crate) enum Transport {
    /// hyper-util's pooled client over our connector: every agent without a proxy. Behind an `Arc` so that
    /// the per-request clone is one reference count, not the client's own several.
    Direct(Arc<DirectClient>),
    /// reqwest, for its proxy support.
    Proxied(reqwest::Client),
}

impl Transport {
    /// `observer` hears of every connection the direct path opens and closes (reqwest's proxied pool does
    /// not tell).
    pub(crate) fn build(
        options: &AgentOptions,
        observer: ConnectionObserver,
    ) -> Result<Transport, CoreError> {
        if options.proxy.is_some() {
            return Ok(Transport::Proxied(proxied::build(options)?));
        }
        Ok(Transport::Direct(Arc::new(direct_client(
            options, observer,
        )?)))
    }

    /// Sends `request` and waits for the response head.
    pub(crate) async fn send(
        &self,
        request: http::Request<OutgoingBody>,
    ) -> Result<http::Response<IncomingBody>, CoreError> {
        match self {
            Transport::Direct(client) => {
                let response = client
                    .request(request)
                    .await
                    .map_err(|e| classify::direct_send(&e))?;
                Ok(response.map(IncomingBody::Direct))
            }
            Transport::Proxied(client) => {
                let request = reqwest::Request::try_from(request.map(reqwest::Body::wrap))
                    .map_err(|e| CoreError::invalid_argument(format!("invalid request: {e}")))?;
                let response = client
                    .execute(request)
                    .await
                    .map_err(|e| classify::proxied_send(&e))?;
                let response: http::Response<reqwest::Body> = response.into();
                Ok(response.map(IncomingBody::Proxied))
            }
        }
    }
}

/// hyper-util's client with undici's defaults and the agent's options. ALPN is hyper-rustls's to set: it
/// offers exactly the protocols the client is built to speak.
fn direct_client(
    options: &AgentOptions,
    observer: ConnectionObserver,
) -> Result<DirectClient, CoreError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(options.connect_timeout);
    if let Some(address) = options.local_address {
        http.set_local_address(Some(address));
    }
    let tls = tls::client_config(&options.tls, None, &[])?;
    let mut schemes = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &options.tls.servername {
        // Node sends `servername` as SNI, and checks the certificate against it (see tls.rs).
        let name = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|e| CoreError::invalid_argument(format!("invalid servername: {e}")))?;
        schemes =
            schemes.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let connector = if options.h2c {
        schemes.enable_http2().wrap_connector(http)
    } else if options.allow_h2 {
        schemes.enable_all_versions().wrap_connector(http)
    } else {
        schemes.enable_http1().wrap_connector(http)
    };

    let mut builder = Client::builder(TokioExecutor::new());
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
    Ok(builder.build(Observed::new(connector, observer)))
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

/// A response body from either transport, with its errors already classified.
pub(crate) enum IncomingBody {
    Direct(hyper::body::Incoming),
    Proxied(reqwest::Body),
}

impl Body for IncomingBody {
    type Data = Bytes;
    type Error = CoreError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CoreError>>> {
        match self.get_mut() {
            IncomingBody::Direct(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(|e| classify::body(&e)))),
            IncomingBody::Proxied(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(|e| classify::body(&e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            IncomingBody::Direct(body) => body.is_end_stream(),
            IncomingBody::Proxied(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            IncomingBody::Direct(body) => body.size_hint(),
            IncomingBody::Proxied(body) => body.size_hint(),
        }
    }
}
