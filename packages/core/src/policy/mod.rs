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

pub(crate) mod upstream;

use crate::error::CoreError;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

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

    pub fn for_origin(&self, origin: &str) -> &OriginPolicies {
        self.origins.get(origin).unwrap_or(&self.defaults)
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
        headers: &http::HeaderMap,
        retry: u32,
    ) -> Option<Duration> {
        if retry > self.max_retries || !self.status_codes.contains(&status) {
            return None;
        }
        let max = millis(self.max_timeout);
        if self.retry_after {
            if let Some(wait) = headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
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

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64((ms / 1000.0).clamp(0.0, 1e9))
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
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

/// `circuitBreaker` options.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct BreakerOptions {
    /// Failure ratio (0..1) above which the circuit opens.
    pub threshold: f64,
    /// Outcomes the window must hold before the ratio counts.
    pub minimum_requests: u32,
    /// Length of the rolling window, in milliseconds.
    pub window: f64,
    /// How long the circuit stays open before probes are let through, in milliseconds.
    pub half_open_after: f64,
    /// Probes let through while half-open; all must succeed to close the circuit.
    pub half_open_requests: u32,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        BreakerOptions {
            threshold: 0.5,
            minimum_requests: 3,
            window: 30_000.0,
            half_open_after: 10_000.0,
            half_open_requests: 1,
        }
    }
}

/// Where a circuit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }

    /// The value of the `circuit_state` gauge: 0 closed, 1 half-open, 2 open.
    pub(crate) fn gauge(self) -> u8 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

/// Slices of the rolling window.
const BUCKETS: usize = 10;

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Which slice of time (since the breaker began) the counts belong to.
    slice: u64,
    total: u32,
    failures: u32,
}

/// Whether an admitted attempt is a half-open probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Normal,
    Probe,
}

/// One origin's circuit breaker. Not thread-safe by itself: the caller holds it behind a mutex.
pub(crate) struct Breaker {
    options: BreakerOptions,
    state: CircuitState,
    began: Instant,
    opened_at: Instant,
    probes_out: u32,
    probes_passed: u32,
    buckets: [Bucket; BUCKETS],
}

/// What the breaker answers an attempt: go (and how), or fail fast; plus a state change to report.
pub(crate) type Transition = Option<CircuitState>;

