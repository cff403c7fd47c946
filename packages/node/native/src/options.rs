//! An agent's options as they cross the bridge: one JSON document (`NativeAgentOptions` in `src/native.ts`),
//! validated and defaulted by the TypeScript layer, read here into the core's [`AgentOptions`].

use crate::marshal::{millis, timeout_option};
use reqwest_dispatcher_core::{AgentOptions, Policies, ProxyOptions, TlsOptions};
use serde::Deserialize;
use std::net::IpAddr;

/// The document; times in milliseconds (0 disables a timeout), sizes in bytes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgentDocument {
    connect_timeout: f64,
    headers_timeout: f64,
    body_timeout: f64,
    keep_alive_timeout: f64,
    /// The longest idle time a server's `Keep-Alive: timeout=` hint may grant.
    #[serde(default)]
    keep_alive_max_timeout: Option<f64>,
    /// Taken off the server's `Keep-Alive: timeout=` hint.
    #[serde(default)]
    keep_alive_timeout_threshold: Option<f64>,
    /// -1: unlimited.
    max_response_size: f64,
    max_header_size: f64,
    allow_h2: bool,
    #[serde(default)]
    h2c: bool,
    /// 0: unlimited.
    #[serde(default)]
    connections: f64,
    #[serde(default)]
    local_address: Option<String>,
    /// Happy eyeballs' attempt timeout; 0: off. Absent: Node's default (250 ms).
    #[serde(default)]
    auto_select_family_attempt_timeout: Option<f64>,
    #[serde(default)]
    tls: Option<TlsDocument>,
    #[serde(default)]
    proxy: Option<ProxyDocument>,
    /// Already merged per origin by `src/policies.ts`.
    #[serde(default)]
    policies: Option<Policies>,
}

/// TLS settings; certificates and keys as PEM text, keys unencrypted.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlsDocument {
    ca: Option<String>,
    extra_ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    reject_unauthorized: bool,
    servername: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxyDocument {
    http: Option<String>,
    https: Option<String>,
    no_proxy: Option<String>,
    /// `name, value, …` sent to the proxy.
    headers: Vec<String>,
    tls: Option<TlsDocument>,
}

impl From<TlsDocument> for TlsOptions {
    fn from(tls: TlsDocument) -> TlsOptions {
        TlsOptions {
            ca: tls.ca.map(String::into_bytes),
            extra_ca: tls.extra_ca.map(String::into_bytes),
            cert: tls.cert.map(String::into_bytes),
            key: tls.key.map(String::into_bytes),
            reject_unauthorized: tls.reject_unauthorized,
            servername: tls.servername,
        }
    }
}

impl From<ProxyDocument> for ProxyOptions {
    fn from(proxy: ProxyDocument) -> ProxyOptions {
        let headers = proxy
            .headers
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        ProxyOptions {
            http: proxy.http,
            https: proxy.https,
            no_proxy: proxy.no_proxy,
            headers,
            tls: proxy.tls.map(TlsOptions::from),
        }
    }
}

