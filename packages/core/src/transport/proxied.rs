//! The proxied path, taken by agents with a proxy: hyper-util's pooled client over [`ProxyConnector`], which
//! reaches each origin the way undici's `ProxyAgent` does — through a `CONNECT` tunnel for `https:` origins,
//! as forwarded (absolute-form) requests to the proxy for `http:` ones, through SOCKS5 for both, or directly
//! for the origins `NO_PROXY` names.
//!
//! The proxy and the origin are two TLS peers with two configurations, as undici keeps `proxyTls` and
//! `requestTls` apart: the connection to an `https://` proxy is verified with the proxy's settings only and
//! presents no client certificate unless `proxyTls` has one; the TLS session inside a tunnel is the origin's,
//! verified with the origin's settings and presenting the origin's client certificate.

use super::proxy::{Kind, Proxy, Routes};
use super::{client_builder, origin_connector, servername, tcp_connector, tls, OutgoingBody};
use crate::error::CoreError;
use crate::options::{AgentOptions, TlsOptions};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector, HttpInfo};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) type ProxiedClient = Client<ProxyConnector, OutgoingBody>;

/// hyper-util's client with undici's defaults, the agent's options and its proxy; `routes` also tell
/// [`super::Transport`] which requests are forwarded (they carry the proxy's headers).
pub(super) fn client(
    options: &AgentOptions,
    routes: Arc<Routes>,
) -> Result<ProxiedClient, CoreError> {
    let proxy_tls = options
        .proxy
        .as_ref()
        .and_then(|p| p.tls.clone())
        .unwrap_or_else(|| TlsOptions {
            extra_ca: options.tls.extra_ca.clone(),
            ..TlsOptions::default()
        });
    let tcp = tcp_connector(options);
    // To an origin reached directly, or inside a tunnel: the origin's TLS. The tunnel's session offers the
    // protocols the client speaks itself (hyper-rustls does that for the direct connector).
    let origin_config = tls::client_config(&options.tls, &[])?;
    let mut tunnel_config = origin_config.clone();
    tunnel_config.alpn_protocols = super::alpn(options).iter().map(|p| p.to_vec()).collect();
    let servername = servername(options)?;
    let direct = origin_connector(options, origin_config, servername.clone(), tcp.clone());
    // To the proxy itself: the proxy's TLS, HTTP/1.1 (CONNECT and forwarded requests).
    let to_proxy = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls::client_config(&proxy_tls, &[])?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp.clone());
    let connector = ProxyConnector {
        routes,
        direct,
        to_proxy,
        tcp,
        origin_tls: tokio_rustls::TlsConnector::from(Arc::new(tunnel_config)),
        servername,
    };
    Ok(client_builder(options).build(connector))
}

/// Reaches an origin through the proxy its scheme and host call for (see the module documentation).
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    routes: Arc<Routes>,
    /// To origins `NO_PROXY` names, with the origin's TLS.
    direct: HttpsConnector<HttpConnector>,
    /// To the proxy itself, with the proxy's TLS when it is `https://`.
    to_proxy: HttpsConnector<HttpConnector>,
    /// TCP to a SOCKS5 proxy.
    tcp: HttpConnector,
    /// The origin's TLS, inside a tunnel or over SOCKS5.
    origin_tls: tokio_rustls::TlsConnector,
    /// `connect.servername`: SNI and the name the origin's certificate is checked against.
    servername: Option<ServerName<'static>>,
}

