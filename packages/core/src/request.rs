//! What one dispatch asks for: method, URL, headers, body and per-request timeouts.

use crate::body::BodyPull;
use bytes::Bytes;
use std::time::Duration;

/// The body of a request: nothing, bytes known up front, or a stream pulled from the caller on demand.
pub enum RequestBody {
    Empty,
    Bytes(Bytes),
    Pull(BodyPull),
}

/// One request, as the JavaScript layer validated it.
pub struct DispatchRequest {
    pub method: String,
    /// Absolute URL: origin followed by path and query.
    pub url: String,
    /// Header name/value pairs in the order given; values are raw bytes (latin1 as in undici).
    pub headers: Vec<(String, Bytes)>,
    pub body: RequestBody,
    /// Overrides the agent's `headersTimeout` when set; `Some(None)` disables it.
    pub headers_timeout: Option<Option<Duration>>,
    /// Overrides the agent's `bodyTimeout` when set; `Some(None)` disables it.
    pub body_timeout: Option<Option<Duration>>,
}

impl DispatchRequest {
    /// A request with no body and the agent's timeouts.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        DispatchRequest {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: RequestBody::Empty,
            headers_timeout: None,
            body_timeout: None,
        }
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: RequestBody) -> Self {
        self.body = body;
        self
    }
}
