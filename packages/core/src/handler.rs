//! The receiving end of a dispatch: what the core reports about one request, in order.
//!
//! For every request exactly one of two sequences happens: `on_response_start`, any number of `on_response_data`,
//! `on_response_end`; or `on_error` (possibly after `on_response_start` and some data). Nothing follows either end.
//!
//! A request that leaves HTTP (an upgrade, `CONNECT`) and whose connection switched has `on_upgrade` instead of
//! `on_response_start`, then — in any order — `on_response_data` for the server's bytes, at most one
//! `on_upgrade_read_end` when the server ended its direction, one `on_upgrade_written` per completed write of
//! the caller (and for its end); an `on_error` ends it early. Without an error it ends silently, once both
//! directions have (or the caller aborted).

use crate::error::CoreError;
use bytes::Bytes;

/// Header (or trailer) fields as they came: names in the sender's spelling, values as bytes, in order.
/// Over HTTP/2 (and through a proxy) names arrive lower-case, as the protocol (or hyper) has them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawHeaders(Vec<(Bytes, Bytes)>);

impl RawHeaders {
    pub fn new() -> Self {
        RawHeaders(Vec::new())
    }

    pub fn with_capacity(capacity: usize) -> Self {
        RawHeaders(Vec::with_capacity(capacity))
    }

    pub fn push(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.0.push((name.into(), value.into()));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }

    /// The first value of `name` (compared without case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Every value of `name` (compared without case), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// A header map's fields (names lower-case, as `http` keeps them).
    pub fn from_map(map: &http::HeaderMap) -> Self {
        map.iter()
            .map(|(n, v)| {
                (
                    Bytes::copy_from_slice(n.as_str().as_bytes()),
                    Bytes::copy_from_slice(v.as_bytes()),
                )
            })
            .collect()
    }

    /// Bytes of names and values plus a separator and line end each, as a head would take on the wire.
    pub(crate) fn wire_size(&self) -> usize {
        self.iter().map(|(n, v)| n.len() + v.len() + 4).sum()
    }
}

impl FromIterator<(Bytes, Bytes)> for RawHeaders {
    fn from_iter<I: IntoIterator<Item = (Bytes, Bytes)>>(iter: I) -> Self {
        RawHeaders(iter.into_iter().collect())
    }
}

/// The status line and headers of a response.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    /// The reason phrase as the server sent it (HTTP/1.1), or the canonical one (HTTP/2 has none on the wire).
    pub status_text: Bytes,
    pub headers: RawHeaders,
    /// The HTTP version the response came over.
    pub version: http::Version,
    /// The connection's peer and local addresses, when the transport tells them (the direct one does;
    /// through a proxy they are unknown).
    pub remote_addr: Option<std::net::SocketAddr>,
    pub local_addr: Option<std::net::SocketAddr>,
}

/// Receives the events of one request. Called from tokio worker threads, never concurrently.
pub trait DispatchHandler: Send + 'static {
    fn on_response_start(&mut self, head: ResponseHead);
    fn on_response_data(&mut self, chunk: Bytes);
    fn on_response_end(&mut self, trailers: RawHeaders);
    fn on_error(&mut self, error: CoreError);
    /// The retry policy is about to send the request again: `retry` counts from 1. Nothing of the failed
    /// attempt was reported.
    fn on_retry(&mut self, retry: u32) {
        let _ = retry;
    }
    /// The connection switched protocols (`head`: the 101, or the answer to `CONNECT`) and is the request's
    /// now: its bytes follow as `on_response_data`.
    fn on_upgrade(&mut self, head: ResponseHead) {
        let _ = head;
    }
    /// The server ended its direction of an upgraded connection; the caller may still write.
    fn on_upgrade_read_end(&mut self) {}
    /// One write of the caller (or its end) is out on the upgraded connection, in the order they were sent.
    fn on_upgrade_written(&mut self) {}
}
