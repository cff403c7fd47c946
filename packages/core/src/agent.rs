//! The agent: its transport (the connection pool), its origins' policies and counters, and the task that
//! carries each request through them.

use crate::controller::RequestController;
use crate::error::{CoreError, ErrorKind};
use crate::handler::{DispatchHandler, ResponseHead};
use crate::metrics::{method_index, Outcome};
use crate::options::AgentOptions;
use crate::policy::upstream::{Permit, Turn, Upstream, Upstreams};
use crate::policy::CircuitState;
use crate::request::{DispatchRequest, RequestBody};
use crate::runtime::runtime_handle;
use crate::transport::connections::{ConnectionEvent, ConnectionObserver};
use crate::transport::slots::{self, Lease, OriginStats, Origins};
use crate::transport::{OutgoingBody, Transport};
use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::BodyExt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::time::Instant;

/// What an agent reports besides requests: its connections (undici's `connect`, `disconnect`,
/// `connectionError`) and its circuit breakers changing state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    Connection(ConnectionEvent),
    Circuit { origin: String, state: CircuitState },
}

/// Receives an agent's [`AgentEvent`]s. Called from tokio worker threads.
pub type AgentObserver = Arc<dyn Fn(AgentEvent) + Send + Sync>;

/// A pool of connections with undici `Agent` semantics: no redirects followed, no bodies decoded, no proxy
/// taken from the environment.
#[derive(Clone)]
pub struct Agent {
    client: Transport,
    options: Arc<AgentOptions>,
    runtime: Handle,
    origins: Arc<Origins>,
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
                        upstreams
                            .get(origin)
                            .metrics
                            .connections
                            .fetch_add(1, Relaxed);
                    }
                    ConnectionEvent::Disconnected { origin } => {
                        upstreams
                            .get(origin)
                            .metrics
                            .connections
                            .fetch_sub(1, Relaxed);
                    }
                    ConnectionEvent::Connecting { .. } | ConnectionEvent::Failed { .. } => {}
                }
                observer(AgentEvent::Connection(event))
            })
        };
        let client = Transport::build(&options, connections)?;
        let origins = Arc::new(Origins::new(
            options.connections,
            options.allow_h2,
            options.h2c,
        ));
        Ok(Agent {
            client,
            options: Arc::new(options),
            runtime,
            origins,
            upstreams,
        })
    }

    /// Requests pending and running per origin (undici's `agent.stats`).
    pub fn stats(&self) -> Vec<OriginStats> {
        self.origins.stats()
    }

    pub fn options(&self) -> &AgentOptions {
        &self.options
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
        let agent = self.clone();
        let upstream = self.upstreams.get(slots::origin_of(&request.url));
        // The rate limiter serves requests in the order they were dispatched: the turn is taken here, on the
        // caller's thread, not when the task first runs.
        let turn = upstream.take_turn();
        self.runtime.spawn(async move {
            let mut handler = Metered::new(handler, &upstream, &request.method);
            let outcome = {
                let work = AssertUnwindSafe(agent.run(
                    &upstream,
                    request,
                    turn,
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
                Err(panic) => handler.on_error(CoreError::internal(format!(
                    "internal error in reqwest-dispatcher: {}",
                    panic_message(&panic)
                ))),
            }
        });
    }

    /// Carries one request through its origin's policies: circuit breaker, rate limit, admission (the
    /// `connections` cap, the HTTP/2 probe), then attempts until one is not retried.
    async fn run<H: DispatchHandler>(
        &self,
        upstream: &Arc<Upstream>,
        request: DispatchRequest,
        first_turn: Turn,
        controller: &RequestController,
        handler: &mut H,
    ) -> Result<(), CoreError> {
        let headers_timeout = request
            .headers_timeout
            .unwrap_or(self.options.headers_timeout);
        let body_timeout = request.body_timeout.unwrap_or(self.options.body_timeout);
        let mut template = Template::new(request, upstream)?;
        // Only a request whose body can be sent again is retried.
        let retry = upstream
            .retry
            .as_ref()
            .filter(|retry| template.replayable && retry.allows_method(template.method.as_str()));
        let mut retries = 0u32;
        // Attempts the server refused unprocessed (HTTP/2 GOAWAY, REFUSED_STREAM), sent again at once on a
        // new connection whatever the method: the server did not act on them.
        let mut resent = 0u32;
        let mut turn = Some(first_turn);
        loop {
            let turn = turn.take().unwrap_or_else(|| upstream.take_turn());
            let permit = upstream.admit()?;
            upstream.wait_turn(turn).await?;
            let lease = self.origins.admit(&template.url).await;
            let sent = within(headers_timeout, self.client.send(template.build()), || {
                CoreError::new(ErrorKind::HeadersTimeout, "Headers Timeout Error")
            })
            .await
            .and_then(|result| result);
            let response = match sent {
                Ok(response) => response,
                Err(error)
                    if error.kind == ErrorKind::Unprocessed
                        && template.replayable
                        && resent < MAX_RESENDS =>
                {
                    resent += 1;
                    drop(permit);
                    drop(lease);
                    continue;
                }
                Err(error) => {
                    // A failure of the request's own making (its body source, an abort) says nothing
                    // about the upstream: the attempt leaves no outcome in the breaker.
                    if upstream_failed(&error) {
                        permit.record(true);
                    }
                    drop(lease);
                    match retry.and_then(|r| r.after_error(&error, retries + 1)) {
                        Some(wait) => {
                            retries += 1;
                            self.retry_after(upstream, handler, retries, wait).await;
                            continue;
                        }
                        None => return Err(error),
                    }
                }
            };
            lease.observe(response.version());
            let status = response.status().as_u16();
            if let Some(wait) =
                retry.and_then(|r| r.after_status(status, response.headers(), retries + 1))
            {
                permit.record(status >= 500);
                drop(response);
                drop(lease);
                retries += 1;
                self.retry_after(upstream, handler, retries, wait).await;
                continue;
            }
            return deliver(
                &self.options,
                body_timeout,
                response,
                (lease, permit),
                controller,
                handler,
            )
            .await;
        }
    }

    async fn retry_after<H: DispatchHandler>(
        &self,
        upstream: &Upstream,
        handler: &mut H,
        retry: u32,
        wait: Duration,
    ) {
        upstream.metrics.retries.fetch_add(1, Relaxed);
        handler.on_retry(retry);
        tokio::time::sleep(wait).await;
    }
}

/// The parts of a request that every attempt sends again.
struct Template {
    method: Method,
    url: String,
    uri: http::Uri,
    headers: HeaderMap,
    body: Option<RequestBody>,
    /// A replayable body's bytes (`None` for no body).
    bytes: Option<Bytes>,
    /// Whether another attempt can be sent: the body (if any) was known up front, not pulled.
    replayable: bool,
    upstream: Arc<Upstream>,
}

impl Template {
    fn new(request: DispatchRequest, upstream: &Arc<Upstream>) -> Result<Template, CoreError> {
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|e| CoreError::invalid_argument(format!("invalid method: {e}")))?;
        let uri = request_uri(&request.url)?;
        let mut headers = HeaderMap::with_capacity(request.headers.len());
        for (name, value) in request.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| CoreError::invalid_argument(format!("invalid header name: {e}")))?;
            let value = HeaderValue::from_maybe_shared(value)
                .map_err(|e| CoreError::invalid_argument(format!("invalid header value: {e}")))?;
            headers.append(name, value);
        }
        let replayable = !matches!(request.body, RequestBody::Pull(_));
        let (body, bytes) = match request.body {
            RequestBody::Bytes(bytes) => (None, Some(bytes)),
            other => (Some(other), None),
        };
        Ok(Template {
            method,
            url: request.url,
            uri,
            headers,
            body,
            bytes,
            replayable,
            upstream: Arc::clone(upstream),
        })
    }

    /// The next attempt's request. A replayable request keeps its parts for another attempt; one with a
    /// pulled body moves them into its only attempt.
    fn build(&mut self) -> http::Request<OutgoingBody> {
        let replay = self.replayable;
        let metrics = &self.upstream.metrics;
        let body = match (&self.bytes, self.body.take()) {
            (Some(bytes), _) => {
                metrics.bytes_out.fetch_add(bytes.len() as u64, Relaxed);
                OutgoingBody::Full(Some(bytes.clone()))
            }
            (None, Some(RequestBody::Pull(pull))) => {
                OutgoingBody::Pull(pull.into_body(Some(Arc::clone(&metrics.bytes_out))))
            }
            _ => OutgoingBody::Empty,
        };
        let mut built = http::Request::new(body);
        *built.method_mut() = self.method.clone();
        if replay {
            *built.uri_mut() = self.uri.clone();
            *built.headers_mut() = self.headers.clone();
        } else {
            *built.uri_mut() = std::mem::take(&mut self.uri);
            *built.headers_mut() = std::mem::take(&mut self.headers);
        }
        built
    }
}

