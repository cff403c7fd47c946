//! Response heads: the status line and header fields of an HTTP/1.1 response, parsed with httparse, the
//! framing they imply, and llhttp's (undici's) verdict on malformed ones.
//!
//! httparse is more lenient than llhttp in a few places (bare LF line ends, obs-fold, a lone CR): those are
//! checked here first, so a response undici refuses is refused here with undici's error and message.
//! Header names keep the server's spelling; values are bytes. Nothing is copied: every name and value is a
//! slice of the one buffer the head was read into.

use super::errors::{content_length_mismatch, headers_overflow, parser_error, socket_error};
use crate::error::CoreError;
use crate::handler::RawHeaders;
use bytes::{Bytes, BytesMut};
use std::time::Duration;

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Everything until the server closes the connection.
    Close,
    /// No body: the connection switched protocols (a 101 to an upgrade, the answer to `CONNECT`), and what
    /// follows the head belongs to the new protocol.
    Switched,
}

/// What a response answers, as far as reading it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// Any request but the three below.
    Plain,
    /// `HEAD`: the response has no body whatever its head says.
    Head,
    /// A request asking to switch protocols (`upgrade`): a 101 hands the connection over.
    Upgrade,
    /// `CONNECT`: as in undici, any final response (whatever its status) hands the connection over.
    Connect,
}

impl RequestKind {
    /// Whether a response with `status` switches the connection away from HTTP.
    fn switches(self, status: u16) -> bool {
        match self {
            RequestKind::Upgrade => status == 101,
            RequestKind::Connect => status != 100,
            RequestKind::Plain | RequestKind::Head => false,
        }
    }
}

/// A parsed final response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub status: u16,
    pub reason: Bytes,
    pub version: http::Version,
    pub headers: RawHeaders,
    pub framing: Framing,
    /// The connection may carry another request once this response's body is read.
    pub keep_alive: bool,
    /// `Keep-Alive: timeout=N`, the server's idle timeout.
    pub keep_alive_hint: Option<Duration>,
    /// Bytes of header names and values, as undici counts them against `maxHeaderSize`.
    pub size: usize,
}

/// What one look at the buffered bytes found.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A final head; the buffer holds what follows it.
    Head(Head),
    /// An informational (1xx) head was consumed; more heads follow.
    Informational,
    /// The head is not complete yet.
    Partial,
}

/// Reads heads out of a connection's buffer, keeping the running size estimate that enforces
/// `maxHeaderSize` while a head is still arriving.
#[derive(Debug, Default)]
pub(crate) struct HeadReader {
    /// Bytes of the buffer already looked at for line ends (the estimate covers them).
    scanned: usize,
    /// Whether the status line's end has been seen.
    past_status: bool,
    /// Estimated header bytes (names and values) in complete lines seen so far.
    estimate: usize,
}

/// Headers httparse parses on the stack before falling back to a vector sized by the head's line count.
const STACK_HEADERS: usize = 32;

impl HeadReader {
    /// Parses the head at the start of `buf` for a request of `kind`, consuming it when complete.
    pub(crate) fn read(
        &mut self,
        buf: &mut BytesMut,
        kind: RequestKind,
        max_header_size: usize,
    ) -> Result<Parsed, CoreError> {
        let end = match find_head_end(buf, self.scanned)? {
            Some(end) => end,
            None => {
                self.track(buf, max_header_size)?;
                return Ok(Parsed::Partial);
            }
        };
        *self = HeadReader::default();
        let head = buf.split_to(end).freeze();
        parse_head(&head, kind, max_header_size)
    }

    /// Updates the size estimate over newly arrived bytes: each complete header line counts its length
    /// less the separator and line end (at least 1), a partial line its whole length. Always at least what
    /// undici counts, so a head undici would refuse for its size is refused before it is all buffered.
    fn track(&mut self, buf: &[u8], max_header_size: usize) -> Result<(), CoreError> {
        let mut at = self.scanned;
        while let Some(nl) = memchr::memchr(b'\n', &buf[at..]) {
            let line = nl + 1;
            if self.past_status {
                self.estimate += line.saturating_sub(4).max(1);
            }
            self.past_status = true;
            at += line;
        }
        self.scanned = at;
        let partial = if self.past_status { buf.len() - at } else { 0 };
        if self.estimate + partial >= max_header_size
            || (!self.past_status && buf.len() > max_header_size.max(8192))
        {
            return Err(headers_overflow());
        }
        Ok(())
    }
}

