//! Property tests (proptest) over what the core parses from callers and servers outside the HTTP/1.1 engine
//! (which has its own, in `transport/h1/fuzz.rs`): policy documents and the numbers in them, `Retry-After`,
//! `NO_PROXY` and proxy URLs, request targets, and the DER the TLS verifier reads from certificates. Nothing may
//! panic on any input; where a property holds, it is checked. Bounded case counts keep them part of `cargo test`.

use crate::error::CoreError;
use crate::options::ProxyOptions;
use crate::policy::retry::retry_after;
use crate::policy::{Admission, Breaker, Limiter, Policies};
use crate::request::request_uri;
use crate::transport::proxy::{NoProxy, Proxy};
use crate::transport::tls::der;
use proptest::prelude::*;
use std::time::Duration;
use tokio::time::Instant;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A JSON number of any magnitude and sign, as the TypeScript layer could (or a Rust caller might) write.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |n| n.is_finite())
            .prop_map(|n| format!("{n:e}")),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("5e-324".to_string()),
        Just("1e308".to_string()),
        Just("0".to_string()),
    ]
}

/// A policy document with every number field set to `numbers[i]`.
fn policy_document(n: &[String]) -> String {
    format!(
        r#"{{"retry":{{"maxRetries":{},"minTimeout":{},"maxTimeout":{},"timeoutFactor":{},"jitter":{}}},
           "circuitBreaker":{{"threshold":{},"minimumRequests":{},"window":{},"halfOpenAfter":{},"halfOpenRequests":{}}},
           "rateLimit":{{"requestsPerSecond":{},"burst":{},"maxWait":{}}},"origins":{{}}}}"#,
        n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8], n[9], n[10], n[11], n[12]
    )
}

/// Percent-decodes `bytes` (`%XX` where XX is hex), leaving anything else as it is.
fn percent_decoded(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_as_a_policy_document_never_panics(text in "[{}\\[\\]:,\"0-9a-zA-Z .eE+-]{0,200}") {
        let _ = Policies::from_json(&text);
    }

    #[test]
    fn any_numbers_in_a_policy_document_drive_the_policies_without_panicking(
        mut numbers in proptest::collection::vec(number(), 13),
        counts in proptest::collection::vec(any::<u32>(), 3),
        steps in proptest::collection::vec((0u64..100_000, any::<bool>()), 1..20),
        statuses in proptest::collection::vec(100u16..600, 1..5),
        retry_after_value in ".{0,30}",
    ) {
        // maxRetries, minimumRequests and halfOpenRequests are counts.
        for (field, count) in [0, 6, 9].into_iter().zip(counts) {
            numbers[field] = count.to_string();
        }
        let policies = Policies::from_json(&policy_document(&numbers));
        prop_assert!(policies.is_ok(), "{:?}", policies.err());
        let policies = policies.unwrap();
        let defaults = &policies.defaults;
        let start = Instant::now();
        if let Some(options) = &defaults.rate_limit {
            let mut limiter = Limiter::new(options, start);
            for (at, _) in &steps {
                let _ = limiter.take(start + Duration::from_millis(*at));
                let _ = limiter.is_full(start + Duration::from_millis(*at));
            }
        }
        if let Some(options) = &defaults.circuit_breaker {
            let mut breaker = Breaker::new(options.clone(), start);
            for (at, failed) in &steps {
                let now = start + Duration::from_millis(*at);
                if let (Ok(admission), _) = breaker.admit(now) {
                    let _ = breaker.record(admission, *failed, now);
                } else {
                    let _ = breaker.record(Admission::Normal, *failed, now);
                }
            }
        }
        if let Some(retry) = &defaults.retry {
            let mut headers = crate::handler::RawHeaders::new();
            headers.push("retry-after", retry_after_value.clone().into_bytes());
            let error = CoreError::new(crate::error::ErrorKind::Socket, "x");
            for (n, status) in statuses.iter().enumerate() {
                let attempt = u32::try_from(n).unwrap_or(u32::MAX).saturating_add(1);
                for wait in [retry.after_error(&error, attempt), retry.after_status(*status, &headers, attempt)]
                    .into_iter()
                    .flatten()
                {
                    // Every wait is one tokio can sleep: no more than the policies' 10⁹ s bound.
                    prop_assert!(wait <= Duration::from_secs(1_000_000_000));
                }
            }
        }
    }

    #[test]
    fn retry_after_never_panics_and_reads_delay_seconds(text in ".{0,40}", seconds in any::<u64>()) {
        let _ = retry_after(&text);
        prop_assert_eq!(retry_after(&seconds.to_string()), Some(Duration::from_secs(seconds)));
    }

    #[test]
    fn no_proxy_never_panics_and_an_entry_bypasses_its_own_host(
        rules in ".{0,80}",
        host in "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
        port in any::<u16>(),
        probe in ".{0,30}",
    ) {
        let _ = NoProxy::parse(&rules).bypasses(&probe, port);
        let listed = format!("other.test, {host}");
        let subdomain = format!("sub.{host}");
        let longer = format!("x{host}");
        prop_assert!(NoProxy::parse(&listed).bypasses(&host, port));
        prop_assert!(NoProxy::parse(&host).bypasses(&subdomain, port));
        prop_assert!(!NoProxy::parse(&host).bypasses(&longer, port));
    }

    #[test]
    fn proxy_urls_never_panic_and_debug_never_shows_their_credentials(
        url in ".{0,60}",
        password in "[A-Za-z0-9]{8,16}",
        scheme in prop_oneof![Just("http"), Just("https"), Just("socks5"), Just("socks5h")],
    ) {
        let _ = Proxy::parse(&url, &http::HeaderMap::new());
        let options = ProxyOptions {
            http: Some(format!("{scheme}://user:{password}@proxy.test:3128")),
            https: Some(format!("{scheme}://{password}@proxy.test/")),
            ..ProxyOptions::default()
        };
        let shown = format!("{options:?}");
        prop_assert!(!shown.contains(&password));
    }

    #[test]
    fn request_targets_are_sent_byte_for_byte_or_escaped_never_rewritten(target in "\\PC{0,60}") {
        let url = format!("http://a.test/{target}");
        let uri = request_uri(&url).expect("every target is sendable once escaped");
        let sent = uri.path_and_query().map_or("/", |p| p.as_str());
        prop_assert!(sent.is_ascii());
        // Undoing every escape gives back the target's own bytes, escapes included: only characters an
        // http::Uri cannot carry were escaped, and nothing else was changed (no dot segment, no fragment).
        prop_assert_eq!(percent_decoded(sent.as_bytes()), percent_decoded(format!("/{target}").as_bytes()));
    }

    #[test]
    fn der_of_any_bytes_never_panics_the_verifier(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = der::names_and_key(&bytes);
        let _ = der::issuer_and_subject(&bytes);
        let _ = der::contents(&bytes);
    }
}
