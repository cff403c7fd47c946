//! Request heads as undici writes them: the request line, `host` first, then `connection: keep-alive` (or
//! `close`, or `upgrade` with the `upgrade` header), then the caller's headers in the caller's case and order,
//! then the body's framing.

use bytes::{BufMut, BytesMut};

/// How the request body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No body at all.
    None,
    /// A body of this many bytes.
    Length(u64),
    /// A body of unknown length, in chunks.
    Chunked,
}

/// What the head writer decided besides the bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Written {
    /// The connection must not carry another request: `connection: close` was sent, or a body went with a
    /// method that expects none (undici's rule: such a body may confuse the server).
    pub close_after: bool,
}

/// Methods whose requests carry a payload (undici's `expectsPayload`).
pub(crate) fn expects_payload(method: &str) -> bool {
    matches!(
        method,
        "PUT" | "POST" | "PATCH" | "QUERY" | "PROPFIND" | "PROPPATCH"
    )
}

/// Appends the request head to `out`. `headers` are the caller's, already validated (tokens for names, no
/// CR/LF/NUL in values); a `host` among them replaces the authority, `connection` is reduced to whether it
/// asks to close, and a `content-length` among them is written where the caller put it instead of one
/// derived from `body`. A request asking to switch to protocol `upgrade` says `connection: upgrade`; it and
/// `CONNECT` never leave the connection to another request (undici's rule).
pub(crate) fn encode_head<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    out: &mut BytesMut,
    method: &str,
    target: &str,
    authority: &str,
    headers: &[(N, V)],
    body: BodyFraming,
    upgrade: Option<&str>,
) -> Written {
    let mut host: Option<&[u8]> = None;
    let mut close = method == "CONNECT";
    let mut has_length = false;
    let mut size = method.len() + target.len() + authority.len() + 64;
    for (name, value) in headers {
        let (name, value) = (name.as_ref(), value.as_ref());
        size += name.len() + value.len() + 4;
        if name.eq_ignore_ascii_case(b"host") {
            host = Some(value);
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= value
                .split(|&b| b == b',')
                .any(|t| super::head::trim(t).eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            has_length = true;
        }
    }
    out.reserve(size);
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\nhost: ");
    out.put_slice(host.unwrap_or(authority.as_bytes()));
    if let Some(protocol) = upgrade {
        out.put_slice(b"\r\nconnection: upgrade\r\nupgrade: ");
        out.put_slice(protocol.as_bytes());
        out.put_slice(b"\r\n");
    } else if close {
        out.put_slice(b"\r\nconnection: close\r\n");
    } else {
        out.put_slice(b"\r\nconnection: keep-alive\r\n");
    }
    for (name, value) in headers {
        let name = name.as_ref();
        if name.eq_ignore_ascii_case(b"host") || name.eq_ignore_ascii_case(b"connection") {
            continue;
        }
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value.as_ref());
        out.put_slice(b"\r\n");
    }
    let payload = expects_payload(method);
    if !has_length {
        match body {
            BodyFraming::Length(n) if n > 0 || payload => {
                out.put_slice(b"content-length: ");
                let mut digits = itoa_buf(n);
                out.put_slice(digits.as_bytes_mut());
                out.put_slice(b"\r\n");
            }
            BodyFraming::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
            BodyFraming::None if payload => out.put_slice(b"content-length: 0\r\n"),
            _ => {}
        }
    }
    out.put_slice(b"\r\n");
    let sends_body = match body {
        BodyFraming::None => false,
        BodyFraming::Length(n) => n > 0,
        BodyFraming::Chunked => true,
    };
    Written {
        close_after: close || upgrade.is_some() || (sends_body && !payload),
    }
}

/// A chunk's size line (`{hex}\r\n`).
pub(crate) fn chunk_size_line(len: usize, out: &mut BytesMut) {
    use std::fmt::Write;
    let _ = write!(out, "{len:x}\r\n");
}

