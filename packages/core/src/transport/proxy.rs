//! Proxies as undici's `ProxyAgent` and `EnvHttpProxyAgent` configure them: which proxy, if any, a request's
//! origin goes through (undici's reading of `NO_PROXY`), and how the connector reaches it (its address, the
//! headers and credentials it is sent). The connector itself is in `proxied.rs`.

use crate::error::CoreError;
use crate::options::ProxyOptions;
use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};

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

/// What kind of proxy a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `http://` or `https://`: `CONNECT` tunnels for `https:` origins, forwarded requests for `http:` ones.
    Http,
    /// `socks5://` (and undici's `socks://`): the client resolves the origin's name.
    Socks5,
    /// `socks5h://`: the proxy resolves the origin's name.
    Socks5h,
}

/// One proxy, as the connector reaches it.
#[derive(Clone, Debug)]
pub(crate) struct Proxy {
    pub(crate) kind: Kind,
    /// `scheme://host:port`, without the credentials the URL may carry: where the connector connects.
    pub(crate) uri: Uri,
    /// Sent with `CONNECT` and with forwarded requests: the `headers` option and `Proxy-Authorization` (from the
    /// token or the URL's credentials).
    pub(crate) headers: HeaderMap,
    /// User and password for SOCKS5, from the URL.
    pub(crate) socks_auth: Option<(String, String)>,
}

/// Which proxy requests take: one for `http:` origins, one for `https:` ones, none for `NO_PROXY` matches.
#[derive(Clone, Debug)]
pub(crate) struct Routes {
    http: Option<Proxy>,
    https: Option<Proxy>,
    no_proxy: NoProxy,
}

impl Routes {
    pub(crate) fn new(options: &ProxyOptions) -> Result<Routes, CoreError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &options.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| {
                CoreError::invalid_argument(format!("invalid proxy header name: {e}"))
            })?;
            let mut value = HeaderValue::from_str(value).map_err(|_| {
                CoreError::invalid_argument(format!("invalid value of proxy header {name}"))
            })?;
            value.set_sensitive(name == http::header::PROXY_AUTHORIZATION);
            headers.append(name, value);
        }
        let proxy = |url: &Option<String>| {
            url.as_deref()
                .map(|url| Proxy::parse(url, &headers))
                .transpose()
        };
        Ok(Routes {
            http: proxy(&options.http)?,
            https: proxy(&options.https)?,
            no_proxy: NoProxy::parse(options.no_proxy.as_deref().unwrap_or("")),
        })
    }

    /// The proxy a request to `uri` goes through, or `None` when it goes direct.
    pub(crate) fn proxy_for(&self, uri: &Uri) -> Option<&Proxy> {
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let proxy = if https { &self.https } else { &self.http };
        let proxy = proxy.as_ref()?;
        // `host()` keeps IPv6 brackets, as undici's comparison does.
        let host = uri.host()?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        (!self.no_proxy.bypasses(host, port)).then_some(proxy)
    }
}

impl Proxy {
    /// A proxy URL (`http`, `https`, `socks5`, `socks5h`, or undici's `socks`), with optional `user:password@`.
    pub(crate) fn parse(url: &str, headers: &HeaderMap) -> Result<Proxy, CoreError> {
        let invalid = |detail: &dyn std::fmt::Display| {
            CoreError::invalid_argument(format!("invalid proxy uri: {detail}"))
        };
        let uri: Uri = url.parse().map_err(|e| invalid(&e))?;
        let (kind, scheme, default_port) = match uri.scheme_str() {
            Some("http") => (Kind::Http, "http", 80),
            Some("https") => (Kind::Http, "https", 443),
            Some("socks5" | "socks") => (Kind::Socks5, "socks5", 1080),
            Some("socks5h") => (Kind::Socks5h, "socks5h", 1080),
            Some(other) => {
                return Err(CoreError::invalid_argument(format!(
                    "unsupported proxy protocol: {other}:"
                )))
            }
            None => return Err(invalid(&"a scheme is required")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid(&"a host is required"))?;
        let port = authority.port_u16().unwrap_or(default_port);
        let address: Uri = format!("{scheme}://{}:{port}", authority.host())
            .parse()
            .map_err(|e| invalid(&e))?;
        let credentials = authority.as_str().rsplit_once('@').map(|(userinfo, _)| {
            match userinfo.split_once(':') {
                Some((user, password)) => (percent_decode(user), percent_decode(password)),
                None => (percent_decode(userinfo), String::new()),
            }
        });
        let mut headers = headers.clone();
        let mut socks_auth = None;
        if let Some((user, password)) = credentials {
            if kind == Kind::Http {
                // As undici: credentials in the URL are Basic auth, unless a token was given.
                if !headers.contains_key(http::header::PROXY_AUTHORIZATION) {
                    let encoded = base64::engine::general_purpose::STANDARD
                        .encode(format!("{user}:{password}"));
                    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
                        .map_err(|e| invalid(&e))?;
                    value.set_sensitive(true);
                    headers.insert(http::header::PROXY_AUTHORIZATION, value);
                }
            } else {
                socks_auth = Some((user, password));
            }
        }
        Ok(Proxy {
            kind,
            uri: address,
            headers,
            socks_auth,
        })
    }
}

/// `%XX` escapes decoded (as the credentials of a URL are written); invalid UTF-8 is replaced.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
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
        let proxy = Proxy::parse("socks://127.0.0.1:1080", &HeaderMap::new()).unwrap();
        assert_eq!(proxy.kind, Kind::Socks5);
        assert!(Proxy::parse("ftp://x", &HeaderMap::new()).is_err());
    }

    #[test]
    fn url_credentials_become_basic_auth_and_leave_the_address() {
        let proxy =
            Proxy::parse("http://us%40er:p%3Ass@proxy.test:3128", &HeaderMap::new()).unwrap();
        assert_eq!(proxy.uri, "http://proxy.test:3128/");
        let expected = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss");
        assert_eq!(
            proxy.headers[http::header::PROXY_AUTHORIZATION],
            format!("Basic {expected}").as_str()
        );
        let socks = Proxy::parse("socks5h://u:p@[::1]", &HeaderMap::new()).unwrap();
        assert_eq!(socks.uri, "socks5h://[::1]:1080/");
        assert_eq!(socks.socks_auth, Some(("u".to_string(), "p".to_string())));
        assert!(socks.headers.is_empty());
    }

    #[test]
    fn a_token_wins_over_url_credentials() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Bearer t"),
        );
        let proxy = Proxy::parse("http://u:p@proxy.test", &headers).unwrap();
        assert_eq!(proxy.headers[http::header::PROXY_AUTHORIZATION], "Bearer t");
    }

    #[test]
    fn routes_pick_the_proxy_by_scheme_and_honour_no_proxy() {
        let routes = Routes::new(&ProxyOptions {
            http: Some("http://p1.test:1".into()),
            https: Some("http://p2.test:2".into()),
            no_proxy: Some("skip.test".into()),
            ..ProxyOptions::default()
        })
        .unwrap();
        let via = |url: &str| {
            routes
                .proxy_for(&url.parse().unwrap())
                .map(|p| p.uri.to_string())
        };
        assert_eq!(via("http://a.test/x").as_deref(), Some("http://p1.test:1/"));
        assert_eq!(
            via("https://a.test/x").as_deref(),
            Some("http://p2.test:2/")
        );
        assert_eq!(via("https://skip.test/"), None);
        assert_eq!(via("http://api.skip.test:8080/"), None);
    }
}
