//! Options of an [`crate::Agent`], named and defaulted as undici's `Agent` options.

use crate::policy::Policies;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// Connection and timeout settings shared by every request of one agent.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// undici `connectTimeout` / `connect.timeout` (default 10 s). `None` disables it.
    pub connect_timeout: Option<Duration>,
    /// undici `headersTimeout` (default 300 s): time to wait for the response head. `None` disables it.
    pub headers_timeout: Option<Duration>,
    /// undici `bodyTimeout` (default 300 s): longest idle time between body chunks. `None` disables it.
    pub body_timeout: Option<Duration>,
    /// undici `keepAliveTimeout` (default 4 s): how long an idle connection is kept for reuse.
    pub keep_alive_timeout: Duration,
    /// undici `keepAliveMaxTimeout` (default 600 s): the longest idle time a server's `Keep-Alive: timeout=`
    /// hint may grant a connection.
    pub keep_alive_max_timeout: Duration,
    /// undici `keepAliveTimeoutThreshold` (default 2 s): taken off the server's hint, so a connection is not
    /// reused just as the server closes it.
    pub keep_alive_timeout_threshold: Duration,
    /// undici `maxResponseSize` (default: unlimited).
    pub max_response_size: Option<u64>,
    /// undici `maxHeaderSize` (default 16 KiB): total bytes of response header names and values.
    pub max_header_size: usize,
    /// undici `allowH2` (default false): offer HTTP/2 through ALPN on TLS connections.
    pub allow_h2: bool,
    /// HTTP/2 on every connection: by prior knowledge on cleartext ones (h2c, undici's `H2CClient`), and as the
    /// only ALPN protocol on TLS ones.
    pub h2c: bool,
    /// undici `connections` (default unlimited): most connections per origin. Enforced as most requests in
    /// flight per origin — one per connection for HTTP/1.1, [`H2_STREAMS_PER_CONNECTION`] per connection once
    /// the origin is known to speak HTTP/2.
    pub connections: Option<usize>,
    /// undici `connect.localAddress`: the local address outgoing connections bind to.
    pub local_address: Option<IpAddr>,
    /// undici `autoSelectFamily` with its `autoSelectFamilyAttemptTimeout` (Node's defaults: on, 250 ms):
    /// happy eyeballs — a host's IPv6 and IPv4 addresses interleaved, the next one tried as soon as the
    /// current attempt fails or has not connected within this time. `None` (`autoSelectFamily: false`): one
    /// address after another, each until it fails.
    pub auto_select_family: Option<Duration>,
    /// undici `connect` TLS options (`ca`, `cert`, `key`, `rejectUnauthorized`, `servername`).
    pub tls: TlsOptions,
    /// The proxy every request goes through (`ProxyAgent`, `EnvHttpProxyAgent`); `None` connects directly.
    pub proxy: Option<ProxyOptions>,
    /// Retry, circuit breaker and rate limit, per origin (all off by default).
    pub policies: Policies,
}

/// Concurrent streams an HTTP/2 connection is assumed to carry (undici's `maxConcurrentStreams` default).
pub(crate) const H2_STREAMS_PER_CONNECTION: usize = 100;

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            connect_timeout: Some(Duration::from_secs(10)),
            headers_timeout: Some(Duration::from_secs(300)),
            body_timeout: Some(Duration::from_secs(300)),
            keep_alive_timeout: Duration::from_secs(4),
            keep_alive_max_timeout: Duration::from_secs(600),
            keep_alive_timeout_threshold: Duration::from_secs(2),
            max_response_size: None,
            max_header_size: 16 * 1024,
            allow_h2: false,
            h2c: false,
            connections: None,
            local_address: None,
            auto_select_family: Some(Duration::from_millis(250)),
            tls: TlsOptions::default(),
            proxy: None,
            policies: Policies::default(),
        }
    }
}

/// TLS settings as Node's `tls.connect` takes them. Certificates and keys are PEM; the caller decrypts a
/// passphrase-protected key before handing it over. `Debug` shows no key material.
#[derive(Clone)]
pub struct TlsOptions {
    /// `ca`: the trusted roots, replacing the defaults (the system's roots plus [`Self::extra_ca`]).
    pub ca: Option<Vec<u8>>,
    /// Roots trusted in addition to the system's when `ca` is not given (Node's `NODE_EXTRA_CA_CERTS`).
    pub extra_ca: Option<Vec<u8>>,
    /// `cert`: the client certificate chain for mutual TLS, leaf first.
    pub cert: Option<Vec<u8>>,
    /// `key`: the private key of `cert` (PKCS#8, PKCS#1 or SEC1 PEM, unencrypted).
    pub key: Option<Vec<u8>>,
    /// `rejectUnauthorized` (default true): fail the connection when the server's certificate does not verify.
    pub reject_unauthorized: bool,
    /// `servername`: the name the server's certificate must be valid for, instead of the URL's host.
    pub servername: Option<String>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            ca: None,
            extra_ca: None,
            cert: None,
            key: None,
            reject_unauthorized: true,
            servername: None,
        }
    }
}

