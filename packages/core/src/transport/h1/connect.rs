//! Opening connections: name resolution, TCP (no delay, `connectTimeout`, `localAddress`) and TLS through
//! tokio-rustls with the agent's rustls configuration, offering only `http/1.1` by ALPN.

use super::conn::Stream;
use crate::error::{CoreError, ErrorKind};
use crate::options::AgentOptions;
use crate::transport::classify::os_code;
use rustls::pki_types::ServerName;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// Where a connection goes: `https` or not, and the authority's host (brackets stripped) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// The target of an absolute `http:`/`https:` URI.
    pub(crate) fn of(uri: &http::Uri) -> Option<Target> {
        let https = match uri.scheme_str()? {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let authority = uri.authority()?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Some(Target {
            https,
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        })
    }
}

/// Makes connections for one agent.
pub(crate) struct Connector {
    tls: TlsConnector,
    /// `servername`: sent as SNI and checked against the certificate instead of the URL's host.
    servername: Option<ServerName<'static>>,
    connect_timeout: Option<Duration>,
    local_address: Option<IpAddr>,
}

/// A new connection and its addresses.
pub(crate) struct Opened {
    pub stream: Stream,
    pub remote: SocketAddr,
    pub local: Option<SocketAddr>,
}

impl Connector {
    pub(crate) fn new(options: &AgentOptions) -> Result<Connector, CoreError> {
        let tls = crate::transport::tls::client_config(&options.tls, &[b"http/1.1"])?;
        let servername = match &options.tls.servername {
            Some(name) if !name.is_empty() => {
                Some(ServerName::try_from(name.clone()).map_err(|e| {
                    CoreError::new(
                        ErrorKind::InvalidArgument,
                        format!("invalid servername: {e}"),
                    )
                })?)
            }
            _ => None,
        };
        Ok(Connector {
            tls: TlsConnector::from(Arc::new(tls)),
            servername,
            connect_timeout: options.connect_timeout,
            local_address: options.local_address,
        })
    }

    /// Opens a connection to `target`, within the connect timeout (resolution, TCP and TLS together).
    pub(crate) async fn connect(&self, target: &Target) -> Result<Opened, CoreError> {
        let work = self.open(target);
        match self.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
                Err(CoreError::new(
                    ErrorKind::ConnectTimeout,
                    "Connect Timeout Error",
                ))
            }),
            None => work.await,
        }
    }

    async fn open(&self, target: &Target) -> Result<Opened, CoreError> {
        let addresses = resolve(&target.host, target.port).await?;
        let mut last = None;
        let mut tcp = None;
        for address in addresses {
            match self.tcp(address).await {
                Ok(stream) => {
                    tcp = Some((stream, address));
                    break;
                }
                Err(error) => last = Some(error),
            }
        }
        let Some((tcp, remote)) = tcp else {
            return Err(last.unwrap_or_else(|| not_found(&target.host)));
        };
        let local = tcp.local_addr().ok();
        if !target.https {
            return Ok(Opened {
                stream: Stream::Tcp(tcp),
                remote,
                local,
            });
        }
        let name = match &self.servername {
            Some(name) => name.clone(),
            None => ServerName::try_from(target.host.clone()).map_err(|e| {
                CoreError::new(ErrorKind::InvalidArgument, format!("invalid host: {e}"))
            })?,
        };
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| crate::transport::classify::connect(&e))?;
        Ok(Opened {
            stream: Stream::Tls(Box::new(tls)),
            remote,
            local,
        })
    }

    async fn tcp(&self, address: SocketAddr) -> Result<TcpStream, CoreError> {
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| connect_error(&e, address))?;
        if let Some(local) = self.local_address {
            socket
                .bind(SocketAddr::new(local, 0))
                .map_err(|e| connect_error(&e, address))?;
        }
        let stream = socket
            .connect(address)
            .await
            .map_err(|e| connect_error(&e, address))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// The host's addresses, as `getaddrinfo` gives them (an IP literal is used as is).
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, CoreError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| not_found(host))?
        .collect();
    if found.is_empty() {
        return Err(not_found(host));
    }
    Ok(found)
}

fn not_found(host: &str) -> CoreError {
    CoreError::new(
        ErrorKind::Os("ENOTFOUND"),
        format!("getaddrinfo ENOTFOUND {host}"),
    )
}

fn connect_error(error: &std::io::Error, address: SocketAddr) -> CoreError {
    match os_code(error) {
        Some(code) => CoreError::new(ErrorKind::Os(code), format!("connect {code} {address}")),
        None => CoreError::new(ErrorKind::Socket, format!("connect {address}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn targets_default_their_port_and_strip_ipv6_brackets() {
        let t = Target::of(&"https://a.test/x".parse().unwrap()).unwrap();
        assert_eq!((t.https, t.host.as_str(), t.port), (true, "a.test", 443));
        let t = Target::of(&"http://[::1]:8080/".parse().unwrap()).unwrap();
        assert_eq!((t.https, t.host.as_str(), t.port), (false, "::1", 8080));
        assert!(Target::of(&"ftp://a.test/".parse().unwrap()).is_none());
    }
}
