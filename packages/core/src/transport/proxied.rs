//! The proxied path: reqwest, for its proxy support (forward proxying, `CONNECT` tunnels, SOCKS5), taken by
//! agents with a proxy. The client is built from undici's options: timeouts, pool, protocol (HTTP/1.1, HTTP/2
//! by ALPN, h2c by prior knowledge), TLS, local address and the proxy itself.

use crate::error::CoreError;
use crate::options::{AgentOptions, TlsOptions};
use crate::transport::{proxy, tls};

/// ALPN protocol identifiers, most preferred first.
const ALPN_H1: &[&[u8]] = &[b"http/1.1"];
const ALPN_H2_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const ALPN_H2: &[&[u8]] = &[b"h2"];

/// A client with undici `Agent` semantics: no redirects followed, no bodies decoded, no proxy taken from the
/// environment (`EnvHttpProxyAgent` reads it on the JavaScript side, as undici does).
pub(super) fn client(options: &AgentOptions) -> Result<reqwest::Client, CoreError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(options.keep_alive_timeout);
    if let Some(timeout) = options.connect_timeout {
        builder = builder.connect_timeout(timeout);
    }
    let alpn = if options.h2c {
        builder = builder.http2_prior_knowledge();
        ALPN_H2
    } else if options.allow_h2 {
        ALPN_H2_H1
    } else {
        builder = builder.http1_only();
        ALPN_H1
    };
    if options.h2c || options.allow_h2 {
        builder = builder
            .http2_max_header_list_size(u32::try_from(options.max_header_size).unwrap_or(u32::MAX));
    }
    if let Some(limit) = options.connections {
        builder = builder.pool_max_idle_per_host(limit);
    }
    if let Some(address) = options.local_address {
        builder = builder.local_address(address);
    }

    let proxy_tls = match &options.proxy {
        Some(proxy_options) => {
            builder = builder.proxy(proxy::build(proxy_options)?);
            proxy::tls_proxy_host(proxy_options).map(|host| {
                let tls = proxy_options.tls.clone().unwrap_or_else(|| TlsOptions {
                    extra_ca: options.tls.extra_ca.clone(),
                    ..TlsOptions::default()
                });
                (host, tls)
            })
        }
        None => None,
    };
    let config = tls::client_config(
        &options.tls,
        proxy_tls.as_ref().map(|(host, tls)| (host.as_str(), tls)),
        alpn,
    )?;
    builder = builder.use_preconfigured_tls(config);

    builder
        .build()
        .map_err(|e| CoreError::invalid_argument(format!("invalid agent options: {e}")))
}