/// Counts a request in its origin's metrics: in flight while it lasts, then by outcome and duration.
struct Metered<H> {
    inner: H,
    upstream: Arc<Upstream>,
    method: usize,
    started: Instant,
    outcome: Outcome,
    finished: bool,
}

impl<H> Metered<H> {
    fn new(inner: H, upstream: &Arc<Upstream>, method: &str) -> Self {
        upstream.metrics.in_flight.fetch_add(1, Relaxed);
        Metered {
            inner,
            upstream: Arc::clone(upstream),
            method: method_index(method),
            started: Instant::now(),
            // Until a response or an error says otherwise, the request was given up by its caller.
            outcome: Outcome::Aborted,
            finished: false,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.finished {
            return;
        }
        self.finished = true;
        let metrics = &self.upstream.metrics;
        metrics.in_flight.fetch_sub(1, Relaxed);
        metrics.finished(self.method, outcome, self.started.elapsed());
    }
}

impl<H> Drop for Metered<H> {
    fn drop(&mut self) {
        self.finish(Outcome::Aborted);
    }
}

impl<H: DispatchHandler> DispatchHandler for Metered<H> {
    fn on_response_start(&mut self, head: ResponseHead) {
        self.outcome = Outcome::Status(head.status);
        self.inner.on_response_start(head);
    }

