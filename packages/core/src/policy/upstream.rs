//! What an agent knows about each origin it talks to: counters (metrics.rs) and the live state of its policies
//! (the retry rule, breaker and limiter beside this file). One entry per origin, made on the first request.
//!
//! A crawler or a webhook sender talks to millions of origins, so neither kind of state may grow with them.
//! Policy state is dropped for origins at rest (nothing in flight, no connection open, circuit closed, rate
//! limiter refilled — a fresh entry behaves the same) whenever the table has doubled since the last sweep.
//! Counters are kept for the first [`LABELLED_ORIGINS`] origins, for the agent's life, so that they never go
//! backwards; every later origin is counted under the one label value `origin="other"`.

use crate::error::{CoreError, ErrorKind};
use crate::lock;
use crate::metrics::{self, OriginMetrics};
pub(crate) use crate::policy::Turn;
use crate::policy::{Admission, Breaker, CircuitState, Limiter, Policies, RetryOptions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// Hears of circuit state changes: `(origin, new state)`.
pub(crate) type CircuitObserver = Arc<dyn Fn(&str, CircuitState) + Send + Sync>;

/// Origins counted under their own `origin` label; later ones are folded into [`metrics::OTHER_ORIGIN`].
pub(crate) const LABELLED_ORIGINS: usize = 100;

/// The table is swept of origins at rest once it holds this many, then each time it has doubled since.
const FIRST_SWEEP: usize = 256;

/// One origin.
pub(crate) struct Upstream {
    origin: String,
    /// Its own counters, or the counters shared by every origin folded into `origin="other"`.
    pub(crate) metrics: Arc<OriginMetrics>,
    /// Whether `metrics` are this origin's own (the circuit state gauge means nothing for a folded origin).
    labelled: bool,
    /// Connections open to this origin (the metrics' gauge may be shared).
    pub(crate) connections: AtomicI64,
    pub(crate) retry: Option<RetryOptions>,
    breaker: Option<Mutex<Breaker>>,
    limiter: Option<Mutex<Limiter>>,
    on_circuit: CircuitObserver,
}

impl Upstream {
    /// Lets an attempt through the circuit breaker, or fails it fast while the circuit is open.
    pub(crate) fn breaker_permit(self: &Arc<Self>) -> Result<Permit, CoreError> {
        let Some(breaker) = &self.breaker else {
            return Ok(Permit {
                upstream: None,
                admission: Admission::Normal,
            });
        };
        let (admission, change) = lock(breaker).admit(Instant::now());
        self.report(change);
        match admission {
            Ok(admission) => Ok(Permit {
                upstream: Some(Arc::clone(self)),
                admission,
            }),
            Err(()) => Err(CoreError::new(
                ErrorKind::CircuitOpen,
                format!("Circuit breaker is open for {}", self.origin),
            )),
        }
    }

    /// Takes a request's turn from the rate limiter, now: requests are served in the order they call this.
    pub(crate) fn take_turn(&self) -> Turn {
        match &self.limiter {
            Some(limiter) => lock(limiter).take(Instant::now()),
            None => Turn::Now,
        }
    }

    /// Waits for a turn taken with [`Self::take_turn`]; fails when it was refused (the wait would have
    /// exceeded `maxWait`).
    pub(crate) async fn wait_turn(&self, turn: Turn) -> Result<(), CoreError> {
        match turn {
            Turn::Now => Ok(()),
            Turn::At(at) => {
                self.metrics.rate_limit_waits.fetch_add(1, Relaxed);
                tokio::time::sleep_until(at).await;
                Ok(())
            }
            Turn::Refused => {
                self.metrics.rate_limit_rejections.fetch_add(1, Relaxed);
                Err(CoreError::new(
                    ErrorKind::RateLimited,
                    format!("Rate limit of {} exceeded", self.origin),
                ))
            }
        }
    }

    /// Whether dropping this entry loses nothing a fresh one would not have: no request holds it, no
    /// connection is open, the circuit is closed and the rate limiter has refilled.
    fn at_rest(self: &Arc<Self>, now: Instant) -> bool {
        Arc::strong_count(self) == 1
            && self.connections.load(Relaxed) <= 0
            && self
                .breaker
                .as_ref()
                .is_none_or(|b| lock(b).state() == CircuitState::Closed)
            && self.limiter.as_ref().is_none_or(|l| lock(l).is_full(now))
    }

    fn report(&self, change: Option<CircuitState>) {
        let Some(state) = change else { return };
        if self.labelled {
            self.metrics.circuit_state.store(state.gauge(), Relaxed);
        }
        if state == CircuitState::Open {
            self.metrics.circuit_trips.fetch_add(1, Relaxed);
        }
        (self.on_circuit)(&self.origin, state);
    }
}

/// An attempt's place in its origin's circuit breaker: report its outcome with [`Permit::record`]. Dropped
/// without an outcome (the request was aborted), a half-open probe gives its place back.
pub(crate) struct Permit {
    upstream: Option<Arc<Upstream>>,
    admission: Admission,
}

impl Permit {
    pub(crate) fn record(mut self, failed: bool) {
        if let Some(upstream) = self.upstream.take() {
            if let Some(breaker) = &upstream.breaker {
                let change = lock(breaker).record(self.admission, failed, Instant::now());
                upstream.report(change);
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(upstream) = self.upstream.take() {
            if self.admission == Admission::Probe {
                if let Some(breaker) = &upstream.breaker {
                    lock(breaker).forget_probe();
                }
            }
        }
    }
}

/// Whether `error` says something about the upstream (for the circuit breaker), rather than about the
/// request's own body or arguments.
pub(crate) fn upstream_failed(error: &CoreError) -> bool {
    !matches!(
        error.kind,
        ErrorKind::RequestBody
            | ErrorKind::RequestContentLengthMismatch
            | ErrorKind::InvalidArgument
            | ErrorKind::NotSupported
            | ErrorKind::Aborted
            | ErrorKind::ResponseExceededMaxSize
            | ErrorKind::HeadersOverflow
    )
}

/// Every origin of one agent.
pub(crate) struct Upstreams {
    policies: Policies,
    on_circuit: CircuitObserver,
    table: Mutex<Table>,
}

struct Table {
    origins: HashMap<String, Arc<Upstream>>,
    /// The counters of the first [`LABELLED_ORIGINS`] origins, kept for the agent's life.
    labelled: HashMap<String, Arc<OriginMetrics>>,
    /// The counters of every later origin.
    folded: Arc<OriginMetrics>,
    any_folded: bool,
    /// `origins.len()` at which the next sweep runs.
    next_sweep: usize,
}

impl Upstreams {
    pub(crate) fn new(policies: Policies, on_circuit: CircuitObserver) -> Self {
        Upstreams {
            policies,
            on_circuit,
            table: Mutex::new(Table {
                origins: HashMap::new(),
                labelled: HashMap::new(),
                folded: Arc::default(),
                any_folded: false,
                next_sweep: FIRST_SWEEP,
            }),
        }
    }

    /// The entry of `origin` (`scheme://host[:port]`), made on first use.
    pub(crate) fn get(&self, origin: &str) -> Arc<Upstream> {
        let mut table = lock(&self.table);
        if let Some(upstream) = table.origins.get(origin) {
            return Arc::clone(upstream);
        }
        let now = Instant::now();
        if table.origins.len() >= table.next_sweep {
            table.origins.retain(|_, upstream| !upstream.at_rest(now));
            table.next_sweep = (table.origins.len() * 2).max(FIRST_SWEEP);
        }
        let (metrics, labelled) = match table.labelled.get(origin) {
            Some(metrics) => (Arc::clone(metrics), true),
            None if table.labelled.len() < LABELLED_ORIGINS => {
                let metrics = Arc::new(OriginMetrics::default());
                table
                    .labelled
                    .insert(origin.to_string(), Arc::clone(&metrics));
                (metrics, true)
            }
            None => {
                table.any_folded = true;
                (Arc::clone(&table.folded), false)
            }
        };
        let policies = self.policies.for_origin(origin);
        let upstream = Arc::new(Upstream {
            origin: origin.to_string(),
            metrics,
            labelled,
            connections: AtomicI64::new(0),
            retry: policies.retry.clone(),
            breaker: policies
                .circuit_breaker
                .clone()
                .map(|options| Mutex::new(Breaker::new(options, now))),
            limiter: policies
                .rate_limit
                .as_ref()
                .map(|options| Mutex::new(Limiter::new(options, now))),
            on_circuit: Arc::clone(&self.on_circuit),
        });
        table
            .origins
            .insert(origin.to_string(), Arc::clone(&upstream));
        upstream
    }

    /// Counts a connection of `origin` opened (`+1`) or closed (`-1`).
    pub(crate) fn count_connection(&self, origin: &str, change: i64) {
        let upstream = self.get(origin);
        upstream.connections.fetch_add(change, Relaxed);
        upstream.metrics.connections.fetch_add(change, Relaxed);
    }

    /// The current state of `origin`'s circuit breaker, if it has one.
    pub(crate) fn circuit_state(&self, origin: &str) -> Option<CircuitState> {
        let upstream = lock(&self.table).origins.get(origin).cloned()?;
        let breaker = upstream.breaker.as_ref()?;
        let state = lock(breaker).state();
        Some(state)
    }

    /// `(origin, connections)` for every origin with connections open.
    pub(crate) fn open_connections(&self) -> Vec<(String, usize)> {
        lock(&self.table)
            .origins
            .iter()
            .filter_map(|(origin, u)| {
                let open = u.connections.load(Relaxed);
                (open > 0).then(|| (origin.clone(), open as usize))
            })
            .collect()
    }

    /// Every label set's counters, in order, `origin="other"` last.
    fn snapshot(&self) -> Vec<(String, Arc<OriginMetrics>)> {
        let table = lock(&self.table);
        let mut all: Vec<(String, Arc<OriginMetrics>)> = table
            .labelled
            .iter()
            .map(|(origin, metrics)| (origin.clone(), Arc::clone(metrics)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        if table.any_folded {
            all.push((metrics::OTHER_ORIGIN.to_string(), Arc::clone(&table.folded)));
        }
        all
    }

    pub(crate) fn metrics_text(&self) -> String {
        metrics::render_text(&self.snapshot())
    }

    pub(crate) fn metrics_json(&self) -> String {
        metrics::render_json(&self.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{BreakerOptions, OriginPolicies, RateLimitOptions};

    /// Every origin with a breaker and a limiter; `http://limited.test`'s refills a token an hour.
    fn upstreams() -> Upstreams {
        let defaults = OriginPolicies {
            circuit_breaker: Some(BreakerOptions::default()),
            rate_limit: Some(RateLimitOptions::default()),
            ..OriginPolicies::default()
        };
        let slow = OriginPolicies {
            rate_limit: Some(RateLimitOptions {
                requests_per_second: 1.0 / 3600.0,
                burst: 1.0,
                ..RateLimitOptions::default()
            }),
            ..defaults.clone()
        };
        let policies = Policies {
            defaults,
            origins: [("http://limited.test".to_string(), slow)].into(),
        };
        Upstreams::new(policies, Arc::new(|_, _| {}))
    }

    fn origins(upstreams: &Upstreams) -> usize {
        lock(&upstreams.table).origins.len()
    }

    #[tokio::test]
    async fn origins_at_rest_are_dropped_and_the_table_stays_bounded() {
        let upstreams = upstreams();
        for i in 0..20_000 {
            drop(upstreams.get(&format!("http://o{i}.test")));
        }
        assert!(
            origins(&upstreams) <= 2 * FIRST_SWEEP,
            "{} origins kept",
            origins(&upstreams)
        );
    }

    #[tokio::test]
    async fn origins_in_use_with_connections_or_an_open_circuit_are_kept() {
        let upstreams = upstreams();
        let held = upstreams.get("http://held.test");
        upstreams.count_connection("http://connected.test", 1);
        let tripped = upstreams.get("http://tripped.test");
        for _ in 0..BreakerOptions::default().minimum_requests + 1 {
            if let Ok(permit) = tripped.breaker_permit() {
                permit.record(true);
            }
        }
        assert_eq!(
            upstreams.circuit_state("http://tripped.test"),
            Some(CircuitState::Open)
        );
        drop(tripped);
        let limited = upstreams.get("http://limited.test");
        let _ = limited.take_turn();
        drop(limited);
        for i in 0..4 * FIRST_SWEEP {
            drop(upstreams.get(&format!("http://o{i}.test")));
        }
        let table = lock(&upstreams.table);
        for kept in [
            "http://held.test",
            "http://connected.test",
            "http://tripped.test",
            "http://limited.test",
        ] {
            assert!(table.origins.contains_key(kept), "{kept} was dropped");
        }
        drop(table);
        drop(held);
    }

    #[test]
    fn counters_are_kept_for_the_first_origins_and_later_ones_fold_into_other() {
        let upstreams = Upstreams::new(Policies::default(), Arc::new(|_, _| {}));
        for i in 0..3 * LABELLED_ORIGINS {
            upstreams
                .get(&format!("http://o{i}.test"))
                .metrics
                .retries
                .fetch_add(1, Relaxed);
        }
        let snapshot = upstreams.snapshot();
        assert_eq!(snapshot.len(), LABELLED_ORIGINS + 1);
        let (last, folded) = snapshot.last().unwrap();
        assert_eq!(last, metrics::OTHER_ORIGIN);
        assert_eq!(folded.retries.load(Relaxed), 2 * LABELLED_ORIGINS as u64);
        // An origin that had its own label keeps it (and its counts) even after its entry was dropped.
        let again = upstreams.get("http://o0.test");
        assert_eq!(again.metrics.retries.load(Relaxed), 1);
    }
}