impl Breaker {
    pub(crate) fn new(options: BreakerOptions, now: Instant) -> Self {
        Breaker {
            options,
            state: CircuitState::Closed,
            began: now,
            opened_at: now,
            probes_out: 0,
            probes_passed: 0,
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.state
    }

    fn slice_length(&self) -> Duration {
        millis(self.options.window / BUCKETS as f64).max(Duration::from_millis(1))
    }

    fn slice_of(&self, now: Instant) -> u64 {
        (now.duration_since(self.began).as_nanos() / self.slice_length().as_nanos()) as u64
    }

    /// Lets an attempt through (`Ok`) or refuses it because the circuit is open (`Err`).
    pub(crate) fn admit(&mut self, now: Instant) -> (Result<Admission, ()>, Transition) {
        match self.state {
            CircuitState::Closed => (Ok(Admission::Normal), None),
            CircuitState::Open => {
                if now.duration_since(self.opened_at) < millis(self.options.half_open_after) {
                    return (Err(()), None);
                }
                self.state = CircuitState::HalfOpen;
                self.probes_out = 1;
                self.probes_passed = 0;
                (Ok(Admission::Probe), Some(CircuitState::HalfOpen))
            }
            CircuitState::HalfOpen => {
                if self.probes_out + self.probes_passed >= self.options.half_open_requests.max(1) {
                    return (Err(()), None);
                }
                self.probes_out += 1;
                (Ok(Admission::Probe), None)
            }
        }
    }

    /// Records the outcome of an admitted attempt.
    pub(crate) fn record(
        &mut self,
        admission: Admission,
        failed: bool,
        now: Instant,
    ) -> Transition {
        if admission == Admission::Probe {
            if self.state != CircuitState::HalfOpen {
                return None;
            }
            self.probes_out = self.probes_out.saturating_sub(1);
            if failed {
                return self.open(now);
            }
            self.probes_passed += 1;
            if self.probes_passed >= self.options.half_open_requests.max(1) {
                self.state = CircuitState::Closed;
                self.buckets = [Bucket::default(); BUCKETS];
                return Some(CircuitState::Closed);
            }
            return None;
        }
        if self.state != CircuitState::Closed {
            // An attempt admitted before the circuit opened: its outcome is old news.
            return None;
        }
        let slice = self.slice_of(now);
        let bucket = &mut self.buckets[(slice % BUCKETS as u64) as usize];
        if bucket.slice != slice {
            *bucket = Bucket {
                slice,
                total: 0,
                failures: 0,
            };
        }
        bucket.total += 1;
        if failed {
            bucket.failures += 1;
        }
        let oldest = slice.saturating_sub(BUCKETS as u64 - 1);
        let (total, failures) = self
            .buckets
            .iter()
            .filter(|b| b.slice >= oldest && b.slice <= slice)
            .fold((0u32, 0u32), |(t, f), b| (t + b.total, f + b.failures));
        if failed
            && total >= self.options.minimum_requests
            && f64::from(failures) / f64::from(total) > self.options.threshold
        {
            return self.open(now);
        }
        None
    }

    /// A probe ended without an outcome (its request was aborted): its place is free again.
    pub(crate) fn forget_probe(&mut self) {
        if self.state == CircuitState::HalfOpen {
            self.probes_out = self.probes_out.saturating_sub(1);
        }
    }

    fn open(&mut self, now: Instant) -> Transition {
        self.state = CircuitState::Open;
        self.opened_at = now;
        self.probes_out = 0;
        self.probes_passed = 0;
        Some(CircuitState::Open)
    }
}

/// `rateLimit` options.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitOptions {
    pub requests_per_second: f64,
    pub burst: f64,
    /// Longest a request waits for its turn, in milliseconds.
    pub max_wait: f64,
}

impl Default for RateLimitOptions {
    fn default() -> Self {
        RateLimitOptions {
            requests_per_second: 100.0,
            burst: 10.0,
            max_wait: 10_000.0,
        }
    }
}

/// A token bucket whose tokens can be borrowed ahead: a request that finds none takes one anyway and waits
/// until it would have been there, so requests go in the order they asked.
pub(crate) struct Limiter {
    rate: f64,
    burst: f64,
    max_wait: Duration,
    tokens: f64,
    last: Instant,
}

/// What a request is told by the limiter.
#[derive(Debug, PartialEq)]
pub(crate) enum Turn {
    Now,
    At(Instant),
    Refused,
}

impl Limiter {
    pub(crate) fn new(options: &RateLimitOptions, now: Instant) -> Self {
        let burst = options.burst.max(1.0);
        Limiter {
            rate: options.requests_per_second.max(f64::MIN_POSITIVE),
            burst,
            max_wait: millis(options.max_wait),
            tokens: burst,
            last: now,
        }
    }