    fn on_response_data(&mut self, chunk: Bytes) {
        self.upstream
            .metrics
            .bytes_in
            .fetch_add(chunk.len() as u64, Relaxed);
        self.inner.on_response_data(chunk);
    }

    fn on_response_end(&mut self, trailers: HeaderMap) {
        self.finish(self.outcome);
        self.inner.on_response_end(trailers);
    }

    fn on_error(&mut self, error: CoreError) {
        self.finish(Outcome::Error);
        self.inner.on_error(error);
    }

    fn on_retry(&mut self, retry: u32) {
        self.inner.on_retry(retry);
    }
}

/// Most times a request the server refused unprocessed is sent again.
const MAX_RESENDS: u32 = 3;

/// Whether `error` says something about the upstream (for the circuit breaker), rather than about the
/// request's own body or arguments.
fn upstream_failed(error: &CoreError) -> bool {
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

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// The request target as undici sends it: path and query exactly as given. A target with characters outside
/// ASCII (undici would write them as raw latin1 bytes, which no server should have to parse) is
/// percent-encoded through the `url` crate instead.
fn request_uri(url: &str) -> Result<http::Uri, CoreError> {
    let uri = if url.is_ascii() {
        http::Uri::try_from(url)
            .map_err(|e| CoreError::invalid_argument(format!("invalid url: {e}")))?
    } else {
        let parsed = url::Url::parse(url)
            .map_err(|e| CoreError::invalid_argument(format!("invalid url: {e}")))?;
        http::Uri::try_from(parsed.as_str())
            .map_err(|e| CoreError::invalid_argument(format!("invalid url: {e}")))?
    };
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(CoreError::invalid_argument(
            "invalid url: an absolute http(s) URL is required",
        ));
    }
    Ok(uri)
}

async fn within<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = T>,
    on_timeout: impl FnOnce() -> CoreError,
) -> Result<T, CoreError> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| on_timeout()),
        None => Ok(fut.await),
    }
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