/// Where requests go through a proxy, as undici's `ProxyAgent` / `EnvHttpProxyAgent` configure them. `Debug`
/// shows neither the credentials in the proxy URLs nor the values of the headers sent to the proxy.
#[derive(Clone, Default)]
pub struct ProxyOptions {
    /// Proxy URL for `http:` origins (`http://`, `https://`, `socks5://`, `socks5h://`); `None` = direct.
    pub http: Option<String>,
    /// Proxy URL for `https:` origins; `None` = direct.
    pub https: Option<String>,
    /// undici's `NO_PROXY` syntax: hosts (optionally `:port`) reached directly, `*` for all.
    pub no_proxy: Option<String>,
    /// Headers sent to the proxy (on forwarded requests and on `CONNECT`), e.g. `proxy-authorization`.
    pub headers: Vec<(String, String)>,
    /// TLS settings for a `https://` proxy itself (undici `proxyTls`); when `None`, the default roots plus the
    /// agent's `extra_ca`, verification on.
    pub tls: Option<TlsOptions>,
}

/// How `Debug` shows a secret: whether it is there, never what it is.
struct Redacted(bool);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "Some(<redacted>)" } else { "None" })
    }
}

/// How many PEM bytes an option holds (certificates are public, but a debug print needs no more).
struct PemLength<'a>(&'a Option<Vec<u8>>);

impl fmt::Debug for PemLength<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(pem) => write!(f, "Some(<{} bytes of PEM>)", pem.len()),
            None => f.write_str("None"),
        }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca", &PemLength(&self.ca))
            .field("extra_ca", &PemLength(&self.extra_ca))
            .field("cert", &PemLength(&self.cert))
            .field("key", &Redacted(self.key.is_some()))
            .field("reject_unauthorized", &self.reject_unauthorized)
            .field("servername", &self.servername)
            .finish()
    }
}

/// A proxy URL with its user information (a password, or a user name that may be a token) left out.
struct ProxyUrl<'a>(&'a Option<String>);

impl fmt::Debug for ProxyUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(url) = self.0 else {
            return f.write_str("None");
        };
        let authority = url.find("://").map_or(0, |i| i + 3);
        let authority_end = url[authority..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| authority + i);
        match url[authority..authority_end].rfind('@') {
            Some(at) => {
                let shown = format!("{}<redacted>{}", &url[..authority], &url[authority + at..]);
                write!(f, "Some({shown:?})")
            }
            None => write!(f, "Some({url:?})"),
        }
    }
}

impl fmt::Debug for ProxyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ProxyOptions")
            .field("http", &ProxyUrl(&self.http))
            .field("https", &ProxyUrl(&self.https))
            .field("no_proxy", &self.no_proxy)
            .field("header_names", &header_names)
            .field("tls", &self.tls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_key_credential_or_proxy_header_value() {
        let options = AgentOptions {
            tls: TlsOptions {
                key: Some(
                    b"-----BEGIN PRIVATE KEY-----\nSECRETKEY\n-----END PRIVATE KEY-----\n".to_vec(),
                ),
                cert: Some(
                    b"-----BEGIN CERTIFICATE-----\nCERTBYTES\n-----END CERTIFICATE-----\n".to_vec(),
                ),
                ..TlsOptions::default()
            },
            proxy: Some(ProxyOptions {
                http: Some("http://user:hunter2@proxy.test:3128".into()),
                https: Some("https://tokenonly@proxy.test/".into()),
                headers: vec![("proxy-authorization".into(), "Bearer s3cret".into())],
                tls: Some(TlsOptions {
                    key: Some(b"PROXYKEY".to_vec()),
                    ..TlsOptions::default()
                }),
                ..ProxyOptions::default()
            }),
            ..AgentOptions::default()
        };
        let text = format!("{options:?}");
        // Derived Debug prints bytes as numbers: look for those too.
        let key_as_numbers = format!("{:?}", options.tls.key.as_ref().unwrap());
        assert!(!text.contains(key_as_numbers.trim_matches(['[', ']'])));
        for secret in [
            "SECRETKEY",
            "hunter2",
            "tokenonly",
            "s3cret",
            "PROXYKEY",
            "CERTBYTES",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("proxy.test:3128"));
        assert!(text.contains("proxy-authorization"));
    }
}
