//! The HTTP core of reqwest-dispatcher.
//!
//! This crate knows nothing of JavaScript. It turns a [`DispatchRequest`] into a request sent with
//! reqwest/hyper/tokio and reports what happens to a [`DispatchHandler`], with undici's semantics: no automatic
//! decompression, no redirect following, status message and trailers kept, errors carrying undici's codes.
//! The Node bridge (`packages/node/native`) only marshals these types to and from JavaScript.

mod agent;
mod attempts;
mod body;
mod controller;
mod error;
mod handler;
mod metrics;
mod options;
mod policy;
mod request;
mod response;
mod runtime;
mod transport;

pub use agent::{Agent, AgentEvent, AgentObserver};

/// Locks `mutex`, recovering from poisoning: every critical section in this crate leaves its data consistent
/// at each step, so a panic in one holder does not make the state unusable for the others.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
pub use body::{BodyChunk, BodyPull, BodySender};
pub use controller::RequestController;
pub use error::{CoreError, ErrorKind};
pub use handler::{DispatchHandler, ResponseHead};
pub use options::{AgentOptions, ProxyOptions, TlsOptions, H2_STREAMS_PER_CONNECTION};
pub use policy::{
    BreakerOptions, CircuitState, OriginPolicies, Policies, RateLimitOptions, RetryOptions,
};
pub use request::{DispatchRequest, RequestBody};
pub use runtime::{default_worker_threads, runtime_handle, set_worker_threads};
pub use transport::connections::{ConnectionEvent, ConnectionObserver};
pub use transport::slots::OriginStats;
