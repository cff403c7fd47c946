//! Resilience policies run inside the core, per origin: retry, circuit breaker and rate limit.
//!
//! All three are off unless configured. Options arrive as JSON from the JavaScript layer (already validated
//! and merged per origin there) with undici's `RetryHandler` names where they overlap; times are milliseconds.
//!
//! - **Retry** replays a request whose attempt failed with a listed error code or answered with a listed
//!   status, after an exponential delay (`minTimeout × timeoutFactor^(n-1)`, at most `maxTimeout`, shortened
//!   by up to `jitter` of itself, or the server's `Retry-After`). Only idempotent methods (by default) with a
//!   replayable body (none, or bytes known up front) are retried, and never once the response head was
//!   handed on: the decision is made before the caller hears of the response.
//! - **Circuit breaker**: every attempt's outcome (failure = an error, or a 5xx status) is counted in a
//!   rolling window. When at least `minimumRequests` outcomes are in it and the failure ratio exceeds
//!   `threshold`, the circuit opens: requests fail at once with `UND_ERR_CIRCUIT_OPEN`. After
//!   `halfOpenAfter` it half-opens and lets `halfOpenRequests` probes through; if they all succeed it closes,
//!   if one fails it opens again.
//! - **Rate limit**: a token bucket (`requestsPerSecond`, `burst`). A request without a token waits for one,
//!   in arrival order; one that would wait longer than `maxWait` fails at once with `UND_ERR_RATE_LIMITED`.
//!
//! This module holds their configuration; each policy has a file of its own (`retry.rs`, `breaker.rs`,
//! `limiter.rs`), and `upstream.rs` the live state of all three for each origin an agent talks to.

mod breaker;
mod limiter;
pub(crate) mod retry;
pub(crate) mod upstream;

pub(crate) use breaker::{Admission, Breaker};
pub use breaker::{BreakerOptions, CircuitState};
pub use limiter::RateLimitOptions;
pub(crate) use limiter::{Limiter, Turn};
pub use retry::RetryOptions;

use crate::error::CoreError;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// The policies of every origin: the agent's defaults and whole per-origin replacements.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Policies {
    #[serde(flatten)]
    pub defaults: OriginPolicies,
    /// Keyed by origin (`scheme://host[:port]`); an entry replaces the defaults for that origin.
    pub origins: HashMap<String, OriginPolicies>,
}

impl Policies {
    /// Reads the JSON the JavaScript layer produces (see src/policies.ts).
    pub fn from_json(json: &str) -> Result<Policies, CoreError> {
        serde_json::from_str(json)
            .map_err(|e| CoreError::invalid_argument(format!("invalid policies: {e}")))
    }

    pub(crate) fn for_origin(&self, origin: &str) -> &OriginPolicies {
        self.origins.get(origin).unwrap_or(&self.defaults)
    }

    /// Whether `origin`'s retry policy may send a `method` request again (given a body known up front).
    pub fn retries(&self, origin: &str, method: &str) -> bool {
        self.for_origin(origin)
            .retry
            .as_ref()
            .is_some_and(|retry| retry.allows_method(method))
    }
}

/// The policies of one origin; `None` = off.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct OriginPolicies {
    pub retry: Option<RetryOptions>,
    pub circuit_breaker: Option<BreakerOptions>,
    pub rate_limit: Option<RateLimitOptions>,
}

/// Milliseconds as the policies give them, as a `Duration`: negative and NaN are 0, at most 10⁹ s. Never panics,
/// whatever the number.
fn millis(ms: f64) -> Duration {
    if ms.is_nan() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 1e9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_with_defaults_and_per_origin_replacements() {
        let p = Policies::from_json(
            r#"{"retry":{"maxRetries":2},"origins":{"http://a.test":{"rateLimit":{"burst":3}}}}"#,
        )
        .unwrap();
        let retry = p.for_origin("http://b.test").retry.as_ref().unwrap();
        assert_eq!(retry.max_retries, 2);
        assert_eq!(retry.min_timeout, 500.0);
        let a = p.for_origin("http://a.test");
        assert!(a.retry.is_none());
        assert_eq!(a.rate_limit.as_ref().unwrap().burst, 3.0);
        assert_eq!(a.rate_limit.as_ref().unwrap().requests_per_second, 100.0);
        assert!(Policies::from_json("{\"retry\": 3}").is_err());
    }
}
