//! Classification of transport failures: what hyper, hyper-util, rustls and the operating system
//! report, turned into the [`CoreError`] undici would give for the same failure.
//!
//! Errors arrive as chains of sources; each function here walks the chain for the layer that knows what
//! happened (a TLS alert, an OS error code, an HTTP/2 reset, a body error of our own) and says which phase
//! failed: connecting, sending and waiting for the head, or reading the body.

use crate::error::{CoreError, ErrorKind};
use crate::transport::tls::CertificateRejected;
use std::error::Error as StdError;
use std::io;

/// A failure of hyper-util's client (either path) while sending the request and waiting for the head.
/// hyper-util reports its connect timeout as an I/O `TimedOut` caused by tokio's `Elapsed`, which tells it
/// apart from an operating-system `ETIMEDOUT`.
pub(crate) fn direct_send(err: &hyper_util::client::legacy::Error) -> CoreError {
    if let Some(h2) = find_deep::<h2::Error>(err) {
        let graceful_go_away = h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR);
        if graceful_go_away || h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
            return CoreError::new(
                ErrorKind::Unprocessed,
                format!(
                    "the server did not process the request: {}",
                    chain_text(err)
                ),
            );
        }
    }
    let timed_out = err.is_connect() && find_deep::<tokio::time::error::Elapsed>(err).is_some();
    send(err, err.is_connect(), timed_out)
}

