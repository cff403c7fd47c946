//! What one dispatch asks for ([`DispatchRequest`]: method, URL, headers, body and per-request timeouts), and
//! the template every attempt of it is built from.

use crate::body::BodyPull;
use crate::controller::{Gate, RequestController};
use crate::error::CoreError;
use crate::metrics::OriginMetrics;
use crate::transport::{h1, Outgoing, OutgoingBody};
use crate::upgrade::{Switch, Upgrade, UpgradeWrites};
use bytes::Bytes;
use http::Method;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
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
    /// Test hook: where this request makes the core panic, to show that a panic fails the request alone.
    /// Never derived from request data; the Node bridge sets it only in a process that enabled its test hook
    /// when the addon loaded.
    #[doc(hidden)]
    pub panic_at: Option<PanicPoint>,
    /// The request leaves HTTP (an upgrade, or `CONNECT`): see `upgrade.rs`.
    pub upgrade: Option<Upgrade>,
    /// A gated request: once a connection is assigned to it (opened, or taken from the pool), and before
    /// anything of it is written, the core calls this (once per dispatch, whatever the retries) and waits for
    /// [`RequestController::open_gate`](crate::RequestController::open_gate). undici announces a request to its
    /// handler (`onConnect`) at that point; the caller may abort then, and the request is never sent.
    pub gate: Option<Box<dyn Fn() + Send + Sync>>,
}

/// Where a request armed by the panic-containment test hook panics.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PanicPoint {
    /// In the request's task, before the first attempt is sent.
    BeforeSend,
    /// Once the response head was handed on.
    AtHead,
    /// Once the first body chunk was handed on.
    InBody,
}

impl PanicPoint {
    /// Panics if `point` is `here`.
    pub(crate) fn check(point: Option<PanicPoint>, here: PanicPoint) {
        if point == Some(here) {
            panic!("test panic ({here:?}) armed by the panic-containment hook");
        }
    }
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
            panic_at: None,
            upgrade: None,
            gate: None,
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

    pub fn upgrade(mut self, upgrade: Upgrade) -> Self {
        self.upgrade = Some(upgrade);
        self
    }
}

/// The parts of a request that every attempt sends again.
pub(crate) struct Template {
    pub(crate) method: Method,
    pub(crate) url: String,
    uri: http::Uri,
    /// Names in the caller's case, checked: tokens, and values without CR, LF or NUL.
    headers: Vec<(Bytes, Bytes)>,
    body: Option<RequestBody>,
    /// A replayable body's bytes (`None` for no body).
    bytes: Option<Bytes>,
    /// Whether another attempt can be sent: the body (if any) was known up front, not pulled.
    pub(crate) replayable: bool,
    /// The origin's counters: every attempt counts the body bytes it sends.
    metrics: Arc<OriginMetrics>,
    /// How the request leaves HTTP, and (until its connection switched) where its writes wait.
    switch: Option<Switch>,
    writes: Option<UpgradeWrites>,
    /// What announces a gated request's connection (see [`DispatchRequest::gate`]).
    gate: Option<Box<dyn Fn() + Send + Sync>>,
}

impl Template {
    pub(crate) fn new(
        request: DispatchRequest,
        metrics: &Arc<OriginMetrics>,
    ) -> Result<Template, CoreError> {
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|e| CoreError::invalid_argument(format!("invalid method: {e}")))?;
        let uri = request_uri(&request.url)?;
        let mut headers = Vec::with_capacity(request.headers.len());
        for (name, value) in request.headers {
            if !h1::is_token(name.as_bytes()) {
                return Err(CoreError::invalid_argument(format!(
                    "invalid header name: {name}"
                )));
            }
            if !h1::is_field_value(&value) {
                return Err(CoreError::invalid_argument(format!(
                    "invalid header value: {name}"
                )));
            }
            headers.push((Bytes::from(name), value));
        }
        let (switch, writes) = match request.upgrade {
            Some(upgrade) => {
                check_switch(&method, &upgrade.switch)?;
                (Some(upgrade.switch), Some(upgrade.writes))
            }
            None if method == Method::CONNECT => {
                return Err(CoreError::invalid_argument(
                    "a CONNECT request needs its upgrade (Switch::Connect)",
                ))
            }
            None => (None, None),
        };
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
            metrics: Arc::clone(metrics),
            switch,
            writes,
            gate: request.gate,
        })
    }

    /// The writes of a request whose connection switched protocols (taken once).
    pub(crate) fn take_writes(&mut self) -> Option<UpgradeWrites> {
        self.writes.take()
    }

    /// The next attempt. A replayable request keeps its body for another attempt; a pulled body moves
    /// into its only attempt.
    pub(crate) fn attempt<'a>(&'a mut self, controller: &'a RequestController) -> Outgoing<'a> {
        let metrics = &self.metrics;
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
        Outgoing {
            method: &self.method,
            uri: &self.uri,
            origin: origin_of(&self.url),
            headers: &self.headers,
            body,
            switch: self.switch.as_ref(),
            gate: self.gate.as_deref().map(|announce| Gate {
                controller,
                announce,
            }),
        }
    }
}

