//! What an agent knows about each origin it talks to: counters (metrics.rs) and the live state of its policies
//! (the retry rule, breaker and limiter beside this file). One entry per origin, made on the first request and
//! kept for the agent's life, so counters never go backwards.

use crate::error::{CoreError, ErrorKind};
use crate::lock;
use crate::metrics::{self, OriginMetrics};
pub(crate) use crate::policy::Turn;
use crate::policy::{Admission, Breaker, CircuitState, Limiter, Policies, RetryOptions};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// Hears of circuit state changes: `(origin, new state)`.
pub(crate) type CircuitObserver = Arc<dyn Fn(&str, CircuitState) + Send + Sync>;

/// One origin.
pub(crate) struct Upstream {
    origin: String,
    pub(crate) metrics: Arc<OriginMetrics>,
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

    fn report(&self, change: Option<CircuitState>) {
        let Some(state) = change else { return };
        self.metrics.circuit_state.store(state.gauge(), Relaxed);
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
    origins: Mutex<HashMap<String, Arc<Upstream>>>,
}

impl Upstreams {
    pub(crate) fn new(policies: Policies, on_circuit: CircuitObserver) -> Self {
        Upstreams {
            policies,
            on_circuit,
            origins: Mutex::new(HashMap::new()),
        }
    }

    /// The entry of `origin` (`scheme://host[:port]`), made on first use.
    pub(crate) fn get(&self, origin: &str) -> Arc<Upstream> {
        let mut origins = lock(&self.origins);
        if let Some(upstream) = origins.get(origin) {
            return Arc::clone(upstream);
        }
        let policies = self.policies.for_origin(origin);
        let now = Instant::now();
        let upstream = Arc::new(Upstream {
            origin: origin.to_string(),
            metrics: Arc::default(),
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
        origins.insert(origin.to_string(), Arc::clone(&upstream));
        upstream
    }

    /// The current state of `origin`'s circuit breaker, if it has one.
    pub(crate) fn circuit_state(&self, origin: &str) -> Option<CircuitState> {
        let upstream = lock(&self.origins).get(origin).cloned()?;
        let breaker = upstream.breaker.as_ref()?;
        let state = lock(breaker).state();
        Some(state)
    }

    /// `(origin, connections)` for every origin with connections open.
    pub(crate) fn open_connections(&self) -> Vec<(String, usize)> {
        lock(&self.origins)
            .iter()
            .filter_map(|(origin, u)| {
                let open = u.metrics.connections.load(Relaxed);
                (open > 0).then(|| (origin.clone(), open as usize))
            })
            .collect()
    }

    fn snapshot(&self) -> Vec<(String, Arc<OriginMetrics>)> {
        let mut all: Vec<(String, Arc<OriginMetrics>)> = lock(&self.origins)
            .iter()
            .map(|(origin, u)| (origin.clone(), Arc::clone(&u.metrics)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    pub(crate) fn metrics_text(&self) -> String {
        metrics::render_text(&self.snapshot())
    }

    pub(crate) fn metrics_json(&self) -> String {
        metrics::render_json(&self.snapshot())
    }
}
