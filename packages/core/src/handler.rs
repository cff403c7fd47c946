//! The receiving end of a dispatch: what the core reports about one request, in order.
//!
//! For every request exactly one of two sequences happens: `on_response_start`, any number of `on_response_data`,
//! `on_response_end`; or `on_error` (possibly after `on_response_start` and some data). Nothing follows either end.

use crate::error::CoreError;
use bytes::Bytes;
use http::HeaderMap;

/// The status line and headers of a response.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    /// The reason phrase as the server sent it (HTTP/1.1), or the canonical one (HTTP/2 has none on the wire).
    pub status_text: Bytes,
    pub headers: HeaderMap,
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
    fn on_response_end(&mut self, trailers: HeaderMap);
    fn on_error(&mut self, error: CoreError);
    /// The retry policy is about to send the request again: `retry` counts from 1. Nothing of the failed
    /// attempt was reported.
    fn on_retry(&mut self, retry: u32) {
        let _ = retry;
    }
}
