//! Response body framing: a known length, chunked transfer coding (sizes, extensions, trailers), or
//! everything until the server closes. The decoder takes bytes from the connection's buffer and hands out
//! slices of it, uncopied.

use super::errors::{closed_early, content_length_mismatch, headers_overflow, parser_error};
use super::head::{trim, Framing};
use crate::error::CoreError;
use crate::handler::RawHeaders;
use bytes::{Buf, Bytes, BytesMut};

/// What one step of decoding produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Data(Bytes),
    /// The body ended; chunked bodies may carry trailers.
    End(RawHeaders),
    /// The buffer holds no more of the body: read more.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk size; `digits` so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// Skipping a chunk extension up to its CR.
    Extension {
        size: u64,
    },
    /// After the size line's CR.
    SizeLf {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    Trailers,
}

/// The first `n` bytes of `buf`, as body data. When they are all `buf` holds and fill at least half of
/// what is left of its allocation, that allocation goes with them: the data then shares its memory with
/// nothing (the bridge hands such chunks to JavaScript without copying them, which it cannot do while the
/// connection's buffer still points into the same allocation), and the little room left over is not worth
/// keeping. Smaller pieces are split off, so that a trickle of small reads shares one allocation.
fn take_data(buf: &mut BytesMut, n: usize) -> Bytes {
    if n == buf.len() && buf.capacity() - n <= n {
        std::mem::take(buf).freeze()
    } else {
        buf.split_to(n).freeze()
    }
}

/// Most hex digits of a chunk size (llhttp's limit: a size must fit 64 bits).
const MAX_SIZE_DIGITS: u8 = 16;

#[derive(Debug)]
pub(crate) struct BodyDecoder {
    state: State,
    /// Bytes trailers may still take of `maxHeaderSize` (what the head left).
    trailer_budget: usize,
}

#[derive(Debug)]
enum State {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

impl BodyDecoder {
    pub(crate) fn new(framing: Framing, trailer_budget: usize) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) | Framing::Switched => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size {
                value: 0,
                digits: 0,
            }),
            Framing::Close => State::Close,
        };
        BodyDecoder {
            state,
            trailer_budget,
        }
    }

    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// How much the next read should ask for: what is left of a known length, else a default.
    pub(crate) fn wants(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Chunked(Chunk::Data { left }) => Some(left),
            _ => None,
        }
    }

    /// Decodes what `buf` holds. Call again after `Data`; `NeedMore` means the buffer is used up.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, CoreError> {
        loop {
            match &mut self.state {
                State::Done => return Ok(Decoded::End(RawHeaders::new())),
                State::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = (*left).min(buf.len() as u64) as usize;
                    *left -= take as u64;
                    if *left == 0 {
                        self.state = State::Done;
                    }
                    return Ok(Decoded::Data(take_data(buf, take)));
                }
                State::Close => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let all = buf.len();
                    return Ok(Decoded::Data(take_data(buf, all)));
                }
                State::Chunked(chunk) => {
                    if let Chunk::Data { left } = chunk {
                        if buf.is_empty() {
                            return Ok(Decoded::NeedMore);
                        }
                        let take = (*left).min(buf.len() as u64) as usize;
                        *left -= take as u64;
                        if *left == 0 {
                            *chunk = Chunk::DataCr;
                        }
                        return Ok(Decoded::Data(take_data(buf, take)));
                    }
                    if *chunk == Chunk::Trailers {
                        return match self.trailers(buf)? {
                            Some(trailers) => {
                                self.state = State::Done;
                                Ok(Decoded::End(trailers))
                            }
                            None => Ok(Decoded::NeedMore),
                        };
                    }
                    let Some(&byte) = buf.first() else {
                        return Ok(Decoded::NeedMore);
                    };
                    buf.advance(1);
                    *chunk = step(*chunk, byte)?;
                    if let Chunk::Data { left: 0 } = chunk {
                        *chunk = Chunk::Trailers;
                    }
                }
            }
        }
    }

    /// The connection ended: a close-delimited body is complete, any other is truncated.
    pub(crate) fn finish(&mut self, keep_alive: bool) -> Result<RawHeaders, CoreError> {
        match self.state {
            State::Close | State::Done => {
                self.state = State::Done;
                Ok(RawHeaders::new())
            }
            // undici: a truncated body on a connection the server said it would close is a length
            // mismatch (llhttp's finish reports it), on a kept-alive one the peer closing early.
            State::Length(_) if !keep_alive => Err(content_length_mismatch()),
            _ => Err(closed_early()),
        }
    }

    /// The trailer section after the last chunk, once it is all in `buf`.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Option<RawHeaders>, CoreError> {
        if buf.len() >= 2 && &buf[..2] == b"\r\n" {
            buf.advance(2);
            return Ok(Some(RawHeaders::new()));
        }
        if buf.first() == Some(&b'\n') {
            return Err(parser_error(
                "HPE_CR_EXPECTED",
                "Missing expected CR after chunk size",
            ));
        }
        let Some(end) = find_section_end(buf) else {
            if buf.len() >= self.trailer_budget.max(1) {
                return Err(headers_overflow());
            }
            return Ok(None);
        };
        let section = buf.split_to(end).freeze();
        let mut fields = vec![httparse::EMPTY_HEADER; memchr::memchr_iter(b'\n', &section).count()];
        match httparse::parse_headers(&section, &mut fields) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => {
                return Err(parser_error(
                    "HPE_INVALID_HEADER_TOKEN",
                    "Invalid header token",
                ))
            }
        }
        let mut size = 0;
        let trailers: RawHeaders = fields
            .iter()
            .take_while(|f| !f.name.is_empty())
            .map(|f| {
                size += f.name.len() + f.value.len();
                (
                    section.slice_ref(f.name.as_bytes()),
                    section.slice_ref(trim(f.value)),
                )
            })
            .collect();
        if size >= self.trailer_budget {
            return Err(headers_overflow());
        }
        Ok(Some(trailers))
    }
}

