//! The agent: its transport (the connection pool) and the task that carries each request through it.

use crate::connections::ConnectionObserver;
use crate::controller::RequestController;
use crate::error::{CoreError, ErrorKind};
use crate::handler::{DispatchHandler, ResponseHead};
use crate::options::AgentOptions;
use crate::origins::{self, OriginStats, Origins};
use crate::request::{DispatchRequest, RequestBody};
use crate::runtime::runtime_handle;
use crate::transport::{OutgoingBody, Transport};
use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::BodyExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// A pool of connections with undici `Agent` semantics: no redirects followed, no bodies decoded, no proxy
/// taken from the environment.
#[derive(Clone)]
pub struct Agent {
    client: Transport,
    options: Arc<AgentOptions>,
    runtime: Handle,
    origins: Arc<Origins>,
}

impl Agent {
    pub fn new(options: AgentOptions) -> Result<Agent, CoreError> {
        Self::with_connection_observer(options, Arc::new(|_| {}))
    }

    /// An agent that reports its connections being opened, closed and failing to `observer` (undici's
    /// `connect`, `disconnect` and `connectionError` events).
    pub fn with_connection_observer(
        options: AgentOptions,
        observer: ConnectionObserver,
    ) -> Result<Agent, CoreError> {
        let runtime = runtime_handle();
        let _entered = runtime.enter();
        let client = Transport::build(&options, observer)?;
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
        })
    }

    /// Requests pending and running per origin (undici's `agent.stats`).
    pub fn stats(&self) -> Vec<OriginStats> {
        self.origins.stats()
    }

    pub fn options(&self) -> &AgentOptions {
        &self.options
    }

    /// Starts `request` on the runtime. Its outcome reaches `handler`; `controller` aborts or pauses it.
    /// After an abort the handler hears nothing more: the caller already knows why the request ended.
    pub fn dispatch<H: DispatchHandler>(
        &self,
        request: DispatchRequest,
        controller: RequestController,
        handler: H,
    ) {
        let client = self.client.clone();
        let options = Arc::clone(&self.options);
        let origins = Arc::clone(&self.origins);
        self.runtime.spawn(async move {
            let mut handler = handler;
            let outcome = {
                // Admission first: the origin's `connections` cap, or a probe for HTTP/2 (see origins.rs).
                let work = AssertUnwindSafe(async {
                    let lease = origins.admit(&request.url).await;
                    let exchange = exchange(&client, &options, request, &controller, &mut handler);
                    origins::with_lease(lease, exchange).await
                })
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

fn invalid(what: &str, detail: impl std::fmt::Display) -> CoreError {
    CoreError::new(
        ErrorKind::InvalidArgument,
        format!("invalid {what}: {detail}"),
    )
}

/// The request target as undici sends it: path and query exactly as given. A target with characters outside
/// ASCII (undici would write them as raw latin1 bytes, which no server should have to parse) is
/// percent-encoded through the `url` crate instead.
fn request_uri(url: &str) -> Result<http::Uri, CoreError> {
    let uri = if url.is_ascii() {
        http::Uri::try_from(url).map_err(|e| invalid("url", e))?
    } else {
        let parsed = url::Url::parse(url).map_err(|e| invalid("url", e))?;
        http::Uri::try_from(parsed.as_str()).map_err(|e| invalid("url", e))?
    };
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(invalid("url", "an absolute http(s) URL is required"));
    }
    Ok(uri)
}

fn build_request(request: DispatchRequest) -> Result<http::Request<OutgoingBody>, CoreError> {
    let method = Method::from_bytes(request.method.as_bytes()).map_err(|e| invalid("method", e))?;
    let uri = request_uri(&request.url)?;
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for (name, value) in request.headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid("header name", e))?;
        let value =
            HeaderValue::from_maybe_shared(value).map_err(|e| invalid("header value", e))?;
        headers.append(name, value);
    }
    let body = match request.body {
        RequestBody::Empty => OutgoingBody::Empty,
        RequestBody::Bytes(bytes) => OutgoingBody::Full(Some(bytes)),
        RequestBody::Pull(pull) => OutgoingBody::Pull(pull.into_body()),
    };
    let mut built = http::Request::new(body);
    *built.method_mut() = method;
    *built.uri_mut() = uri;
    *built.headers_mut() = headers;
    Ok(built)
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

/// One request from send to the last body byte.
async fn exchange<H: DispatchHandler>(
    transport: &Transport,
    options: &AgentOptions,
    request: DispatchRequest,
    controller: &RequestController,
    handler: &mut H,
) -> Result<(), CoreError> {
    let headers_timeout = request.headers_timeout.unwrap_or(options.headers_timeout);
    let body_timeout = request.body_timeout.unwrap_or(options.body_timeout);
    let request = build_request(request)?;

    let response = within(headers_timeout, transport.send(request), || {
        CoreError::new(ErrorKind::HeadersTimeout, "Headers Timeout Error")
    })
    .await??;
    origins::response_version(response.version());
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
    handler.on_response_start(ResponseHead {
        status: parts.status.as_u16(),
        status_text,
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
