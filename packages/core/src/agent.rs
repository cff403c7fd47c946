//! The public [`Agent`]: what it is made of (its transport, its origins' request slots, policies and
//! counters), what it reports ([`AgentEvent`]), and `dispatch`, which spawns each request's task and contains
//! its panics. The task itself is the attempt loop (`attempts.rs`).

use crate::after_poll::deferring;
use crate::attempts::Attempts;
use crate::controller::RequestController;
use crate::error::CoreError;
use crate::handler::DispatchHandler;
use crate::metrics::Metered;
use crate::options::AgentOptions;
use crate::policy::upstream::{Turn, Upstream, Upstreams};
use crate::policy::CircuitState;
use crate::request::{origin_of, DispatchRequest};
use crate::runtime::runtime_handle;
use crate::transport::connections::{ConnectionEvent, ConnectionObserver};
use crate::transport::slots::{Entry, Slots};
use crate::transport::Transport;
use futures_util::FutureExt;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::runtime::Handle;

/// What an agent reports besides requests: its connections (undici's `connect`, `disconnect`,
/// `connectionError`) and its circuit breakers changing state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    Connection(ConnectionEvent),
    Circuit { origin: String, state: CircuitState },
}

/// Receives an agent's [`AgentEvent`]s. Called from tokio worker threads.
pub type AgentObserver = Arc<dyn Fn(AgentEvent) + Send + Sync>;

#[derive(Clone, Debug, PartialEq, Eq)]
/// What `agent.stats` reports for one origin.
pub struct OriginStats {
    /// `scheme://host[:port]`, as undici keys its stats.
    pub origin: String,
    /// Requests waiting for a connection (for the `connections` cap or behind a probe).
    pub pending: usize,
    /// Requests sent and not yet finished.
    pub running: usize,
    /// Connections open to the origin (counted on the direct path; through a proxy they are not seen).
    pub connected: usize,
}

/// A pool of connections with undici `Agent` semantics: no redirects followed, no bodies decoded, no proxy
/// taken from the environment.
#[derive(Clone)]
pub struct Agent {
    transport: Transport,
    options: Arc<AgentOptions>,
    runtime: Handle,
    slots: Arc<Slots>,
    upstreams: Arc<Upstreams>,
}

impl Agent {
    pub fn new(options: AgentOptions) -> Result<Agent, CoreError> {
        Self::with_observer(options, Arc::new(|_| {}))
    }

    /// An agent that reports its connections being opened, closed and failing, and its circuits changing
    /// state, to `observer`.
    pub fn with_observer(
        options: AgentOptions,
        observer: AgentObserver,
    ) -> Result<Agent, CoreError> {
        let runtime = runtime_handle();
        let _entered = runtime.enter();
        let upstreams = {
            let observer = Arc::clone(&observer);
            Arc::new(Upstreams::new(
                options.policies.clone(),
                Arc::new(move |origin: &str, state| {
                    observer(AgentEvent::Circuit {
                        origin: origin.to_string(),
                        state,
                    })
                }),
            ))
        };
        let connections: ConnectionObserver = {
            let upstreams = Arc::clone(&upstreams);
            Arc::new(move |event: ConnectionEvent| {
                match &event {
                    ConnectionEvent::Connected { origin, .. } => {
                        upstreams.count_connection(origin, 1)
                    }
                    ConnectionEvent::Disconnected { origin, .. } => {
                        upstreams.count_connection(origin, -1)
                    }
                    ConnectionEvent::Connecting { .. } | ConnectionEvent::Failed { .. } => {}
                }
                observer(AgentEvent::Connection(event))
            })
        };
        let transport = Transport::build(&options, connections)?;
        let slots = Arc::new(Slots::new(
            options.connections,
            options.allow_h2,
            options.h2c,
        ));
        Ok(Agent {
            transport,
            options: Arc::new(options),
            runtime,
            slots,
            upstreams,
        })
    }

    /// Requests pending and running per origin (undici's `agent.stats`).
    /// Every origin with requests waiting or running, open connections, or HTTP/2 state kept, in order.
    pub fn stats(&self) -> Vec<OriginStats> {
        let mut stats: BTreeMap<String, OriginStats> = BTreeMap::new();
        for (origin, pending, running) in self.slots.counts() {
            let entry = OriginStats {
                origin: origin.clone(),
                pending,
                running,
                connected: 0,
            };
            stats.insert(origin, entry);
        }
        for (origin, connected) in self.upstreams.open_connections() {
            stats
                .entry(origin.clone())
                .or_insert_with(|| OriginStats {
                    origin,
                    pending: 0,
                    running: 0,
                    connected: 0,
                })
                .connected = connected;
        }
        stats.into_values().collect()
    }

    /// Every origin's counters in Prometheus' text exposition format.
    pub fn metrics_text(&self) -> String {
        self.upstreams.metrics_text()
    }