/// Hands a response on: head, body chunks as the controller allows, trailers. `held` (the request's place
/// in its origin's admission and circuit breaker) lasts until the body ended.
async fn deliver<H: DispatchHandler>(
    options: &AgentOptions,
    body_timeout: Option<Duration>,
    response: http::Response<crate::transport::IncomingBody>,
    held: (Lease, Permit),
    controller: &RequestController,
    handler: &mut H,
) -> Result<(), CoreError> {
    let (lease, permit) = held;
    let failed_status = response.status().is_server_error();
    let result = stream_response(options, body_timeout, response, controller, handler).await;
    permit.record(failed_status || result.as_ref().is_err_and(upstream_failed));
    drop(lease);
    result
}

async fn stream_response<H: DispatchHandler>(
    options: &AgentOptions,
    body_timeout: Option<Duration>,
    response: http::Response<crate::transport::IncomingBody>,
    controller: &RequestController,
    handler: &mut H,
) -> Result<(), CoreError> {
    let (parts, mut body) = response.into_parts();
    if header_bytes(&parts.headers) > options.max_header_size {
        return Err(CoreError::new(
            ErrorKind::HeadersOverflow,
            "Headers Overflow Error",
        ));
    }
    // HTTP/2 has no reason phrase on the wire: undici reports '' there, and the server's own phrase on HTTP/1.1.
    let status_text = if parts.version >= http::Version::HTTP_2 {
        Bytes::new()
    } else {
        match parts.extensions.get::<hyper::ext::ReasonPhrase>() {
            Some(reason) => Bytes::copy_from_slice(reason.as_bytes()),
            None => Bytes::from_static(parts.status.canonical_reason().unwrap_or("").as_bytes()),
        }
    };
    let connection = parts
        .extensions
        .get::<hyper_util::client::legacy::connect::HttpInfo>();
    handler.on_response_start(ResponseHead {
        status: parts.status.as_u16(),
        status_text,
        version: parts.version,
        remote_addr: connection.map(|info| info.remote_addr()),
        local_addr: connection.map(|info| info.local_addr()),
        headers: parts.headers,
    });

    let mut received: u64 = 0;
    let mut trailers = HeaderMap::new();
    loop {
        controller.ready().await;
        let frame = within(body_timeout, body.frame(), || {
            CoreError::new(ErrorKind::BodyTimeout, "Body Timeout Error")
        })
        .await?;
        let frame = match frame {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                if data.is_empty() {
                    continue;
                }
                received += data.len() as u64;
                if options.max_response_size.is_some_and(|max| received > max) {
                    return Err(CoreError::new(
                        ErrorKind::ResponseExceededMaxSize,
                        "Response content exceeded max size",
                    ));
                }
                controller.charge(data.len());
                handler.on_response_data(data);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers.extend(t);
                }
            }
        }
    }
    handler.on_response_end(trailers);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::request_uri;

    #[test]
    fn request_targets_keep_the_path_as_given() {
        let uri = request_uri("http://127.0.0.1:8080/a/../b?x=1&y=%20z").unwrap();
        assert_eq!(uri.path_and_query().unwrap().as_str(), "/a/../b?x=1&y=%20z");
        assert_eq!(uri.authority().unwrap().as_str(), "127.0.0.1:8080");
    }

    #[test]
    fn targets_with_bytes_outside_ascii_are_percent_encoded() {
        let uri = request_uri("http://127.0.0.1:8080/caf\u{e9}").unwrap();
        assert_eq!(uri.path(), "/caf%C3%A9");
    }

    #[test]
    fn a_target_without_scheme_or_host_is_invalid() {
        assert!(request_uri("/just/a/path").is_err());
        assert!(request_uri("not a url").is_err());
    }
}
