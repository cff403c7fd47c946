//! Property tests over the engine's parsing and framing: arbitrary bytes never panic, well-formed input
//! decodes to what was encoded however it is split across reads, and the request heads and chunk size lines
//! the engine writes parse back (with `httparse`, an independent reader) to exactly what was asked for.

use super::body::tests::decode_in_pieces;
use super::head::{Framing, HeadReader, Parsed, RequestKind};
use super::write::{chunk_size_line, encode_head, expects_payload, BodyFraming};
use bytes::BytesMut;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Feeds `input` to a head reader in pieces of `step` bytes, as reads would deliver it.
fn read_head(input: &[u8], step: usize, max: usize) -> Result<Option<Parsed>, ()> {
    let mut reader = HeadReader::default();
    let mut buf = BytesMut::new();
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match reader.read(&mut buf, RequestKind::Plain, max) {
                Ok(Parsed::Partial) => break,
                Ok(Parsed::Informational) => continue,
                Ok(head) => return Ok(Some(head)),
                Err(_) => return Err(()),
            }
        }
    }
    Ok(None)
}

/// Decodes a body from `input` fed in pieces of `step` bytes; the body once it ended, else `None`.
fn decode(framing: Framing, input: &[u8], step: usize) -> Option<Vec<u8>> {
    decode_in_pieces(framing, input, step, false)
        .ok()
        .map(|(body, _)| body)
}

fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        out.extend_from_slice(format!("{n:x};ext=1\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\nx-t: 1\r\n\r\n");
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_heads_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512), step in 1usize..64) {
        let _ = read_head(&input, step, 256);
    }

    #[test]
    fn head_like_input_never_panics(
        status in "[0-9]{1,4}",
        lines in proptest::collection::vec("[ -~\t\r\n]{0,40}", 0..12),
        step in 1usize..32,
    ) {
        let mut input = format!("HTTP/1.1 {status} OK\r\n");
        for line in &lines {
            input.push_str(line);
            input.push_str("\r\n");
        }
        input.push_str("\r\n");
        let _ = read_head(input.as_bytes(), step, 16 * 1024);
    }

    #[test]
    fn well_formed_heads_parse_the_same_in_any_split(
        names in proptest::collection::vec("[A-Za-z][A-Za-z0-9-]{0,15}", 0..40),
        step in 1usize..40,
    ) {
        let mut input = String::from("HTTP/1.1 200 OK\r\n");
        for (i, name) in names.iter().enumerate() {
            input.push_str(&format!("{name}: v{i}\r\n"));
        }
        input.push_str("\r\n");
        match read_head(input.as_bytes(), step, 1 << 20) {
            Ok(Some(Parsed::Head(head))) => {
                let got: Vec<Vec<u8>> = head.headers.iter().map(|(n, _)| n.to_vec()).collect();
                let want: Vec<Vec<u8>> = names.iter().map(|n| n.as_bytes().to_vec()).collect();
                prop_assert_eq!(got, want);
            }
            other => prop_assert!(false, "{:?}", other.map(|p| p.is_some())),
        }
    }

    #[test]
    fn arbitrary_chunked_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512), step in 1usize..64) {
        let _ = decode(Framing::Chunked, &input, step);
    }

    #[test]
    fn chunked_bodies_round_trip_in_any_split(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        sizes in proptest::collection::vec(1usize..300, 1..8),
        step in 1usize..100,
    ) {
        let encoded = chunked(&body, &sizes);
        prop_assert_eq!(decode(Framing::Chunked, &encoded, step), Some(body));
    }

    #[test]
    fn length_bodies_stop_at_their_length(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        extra in proptest::collection::vec(any::<u8>(), 0..64),
        step in 1usize..100,
    ) {
        let mut input = body.clone();
        input.extend_from_slice(&extra);
        let got = decode(Framing::Length(body.len() as u64), &input, step);
        prop_assert_eq!(got, Some(body));
    }

    #[test]
    fn content_length_values_parse_as_digits_within_u64(value in "[0-9+ ,-]{0,25}") {
        let parsed = super::head::parse_length(value.as_bytes());
        let expected = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            value.parse::<u64>().ok()
        } else {
            None
        };
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn request_heads_parse_back_to_what_was_asked(
        method in prop_oneof![
            Just("GET".to_string()), Just("POST".to_string()), Just("PUT".to_string()),
            Just("HEAD".to_string()), Just("DELETE".to_string()), "[A-Z][A-Za-z!#$%&'*+.^_`|~-]{0,11}",
        ],
        target in "/[A-Za-z0-9/._~!$&'()*+,;=:@%?-]{0,48}",
        authority in "[a-z0-9.-]{1,24}(:[0-9]{1,5})?",
        headers in proptest::collection::vec(
            ("[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", header_value()),
            0..24,
        ),
        host in proptest::option::of("[a-z0-9.-]{1,24}"),
        close in any::<bool>(),
        body in prop_oneof![
            Just(BodyFraming::None),
            (0u64..1 << 40).prop_map(BodyFraming::Length),
            Just(BodyFraming::Chunked),
        ],
    ) {
        // What callers may pass (the engine's callers refuse the rest before it gets here).
        let special = ["host", "connection", "content-length", "transfer-encoding", "upgrade", "keep-alive", "expect"];
        let mut given: Vec<(Vec<u8>, Vec<u8>)> = headers
            .into_iter()
            .filter(|(name, _)| !special.iter().any(|s| name.eq_ignore_ascii_case(s)))
            .map(|(name, value)| (name.into_bytes(), value))
            .collect();
        let mut sent = given.clone();
        if let Some(host) = &host {
            given.insert(given.len() / 2, (b"Host".to_vec(), host.as_bytes().to_vec()));
        }
        if close {
            given.push((b"Connection".to_vec(), b"close".to_vec()));
        }
        let mut out = BytesMut::new();
        let written = encode_head(&mut out, &method, &target, &authority, &given, body, None);

        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut fields);
        let parsed = request.parse(&out);
        prop_assert_eq!(parsed.ok(), Some(httparse::Status::Complete(out.len())));
        prop_assert_eq!(request.method, Some(method.as_str()));
        prop_assert_eq!(request.path, Some(target.as_str()));
        prop_assert_eq!(request.version, Some(1));

        let payload = expects_payload(&method);
        let mut want: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"host".to_vec(), host.unwrap_or(authority).into_bytes()),
            (b"connection".to_vec(), if close { b"close".to_vec() } else { b"keep-alive".to_vec() }),
        ];
        want.append(&mut sent);
        match body {
            BodyFraming::Length(n) if n > 0 || payload => {
                want.push((b"content-length".to_vec(), n.to_string().into_bytes()))
            }
            BodyFraming::None if payload => want.push((b"content-length".to_vec(), b"0".to_vec())),
            BodyFraming::Chunked => want.push((b"transfer-encoding".to_vec(), b"chunked".to_vec())),
            _ => {}
        }
        let got: Vec<(Vec<u8>, Vec<u8>)> = request
            .headers
            .iter()
            .map(|h| (h.name.as_bytes().to_vec(), h.value.to_vec()))
            .collect();
        prop_assert_eq!(got, want);

        let sends_body = matches!(body, BodyFraming::Length(n) if n > 0) || body == BodyFraming::Chunked;
        prop_assert_eq!(written.close_after, close || (sends_body && !payload));
    }

    #[test]
    fn chunk_size_lines_parse_back_as_the_size(len in any::<usize>()) {
        let mut out = BytesMut::new();
        chunk_size_line(len, &mut out);
        let line = std::str::from_utf8(&out).unwrap();
        let digits = line.strip_suffix("\r\n").unwrap();
        prop_assert_eq!(usize::from_str_radix(digits, 16).ok(), Some(len));
    }
}

/// A header value a caller may send and RFC 9110 allows (visible ASCII, space, tab and latin1's obs-text, as
/// undici writes it; the other control bytes undici lets through are left out because `httparse` refuses
/// them), without the leading or trailing whitespace a reader would take off.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("field value byte", |&b| {
            b == b'\t' || (b >= 0x20 && b != 0x7f)
        }),
        0..40,
    )
    .prop_map(|mut value| {
        while value.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            value.remove(0);
        }
        while value.last().is_some_and(|b| *b == b' ' || *b == b'\t') {
            value.pop();
        }
        value
    })
}