/// A switch the request line and head can carry: an `upgrade` value is a header value, a `CONNECT` target
/// one token of the request line; `CONNECT` goes with a target and nothing else does.
fn check_switch(method: &Method, switch: &Switch) -> Result<(), CoreError> {
    match switch {
        Switch::Protocol(_) if method == Method::CONNECT => Err(CoreError::invalid_argument(
            "a CONNECT request cannot ask for an upgrade",
        )),
        Switch::Protocol(protocol)
            if protocol.is_empty() || !h1::is_field_value(protocol.as_bytes()) =>
        {
            Err(CoreError::invalid_argument("invalid upgrade header"))
        }
        Switch::Connect(_) if method != Method::CONNECT => Err(CoreError::invalid_argument(
            "a request target for CONNECT needs the CONNECT method",
        )),
        Switch::Connect(target)
            if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) =>
        {
            Err(CoreError::invalid_argument("invalid request path"))
        }
        _ => Ok(()),
    }
}

/// `scheme://authority` of an absolute URL, without parsing more than needed: the key of everything the core
/// keeps per origin (policies, counters, request slots, connection events). A byte scan: `str::find` with a
/// pattern showed in profiles, run several times per request.
pub(crate) fn origin_of(url: &str) -> &str {
    let bytes = url.as_bytes();
    let start = bytes
        .windows(3)
        .position(|w| w == b"://")
        .map_or(0, |i| i + 3);
    match bytes[start..]
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b'#')
    {
        Some(end) => &url[..start + end],
        None => url,
    }
}

/// The request target as undici sends it: path and query exactly as given — no dot segment resolved, no
/// fragment cut off, no escape decoded or re-encoded. Only what an `http::Uri` (and so hyper's request line)
/// cannot carry raw is percent-encoded: bytes outside ASCII (undici writes the path's characters as latin1
/// bytes; here their UTF-8 bytes are escaped), `#`, and the few ASCII characters `http::Uri` refuses.
pub(crate) fn request_uri(url: &str) -> Result<http::Uri, CoreError> {
    let origin = origin_of(url);
    let uri = match escape_target(&url[origin.len()..]) {
        None => http::Uri::try_from(url),
        Some(escaped) => http::Uri::try_from(format!("{origin}{escaped}")),
    }
    .map_err(|e| CoreError::invalid_argument(format!("invalid url: {e}")))?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(CoreError::invalid_argument(
            "invalid url: an absolute http(s) URL is required",
        ));
    }
    Ok(uri)
}

/// Whether `http::Uri` keeps byte `b` as it is in a request target's path (or, `in_query`, its query).
fn kept_raw(b: u8, in_query: bool) -> bool {
    if in_query {
        matches!(b, 0x21 | 0x24..=0x3B | 0x3D | 0x3F..=0x7E)
    } else {
        matches!(b, 0x21 | b'"' | 0x24..=0x3B | 0x3D | b'?' | 0x40..=0x5F | 0x61..=0x7E)
    }
}

/// `target` with every byte `http::Uri` refuses at its place percent-encoded, or `None` when there is none.
fn escape_target(target: &str) -> Option<String> {
    let mut in_query = false;
    let mut out: Option<String> = None;
    for (i, b) in target.bytes().enumerate() {
        let raw = kept_raw(b, in_query);
        in_query |= b == b'?';
        match (&mut out, raw) {
            (Some(out), true) => out.push(char::from(b)),
            (Some(out), false) => out.push_str(&format!("%{b:02X}")),
            (None, true) => {}
            (None, false) => {
                let mut escaped = String::with_capacity(target.len() + 16);
                escaped.push_str(&target[..i]);
                escaped.push_str(&format!("%{b:02X}"));
                out = Some(escaped);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{origin_of, request_uri};

    #[test]
    fn origin_is_scheme_and_authority() {
        assert_eq!(origin_of("http://a.test:81/x?y"), "http://a.test:81");
        assert_eq!(origin_of("https://a.test"), "https://a.test");
        assert_eq!(origin_of("https://a.test?q"), "https://a.test");
    }

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
    fn escaping_a_target_resolves_no_dot_segment_and_keeps_escapes() {
        let uri = request_uri("http://a.test/public/\u{e9}/%2e%2e/%2e%2e/secret").unwrap();
        assert_eq!(uri.path(), "/public/%C3%A9/%2e%2e/%2e%2e/secret");
        let uri = request_uri("http://a.test/\u{e9}/../x?q=\u{e9}").unwrap();
        assert_eq!(uri.path_and_query().unwrap(), "/%C3%A9/../x?q=%C3%A9");
    }

    #[test]
    fn a_fragment_is_sent_escaped_not_cut_off() {
        let uri = request_uri("http://a.test/a#b?c#d").unwrap();
        assert_eq!(uri.path_and_query().unwrap(), "/a%23b?c%23d");
    }

    #[test]
    fn ascii_characters_a_uri_refuses_are_escaped_where_refused() {
        let uri = request_uri("http://a.test/a<b>`c\"d?e=\"f`<>").unwrap();
        assert_eq!(
            uri.path_and_query().unwrap(),
            "/a%3Cb%3E%60c\"d?e=%22f`%3C%3E"
        );
    }

    #[test]
    fn a_target_without_scheme_or_host_is_invalid() {
        assert!(request_uri("/just/a/path").is_err());
        assert!(request_uri("not a url").is_err());
    }
}