/// The end of the head (just past its empty line) if it is in `buf`; `from` is where earlier looks stopped.
/// Line ends are checked on the way, as llhttp checks them where httparse would accept: a bare LF, a folded
/// line. (A CR without LF is an httparse error, told apart in [`classify_line_ends`].)
fn find_head_end(buf: &[u8], from: usize) -> Result<Option<usize>, CoreError> {
    let mut at = from.saturating_sub(3);
    while let Some(nl) = memchr::memchr(b'\n', &buf[at..]) {
        let pos = at + nl;
        if pos == 0 || buf[pos - 1] != b'\r' {
            let in_status_line = !buf[..pos].contains(&b'\n');
            return Err(bare_lf(in_status_line));
        }
        match buf.get(pos + 1) {
            // The next line has not arrived: look again from this line end.
            None => return Ok(None),
            Some(b'\r') => {
                return match buf.get(pos + 2) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some(pos + 3)),
                    Some(_) => Err(parser_error(
                        "HPE_LF_EXPECTED",
                        "Missing expected LF after header value",
                    )),
                }
            }
            Some(b' ' | b'\t') if memchr::memchr(b'\n', &buf[..pos]).is_some() => {
                return Err(parser_error(
                    "HPE_INVALID_HEADER_TOKEN",
                    "Unexpected whitespace after header value",
                ))
            }
            Some(_) => {}
        }
        at = pos + 1;
    }
    Ok(None)
}

fn bare_lf(in_status_line: bool) -> CoreError {
    parser_error(
        "HPE_CR_EXPECTED",
        if in_status_line {
            "Missing expected CR after response line"
        } else {
            "Missing expected CR after header value"
        },
    )
}

/// llhttp's verdict on a CR without LF (httparse refuses it too, with a less precise error).
fn classify_line_ends(head: &[u8]) -> Option<CoreError> {
    let status_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
    let cr = memchr::memchr_iter(b'\r', head).find(|&cr| head.get(cr + 1) != Some(&b'\n'))?;
    Some(if cr < status_end {
        parser_error("HPE_STRICT", "Expected LF after CR")
    } else {
        parser_error("HPE_LF_EXPECTED", "Missing expected LF after header value")
    })
}

fn map_httparse(error: httparse::Error, head: &[u8]) -> CoreError {
    match error {
        httparse::Error::Version if !head.starts_with(b"HTTP/") => {
            parser_error("HPE_INVALID_CONSTANT", "Expected HTTP/, RTSP/ or ICE/")
        }
        httparse::Error::Version => parser_error("HPE_INVALID_VERSION", "Invalid HTTP version"),
        httparse::Error::Status => parser_error("HPE_INVALID_STATUS", "Invalid status code"),
        httparse::Error::HeaderName | httparse::Error::Token => {
            parser_error("HPE_INVALID_HEADER_TOKEN", "Invalid header token")
        }
        httparse::Error::HeaderValue => {
            parser_error("HPE_INVALID_HEADER_TOKEN", "Invalid header value char")
        }
        httparse::Error::NewLine => {
            parser_error("HPE_LF_EXPECTED", "Missing expected LF after header value")
        }
        httparse::Error::TooManyHeaders => headers_overflow(),
    }
}