/// The end of a chunked body: the last chunk and an empty trailer section.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Decimal digits of `n`, without allocating.
fn itoa_buf(n: u64) -> Digits {
    let mut digits = Digits {
        buf: [0; 20],
        start: 20,
    };
    let mut n = n;
    loop {
        digits.start -= 1;
        digits.buf[digits.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits
}

struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Whether `name` is an HTTP token (what a header name must be).
pub(crate) fn is_token(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` may be written as a header value: no CR, LF or NUL (anything else is written as is,
/// as undici writes latin1).
pub(crate) fn is_field_value(value: &[u8]) -> bool {
    !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, headers: &[(&str, &str)], body: BodyFraming) -> (String, Written) {
        let mut out = BytesMut::new();
        let written = encode_head(
            &mut out,
            method,
            "/p?q=1",
            "a.test:8080",
            headers,
            body,
            None,
        );
        (String::from_utf8(out.to_vec()).unwrap(), written)
    }

    #[test]
    fn an_upgrade_says_connection_upgrade_and_connect_says_close() {
        let mut out = BytesMut::new();
        let no_headers: &[(&str, &str)] = &[];
        let written = encode_head(
            &mut out,
            "GET",
            "/chat",
            "a.test",
            &[
                ("Connection", "keep-alive"),
                ("Sec-WebSocket-Version", "13"),
            ],
            BodyFraming::None,
            Some("websocket"),
        );
        assert_eq!(
            out,
            "GET /chat HTTP/1.1\r\nhost: a.test\r\nconnection: upgrade\r\nupgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        assert!(written.close_after);
        out.clear();
        let written = encode_head(
            &mut out,
            "CONNECT",
            "b.test:443",
            "a.test",
            no_headers,
            BodyFraming::None,
            None,
        );
        assert_eq!(
            out,
            "CONNECT b.test:443 HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n"
        );
        assert!(written.close_after);
    }

    #[test]
    fn host_comes_first_then_keep_alive_then_the_callers_headers_as_given() {
        let (text, written) = head(
            "GET",
            &[("X-Custom", "1"), ("accept", "*/*"), ("X-Custom", "2")],
            BodyFraming::None,
        );
        assert_eq!(
            text,
            "GET /p?q=1 HTTP/1.1\r\nhost: a.test:8080\r\nconnection: keep-alive\r\nX-Custom: 1\r\naccept: */*\r\nX-Custom: 2\r\n\r\n"
        );
        assert!(!written.close_after);
    }

    #[test]
    fn a_host_header_replaces_the_authority_and_connection_close_is_honoured() {
        let (text, written) = head(
            "GET",
            &[("Host", "other.test"), ("connection", "close")],
            BodyFraming::None,
        );
        assert_eq!(
            text,
            "GET /p?q=1 HTTP/1.1\r\nhost: other.test\r\nconnection: close\r\n\r\n"
        );
        assert!(written.close_after);
    }

    #[test]
    fn body_framing_follows_undici() {
        let (text, _) = head("POST", &[], BodyFraming::Length(4096));
        assert!(text.ends_with("connection: keep-alive\r\ncontent-length: 4096\r\n\r\n"));
        let (text, _) = head("POST", &[], BodyFraming::None);
        assert!(text.ends_with("content-length: 0\r\n\r\n"));
        let (text, _) = head("GET", &[], BodyFraming::Length(0));
        assert!(text.ends_with("keep-alive\r\n\r\n"));
        let (text, _) = head("PUT", &[], BodyFraming::Chunked);
        assert!(text.ends_with("transfer-encoding: chunked\r\n\r\n"));
        let (text, _) = head("POST", &[("Content-Length", "3")], BodyFraming::Length(3));
        assert!(text.ends_with("Content-Length: 3\r\n\r\n"));
        let (_, written) = head("GET", &[], BodyFraming::Length(3));
        assert!(
            written.close_after,
            "a body on GET closes the connection after"
        );
    }

    #[test]
    fn chunk_size_lines_are_hex() {
        let mut out = BytesMut::new();
        chunk_size_line(4096, &mut out);
        assert_eq!(&out[..], b"1000\r\n");
    }

    #[test]
    fn tokens_and_values_are_checked() {
        assert!(is_token(b"X-Custom_1"));
        assert!(!is_token(b"bad name"));
        assert!(!is_token(b""));
        assert!(is_field_value(b"caf\xe9 \t ok"));
        assert!(!is_field_value(b"a\r\nb: c"));
    }
}