/// The core's options from the document's JSON text; the error is a message for JavaScript.
pub fn agent_options(json: &str) -> Result<AgentOptions, String> {
    let doc: AgentDocument =
        serde_json::from_str(json).map_err(|e| format!("invalid agent options: {e}"))?;
    let local_address = match doc.local_address {
        Some(address) => Some(
            address
                .parse::<IpAddr>()
                .map_err(|_| format!("invalid localAddress: {address}"))?,
        ),
        None => None,
    };
    let defaults = AgentOptions::default();
    Ok(AgentOptions {
        connect_timeout: timeout_option(doc.connect_timeout),
        headers_timeout: timeout_option(doc.headers_timeout),
        body_timeout: timeout_option(doc.body_timeout),
        keep_alive_timeout: millis(doc.keep_alive_timeout),
        keep_alive_max_timeout: doc
            .keep_alive_max_timeout
            .map_or(defaults.keep_alive_max_timeout, millis),
        keep_alive_timeout_threshold: doc
            .keep_alive_timeout_threshold
            .map_or(defaults.keep_alive_timeout_threshold, millis),
        max_response_size: (doc.max_response_size >= 0.0).then_some(doc.max_response_size as u64),
        max_header_size: doc.max_header_size as usize,
        allow_h2: doc.allow_h2,
        h2c: doc.h2c,
        connections: (doc.connections >= 1.0).then_some(doc.connections as usize),
        local_address,
        auto_select_family: match doc.auto_select_family_attempt_timeout {
            None => defaults.auto_select_family,
            Some(ms) => timeout_option(ms),
        },
        tls: doc.tls.map(TlsOptions::from).unwrap_or_default(),
        proxy: doc.proxy.map(ProxyOptions::from),
        policies: doc.policies.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MINIMAL: &str = r#"{"connectTimeout":10000,"headersTimeout":0,"bodyTimeout":300000,
        "keepAliveTimeout":4000,"maxResponseSize":-1,"maxHeaderSize":16384,"allowH2":false}"#;

    #[test]
    fn the_minimal_document_gives_undici_defaults() {
        let options = agent_options(MINIMAL).unwrap();
        assert_eq!(options.connect_timeout, Some(Duration::from_secs(10)));
        assert_eq!(options.headers_timeout, None);
        assert_eq!(options.keep_alive_timeout, Duration::from_secs(4));
        assert_eq!(options.max_response_size, None);
        assert_eq!(options.connections, None);
        assert!(options.tls.reject_unauthorized);
        assert!(options.proxy.is_none());
        assert_eq!(options.auto_select_family, Some(Duration::from_millis(250)));
    }

    #[test]
    fn an_attempt_timeout_of_zero_turns_happy_eyeballs_off() {
        let with = |ms: &str| {
            let json =
                MINIMAL.replace('}', &format!(r#","autoSelectFamilyAttemptTimeout":{ms}}}"#));
            agent_options(&json).unwrap().auto_select_family
        };
        assert_eq!(with("0"), None);
        assert_eq!(with("100"), Some(Duration::from_millis(100)));
    }

    #[test]
    fn nested_settings_reach_the_core() {
        let json = MINIMAL.replace(
            "\"allowH2\":false",
            r#""allowH2":true,"connections":2,"localAddress":"127.0.0.1",
            "tls":{"ca":null,"extraCa":null,"cert":null,"key":null,"rejectUnauthorized":false,"servername":"x.test"},
            "proxy":{"http":"http://p.test:8080","https":null,"noProxy":"","headers":["proxy-authorization","Basic eA=="],"tls":null},
            "policies":{"retry":{"maxRetries":2},"origins":{}}"#,
        );
        let options = agent_options(&json).unwrap();
        assert!(options.allow_h2);
        assert_eq!(options.connections, Some(2));
        assert_eq!(options.local_address, Some("127.0.0.1".parse().unwrap()));
        assert!(!options.tls.reject_unauthorized);
        let proxy = options.proxy.unwrap();
        assert_eq!(
            proxy.headers,
            vec![("proxy-authorization".to_string(), "Basic eA==".to_string())]
        );
        assert_eq!(
            options
                .policies
                .defaults
                .retry
                .as_ref()
                .unwrap()
                .max_retries,
            2
        );
    }

    #[test]
    fn a_bad_local_address_is_refused() {
        let json = MINIMAL.replace(
            "\"allowH2\":false",
            r#""allowH2":false,"localAddress":"nope""#,
        );
        assert_eq!(
            agent_options(&json).unwrap_err(),
            "invalid localAddress: nope"
        );
    }

    mod fuzz {
        use super::super::agent_options;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

            /// Whatever finite numbers the document holds (the TypeScript layer clamps them, a Rust caller might
            /// not), reading it and building an agent from it never panics.
            #[test]
            fn any_numbers_in_the_document_build_an_agent_without_panicking(
                n in proptest::collection::vec(any::<f64>().prop_filter("finite", |n| n.is_finite()), 10),
            ) {
                let json = format!(
                    r#"{{"connectTimeout":{:e},"headersTimeout":{:e},"bodyTimeout":{:e},"keepAliveTimeout":{:e},
                        "keepAliveMaxTimeout":{:e},"keepAliveTimeoutThreshold":{:e},"maxResponseSize":{:e},
                        "maxHeaderSize":{:e},"connections":{:e},"allowH2":true,"h2c":false,"localAddress":null,
                        "policies":{{"rateLimit":{{"requestsPerSecond":{:e},"burst":1,"maxWait":1}},"origins":{{}}}}}}"#,
                    n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9]
                );
                if let Ok(options) = agent_options(&json) {
                    let _ = reqwest_dispatcher_core::Agent::new(options);
                }
            }
        }
    }
}