/// Parses a complete head (ending with its empty line).
fn parse_head(
    head: &Bytes,
    kind: RequestKind,
    max_header_size: usize,
) -> Result<Parsed, CoreError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let mut response = httparse::Response::new(&mut stack);
    let result = match response.parse(head) {
        Err(httparse::Error::TooManyHeaders) => {
            heap = vec![httparse::EMPTY_HEADER; memchr::memchr_iter(b'\n', head).count()];
            response = httparse::Response::new(&mut heap);
            response.parse(head)
        }
        other => other,
    };
    match result {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(parser_error("HPE_INVALID_CONSTANT", "Invalid response"))
        }
        Err(error) => {
            return Err(classify_line_ends(head).unwrap_or_else(|| map_httparse(error, head)))
        }
    }
    let status = response.code.unwrap_or(0);
    let version = if response.version == Some(0) {
        http::Version::HTTP_10
    } else {
        http::Version::HTTP_11
    };
    if !(100..=999).contains(&status) {
        return Err(parser_error(
            "HPE_INVALID_STATUS",
            "Invalid response status",
        ));
    }

    let mut size = 0usize;
    let mut headers = RawHeaders::with_capacity(response.headers.len());
    let mut fields = Fields::default();
    for header in response.headers.iter() {
        size += header.name.len() + header.value.len();
        fields.see(header.name.as_bytes(), header.value);
        headers.push(
            head.slice_ref(header.name.as_bytes()),
            head.slice_ref(header.value),
        );
    }
    if size >= max_header_size {
        return Err(headers_overflow());
    }
    if kind.switches(status) {
        return Ok(Parsed::Head(Head {
            status,
            reason: reason_phrase(head),
            version,
            headers,
            framing: Framing::Switched,
            keep_alive: false,
            keep_alive_hint: None,
            size,
        }));
    }
    if status < 200 {
        return match status {
            // undici never sends `expect: 100-continue`, and fails a 100 it did not ask for.
            100 => Err(socket_error("bad response")),
            // A 101 nobody asked for (an upgrade's 101 switched above).
            101 => Err(socket_error("bad upgrade")),
            _ => Ok(Parsed::Informational),
        };
    }

    let reason = reason_phrase(head);
    let is_head_request = kind == RequestKind::Head;
    let framing = fields.framing(status, is_head_request)?;
    let keep_alive = framing != Framing::Close
        && !is_head_request
        && !fields.announces_stray_body(status)
        && match version {
            http::Version::HTTP_10 => fields.connection_keep_alive,
            _ => !fields.connection_close,
        };
    Ok(Parsed::Head(Head {
        status,
        reason,
        version,
        headers,
        framing,
        keep_alive,
        keep_alive_hint: fields.keep_alive_hint,
        size,
    }))
}

/// The reason phrase: the status line after `HTTP/1.x NNN `, as sent.
fn reason_phrase(head: &Bytes) -> Bytes {
    let line_end = memchr::memchr(b'\r', head).unwrap_or(0);
    if line_end > 13 {
        head.slice(13..line_end)
    } else {
        Bytes::new()
    }
}

/// What the header fields say about framing and the connection.
#[derive(Default)]
struct Fields<'a> {
    /// How many `content-length` fields came, and the first one's value.
    content_lengths: u32,
    first_content_length: &'a [u8],
    transfer_encoding: bool,
    /// The last `transfer-encoding` coding seen is `chunked`.
    chunked_last: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    keep_alive_hint: Option<Duration>,
}