/// The end of a CRLF-terminated field section (past its empty line) in `buf`.
fn find_section_end(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n\r\n").map(|at| at + 4)
}

/// One byte of a chunk's framing (everything but its data).
fn step(chunk: Chunk, byte: u8) -> Result<Chunk, CoreError> {
    Ok(match chunk {
        Chunk::Size { value, digits } => match (byte as char).to_digit(16) {
            Some(d) => {
                if digits >= MAX_SIZE_DIGITS {
                    return Err(parser_error(
                        "HPE_INVALID_CHUNK_SIZE",
                        "Chunk size overflow",
                    ));
                }
                Chunk::Size {
                    value: (value << 4) | u64::from(d),
                    digits: digits + 1,
                }
            }
            None if digits == 0 => return Err(invalid_size()),
            None => match byte {
                b';' => Chunk::Extension { size: value },
                b'\r' => Chunk::SizeLf { size: value },
                b'\n' => {
                    return Err(parser_error(
                        "HPE_CR_EXPECTED",
                        "Missing expected CR after chunk size",
                    ))
                }
                _ => return Err(invalid_size()),
            },
        },
        Chunk::Extension { size } => match byte {
            b'\r' => Chunk::SizeLf { size },
            b'\n' => {
                return Err(parser_error(
                    "HPE_CR_EXPECTED",
                    "Missing expected CR after chunk extension value",
                ))
            }
            _ => Chunk::Extension { size },
        },
        Chunk::SizeLf { size } => match byte {
            b'\n' => Chunk::Data { left: size },
            _ => return Err(parser_error("HPE_STRICT", "Expected LF after chunk size")),
        },
        Chunk::DataCr => match byte {
            b'\r' => Chunk::DataLf,
            _ => return Err(after_data()),
        },
        Chunk::DataLf => match byte {
            b'\n' => Chunk::Size {
                value: 0,
                digits: 0,
            },
            _ => return Err(after_data()),
        },
        Chunk::Data { .. } | Chunk::Trailers => unreachable!("handled by the decoder"),
    })
}

fn invalid_size() -> CoreError {
    parser_error("HPE_INVALID_CHUNK_SIZE", "Invalid character in chunk size")
}