    /// Every origin's counters as JSON (the same families as [`Agent::metrics_text`]).
    pub fn metrics_json(&self) -> String {
        self.upstreams.metrics_json()
    }

    /// Whether `origin`'s retry policy may send a `method` request again (given a body known up front).
    pub fn retries(&self, origin: &str, method: &str) -> bool {
        self.options.policies.retries(origin, method)
    }

    /// The state of `origin`'s circuit breaker (`None` when it has none or sent nothing yet).
    pub fn circuit_state(&self, origin: &str) -> Option<CircuitState> {
        self.upstreams.circuit_state(origin)
    }

    /// Starts `request` on the runtime. Its outcome reaches `handler`; `controller` aborts or pauses it.
    /// After an abort the handler hears nothing more: the caller already knows why the request ended.
    pub fn dispatch<H: DispatchHandler>(
        &self,
        request: DispatchRequest,
        controller: RequestController,
        handler: H,
    ) {
        let started = self.prepare(request, controller, handler);
        let agent = self.clone();
        self.runtime.spawn(deferring(agent.run(started, None)));
    }

    /// Starts requests given together, as [`Agent::dispatch`] starts each, with one hand-off to the runtime
    /// for all of them: a caller outside the runtime (the JavaScript thread) pays for one task, not one per
    /// request; the runtime spawns theirs.
    pub fn dispatch_all<H: DispatchHandler>(
        &self,
        requests: impl IntoIterator<Item = (DispatchRequest, RequestController, H)>,
    ) {
        let started: Vec<_> = requests
            .into_iter()
            .map(|(request, controller, handler)| self.prepare(request, controller, handler))
            .collect();
        if started.is_empty() {
            return;
        }
        let agent = self.clone();
        self.runtime.spawn(async move {
            for started in started {
                // Each takes its place in line for a connection (`connections`) here, in dispatch order as
                // undici queues them: the tasks themselves start in no set order (the one spawned last first).
                let entry = agent.slots.enter(&started.request.url);
                tokio::spawn(deferring(agent.clone().run(started, Some(entry))));
            }
        });
    }

    /// Starts requests given together, each first driven on the calling thread until it waits (`inline.rs`):
    /// a small request to an origin with an idle plain HTTP/1.1 connection is written before this returns,
    /// and its task reaches the runtime when the response arrives. For a caller with few requests in flight,
    /// whose runtime worker is likely parked: the worker then wakes once per request, not twice. (With many
    /// in flight the worker is awake anyway, and [`Agent::dispatch_all`] keeps the writes off the caller's
    /// thread.)
    pub fn dispatch_all_here<H: DispatchHandler>(
        &self,
        requests: impl IntoIterator<Item = (DispatchRequest, RequestController, H)>,
    ) {
        for (request, controller, handler) in requests {
            let started = self.prepare(request, controller, handler);
            // In line for a connection in dispatch order, as in `dispatch_all`.
            let entry = self.slots.enter(&started.request.url);
            crate::inline::start_here(
                &self.runtime,
                deferring(self.clone().run(started, Some(entry))),
            );
        }
    }

    /// What starting a request takes on the caller's thread: its origin's state, and its turn with the rate
    /// limiter, which serves requests in the order they were dispatched (not in the order their tasks run).
    fn prepare<H: DispatchHandler>(
        &self,
        request: DispatchRequest,
        controller: RequestController,
        handler: H,
    ) -> Started<H> {
        let upstream = self.upstreams.get(origin_of(&request.url));
        let turn = upstream.take_turn();
        Started {
            request,
            controller,
            handler,
            upstream,
            turn,
        }
    }

    /// The task of one request; `entry`: its place in line for a connection, when taken already.
    async fn run<H: DispatchHandler>(self, started: Started<H>, entry: Option<Entry>) {
        let Started {
            request,
            controller,
            handler,
            upstream,
            turn,
        } = started;
        let mut handler = Metered::new(handler, &upstream.metrics, &request.method);
        let outcome = {
            let attempts = Attempts {
                transport: &self.transport,
                slots: &self.slots,
                options: &self.options,
            };
            let work = AssertUnwindSafe(attempts.run(
                &upstream,
                request,
                (turn, entry),
                &controller,
                &mut handler,
            ))
            .catch_unwind();
            tokio::select! {
                biased;
                _ = controller.aborted() => return,
                outcome = work => outcome,
            }
        };
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => handler.on_error(error),
            Err(panic) => handler.on_error(CoreError::from_panic(
                "internal error in reqwest-dispatcher",
                &*panic,
            )),
        }
    }
}

/// A request whose origin state and rate-limiter turn were taken, ready for its task.
struct Started<H> {
    request: DispatchRequest,
    controller: RequestController,
    handler: H,
    upstream: Arc<Upstream>,
    turn: Turn,
}