impl<'a> Fields<'a> {
    fn see(&mut self, name: &[u8], value: &'a [u8]) {
        if name.eq_ignore_ascii_case(b"content-length") {
            self.content_lengths += 1;
            if self.content_lengths == 1 {
                self.first_content_length = value;
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
            if let Some(last) = value.rsplit(|&b| b == b',').next() {
                self.chunked_last = trim(last).eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    self.connection_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.connection_keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"keep-alive") {
            self.keep_alive_hint = keep_alive_timeout(value).or(self.keep_alive_hint);
        }
    }

    /// A 204 or 304 whose head announces content (a non-zero `content-length`, or `transfer-encoding`): the
    /// server may have sent a body it should not have, which would be read as the next response on this
    /// connection. As undici 8 does, the response is delivered without a body and the connection is not reused
    /// (undici 7 failed it with a length mismatch).
    fn announces_stray_body(&self, status: u16) -> bool {
        (status == 204 || status == 304)
            && (self.transfer_encoding
                || (self.content_lengths > 0
                    && parse_length(trim(self.first_content_length)).is_none_or(|n| n > 0)))
    }

    /// The body's framing, with llhttp's checks of `content-length` and undici's reading of its errors: a
    /// value that does not start with a digit is a parser error; any other bad length (a list, several
    /// headers, an overflow, together with `transfer-encoding`) fails as a length mismatch, because undici
    /// compares the bytes read with the header's text whenever llhttp fails after seeing it.
    fn framing(&self, status: u16, is_head_request: bool) -> Result<Framing, CoreError> {
        let length = if self.content_lengths > 0 {
            let first = trim(self.first_content_length);
            match first.first() {
                None => {
                    return Err(parser_error(
                        "HPE_INVALID_CONTENT_LENGTH",
                        "Empty Content-Length",
                    ))
                }
                Some(b) if !b.is_ascii_digit() => {
                    return Err(parser_error(
                        "HPE_INVALID_CONTENT_LENGTH",
                        "Invalid character in Content-Length",
                    ))
                }
                Some(_) => {}
            }
            if self.content_lengths > 1 || self.transfer_encoding {
                return Err(content_length_mismatch());
            }
            Some(parse_length(first).ok_or_else(content_length_mismatch)?)
        } else {
            None
        };
        if is_head_request {
            return Ok(Framing::Empty);
        }
        if status == 204 || status == 304 {
            // Never a body, whatever the head announces (as undici 8; see `announces_stray_body`).
            return Ok(Framing::Empty);
        }
        if self.transfer_encoding {
            return Ok(if self.chunked_last {
                Framing::Chunked
            } else {
                Framing::Close
            });
        }
        Ok(match length {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        })
    }
}

/// Digits only, within u64.
pub(crate) fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// `timeout=N` in a `Keep-Alive` value, as undici's `parseKeepAliveTimeout` reads it (seconds).
fn keep_alive_timeout(value: &[u8]) -> Option<Duration> {
    const KEY: &[u8] = b"timeout=";
    let at = value.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = &value[at..];
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    parse_length(&digits[..end]).map(Duration::from_secs)
}

pub(crate) fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn read(text: &str) -> Result<Parsed, CoreError> {
        let mut buf = BytesMut::from(text.as_bytes());
        HeadReader::default().read(&mut buf, RequestKind::Plain, 16 * 1024)
    }

    fn head(text: &str) -> Head {
        match read(text) {
            Ok(Parsed::Head(head)) => head,
            other => panic!("expected a head, got {other:?}"),
        }
    }

    fn message(text: &str) -> String {
        read(text).unwrap_err().message
    }

    #[test]
    fn header_names_keep_the_servers_case_and_order() {
        let head =
            head("HTTP/1.1 200 Fine\r\nX-Mixed-Case: 1\r\ncontent-length: 2\r\nB: 2\r\n\r\n");
        let names: Vec<&[u8]> = head.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"X-Mixed-Case"[..], b"content-length", b"B"]);
        assert_eq!(head.reason, "Fine");
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.keep_alive);
    }

    #[test]
    fn more_headers_than_the_stack_holds_are_parsed() {
        let mut text = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..1000 {
            text.push_str(&format!("x{i}: {i}\r\n"));
        }
        text.push_str("\r\n");
        assert_eq!(head(&text).headers.len(), 1000);
    }

    #[test]
    fn a_partial_head_waits_and_an_oversized_one_fails_before_it_ends() {
        assert!(matches!(
            read("HTTP/1.1 200 OK\r\nx: 1\r\n"),
            Ok(Parsed::Partial)
        ));
        let mut reader = HeadReader::default();
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx: "[..]);
        buf.extend_from_slice(&[b'a'; 2000]);
        let err = reader.read(&mut buf, RequestKind::Plain, 1024).unwrap_err();
        assert_eq!(err.kind, ErrorKind::HeadersOverflow);
    }

    #[test]
    fn content_length_errors_follow_undici() {
        assert_eq!(
            message("HTTP/1.1 200 OK\r\ncontent-length: -2\r\n\r\n"),
            "Response does not match the HTTP/1.1 protocol (Invalid character in Content-Length)"
        );
        assert_eq!(
            message("HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n"),
            "Response does not match the HTTP/1.1 protocol (Empty Content-Length)"
        );
        for bad in ["2, 2", "1 2", "99999999999999999999999"] {
            let err =
                read(&format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n")).unwrap_err();
            assert_eq!(err.kind, ErrorKind::ResponseContentLengthMismatch, "{bad}");
        }
        let both = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(
            read(both).unwrap_err().kind,
            ErrorKind::ResponseContentLengthMismatch
        );
        let twice = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(
            read(twice).unwrap_err().kind,
            ErrorKind::ResponseContentLengthMismatch
        );
    }

    #[test]
    fn line_end_errors_follow_llhttp() {
        assert!(message("HTTP/1.1 200 OK\ncontent-length: 2\n\n")
            .contains("Missing expected CR after response line"));
        assert!(message("HTTP/1.1 200 OK\r\nx-a: 1\r\n  2\r\n\r\n")
            .contains("Unexpected whitespace after header value"));
        assert!(message("HTTP/1.1 200 OK\r\nx-a: a\rb\r\n\r\n")
            .contains("Missing expected LF after header value"));
        assert!(message("hello world\r\n\r\n").contains("Expected HTTP/, RTSP/ or ICE/"));
        assert!(message("HTTP/1.1 2x0 OK\r\n\r\n").contains("Invalid status code"));
        assert!(message("HTTP/1.1 200 OK\r\nx(a): 1\r\n\r\n").contains("Invalid header token"));
    }

    #[test]
    fn framing_follows_status_method_and_transfer_encoding() {
        assert_eq!(
            head("HTTP/1.1 204 No Content\r\n\r\n").framing,
            Framing::Empty
        );
        assert!(head("HTTP/1.1 204 No Content\r\n\r\n").keep_alive);
        // A 204/304 announcing a body has none, and its connection is not reused (the body may follow).
        for stray in [
            "HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(head(stray).framing, Framing::Empty, "{stray}");
            assert!(!head(stray).keep_alive, "{stray}");
        }
        assert!(head("HTTP/1.1 304 Not Modified\r\ncontent-length: 0\r\n\r\n").keep_alive);
        assert_eq!(head("HTTP/1.1 200 OK\r\n\r\n").framing, Framing::Close);
        assert!(!head("HTTP/1.1 200 OK\r\n\r\n").keep_alive);
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n").framing,
            Framing::Chunked
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n").framing,
            Framing::Close
        );
        assert!(
            !head("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").keep_alive
        );
        assert!(!head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep_alive);
        assert!(
            head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n")
                .keep_alive
        );
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"[..]);
        match HeadReader::default()
            .read(&mut buf, RequestKind::Head, 16384)
            .unwrap()
        {
            Parsed::Head(head) => assert_eq!(head.framing, Framing::Empty),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn informational_heads_are_skipped_but_100_and_101_fail() {
        assert!(matches!(
            read("HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"),
            Ok(Parsed::Informational)
        ));
        assert_eq!(message("HTTP/1.1 100 Continue\r\n\r\n"), "bad response");
        assert_eq!(
            message("HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            "bad upgrade"
        );
    }

    #[test]
    fn a_switch_ends_the_head_and_leaves_what_follows_in_the_buffer() {
        let read_as = |kind: RequestKind, text: &str| {
            let mut buf = BytesMut::from(text.as_bytes());
            let parsed = HeadReader::default().read(&mut buf, kind, 16 * 1024);
            (parsed, buf)
        };
        let switched = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x01\x00";
        match read_as(RequestKind::Upgrade, switched) {
            (Ok(Parsed::Head(head)), rest) => {
                assert_eq!((head.status, head.framing), (101, Framing::Switched));
                assert!(!head.keep_alive);
                assert_eq!(&rest[..], b"\x01\x00");
            }
            other => panic!("{other:?}"),
        }
        // An upgrade answered with a plain response reads as one.
        match read_as(
            RequestKind::Upgrade,
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
        ) {
            (Ok(Parsed::Head(head)), _) => assert_eq!(head.framing, Framing::Length(0)),
            other => panic!("{other:?}"),
        }
        for status in [
            "200 Connection Established",
            "407 Proxy Authentication Required",
            "103 Early Hints",
        ] {
            match read_as(
                RequestKind::Connect,
                &format!("HTTP/1.1 {status}\r\ncontent-length: 3\r\n\r\nabc"),
            ) {
                (Ok(Parsed::Head(head)), rest) => {
                    assert_eq!(head.framing, Framing::Switched, "{status}");
                    assert_eq!(&rest[..], b"abc");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            read_as(RequestKind::Connect, "HTTP/1.1 100 Continue\r\n\r\n")
                .0
                .unwrap_err()
                .message,
            "bad response"
        );
    }

    #[test]
    fn keep_alive_hint_is_read() {
        let head =
            head("HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(head.keep_alive_hint, Some(Duration::from_secs(5)));
    }
}