fn after_data() -> CoreError {
    parser_error("HPE_STRICT", "Expected LF after chunk data")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns the body and trailers, or the error.
    pub(crate) fn decode_in_pieces(
        framing: Framing,
        input: &[u8],
        step: usize,
        eof: bool,
    ) -> Result<(Vec<u8>, RawHeaders), CoreError> {
        let mut decoder = BodyDecoder::new(framing, 16 * 1024);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf)? {
                    Decoded::Data(data) => body.extend_from_slice(&data),
                    Decoded::End(trailers) => return Ok((body, trailers)),
                    Decoded::NeedMore => break,
                }
            }
        }
        if decoder.is_done() {
            return Ok((body, RawHeaders::new()));
        }
        if eof {
            return decoder.finish(true).map(|t| (body, t));
        }
        Err(closed_early())
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let input = b"2;a=b;c=\"d\"\r\nhi\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\nx-u:  2 \r\n\r\n";
        for step in [1, 2, 3, 7, input.len()] {
            let (body, trailers) = decode_in_pieces(Framing::Chunked, input, step, false).unwrap();
            assert_eq!(body, b"hi0123456789");
            assert_eq!(trailers.len(), 2);
            let names: Vec<&[u8]> = trailers.iter().map(|(n, _)| n).collect();
            assert_eq!(names, [&b"X-T"[..], b"x-u"]);
            assert_eq!(trailers.get("X-U"), Some(&b"2"[..]));
        }
    }

    #[test]
    fn chunk_errors_follow_llhttp() {
        let cases: [(&[u8], &str); 5] = [
            (b"zz\r\nhi\r\n0\r\n\r\n", "Invalid character in chunk size"),
            (b"fffffffffffffffff\r\n", "Chunk size overflow"),
            (b"2\r\nhiX\r\n0\r\n\r\n", "Expected LF after chunk data"),
            (b"2\nhi\n0\n\n", "Missing expected CR after chunk size"),
            (b"2 \r\nhi\r\n0\r\n\r\n", "Invalid character in chunk size"),
        ];
        for (input, reason) in cases {
            let err = decode_in_pieces(Framing::Chunked, input, 1, false).unwrap_err();
            assert!(err.message.contains(reason), "{:?}: {}", input, err.message);
        }
    }

    #[test]
    fn long_chunk_extensions_are_skipped_without_buffering() {
        let mut input = b"2;".to_vec();
        input.extend(std::iter::repeat_n(b'a', 20_000));
        input.extend_from_slice(b"\r\nhi\r\n0\r\n\r\n");
        let (body, _) = decode_in_pieces(Framing::Chunked, &input, 4096, false).unwrap();
        assert_eq!(body, b"hi");
    }

    #[test]
    fn truncation_is_an_error_but_close_delimited_bodies_end_at_eof() {
        assert_eq!(
            decode_in_pieces(Framing::Chunked, b"5\r\nhi", 2, true)
                .unwrap_err()
                .message,
            "other side closed"
        );
        assert_eq!(
            decode_in_pieces(Framing::Length(5), b"hi", 2, true)
                .unwrap_err()
                .message,
            "other side closed"
        );
        let mut decoder = BodyDecoder::new(Framing::Length(5), 0);
        assert!(decoder.finish(false).is_err());
        let (body, _) = decode_in_pieces(Framing::Close, b"hello", 2, true).unwrap();
        assert_eq!(body, b"hello");
    }

    #[test]
    fn a_length_body_stops_at_its_length() {
        let mut decoder = BodyDecoder::new(Framing::Length(2), 0);
        let mut buf = BytesMut::from(&b"hiHTTP/1.1"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap(),
            Decoded::Data(Bytes::from_static(b"hi"))
        );
        assert!(decoder.is_done());
        assert_eq!(&buf[..], b"HTTP/1.1");
    }

    #[test]
    fn data_filling_the_buffer_owns_its_memory_and_small_reads_share_one_allocation() {
        let mut decoder = BodyDecoder::new(Framing::Length(100_000), 16 * 1024);
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(&[7; 64 * 1024]);
        let Decoded::Data(data) = decoder.decode(&mut buf).unwrap() else {
            panic!("expected data")
        };
        assert_eq!(data.len(), 64 * 1024);
        assert!(data.try_into_mut().is_ok(), "a full read shares nothing");
        assert_eq!(buf.capacity(), 0);

        buf.reserve(64 * 1024);
        buf.extend_from_slice(&[1; 100]);
        let Decoded::Data(small) = decoder.decode(&mut buf).unwrap() else {
            panic!("expected data")
        };
        assert_eq!(small.len(), 100);
        assert!(
            buf.capacity() >= 60 * 1024,
            "the room after a small read stays"
        );
    }
}
