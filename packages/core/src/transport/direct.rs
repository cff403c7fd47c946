//! The direct path: hyper-util's pooled client over an HTTP connector wrapped in rustls (hyper-rustls) with
//! the agent's own TLS configuration, every connection observed for undici's connection events. Every agent
//! without a proxy takes it.

use super::connections::{ConnectionObserver, Observed};
use super::{client_builder, origin_connector, servername, tcp_connector, tls, OutgoingBody};
use crate::error::CoreError;
use crate::options::AgentOptions;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

pub(crate) type DirectClient = Client<Observed<HttpsConnector<HttpConnector>>, OutgoingBody>;

/// hyper-util's client with undici's defaults and the agent's options. ALPN is hyper-rustls's to set: it
/// offers exactly the protocols the client is built to speak.
pub(super) fn client(
    options: &AgentOptions,
    observer: ConnectionObserver,
) -> Result<DirectClient, CoreError> {
    let connector = origin_connector(
        options,
        tls::client_config(&options.tls, &[])?,
        servername(options)?,
        tcp_connector(options),
    );
    Ok(client_builder(options).build(Observed::new(connector, observer)))
}