    pub(crate) fn take(&mut self, now: Instant) -> Turn {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Turn::Now;
        }
        let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.rate);
        if wait > self.max_wait {
            return Turn::Refused;
        }
        self.tokens -= 1.0;
        Turn::At(now + wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

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
        let mut headers = http::HeaderMap::new();
        assert_eq!(r.after_status(503, &headers, 1), Some(ms(500)));
        assert_eq!(r.after_status(404, &headers, 1), None);
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(r.after_status(503, &headers, 1), Some(ms(2000)));
        headers.insert("retry-after", "99999".parse().unwrap());
        assert_eq!(r.after_status(429, &headers, 1), Some(ms(30_000)));
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + ms(5_000));
        headers.insert("retry-after", later.parse().unwrap());
        let wait = r.after_status(503, &headers, 1).unwrap();
        assert!(wait > ms(3_500) && wait <= ms(5_000), "{wait:?}");
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let r = RetryOptions {
            jitter: 0.5,
            ..RetryOptions::default()
        };
        let waits: Vec<Duration> = (0..50)
            .map(|_| r.after_status(503, &http::HeaderMap::new(), 1).unwrap())
            .collect();
        assert!(waits.iter().all(|w| *w >= ms(250) && *w <= ms(500)));
        assert!(waits.iter().any(|w| *w != waits[0]), "jitter varies");
    }

    #[test]
    fn breaker_opens_over_threshold_then_half_opens_and_closes() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerOptions::default(), t0);
        assert_eq!(b.admit(t0).0, Ok(Admission::Normal));
        assert_eq!(b.record(Admission::Normal, true, t0), None);
        assert_eq!(b.record(Admission::Normal, false, t0), None);
        // 2 failures of 3 = 67% > 50%, with the minimum of 3 outcomes.
        assert_eq!(
            b.record(Admission::Normal, true, t0),
            Some(CircuitState::Open)
        );
        assert_eq!(b.admit(t0 + ms(9_999)).0, Err(()));
        let (admission, change) = b.admit(t0 + ms(10_000));
        assert_eq!(admission, Ok(Admission::Probe));
        assert_eq!(change, Some(CircuitState::HalfOpen));
        // One probe at a time by default.
        assert_eq!(b.admit(t0 + ms(10_001)).0, Err(()));
        assert_eq!(
            b.record(Admission::Probe, false, t0 + ms(10_002)),
            Some(CircuitState::Closed)
        );
        assert_eq!(b.admit(t0 + ms(10_003)).0, Ok(Admission::Normal));
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_again() {
        let t0 = Instant::now();
        let options = BreakerOptions {
            minimum_requests: 1,
            half_open_requests: 2,
            ..BreakerOptions::default()
        };
        let mut b = Breaker::new(options, t0);
        assert_eq!(
            b.record(Admission::Normal, true, t0),
            Some(CircuitState::Open)
        );
        let later = t0 + ms(10_000);
        assert_eq!(b.admit(later).0, Ok(Admission::Probe));
        assert_eq!(b.admit(later).0, Ok(Admission::Probe));
        assert_eq!(b.admit(later).0, Err(()));
        assert_eq!(
            b.record(Admission::Probe, true, later),
            Some(CircuitState::Open)
        );
        assert_eq!(b.admit(later + ms(1)).0, Err(()));
    }

    #[test]
    fn old_failures_leave_the_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerOptions::default(), t0);
        b.record(Admission::Normal, true, t0);
        b.record(Admission::Normal, true, t0);
        // 31 s later the two failures are out of the 30 s window: one more failure is 1 of 1 < minimum.
        assert_eq!(b.record(Admission::Normal, true, t0 + ms(31_000)), None);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn an_aborted_probe_frees_its_place() {
        let t0 = Instant::now();
        let options = BreakerOptions {
            minimum_requests: 1,
            ..BreakerOptions::default()
        };
        let mut b = Breaker::new(options, t0);
        b.record(Admission::Normal, true, t0);
        let later = t0 + ms(10_000);
        assert_eq!(b.admit(later).0, Ok(Admission::Probe));
        b.forget_probe();
        assert_eq!(b.admit(later).0, Ok(Admission::Probe));
    }

    #[test]
    fn limiter_lets_a_burst_through_then_spaces_requests_in_order() {
        let t0 = Instant::now();
        let options = RateLimitOptions {
            requests_per_second: 10.0,
            burst: 2.0,
            max_wait: 250.0,
        };
        let mut l = Limiter::new(&options, t0);
        assert_eq!(l.take(t0), Turn::Now);
        assert_eq!(l.take(t0), Turn::Now);
        assert_eq!(l.take(t0), Turn::At(t0 + ms(100)));
        assert_eq!(l.take(t0), Turn::At(t0 + ms(200)));
        // The next would wait 300 ms > maxWait.
        assert_eq!(l.take(t0), Turn::Refused);
        // Refusals take nothing: 300 ms later the three borrowed tokens are repaid and one is free.
        assert_eq!(l.take(t0 + ms(300)), Turn::Now);
    }
}
