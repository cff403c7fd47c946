//! Proxies as undici's `ProxyAgent` and `EnvHttpProxyAgent` configure them, on `reqwest::Proxy`: a forward
//! proxy for `http:` origins (absolute-form requests), a `CONNECT` tunnel for `https:` ones, SOCKS5 for both.
//! Which origins bypass the proxy follows undici's reading of `NO_PROXY`, not reqwest's.

use crate::error::CoreError;
use crate::options::ProxyOptions;
use http::{HeaderMap, HeaderName, HeaderValue};

/// One `NO_PROXY` entry: a host (or domain suffix), optionally limited to one port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Bypass {
    host: String,
    /// 0 = any port.
    port: u16,
}

/// undici's `NO_PROXY` rules: entries split on commas and whitespace, `host:port` limits an entry to a port,
/// a leading `.` or `*.` is dropped, an entry matches the host itself and its subdomains, and `*` alone
/// bypasses the proxy for every origin.
#[derive(Clone, Debug, Default)]
pub(crate) struct NoProxy {
    all: bool,
    entries: Vec<Bypass>,
}

impl NoProxy {
    pub(crate) fn parse(value: &str) -> NoProxy {
        if value == "*" {
            return NoProxy {
                all: true,
                entries: Vec::new(),
            };
        }
        let entries = value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let (host, port) = match entry.rsplit_once(':') {
                    Some((host, port))
                        if !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        (host, port.parse().unwrap_or(0))
                    }
                    _ => (entry, 0),
                };
                let host = host
                    .strip_prefix("*.")
                    .or_else(|| host.strip_prefix('.'))
                    .unwrap_or(host);
                Bypass {
                    host: host.to_ascii_lowercase(),
                    port,
                }
            })
            .collect();
        NoProxy {
            all: false,
            entries,
        }
    }

    /// Whether a request to `host:port` goes direct. `host` keeps IPv6 brackets, as undici compares it.
    pub(crate) fn bypasses(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let host = host.to_ascii_lowercase();
        self.entries.iter().any(|e| {
            (e.port == 0 || e.port == port)
                && (host == e.host
                    || (host.len() > e.host.len()
                        && host.ends_with(&e.host)
                        && host.as_bytes()[host.len() - e.host.len() - 1] == b'.'))
        })
    }
}

/// undici accepts `socks:` for SOCKS5; reqwest spells it `socks5:`.
fn normalize(uri: &str) -> Result<reqwest::Url, CoreError> {
    let url = reqwest::Url::parse(uri)
        .map_err(|e| CoreError::invalid_argument(format!("invalid proxy uri: {e}")))?;
    match url.scheme() {
        "http" | "https" | "socks5" | "socks5h" => Ok(url),
        "socks" => reqwest::Url::parse(&format!("socks5{}", &uri["socks".len()..]))
            .map_err(|e| CoreError::invalid_argument(format!("invalid proxy uri: {e}"))),
        other => Err(CoreError::invalid_argument(format!(
            "unsupported proxy protocol: {other}:"
        ))),
    }
}

/// Host name of the proxy that `https:` origins would go through when it is itself `https://`, for the TLS
/// verifier to check the proxy's certificate with the proxy's settings.
pub(crate) fn tls_proxy_host(options: &ProxyOptions) -> Option<String> {
    [&options.http, &options.https]
        .into_iter()
        .flatten()
        .filter_map(|uri| normalize(uri).ok())
        .find(|url| url.scheme() == "https")
        .and_then(|url| {
            url.host_str()
                .map(|h| h.trim_matches(['[', ']']).to_string())
        })
}

/// The reqwest proxy for `options`.
pub(crate) fn build(options: &ProxyOptions) -> Result<reqwest::Proxy, CoreError> {
    let http = options.http.as_deref().map(normalize).transpose()?;
    let https = options.https.as_deref().map(normalize).transpose()?;
    let no_proxy = NoProxy::parse(options.no_proxy.as_deref().unwrap_or(""));
    let mut proxy = reqwest::Proxy::custom(move |url| {
        let target = match url.scheme() {
            "http" => http.as_ref(),
            "https" => https.as_ref(),
            _ => None,
        }?;
        // `host_str` keeps IPv6 brackets, as undici's comparison does.
        let host = url.host_str()?;
        let port = url.port_or_known_default().unwrap_or(0);
        (!no_proxy.bypasses(host, port)).then(|| target.clone())
    });
    let mut headers = HeaderMap::new();
    for (name, value) in &options.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| CoreError::invalid_argument(format!("invalid proxy header name: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| CoreError::invalid_argument(format!("invalid proxy header value: {e}")))?;
        if name == http::header::PROXY_AUTHORIZATION {
            proxy = proxy.custom_http_auth(value);
        } else {
            headers.append(name, value);
        }
    }
    if !headers.is_empty() {
        proxy = proxy.headers(headers);
    }
    Ok(proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_matches_hosts_subdomains_and_ports_as_undici() {
        let rules = NoProxy::parse("example.com, .sub.test *.wild.test,localhost:8080 [::1]");
        assert!(rules.bypasses("example.com", 80));
        assert!(rules.bypasses("api.example.com", 443));
        assert!(!rules.bypasses("badexample.com", 80));
        assert!(rules.bypasses("a.sub.test", 80));
        assert!(rules.bypasses("sub.test", 80));
        assert!(rules.bypasses("x.wild.test", 80));
        assert!(rules.bypasses("localhost", 8080));
        assert!(!rules.bypasses("localhost", 8081));
        assert!(rules.bypasses("[::1]", 80));
        assert!(!rules.bypasses("other.test", 80));
    }

    #[test]
    fn star_bypasses_everything_and_empty_nothing() {
        assert!(NoProxy::parse("*").bypasses("any.test", 1));
        assert!(!NoProxy::parse("").bypasses("any.test", 1));
    }

    #[test]
    fn socks_means_socks5() {
        assert_eq!(
            normalize("socks://127.0.0.1:1080").unwrap().scheme(),
            "socks5"
        );
        assert!(normalize("ftp://x").is_err());
    }
}
