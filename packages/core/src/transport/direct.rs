//! The direct path: hyper-util's pooled client over an HTTP connector wrapped in rustls (hyper-rustls) with
//! the agent's own TLS configuration, every connection observed for undici's connection events. Every agent
//! without a proxy takes it.

use super::connections::{ConnectionObserver, Observed};
use super::{tls, OutgoingBody};
use crate::error::CoreError;
use crate::options::AgentOptions;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub(crate) type DirectClient = Client<Observed<HttpsConnector<HttpConnector>>, OutgoingBody>;

/// hyper-util's client with undici's defaults and the agent's options. ALPN is hyper-rustls's to set: it
/// offers exactly the protocols the client is built to speak.
pub(super) fn client(
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
    let tls = tls::client_config(&options.tls, &[])?;
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
