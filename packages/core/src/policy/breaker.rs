//! The circuit breaker: attempts' outcomes counted in a rolling window of time slices, the circuit opened
//! above a failure ratio, half-opened after a pause to let probes through, closed again when they all pass.

use super::millis;
use serde::Deserialize;
use std::time::Duration;
use tokio::time::Instant;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
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
}
