//! The rate limiter: a token bucket whose tokens can be borrowed ahead, so that requests wait their turn in the
//! order they asked, and fail at once when that wait would exceed `maxWait`.

use super::millis;
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;

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
            // NaN and anything below the smallest positive rate become that rate (f64::max ignores NaN).
            rate: options.requests_per_second.max(f64::MIN_POSITIVE),
            burst,
            max_wait: millis(options.max_wait),
            tokens: burst,
            last: now,
        }
    }

    /// Whether the bucket has refilled by `now`: a fresh limiter would answer the same.
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    pub(crate) fn take(&mut self, now: Instant) -> Turn {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Turn::Now;
        }
        // A rate so slow that the wait overflows a Duration is refused like any wait beyond max_wait.
        let wait =
            Duration::try_from_secs_f64((1.0 - self.tokens) / self.rate).unwrap_or(Duration::MAX);
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

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
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

    #[test]
    fn a_rate_too_slow_for_any_wait_refuses_without_panicking() {
        let t0 = Instant::now();
        for rate in [
            5e-324,
            f64::MIN_POSITIVE,
            0.0,
            -1.0,
            f64::NAN,
            1e308,
            f64::INFINITY,
        ] {
            for max_wait in [0.0, 1e300, f64::NAN, -5.0] {
                let options = RateLimitOptions {
                    requests_per_second: rate,
                    burst: 1.0,
                    max_wait,
                };
                let mut l = Limiter::new(&options, t0);
                assert_eq!(l.take(t0), Turn::Now);
                let _ = l.take(t0 + ms(1));
            }
        }
        let options = RateLimitOptions {
            requests_per_second: 5e-324,
            burst: 1.0,
            max_wait: 1e300,
        };
        let mut l = Limiter::new(&options, t0);
        assert_eq!(l.take(t0), Turn::Now);
        assert_eq!(l.take(t0), Turn::Refused);
    }
}