impl Service<http::Uri> for ProxyConnector {
    type Response = ProxiedConnection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxiedConnection, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Every inner connector is always ready (they make a new connection per call).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let https = dst.scheme() == Some(&http::uri::Scheme::HTTPS);
            let Some(proxy) = this.routes.proxy_for(&dst).cloned() else {
                let io = this.direct.clone().call(dst).await?;
                return Ok(ProxiedConnection::stream(io, false));
            };
            match proxy.kind {
                Kind::Http if https => {
                    let mut tunnel = Tunnel::new(proxy.uri.clone(), this.to_proxy.clone())
                        .with_headers(proxy.headers.clone());
                    let io = tunnel.call(dst.clone()).await?;
                    let info = http_info(&io.connected());
                    this.tls_to_origin(&dst, io, info).await
                }
                Kind::Http => {
                    let io = this.to_proxy.clone().call(proxy.uri.clone()).await?;
                    Ok(ProxiedConnection::stream(io, true))
                }
                Kind::Socks5 | Kind::Socks5h => {
                    let target = socks_target(&proxy, &dst).await?;
                    let mut socks = SocksV5::new(proxy.uri.clone(), this.tcp.clone());
                    if let Some((user, password)) = proxy.socks_auth.clone() {
                        socks = socks.with_auth(user, password);
                    }
                    let io = socks.call(target).await?;
                    let info = http_info(&io.connected());
                    if https {
                        this.tls_to_origin(&dst, io, info).await
                    } else {
                        Ok(ProxiedConnection {
                            io: Box::new(io),
                            forward: false,
                            h2: false,
                            info,
                        })
                    }
                }
            }
        })
    }
}

impl ProxyConnector {
    /// The origin's TLS session over `io` (a tunnel through the proxy), with the origin's settings.
    async fn tls_to_origin<T>(
        &self,
        dst: &http::Uri,
        io: T,
        info: Option<HttpInfo>,
    ) -> Result<ProxiedConnection, BoxError>
    where
        T: Read + Write + Unpin + Send + 'static,
    {
        let name = match &self.servername {
            Some(name) => name.clone(),
            None => {
                let host = dst.host().ok_or("no host in the URL")?;
                ServerName::try_from(host.trim_matches(['[', ']']).to_string())?
            }
        };
        let tls = self.origin_tls.connect(name, TokioIo::new(io)).await?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(ProxiedConnection {
            io: Box::new(TokioIo::new(tls)),
            forward: false,
            h2,
            info,
        })
    }
}

/// Where a SOCKS5 proxy is asked to connect: `socks5://` resolves the origin's name here (as curl
/// does), `socks5h://` lets the proxy resolve it.
async fn socks_target(proxy: &Proxy, dst: &http::Uri) -> Result<http::Uri, BoxError> {
    if proxy.kind == Kind::Socks5h {
        return Ok(dst.clone());
    }
    let host = dst.host().ok_or("no host in the URL")?;
    let https = dst.scheme() == Some(&http::uri::Scheme::HTTPS);
    let port = dst.port_u16().unwrap_or(if https { 443 } else { 80 });
    let address = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
        .await?
        .next()
        .ok_or("dns error: no address")?;
    let scheme = if https { "https" } else { "http" };
    Ok(format!("{scheme}://{address}").parse()?)
}

fn http_info(connected: &Connected) -> Option<HttpInfo> {
    let mut extras = http::Extensions::new();
    connected.get_extras(&mut extras);
    extras.get::<HttpInfo>().cloned()
}

/// What a connection of the proxied path is made of, whichever way it was reached.
trait Io: Read + Write + Send + Unpin {}

impl<T: Read + Write + Send + Unpin> Io for T {}

/// A connection made by [`ProxyConnector`].
pub(crate) struct ProxiedConnection {
    io: Box<dyn Io>,
    /// Connected to the proxy for forwarded requests: hyper writes them in absolute form.
    forward: bool,
    /// ALPN chose HTTP/2 with the origin.
    h2: bool,
    /// The TCP connection's addresses (the proxy's, when there is one).
    info: Option<HttpInfo>,
}

impl ProxiedConnection {
    fn stream(io: MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>, forward: bool) -> Self {
        let connected = io.connected();
        ProxiedConnection {
            h2: connected.is_negotiated_h2(),
            info: http_info(&connected),
            io: Box::new(io),
            forward,
        }
    }
}

impl Connection for ProxiedConnection {
    fn connected(&self) -> Connected {
        let mut connected = Connected::new().proxy(self.forward);
        if self.h2 {
            connected = connected.negotiated_h2();
        }
        match &self.info {
            Some(info) => connected.extra(info.clone()),
            None => connected,
        }
    }
}

impl Read for ProxiedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for ProxiedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}
