//! Retry: an attempt that failed with a listed error code or answered with a listed status is sent again after
//! an exponential delay (`minTimeout × timeoutFactor^(n-1)`, at most `maxTimeout`, shortened by up to `jitter`
//! of itself), or after the server's `Retry-After`.

use super::millis;
use crate::error::CoreError;
use serde::Deserialize;
use std::time::Duration;

/// `retry`, with undici `RetryHandler`'s names and defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct RetryOptions {
    pub max_retries: u32,
    /// Milliseconds before the first retry.
    pub min_timeout: f64,
    /// Longest wait between attempts, in milliseconds (also caps `Retry-After`).
    pub max_timeout: f64,
    pub timeout_factor: f64,
    /// Fraction (0..=1) of each delay that is randomly taken off, so that clients do not retry in lockstep.
    pub jitter: f64,
    /// Honour the server's `Retry-After` (seconds or an HTTP date).
    pub retry_after: bool,
    pub methods: Vec<String>,
    pub status_codes: Vec<u16>,
    pub error_codes: Vec<String>,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            max_retries: 5,
            min_timeout: 500.0,
            max_timeout: 30_000.0,
            timeout_factor: 2.0,
            jitter: 0.0,
            retry_after: true,
            methods: ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]
                .map(String::from)
                .to_vec(),
            status_codes: vec![500, 502, 503, 504, 429],
            error_codes: [
                "ECONNRESET",
                "ECONNREFUSED",
                "ENOTFOUND",
                "ENETDOWN",
                "ENETUNREACH",
                "EHOSTDOWN",
                "EHOSTUNREACH",
                "EPIPE",
                "ETIMEDOUT",
                "UND_ERR_SOCKET",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl RetryOptions {
    pub(crate) fn allows_method(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    /// The wait before retry number `retry` (1-based) after `error`, or `None` when it is not retried.
    pub(crate) fn after_error(&self, error: &CoreError, retry: u32) -> Option<Duration> {
        if retry > self.max_retries || !self.error_codes.iter().any(|c| c == error.code()) {
            return None;
        }
        Some(self.backoff(retry))
    }

    /// The wait before retry number `retry` after a response with `status`, or `None` when it is not retried.
    pub(crate) fn after_status(
        &self,
        status: u16,
        headers: &crate::handler::RawHeaders,
        retry: u32,
    ) -> Option<Duration> {
        if retry > self.max_retries || !self.status_codes.contains(&status) {
            return None;
        }
        let max = millis(self.max_timeout);
        if self.retry_after {
            if let Some(wait) = headers
                .get("retry-after")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(retry_after)
            {
                return Some(wait.min(max));
            }
        }
        Some(self.backoff(retry))
    }

    fn backoff(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = (self.min_timeout * self.timeout_factor.powi(exponent)).min(self.max_timeout);
        let jitter = self.jitter.clamp(0.0, 1.0);
        millis(base * (1.0 - jitter * random_fraction()))
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub(crate) fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A number in [0, 1) that differs from call to call: enough for jitter, no cryptographic quality needed.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn retry_backs_off_exponentially_up_to_max_timeout() {
        let r = RetryOptions {
            max_timeout: 3_000.0,
            ..RetryOptions::default()
        };
        let refused = CoreError::new(ErrorKind::Os("ECONNREFUSED"), "refused");
        assert_eq!(r.after_error(&refused, 1), Some(ms(500)));
        assert_eq!(r.after_error(&refused, 2), Some(ms(1000)));
        assert_eq!(r.after_error(&refused, 4), Some(ms(3000)));
        assert_eq!(r.after_error(&refused, 6), None);
        let timeout = CoreError::new(ErrorKind::HeadersTimeout, "t");
        assert_eq!(r.after_error(&timeout, 1), None);
    }

    #[test]
    fn retry_honours_retry_after_capped_by_max_timeout() {
        let r = RetryOptions::default();
        let with = |value: &str| {
            let mut headers = crate::handler::RawHeaders::new();
            headers.push("Retry-After", value.to_string());
            headers
        };
        let none = crate::handler::RawHeaders::new();
        assert_eq!(r.after_status(503, &none, 1), Some(ms(500)));
        assert_eq!(r.after_status(404, &none, 1), None);
        assert_eq!(r.after_status(503, &with("2"), 1), Some(ms(2000)));
        assert_eq!(r.after_status(429, &with("99999"), 1), Some(ms(30_000)));
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + ms(5_000));
        let wait = r.after_status(503, &with(&later), 1).unwrap();
        assert!(wait > ms(3_500) && wait <= ms(5_000), "{wait:?}");
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let r = RetryOptions {
            jitter: 0.5,
            ..RetryOptions::default()
        };
        let waits: Vec<Duration> = (0..50)
            .map(|_| {
                r.after_status(503, &crate::handler::RawHeaders::new(), 1)
                    .unwrap()
            })
            .collect();
        assert!(waits.iter().all(|w| *w >= ms(250) && *w <= ms(500)));
        assert!(waits.iter().any(|w| *w != waits[0]), "jitter varies");
    }
}
