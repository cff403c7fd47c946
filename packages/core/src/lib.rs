//! The HTTP core of reqwest-dispatcher.
//!
//! This crate knows nothing of JavaScript. It turns a [`DispatchRequest`] into a request sent with its own
//! HTTP/1.1 engine or hyper, on tokio, and reports what happens to a [`DispatchHandler`], with undici's semantics: no automatic
//! decompression, no redirect following, status message and trailers kept, errors carrying undici's codes.
//! The Node bridge (`packages/node/native`) only marshals these types to and from JavaScript.
//!
//! Layout: [`Agent`] (`agent.rs`) spawns one task per request (or, with few in flight, starts it on the caller's
//! thread until it waits: `inline.rs`), each polled so that the wake-ups its handler puts off run when a poll
//! returns ([`after_poll`], `after_poll.rs`), the attempt loop (`attempts.rs`), which takes
//! the request ([`DispatchRequest`], `request.rs`) through its origin's policies (`policy/`: retry, circuit
//! breaker, rate limit) and over the network (`transport/`: the HTTP/1.1 engine in `transport/h1/`,
//! hyper-util for HTTP/2 and proxies, connections, TLS, the classification of their failures), then streams
//! the response (`response.rs`) to the [`DispatchHandler`] (`handler.rs`) under the request's
//! [`RequestController`] (`controller.rs`); a request that leaves HTTP ([`Upgrade`], `upgrade.rs`) keeps its
//! connection afterwards and carries its bytes both ways (`tunnel.rs`). Request bodies pulled from the caller are
//! in `body.rs`, counters in `metrics.rs`, the error catalogue in `error.rs`, the shared tokio runtime in
//! `runtime.rs`.

mod after_poll;
mod agent;
mod attempts;
mod body;
mod controller;
mod error;
#[cfg(test)]
mod fuzz;
mod handler;
mod inline;
mod metrics;
mod options;
mod policy;
mod request;
mod response;
mod runtime;
mod transport;
mod tunnel;
mod upgrade;

pub use after_poll::after_poll;
pub use agent::{Agent, AgentEvent, AgentObserver, OriginStats};
pub use body::{BodyChunk, BodyPull, BodySender};
pub use controller::RequestController;
pub use error::{CoreError, ErrorKind, SocketCounters};
pub use handler::{DispatchHandler, RawHeaders, ResponseHead};
pub use options::{AgentOptions, ProxyOptions, TlsOptions};
pub use policy::{
    BreakerOptions, CircuitState, OriginPolicies, Policies, RateLimitOptions, RetryOptions,
};
pub use request::{DispatchRequest, PanicPoint, RequestBody};
pub use runtime::set_worker_threads;
pub use transport::connections::ConnectionEvent;
pub use upgrade::{Switch, Upgrade, UpgradeWrite, UpgradeWriter};

/// Locks `mutex`, recovering from poisoning: every critical section in this crate leaves its data consistent
/// at each step, so a panic in one holder does not make the state unusable for the others.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