/// A failure of the connector itself (no request involved): DNS, TCP, TLS, timeout.
pub(crate) fn connect(err: &(dyn StdError + 'static)) -> CoreError {
    let timed_out = find_deep::<tokio::time::error::Elapsed>(err).is_some();
    send(err, true, timed_out)
}

/// A failure while reading the response body.
pub(crate) fn body(err: &(dyn StdError + 'static)) -> CoreError {
    after_connect(err, chain_text(err))
}

/// `connecting`: the failure happened while establishing the connection; `connect_timed_out`: the agent's
/// connect timeout expired.
fn send(err: &(dyn StdError + 'static), connecting: bool, connect_timed_out: bool) -> CoreError {
    if connect_timed_out {
        return CoreError::new(ErrorKind::ConnectTimeout, "Connect Timeout Error");
    }
    if let Some(body_err) = find_source::<CoreError>(err) {
        return body_err.clone();
    }
    let chain = chain_text(err);
    if connecting {
        if let Some(tls) = find_deep::<rustls::Error>(err) {
            return tls_failure(tls);
        }
        if let Some(proxy) = tunnel_failure(&chain) {
            return proxy;
        }
        if chain.contains("dns error") {
            return CoreError::new(
                ErrorKind::Os("ENOTFOUND"),
                format!("getaddrinfo ENOTFOUND ({chain})"),
            );
        }
        if let Some(io) = find_source::<io::Error>(err) {
            if let Some(code) = os_code(io) {
                return CoreError::new(ErrorKind::Os(code), format!("connect {code}: {io}"));
            }
        }
        return CoreError::new(ErrorKind::Socket, chain);
    }
    after_connect(err, chain)
}

/// A failure on an established connection.
fn after_connect(err: &(dyn StdError + 'static), chain: String) -> CoreError {
    // A TLS 1.3 server refuses a client certificate after the client's side of the handshake is done, so
    // its alert arrives while the request is under way.
    if let Some(tls) = find_deep::<rustls::Error>(err) {
        return tls_failure(tls);
    }
    if let Some(h) = find_source::<hyper::Error>(err) {
        if h.is_incomplete_message() {
            return CoreError::new(ErrorKind::Socket, "other side closed");
        }
    }
    if let Some(io) = find_source::<io::Error>(err) {
        match io.kind() {
            io::ErrorKind::UnexpectedEof => {
                return CoreError::new(ErrorKind::Socket, "other side closed")
            }
            // undici passes the socket's own error on: `read ECONNRESET`.
            io::ErrorKind::ConnectionReset => {
                return CoreError::new(ErrorKind::Os("ECONNRESET"), "read ECONNRESET")
            }
            _ => {}
        }
    }
    CoreError::new(ErrorKind::Socket, chain)
}

/// Node's code and message for a failed TLS handshake.
fn tls_failure(err: &rustls::Error) -> CoreError {
    if let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = err {
        if let Some(rejected) = other.0.downcast_ref::<CertificateRejected>() {
            return CoreError::new(ErrorKind::Tls(rejected.code), rejected.message.clone());
        }
    }
    match err {
        rustls::Error::AlertReceived(alert) => match alert_code(*alert) {
            Some((code, reason)) => CoreError::new(
                ErrorKind::Tls(code),
                format!("{reason} (SSL alert number {})", u8::from(*alert)),
            ),
            None => CoreError::new(ErrorKind::Socket, format!("TLS alert received: {alert:?}")),
        },
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            CoreError::new(
                ErrorKind::Tls("ERR_SSL_WRONG_VERSION_NUMBER"),
                "wrong version number",
            )
        }
        other => CoreError::new(ErrorKind::Socket, format!("TLS handshake failed: {other}")),
    }
}

/// Node's `code` for an OS error that happens while connecting.
pub(crate) fn os_code(err: &io::Error) -> Option<&'static str> {
    Some(match err.kind() {
        io::ErrorKind::ConnectionRefused => "ECONNREFUSED",
        io::ErrorKind::ConnectionReset => "ECONNRESET",
        io::ErrorKind::ConnectionAborted => "ECONNABORTED",
        io::ErrorKind::TimedOut => "ETIMEDOUT",
        io::ErrorKind::AddrNotAvailable => "EADDRNOTAVAIL",
        io::ErrorKind::AddrInUse => "EADDRINUSE",
        io::ErrorKind::PermissionDenied => "EACCES",
        io::ErrorKind::HostUnreachable => "EHOSTUNREACH",
        io::ErrorKind::NetworkUnreachable => "ENETUNREACH",
        _ => return None,
    })
}

/// undici's error for a `CONNECT` tunnel the proxy refused (`RequestAbortedError`, as undici's `ProxyAgent`).
fn tunnel_failure(chain: &str) -> Option<CoreError> {
    let status = if chain.contains("tunnel error: proxy authorization required") {
        "407"
    } else if chain.contains("tunnel error: unsuccessful") {
        "non-200"
    } else {
        return None;
    };
    Some(CoreError::new(
        ErrorKind::Aborted,
        format!("Proxy response ({status}) !== 200 when HTTP Tunneling"),
    ))
}

/// Node's code for a TLS alert the server sent, from OpenSSL's reason string.
fn alert_code(alert: rustls::AlertDescription) -> Option<(&'static str, &'static str)> {
    use rustls::AlertDescription as A;
    Some(match alert {
        A::HandshakeFailure => (
            "ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE",
            "sslv3 alert handshake failure",
        ),
        A::BadCertificate => (
            "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE",
            "sslv3 alert bad certificate",
        ),
        A::UnsupportedCertificate => (
            "ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
            "sslv3 alert unsupported certificate",
        ),
        A::CertificateRevoked => (
            "ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED",
            "sslv3 alert certificate revoked",
        ),
        A::CertificateExpired => (
            "ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED",
            "sslv3 alert certificate expired",
        ),
        A::CertificateUnknown => (
            "ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN",
            "sslv3 alert certificate unknown",
        ),
        A::IllegalParameter => (
            "ERR_SSL_SSLV3_ALERT_ILLEGAL_PARAMETER",
            "sslv3 alert illegal parameter",
        ),
        A::UnknownCA => ("ERR_SSL_TLSV1_ALERT_UNKNOWN_CA", "tlsv1 alert unknown ca"),
        A::AccessDenied => (
            "ERR_SSL_TLSV1_ALERT_ACCESS_DENIED",
            "tlsv1 alert access denied",
        ),
        A::DecodeError => (
            "ERR_SSL_TLSV1_ALERT_DECODE_ERROR",
            "tlsv1 alert decode error",
        ),
        A::DecryptError => (
            "ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR",
            "tlsv1 alert decrypt error",
        ),
        A::ProtocolVersion => (
            "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION",
            "tlsv1 alert protocol version",
        ),
        A::InternalError => (
            "ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR",
            "tlsv1 alert internal error",
        ),
        A::UnrecognisedName => ("ERR_SSL_TLSV1_UNRECOGNIZED_NAME", "tlsv1 unrecognized name"),
        A::NoApplicationProtocol => (
            "ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL",
            "tlsv1 alert no application protocol",
        ),
        A::CertificateRequired => (
            "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED",
            "tlsv13 alert certificate required",
        ),
        _ => return None,
    })
}

/// Like [`find_source`], but also looks inside `io::Error`s, whose `source()` skips the error they wrap
/// (tokio-rustls reports handshake failures as an `io::Error` wrapping the `rustls::Error`).
fn find_deep<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            if let Some(found) = find_deep::<T>(inner) {
                return Some(found);
            }
        }
        cur = e.source();
    }
    None
}

fn find_source<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        cur = e.source();
    }
    None
}

fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_codes_follow_node_names() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(os_code(&refused), Some("ECONNREFUSED"));
        assert_eq!(os_code(&io::Error::other("x")), None);
    }
}
