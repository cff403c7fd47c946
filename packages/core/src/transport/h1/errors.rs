//! The errors an HTTP/1.1 exchange ends with, worded as undici words them (its `errors.*` classes and
//! llhttp's reasons), so the JavaScript layer hands the caller what `undici.Agent` would.

use crate::error::{CoreError, ErrorKind};
use crate::transport::classify::os_code;
use std::io;

/// undici's `HTTPParserError`: `reason` is llhttp's text, `code` its error name.
pub(crate) fn parser_error(code: &'static str, reason: &str) -> CoreError {
    CoreError::new(
        ErrorKind::HttpParser(code),
        format!("Response does not match the HTTP/1.1 protocol ({reason})"),
    )
}

pub(crate) fn socket_error(message: &str) -> CoreError {
    CoreError::new(ErrorKind::Socket, message)
}

pub(crate) fn headers_overflow() -> CoreError {
    CoreError::new(ErrorKind::HeadersOverflow, "Headers Overflow Error")
}

pub(crate) fn content_length_mismatch() -> CoreError {
    CoreError::new(
        ErrorKind::ResponseContentLengthMismatch,
        "Response body length does not match content-length header",
    )
}

/// The connection ended before the response did (undici's `SocketError('other side closed')`).
pub(crate) fn closed_early() -> CoreError {
    socket_error("other side closed")
}

/// An I/O failure on an established connection: a reset is Node's `ECONNRESET` (`read ECONNRESET` or
/// `write ECONNRESET`), an end of stream is undici's `other side closed`, anything else a `SocketError`.
pub(crate) fn io_error(error: &io::Error, syscall: &str) -> CoreError {
    if let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return crate::transport::classify::connect(tls);
    }
    match error.kind() {
        io::ErrorKind::UnexpectedEof => closed_early(),
        io::ErrorKind::BrokenPipe => {
            CoreError::new(ErrorKind::Os("EPIPE"), format!("{syscall} EPIPE"))
        }
        _ => match os_code(error) {
            Some(code) => CoreError::new(ErrorKind::Os(code), format!("{syscall} {code}")),
            None => socket_error(&error.to_string()),
        },
    }
}
