//! The error catalogue: every failure a request can end with, carrying the code undici gives the same failure.
//!
//! Errors say which phase failed (connect, headers, body) so the JavaScript layer can pick undici's error class.
//! This module depends on nothing else in the crate: turning what hyper, rustls or the operating system report
//! into one of these is the transport's business (`transport/classify.rs`).

use std::error::Error as StdError;
use std::fmt;

/// What went wrong, one variant per undici error class (or OS error code) the JS layer maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    ConnectTimeout,
    HeadersTimeout,
    BodyTimeout,
    HeadersOverflow,
    ResponseExceededMaxSize,
    ResponseContentLengthMismatch,
    RequestContentLengthMismatch,
    /// The connection failed after it was established (reset, closed early, malformed response).
    Socket,
    /// The response broke HTTP/1.1's syntax or framing (undici's `HTTPParserError`); the payload is
    /// llhttp's name for the error (`HPE_INVALID_CONTENT_LENGTH`, ...).
    HttpParser(&'static str),
    /// The server refused the request unprocessed on an HTTP/2 connection it is closing or that is too busy
    /// (a graceful `GOAWAY` below the request's stream, or `REFUSED_STREAM`): sending it again on a new
    /// connection is safe. JavaScript sees `UND_ERR_SOCKET`.
    Unprocessed,
    Aborted,
    InvalidArgument,
    NotSupported,
    /// An operating-system level failure before the connection existed; the payload is Node's code for it
    /// (`ECONNREFUSED`, `ENOTFOUND`, ...).
    Os(&'static str),
    /// The TLS handshake failed; the payload is Node's code for the reason (`DEPTH_ZERO_SELF_SIGNED_CERT`,
    /// `CERT_HAS_EXPIRED`, `ERR_TLS_CERT_ALTNAME_INVALID`, `ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED`, ...).
    Tls(&'static str),
    /// The request body source (in JS) failed; the JS layer keeps the original error and rethrows it.
    RequestBody,
    /// A bug in this crate (a panic caught at the task boundary).
    Internal,
    /// The origin's circuit breaker is open: the request failed fast without being sent.
    CircuitOpen,
    /// The origin's rate limiter refused the request: its wait would have exceeded `maxWait`.
    RateLimited,
}

impl ErrorKind {
    /// The `code` property undici (or Node) gives this failure.
    pub fn code(&self) -> &'static str {
        match self {
            ErrorKind::ConnectTimeout => "UND_ERR_CONNECT_TIMEOUT",
            ErrorKind::HeadersTimeout => "UND_ERR_HEADERS_TIMEOUT",
            ErrorKind::BodyTimeout => "UND_ERR_BODY_TIMEOUT",
            ErrorKind::HeadersOverflow => "UND_ERR_HEADERS_OVERFLOW",
            ErrorKind::ResponseExceededMaxSize => "UND_ERR_RES_EXCEEDED_MAX_SIZE",
            ErrorKind::ResponseContentLengthMismatch => "UND_ERR_RES_CONTENT_LENGTH_MISMATCH",
            ErrorKind::RequestContentLengthMismatch => "UND_ERR_REQ_CONTENT_LENGTH_MISMATCH",
            ErrorKind::Socket | ErrorKind::Unprocessed => "UND_ERR_SOCKET",
            ErrorKind::Aborted => "UND_ERR_ABORTED",
            ErrorKind::InvalidArgument => "UND_ERR_INVALID_ARG",
            ErrorKind::NotSupported => "UND_ERR_NOT_SUPPORTED",
            ErrorKind::Os(code) | ErrorKind::HttpParser(code) => code,
            ErrorKind::Tls(code) => code,
            ErrorKind::RequestBody => "UND_ERR_REQUEST_BODY",
            ErrorKind::Internal => "UND_ERR_INTERNAL",
            ErrorKind::CircuitOpen => "UND_ERR_CIRCUIT_OPEN",
            ErrorKind::RateLimited => "UND_ERR_RATE_LIMITED",
        }
    }
}

/// A request's failure: its kind and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreError {
    pub kind: ErrorKind,
    pub message: String,
    /// The connection's byte counters when it failed (undici's `SocketError#socket.bytesWritten` and
    /// `bytesRead`); set by the HTTP/1.1 engine on socket errors.
    pub socket: Option<SocketCounters>,
}

/// Bytes a connection wrote and read over its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketCounters {
    pub bytes_written: u64,
    pub bytes_read: u64,
}

impl CoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CoreError {
            kind,
            message: message.into(),
            socket: None,
        }
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// undici's `InvalidArgumentError`: an option, URL, header or body the caller gave cannot be used.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        CoreError::new(ErrorKind::InvalidArgument, message)
    }

    /// A bug caught at a task boundary: `what` failed with `panic` (a caught panic's payload), whose message
    /// is kept.
    pub fn from_panic(what: &str, panic: &(dyn std::any::Any + Send)) -> Self {
        let message = match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
            (Some(text), _) => text,
            (_, Some(text)) => text.as_str(),
            _ => "panic",
        };
        CoreError::new(ErrorKind::Internal, format!("{what}: {message}"))
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code())
    }
}

impl StdError for CoreError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_undici_catalogue() {
        assert_eq!(ErrorKind::HeadersTimeout.code(), "UND_ERR_HEADERS_TIMEOUT");
        assert_eq!(ErrorKind::Os("ECONNREFUSED").code(), "ECONNREFUSED");
        assert_eq!(ErrorKind::Socket.code(), "UND_ERR_SOCKET");
    }
}
